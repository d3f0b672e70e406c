// QEMU capabilities: which QOM types and properties a QEMU binary has. Features are decided by
// detection (qom-list-types / qom-list-properties from a probe or a saved file); without a probe,
// the built-in table below stands in for "what upstream QEMU X.Y has". Every entry carries the
// first upstream release with the feature (sources: ../shared/DOMAIN.md, qapi/qom.json).
import { CONFIDENTIAL } from "../core/confidential.js";
import { versionAtLeast } from "../core/versions.js";
import type { QemuCapabilities } from "../core/types.js";

export { compareVersions, versionAtLeast } from "../core/versions.js";

export interface FeatureDef {
  /** Human description for messages and `qcvm doctor`. */
  what: string;
  /** First upstream QEMU release with it; null when no upstream release has it. */
  since: string | null;
  /** Detected by a QOM type... */
  type?: string;
  /** ...or by a property on a QOM type. */
  property?: [type: string, prop: string];
  /** Set when upstream builds it only given an optional build dependency, so a distribution's
   *  build of a version past `since` may lack it: what decides it. Detection still decides. */
  buildOption?: string;
}

export const FEATURES = {
  "memory-backend-memfd": { what: "memory-backend-memfd", since: "2.12", type: "memory-backend-memfd" },
  "memory-backend-ram": { what: "memory-backend-ram", since: "2.1", type: "memory-backend-ram" },
  "memory-backend-file": { what: "memory-backend-file", since: "2.1", type: "memory-backend-file" },
  // -sandbox on with the optional deny sets obsolete/elevateprivileges/spawn/resourcecontrol
  // (QEMU 2.11, qemu-options.hx); a QEMU built without libseccomp refuses -sandbox on.
  sandbox: { what: "-sandbox with obsolete/elevateprivileges/spawn/resourcecontrol", since: "2.11" },
  "numa-memdev": { what: "-numa node,memdev=", since: "2.1" },
  "numa-dist": { what: "-numa dist", since: "2.10" },
  "machine-memory-backend": { what: "-machine memory-backend=", since: "5.0" },
  "prealloc-threads": {
    what: "memory backend prealloc-threads",
    since: "5.0",
    property: ["memory-backend-memfd", "prealloc-threads"],
  },
  reserve: { what: "memory backend reserve=", since: "6.1", property: ["memory-backend-memfd", "reserve"] },
  "thread-context": { what: "thread-context object (NUMA-local preallocation)", since: "7.2", type: "thread-context" },
  "prealloc-context": {
    what: "memory backend prealloc-context",
    since: "7.2",
    property: ["memory-backend-memfd", "prealloc-context"],
  },
  // QEMU 8.0: policy=preferred with several host nodes becomes MPOL_PREFERRED_MANY (libnuma permitting).
  "preferred-many": { what: "preferred policy over several host nodes (MPOL_PREFERRED_MANY)", since: "8.0" },
  // The confidential objects: type names and versions from the confidential-type table.
  "sev-guest": { what: "sev-guest (SEV, SEV-ES)", since: CONFIDENTIAL.sev.qemuSince, type: CONFIDENTIAL.sev.qomType },
  "sev-kernel-hashes": { what: "sev-guest kernel-hashes", since: "6.2", property: ["sev-guest", "kernel-hashes"] },
  "sev-legacy-vm-type": { what: "sev-guest legacy-vm-type", since: "9.1", property: ["sev-guest", "legacy-vm-type"] },
  "sev-snp-guest": {
    what: "sev-snp-guest (SEV-SNP, guest_memfd private memory)",
    since: CONFIDENTIAL["sev-snp"].qemuSince,
    type: CONFIDENTIAL["sev-snp"].qomType,
  },
  "tdx-guest": {
    what: "tdx-guest (Intel TDX, guest_memfd private memory)",
    since: CONFIDENTIAL.tdx.qemuSince,
    type: CONFIDENTIAL.tdx.qomType,
  },
  igvm: {
    what: "-machine igvm-cfg= (IGVM firmware)",
    since: "10.1",
    type: "igvm-cfg",
    // meson_options.txt `igvm` (feature, auto): built only where libigvm is found. Debian's 11.1.3
    // (trixie-backports) has no igvm-cfg type: probed by test/matrix/qemu-version.test.ts.
    buildOption: "meson option igvm (needs libigvm at build time; Debian's 11.1 is built without it)",
  },
  // The type is QEMU 9.1 (qapi/qom.json MemoryBackendShmProperties "Since: 9.1"); it gets a
  // guest_memfd beside it for SNP/TDX only from 10.2 (DOMAIN.md).
  "memory-backend-shm": { what: "memory-backend-shm", since: "9.1", type: "memory-backend-shm" },
  // Not in any upstream release (checked to QEMU master of 2026-02): proposed series add a
  // mmap'able guest_memfd backend whose host-nodes/policy reach private memory. Detect, never assume.
  "guest-memfd-backend": {
    what: "memory-backend-guest-memfd (host-nodes/policy reach guest_memfd)",
    since: null,
    type: "memory-backend-guest-memfd",
  },
  "memfd-guest-memfd": {
    what: "memory-backend-memfd guest-memfd=on",
    since: null,
    property: ["memory-backend-memfd", "guest-memfd"],
  },
  "snp-convert-in-place": {
    what: "sev-snp-guest convert-in-place",
    since: null,
    property: ["sev-snp-guest", "convert-in-place"],
  },
} as const satisfies Record<string, FeatureDef>;

export type Feature = keyof typeof FEATURES;

/** Does this QEMU have the feature? Detection first; the version only where nothing is detectable. */
export function hasFeature(caps: QemuCapabilities, feature: Feature): boolean {
  const def: FeatureDef = FEATURES[feature];
  if (def.type) return caps.types.includes(def.type);
  if (def.property) {
    const [type, prop] = def.property;
    const props = caps.properties[type];
    // A probe that did not list this type's properties falls back to the version.
    if (props) return props.includes(prop);
    return caps.types.includes(type) && def.since !== null && versionAtLeast(caps.version, def.since);
  }
  return def.since !== null && versionAtLeast(caps.version, def.since);
}

/** Built-in capabilities of upstream QEMU `version`: every feature whose `since` is <= version. */
export function builtinCapabilities(version: string): QemuCapabilities {
  const types = new Set<string>(["memory-backend-ram", "memory-backend-file"]);
  const properties: Record<string, Set<string>> = {};
  const backendProps = ["size", "share", "prealloc", "host-nodes", "policy", "merge", "dump"];
  for (const t of ["memory-backend-memfd", "memory-backend-ram", "memory-backend-file", "memory-backend-shm"]) {
    properties[t] = new Set(backendProps);
  }
  properties["memory-backend-memfd"]!.add("hugetlb").add("hugetlbsize").add("seal");
  properties["memory-backend-file"]!.add("mem-path").add("align");
  properties["sev-guest"] = new Set([
    "cbitpos",
    "reduced-phys-bits",
    "policy",
    "handle",
    "dh-cert-file",
    "session-file",
  ]);
  properties["sev-snp-guest"] = new Set([
    "cbitpos",
    "reduced-phys-bits",
    "kernel-hashes",
    "policy",
    "guest-visible-workarounds",
    "id-block",
    "id-auth",
    "author-key-enabled",
    "host-data",
    "vcek-disabled",
  ]);
  properties["tdx-guest"] = new Set([
    "attributes",
    "sept-ve-disable",
    "mrconfigid",
    "mrowner",
    "mrownerconfig",
    "quote-generation-socket",
  ]);
  properties["thread-context"] = new Set(["cpu-affinity", "node-affinity"]);
  for (const def of Object.values(FEATURES) as FeatureDef[]) {
    if (def.since === null || !versionAtLeast(version, def.since)) continue;
    if (def.type) types.add(def.type);
    if (def.property) {
      const [type, prop] = def.property;
      (properties[type] ??= new Set()).add(prop);
      if (type.startsWith("memory-backend-")) {
        for (const t of ["memory-backend-ram", "memory-backend-file", "memory-backend-shm"]) properties[t]!.add(prop);
      }
    }
  }
  return {
    source: "builtin",
    version,
    types: [...types].sort(),
    properties: Object.fromEntries(
      Object.entries(properties)
        .filter(([t]) => types.has(t))
        .map(([t, p]) => [t, [...p].sort()]),
    ),
  };
}

/** Why a QEMU lacks a feature: no release has it, its version predates it, or this build left it out. */
export type FeatureGap = "unreleased" | "needs-version" | "built-without";

export function featureGap(caps: QemuCapabilities, feature: Feature): FeatureGap | undefined {
  if (hasFeature(caps, feature)) return undefined;
  const def: FeatureDef = FEATURES[feature];
  if (def.since === null) return "unreleased";
  // A probed (or saved) QEMU at or past the release that has it, without it: a build option
  // (Debian's QEMU 11.1 has no IGVM: `-machine q35,help` lists no igvm-cfg).
  if (caps.source !== "builtin" && versionAtLeast(caps.version, def.since)) return "built-without";
  return "needs-version";
}

/** The QEMU that capabilities describe, naming the binary where one was probed. */
export function describeQemu(caps: QemuCapabilities): string {
  if (caps.source === "builtin") return `QEMU ${caps.version}`;
  return `QEMU ${caps.version} (${caps.source}${caps.binary ? `, ${caps.binary}` : ""})`;
}

/** Message for a feature the target QEMU lacks: names the version that has it, or says this build left it out. */
export function missingFeatureMessage(caps: QemuCapabilities, feature: Feature): string {
  const def: FeatureDef = FEATURES[feature];
  if (featureGap(caps, feature) === "built-without")
    return `${def.what}: ${describeQemu(caps)} was built without it (upstream QEMU has it since ${def.since})`;
  const need = def.since ? `needs QEMU >= ${def.since}` : "is in no upstream QEMU release yet";
  return `${def.what} ${need}; target QEMU is ${caps.version}${caps.source === "builtin" ? "" : ` (${caps.source}${caps.binary ? `, ${caps.binary}` : ""})`}`;
}
