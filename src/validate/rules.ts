// Semantic rules: what the schema cannot say. Each rule is a small function reading the
// normalized profile (and the raw one, to know what the user actually wrote) and pushing errors
// or warnings with a path; positions come from the load step's path -> file:line:col lookup.
// Version gates read FEATURES in capabilities.ts, the one table of "first QEMU with X".
import { existsSync, statSync } from "node:fs";
import { FEATURES, versionAtLeast } from "../probe/capabilities.js";
import type { Feature } from "../probe/capabilities.js";
import { diag } from "../core/diagnostics.js";
import { formatList } from "../io/fsroot.js";
import { parsePath } from "../core/field-path.js";
import type { Segment } from "../core/field-path.js";
import type { Position } from "../load/positions.js";
import { formatSize, HUGEPAGE_BYTES, parseSize, sizeProblem } from "../core/sizes.js";
import {
  BLOB_BYTES,
  usesGuestMemfd,
  SEV_POLICY_FLAGS,
  SNP_POLICY_FLAGS,
  SNP_POLICY_RESERVED,
  TDX_ATTRIBUTE_FLAGS,
  TDX_QEMU_ATTRIBUTES,
} from "../core/confidential.js";
import type { ConfidentialType, Diagnostic, FileOrBase64, Profile, RawProfile } from "../core/types.js";

export interface RuleContext {
  raw: RawProfile;
  profile: Profile;
  /** Was this field written (by a base, the file or --set), as opposed to defaulted? */
  has(path: string): boolean;
  /** The value as written, or undefined. */
  written(path: string): unknown;
  error(code: string, path: string, message: string, extra?: { got?: unknown; hint?: string }): void;
  warn(code: string, path: string, message: string, extra?: { got?: unknown; hint?: string }): void;
}

export type Rule = (ctx: RuleContext) => void;

type Locate = (path: readonly Segment[], key?: boolean) => Position;

function s(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function needVersion(ctx: RuleContext, feature: Feature, path: string, what?: string): void {
  const since = FEATURES[feature].since;
  const version = ctx.profile.qemu.version;
  if (since !== null && !versionAtLeast(version, since)) {
    ctx.error("qemu.version", path, `${what ?? FEATURES[feature].what} needs qemu.version >= ${since}`, {
      got: version,
      hint: `set qemu.version: "${since}" or newer, and use a QEMU that new`,
    });
  }
}

const name: Rule = (ctx) => {
  if (ctx.profile.name === "") {
    ctx.error("name.missing", "name", "is missing, and the file name is not a valid VM name", {
      hint: "add name: with lowercase letters, digits and '-', or rename the file",
    });
  }
};

// --- CPU -------------------------------------------------------------------------------------

const cpuTopology: Rule = (ctx) => {
  const { cpu } = ctx.profile;
  const product = cpu.sockets * cpu.dies * cpu.cores * cpu.threads;
  if (product !== cpu.count) {
    ctx.error(
      "cpu.topology",
      ctx.has("cpu.count") ? "cpu.count" : "cpu",
      `count must equal sockets * dies * cores * threads (${cpu.sockets} * ${cpu.dies} * ${cpu.cores} * ${cpu.threads} = ${product})`,
      { got: cpu.count, hint: "give count alone, or the topology alone, or make them agree" },
    );
  }
};

const cpuModel: Rule = (ctx) => {
  const { machine, cpu, confidential } = ctx.profile;
  if (machine.accel === "tcg" && cpu.model === "host") {
    ctx.warn("cpu.host-tcg", "cpu.model", "host is a KVM-only CPU model; with accel tcg QEMU refuses it", {
      got: "host",
      hint: "use max, or leave cpu.model out: tcg defaults to max",
    });
  }
  if (machine.accel === "tcg" && confidential.type !== "none") {
    ctx.error("machine.tcg-confidential", "machine.accel", `confidential guests (${confidential.type}) need KVM`, {
      got: "tcg",
      hint: "use accel kvm on a host with the hardware, or confidential.type none",
    });
  }
};

// --- Memory and NUMA -------------------------------------------------------------------------

const numaCpus: Rule = (ctx) => {
  const { nodes } = ctx.profile.numa;
  if (nodes.length === 0) return;
  const count = ctx.profile.cpu.count;
  const owner = new Map<number, number>();
  nodes.forEach((node, i) => {
    const dup = new Set<number>();
    const outOfRange: number[] = [];
    for (const c of node.cpus) {
      if (c >= count) outOfRange.push(c);
      else if (owner.has(c)) dup.add(c);
      else owner.set(c, i);
    }
    if (outOfRange.length > 0) {
      ctx.error(
        "numa.cpus-range",
        `numa.nodes[${i}].cpus`,
        `vCPU ${formatList(outOfRange)} does not exist (the guest has ${s(count, "vCPU")}, 0-${count - 1})`,
        {
          got: ctx.written(`numa.nodes[${i}].cpus`),
          hint: "raise cpu.count or fix the list",
        },
      );
    }
    for (const c of dup) {
      ctx.error("numa.cpus-overlap", `numa.nodes[${i}].cpus`, `vCPU ${c} is already in numa.nodes[${owner.get(c)}]`, {
        got: ctx.written(`numa.nodes[${i}].cpus`),
        hint: "each vCPU belongs to exactly one node",
      });
    }
  });
  const missing: number[] = [];
  for (let c = 0; c < count; c++) if (!owner.has(c)) missing.push(c);
  if (missing.length > 0) {
    ctx.error(
      "numa.cpus-cover",
      "numa.nodes",
      `${missing.length === 1 ? "vCPU" : "vCPUs"} ${formatList(missing)} ${missing.length === 1 ? "is" : "are"} in no node; every vCPU must be in exactly one node`,
      {
        got: nodes.map((n) => formatList(n.cpus)),
        hint: `cpu.count is ${count}`,
      },
    );
  }
};

/** memory.size and every numa.nodes[].memory: zero, beyond 2^53, beyond what a guest can address,
 *  or a size QEMU would round (see QEMU_RAM_ALIGN in core/sizes.ts). */
const sizes: Rule = (ctx) => {
  const paths = ["memory.size", ...ctx.profile.numa.nodes.map((_, i) => `numa.nodes[${i}].memory`)];
  for (const path of paths) {
    const written = ctx.written(path);
    if (written === undefined) continue;
    // A node's 0 has its own message (numa.memory-zero).
    if (path !== "memory.size" && parseSize(written) === 0) continue;
    const problem = sizeProblem(written);
    if (problem)
      ctx.error("memory.size-invalid", path, problem.message, {
        got: written,
        ...(problem.hint ? { hint: problem.hint } : {}),
      });
  }
};

/** Every size the NUMA rules add up was read exactly (else `sizes` reported it). */
function sizesReadable(ctx: RuleContext): boolean {
  const all = [
    ctx.written("memory.size") ?? "1G",
    ...ctx.profile.numa.nodes.map((_, i) => ctx.written(`numa.nodes[${i}].memory`)),
  ];
  return all.every((v) => v === undefined || parseSize(v) !== undefined);
}

const numaMemory: Rule = (ctx) => {
  const { nodes } = ctx.profile.numa;
  if (nodes.length === 0 || !sizesReadable(ctx)) return;
  const sum = nodes.reduce((a, n) => a + n.memoryBytes, 0);
  const total = ctx.profile.memory.sizeBytes;
  if (sum !== total) {
    ctx.error(
      "numa.memory-sum",
      "numa.nodes",
      `node memory sums to ${formatSize(sum)} but memory.size is ${formatSize(total)}`,
      {
        got: nodes.map((n) => formatSize(n.memoryBytes)),
        hint: "QEMU requires the nodes' memory to add up to -m",
      },
    );
  }
  nodes.forEach((n, i) => {
    if (n.memoryBytes === 0)
      ctx.error("numa.memory-zero", `numa.nodes[${i}].memory`, "must be more than 0", {
        got: ctx.written(`numa.nodes[${i}].memory`),
      });
  });
};

/** policy/hostNodes/weights on memory (no nodes) or on each guest node. */
function placementRules(
  ctx: RuleContext,
  base: string,
  p: { policy: string; hostNodes: number[]; weights?: Record<number, number> },
): void {
  const policyWritten = ctx.has(`${base}.policy`);
  if (p.policy === "default") {
    if (p.hostNodes.length > 0) {
      ctx.error(
        "placement.host-nodes-default",
        `${base}.hostNodes`,
        "must be empty with policy default, which sets no policy",
        {
          got: ctx.written(`${base}.hostNodes`),
          hint: "set policy: bind, preferred or interleave, or remove hostNodes",
        },
      );
    }
  } else if (p.hostNodes.length === 0) {
    ctx.error(
      "placement.host-nodes-required",
      `${base}.${policyWritten ? "policy" : "hostNodes"}`,
      `policy ${p.policy} needs hostNodes`,
      {
        got: p.policy,
        hint: 'e.g. hostNodes: "0", or policy: default',
      },
    );
  }
  // Once per list, not once per id: "0-65535" is one mistake.
  const tooHigh = p.hostNodes.find((h) => h >= 128);
  if (tooHigh !== undefined)
    ctx.error("placement.host-node-range", `${base}.hostNodes`, "host node ids must be below 128 (QEMU's limit)", {
      got: tooHigh,
    });
  if (p.weights !== undefined) {
    if (p.policy !== "weighted-interleave") {
      ctx.error("placement.weights-policy", `${base}.weights`, "weights need policy weighted-interleave", {
        got: p.policy,
      });
    } else {
      const hostNodes = new Set(p.hostNodes);
      const extra = Object.keys(p.weights)
        .map(Number)
        .filter((n) => !hostNodes.has(n));
      if (extra.length > 0) {
        ctx.error(
          "placement.weights-nodes",
          `${base}.weights`,
          `weights name host node ${formatList(extra)}, which is not in hostNodes`,
          {
            got: p.weights,
            hint: `hostNodes is ${formatList(p.hostNodes) || "empty"}`,
          },
        );
      }
    }
  }
}

const placement: Rule = (ctx) => {
  const { memory, numa } = ctx.profile;
  if (numa.nodes.length === 0) placementRules(ctx, "memory", memory);
  else {
    for (const k of ["hostNodes", "policy", "weights"]) {
      if (ctx.has(`memory.${k}`)) {
        ctx.warn("memory.placement-ignored", `memory.${k}`, "is ignored when numa.nodes is given", {
          hint: "set hostNodes/policy on each numa.nodes entry",
        });
      }
    }
    numa.nodes.forEach((n, i) => placementRules(ctx, `numa.nodes[${i}]`, n));
  }
};

const distances: Rule = (ctx) => {
  const { nodes, distances: list } = ctx.profile.numa;
  const written = Array.isArray(ctx.written("numa.distances")) ? (ctx.written("numa.distances") as unknown[]) : [];
  written.forEach((_, i) => {
    const d = list[i]!;
    const path = `numa.distances[${i}]`;
    for (const end of ["from", "to"] as const) {
      if (d[end] >= nodes.length) {
        ctx.error(
          "numa.distance-node",
          `${path}.${end}`,
          nodes.length === 0
            ? "distances need numa.nodes"
            : `guest node ${d[end]} does not exist (numa.nodes has ${s(nodes.length, "node")})`,
          {
            got: d[end],
          },
        );
      }
    }
    if (d.from === d.to && d.value !== 10) {
      ctx.error("numa.distance-self", `${path}.value`, "the distance from a node to itself must be 10", {
        got: d.value,
      });
    } else if (d.from !== d.to && d.value <= 10) {
      ctx.error(
        "numa.distance-value",
        `${path}.value`,
        "distances between different nodes must be 11..255 (10 means local)",
        { got: d.value },
      );
    }
  });
  // Once any -numa dist is given, QEMU wants one for every pair of nodes and exits otherwise:
  // "The distance between node 0 and 2 is missing" (hw/core/numa.c validate_numa_distance, since
  // QEMU 2.10; checked with QEMU 7.2). The reverse direction is implied (normalize adds it).
  if (written.length === 0) return;
  // Linear in the distances given: a set of pairs, and the pairs walked only until enough missing
  // ones are found (each pair passed on the way is a given distance).
  const given = new Set<number>();
  for (const d of list)
    if (d.from < nodes.length && d.to < nodes.length)
      given.add(Math.min(d.from, d.to) * nodes.length + Math.max(d.from, d.to));
  const missing: string[] = [];
  const MAX_LISTED = 20;
  for (let a = 0; a < nodes.length && missing.length < MAX_LISTED; a++) {
    for (let b = a + 1; b < nodes.length && missing.length < MAX_LISTED; b++) {
      if (!given.has(a * nodes.length + b)) missing.push(`${a}-${b}`);
    }
  }
  if (missing.length > 0) {
    const [a, b] = missing[0]!.split("-");
    ctx.error(
      "numa.distance-missing",
      "numa.distances",
      `no distance for guest node pair${missing.length === 1 ? "" : "s"} ${missing.join(", ")}: once any distance is given, QEMU needs one for every pair of nodes`,
      {
        got: missing,
        hint: `add e.g. {from: ${a}, to: ${b}, value: 20}, or remove numa.distances to let QEMU use its defaults`,
      },
    );
  }
};

const hugepages: Rule = (ctx) => {
  const { memory, numa } = ctx.profile;
  if (memory.backend === "ram" && memory.hugepages !== "none") {
    ctx.error("memory.hugepages-backend", "memory.hugepages", "the ram backend cannot use huge pages", {
      got: memory.hugepages,
      hint: "use backend memfd with hugepages, or file on a hugetlbfs mount",
    });
  }
  if (memory.backend === "file" && memory.path === undefined) {
    ctx.error("memory.file-path", "memory.backend", "the file backend needs memory.path", {
      got: "file",
      hint: "e.g. path: /dev/hugepages",
    });
  }
  if (memory.backend !== "file" && memory.path !== undefined) {
    ctx.error("memory.path-backend", "memory.path", `only the file backend uses a path`, {
      got: `backend ${memory.backend}`,
    });
  }
  if (memory.hugepages === "none") return;
  const page = HUGEPAGE_BYTES[memory.hugepages];
  if (memory.sizeBytes % page !== 0) {
    ctx.error(
      "memory.hugepage-multiple",
      "memory.size",
      `must be a multiple of the ${memory.hugepages} huge page size`,
      { got: formatSize(memory.sizeBytes) },
    );
  }
  numa.nodes.forEach((n, i) => {
    if (n.memoryBytes % page !== 0) {
      ctx.error(
        "memory.hugepage-multiple",
        `numa.nodes[${i}].memory`,
        `must be a multiple of the ${memory.hugepages} huge page size`,
        { got: formatSize(n.memoryBytes) },
      );
    }
  });
};

const prealloc: Rule = (ctx) => {
  const { memory, confidential } = ctx.profile;
  if (memory.prealloc && usesGuestMemfd(confidential.type)) {
    ctx.warn(
      "memory.prealloc-guest-memfd",
      "memory.prealloc",
      `with ${confidential.type} the guest's private memory is in guest_memfd; prealloc pins a second, shared copy of all ${formatSize(memory.sizeBytes)} besides it (double the footprint)`,
      {
        got: true,
        hint: "leave prealloc off for sev-snp and tdx",
      },
    );
  }
  if (memory.preallocThreads !== undefined) {
    if (!memory.prealloc)
      ctx.warn("memory.prealloc-threads", "memory.preallocThreads", "has no effect without prealloc: true", {
        got: memory.preallocThreads,
      });
    needVersion(ctx, "prealloc-threads", "memory.preallocThreads");
  }
  if (memory.reserve !== undefined) needVersion(ctx, "reserve", "memory.reserve");
  // backends/hostmem.c refuses the pair in either order: "'prealloc=on' and 'reserve=off' are
  // incompatible" (QEMU 6.1, when reserve came).
  if (memory.prealloc && memory.reserve === false) {
    ctx.error(
      "memory.reserve-prealloc",
      "memory.reserve",
      "reserve: false cannot go with prealloc: true; QEMU refuses 'prealloc=on' with 'reserve=off'",
      {
        got: false,
        hint: "drop reserve (preallocated memory is reserved anyway), or turn prealloc off",
      },
    );
  }
};

// --- Confidential ----------------------------------------------------------------------------

/** Which confidential types each property belongs to. */
const BELONGS: Record<string, readonly ConfidentialType[]> = {
  cbitpos: ["sev", "sev-es", "sev-snp"],
  reducedPhysBits: ["sev", "sev-es", "sev-snp"],
  policy: ["sev", "sev-es", "sev-snp"],
  kernelHashes: ["sev", "sev-es", "sev-snp"],
  handle: ["sev", "sev-es"],
  dhCertFile: ["sev", "sev-es"],
  sessionFile: ["sev", "sev-es"],
  legacyVmType: ["sev", "sev-es"],
  guestVisibleWorkarounds: ["sev-snp"],
  idBlock: ["sev-snp"],
  idAuth: ["sev-snp"],
  authorKeyEnabled: ["sev-snp"],
  hostData: ["sev-snp"],
  vcekDisabled: ["sev-snp"],
  attributes: ["tdx"],
  septVeDisable: ["tdx"],
  mrconfigid: ["tdx"],
  mrowner: ["tdx"],
  mrownerconfig: ["tdx"],
  quoteGenerationSocket: ["tdx"],
};

const confidentialProperties: Rule = (ctx) => {
  const type = ctx.profile.confidential.type;
  const written = ctx.written("confidential");
  if (typeof written !== "object" || written === null) return;
  for (const key of Object.keys(written)) {
    const types = BELONGS[key];
    if (!types || types.includes(type)) continue;
    ctx.error(
      "confidential.property-type",
      `confidential.${key}`,
      `is a ${types.join("/")} property; confidential.type is ${type}`,
      {
        hint: types.length === 1 ? `set type: ${types[0]}, or remove ${key}` : `remove ${key}`,
      },
    );
  }
};

const confidentialVersion: Rule = (ctx) => {
  const { confidential: c } = ctx.profile;
  if (c.type === "sev-snp") needVersion(ctx, "sev-snp-guest", "confidential.type", "SEV-SNP (sev-snp-guest)");
  if (c.type === "tdx") needVersion(ctx, "tdx-guest", "confidential.type", "TDX (tdx-guest)");
  if (c.type === "sev" || c.type === "sev-es") needVersion(ctx, "sev-guest", "confidential.type", "SEV (sev-guest)");
  if (c.kernelHashes !== undefined && (c.type === "sev" || c.type === "sev-es"))
    needVersion(ctx, "sev-kernel-hashes", "confidential.kernelHashes", "kernelHashes");
  if (c.legacyVmType !== undefined && (c.type === "sev" || c.type === "sev-es"))
    needVersion(ctx, "sev-legacy-vm-type", "confidential.legacyVmType", "legacyVmType");
  if (ctx.profile.firmware.igvm !== undefined)
    needVersion(ctx, "igvm", "firmware.igvm", "IGVM firmware (-machine igvm-cfg)");
};

const sevCommon: Rule = (ctx) => {
  const { type } = ctx.profile.confidential;
  if (type !== "sev" && type !== "sev-es" && type !== "sev-snp") return;
  for (const k of ["cbitpos", "reducedPhysBits"] as const) {
    if (ctx.profile.confidential[k] === undefined) {
      ctx.error("confidential.required", `confidential.${k}`, `is required for ${type}`, {
        hint:
          k === "cbitpos"
            ? "AMD EPYC: cbitpos: 51, from CPUID 0x8000001F EBX[5:0]"
            : "AMD EPYC: reducedPhysBits: 1, from CPUID 0x8000001F EBX[11:6]",
      });
    }
  }
};

const guestPolicy: Rule = (ctx) => {
  const { type, policy } = ctx.profile.confidential;
  const written = ctx.written("confidential.policy");
  if (written === undefined || policy === undefined) {
    return;
  }
  if (Array.isArray(written)) {
    const names = type === "sev-snp" ? SNP_POLICY_FLAGS : SEV_POLICY_FLAGS;
    written.forEach((f, i) => {
      if (!(String(f) in names)) {
        ctx.error(
          "confidential.policy-flag",
          `confidential.policy[${i}]`,
          `is not a ${type} policy flag; ${type} flags: ${Object.keys(names).join(", ")}`,
          { got: f },
        );
      }
    });
  }
  const numeric =
    typeof written === "string" ? BigInt(written) : typeof written === "number" ? BigInt(written) : undefined;
  if (numeric !== undefined) {
    const limit = type === "sev-snp" ? 1n << 64n : 1n << 32n;
    if (numeric >= limit || (type === "sev-snp" && numeric > BigInt(Number.MAX_SAFE_INTEGER))) {
      ctx.error(
        "confidential.policy-range",
        "confidential.policy",
        type === "sev-snp" ? "sets bits qcvm does not know (above bit 52)" : "must fit in 32 bits",
        { got: written },
      );
      return;
    }
  }
  if (type === "sev-es" && (policy & SEV_POLICY_FLAGS.es!) === 0) {
    ctx.error("confidential.sev-es-policy", "confidential.policy", "sev-es needs policy bit 0x4 (es)", {
      got: written,
      hint: Array.isArray(written)
        ? "add es to the list"
        : `use 0x${(policy | 0x4).toString(16)}, or leave policy out: the sev-es default is 0x5`,
    });
  }
  if (type === "sev" && (policy & SEV_POLICY_FLAGS.es!) !== 0) {
    ctx.error("confidential.sev-policy-es", "confidential.policy", "policy bit 0x4 (es) makes this an SEV-ES guest", {
      got: written,
      hint: "use type: sev-es",
    });
  }
  if (type === "sev-snp" && numeric !== undefined && (Number(numeric) & SNP_POLICY_RESERVED) === 0) {
    ctx.error("confidential.snp-policy-reserved", "confidential.policy", "SEV-SNP policy bit 17 (reserved) must be 1", {
      got: written,
      hint: `use 0x${(Number(numeric) | SNP_POLICY_RESERVED).toString(16)}`,
    });
  }
};

const attributes: Rule = (ctx) => {
  const written = ctx.written("confidential.attributes");
  if (typeof written === "number" && !Number.isSafeInteger(written)) {
    ctx.error(
      "confidential.attributes-precision",
      "confidential.attributes",
      "is beyond 2^53 and was rounded when read as a number",
      {
        got: written,
        hint: 'write it as a hex string ("0x8000000010000000") or as named flags',
      },
    );
  }
  const c = ctx.profile.confidential;
  if (c.type === "tdx" && c.attributes !== undefined && (c.attributes & ~TDX_QEMU_ATTRIBUTES) !== 0n) {
    const extra = c.attributes & ~TDX_QEMU_ATTRIBUTES;
    const names = Object.entries(TDX_ATTRIBUTE_FLAGS)
      .filter(([, bit]) => (extra & bit) !== 0n)
      .map(([n]) => n);
    ctx.error(
      "confidential.attributes-unsupported",
      "confidential.attributes",
      `sets TD attribute bits QEMU refuses (0x${extra.toString(16)}${names.length > 0 ? `: ${names.join(", ")}` : ""}); QEMU accepts only sept-ve-disable (bit 28), pks (bit 30) and perfmon (bit 63)`,
      {
        got: written,
        hint: names.includes("debug") ? "remove debug: upstream QEMU cannot launch a debug TD" : "remove those bits",
      },
    );
  }
  if (c.attributes !== undefined && c.septVeDisable !== undefined) {
    const bit = (c.attributes & (1n << 28n)) !== 0n;
    if (bit !== c.septVeDisable) {
      ctx.error(
        "confidential.sept-ve-conflict",
        "confidential.septVeDisable",
        `contradicts attributes bit 28 (sept-ve-disable), which is ${bit ? "set" : "clear"}`,
        {
          got: c.septVeDisable,
          hint: "give one of them",
        },
      );
    }
  }
};

const machineFlags: Rule = (ctx) => {
  const { confidential, machine } = ctx.profile;
  if (confidential.type === "tdx") {
    // tdx_cpu_instance_init (target/i386/kvm/tdx.c, QEMU 10.1): "Named cpu model is not supported
    // for TDX yet!" and exit. Only models without a CPUID definition (host, max) get through.
    const model = ctx.profile.cpu.model;
    if (model !== "host" && model !== "max") {
      ctx.error(
        "tdx.cpu-model",
        ctx.has("cpu.model") ? "cpu.model" : "cpu",
        "TDX guests need cpu.model host (or max): QEMU refuses a named CPU model for a TD",
        {
          got: model,
          hint: "use host; the TDX module decides the guest's CPUID",
        },
      );
    }
    if (ctx.has("machine.kernelIrqchip") && machine.kernelIrqchip !== "split") {
      ctx.error("tdx.irqchip", "machine.kernelIrqchip", "TDX needs kernelIrqchip split", {
        got: machine.kernelIrqchip,
        hint: "use split, or leave it out",
      });
    }
    if (machine.smm === "on")
      ctx.error("tdx.smm", "machine.smm", "TDX guests cannot have SMM", {
        got: "on",
        hint: "use off, or leave it out",
      });
    if (machine.pic === "on")
      ctx.error("tdx.pic", "machine.pic", "TDX guests cannot have the legacy PIC", {
        got: "on",
        hint: "use off, or leave it out",
      });
  }
  if (confidential.type === "sev-es" || confidential.type === "sev-snp") {
    if (machine.kernelIrqchip === "off") {
      ctx.error("sev-es.irqchip", "machine.kernelIrqchip", `${confidential.type} needs the in-kernel irqchip`, {
        got: "off",
        hint: "use on or split",
      });
    }
    if (machine.smm === "on")
      ctx.error("sev-es.smm", "machine.smm", `${confidential.type} guests cannot have SMM`, {
        got: "on",
        hint: "use off, or leave it out",
      });
  }
};

const firmware: Rule = (ctx) => {
  const { confidential, firmware: fw } = ctx.profile;
  const given = (["bios", "pflash", "igvm"] as const).filter((k) => fw[k] !== undefined);
  if (given.length > 1) {
    ctx.error("firmware.several", `firmware.${given[1]}`, `conflicts with firmware.${given[0]}; give one firmware`, {
      got: given,
    });
  }
  if (usesGuestMemfd(confidential.type) && fw.pflash !== undefined) {
    ctx.error(
      "firmware.pflash-private",
      "firmware.pflash",
      `${confidential.type} cannot boot from pflash: guest_memfd has no read-only memory slots`,
      {
        hint: "use firmware.bios with an OVMF or TDVF build, or firmware.igvm",
      },
    );
  }
};

function base64Bytes(text: string): number | undefined {
  const clean = text.replace(/\s+/g, "");
  if (clean.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(clean)) return undefined;
  return Buffer.from(clean, "base64").length;
}

const blobs: Rule = (ctx) => {
  const c = ctx.profile.confidential;
  for (const [key, bytes] of Object.entries(BLOB_BYTES)) {
    const v = c[key as keyof typeof c] as FileOrBase64 | undefined;
    // A property of another type is reported as such; its contents do not matter then.
    if (!v || !BELONGS[key]!.includes(c.type)) continue;
    if (v.base64 !== undefined) {
      const n = base64Bytes(v.base64);
      if (n === undefined) {
        ctx.error(
          "confidential.base64",
          `confidential.${key}.base64`,
          "is not valid base64 (length must be a multiple of 4, padded with =)",
          { got: v.base64 },
        );
      } else if (n !== bytes) {
        ctx.error(
          "confidential.blob-size",
          `confidential.${key}.base64`,
          `must decode to ${bytes} bytes, decodes to ${n}`,
          {
            hint: `encode exactly ${bytes} bytes: base64 -w0 FILE`,
          },
        );
      }
    } else if (v.file !== undefined) {
      let size: number | undefined;
      try {
        const st = statSync(v.file);
        size = st.isFile() ? st.size : undefined;
      } catch {
        size = undefined;
      }
      if (size === undefined) {
        ctx.error("confidential.file-missing", `confidential.${key}.file`, "file does not exist", {
          got: ctx.written(`confidential.${key}.file`),
          hint: "paths are relative to the profile",
        });
      } else if (size !== bytes) {
        ctx.error("confidential.blob-size", `confidential.${key}.file`, `must be ${bytes} bytes, is ${size}`, {
          got: ctx.written(`confidential.${key}.file`),
        });
      }
    }
  }
};

const disks: Rule = (ctx) => {
  ctx.profile.disks.forEach((d, i) => {
    if (!existsSync(d.path)) {
      ctx.error("disk.missing", `disks[${i}].path`, "disk image does not exist (qcvm never creates disks)", {
        got: ctx.written(`disks[${i}].path`),
        hint: `paths are relative to the profile; create the image first: qemu-img create -f ${d.format} FILE SIZE`,
      });
    }
  });
};

const network: Rule = (ctx) => {
  const { network: n } = ctx.profile;
  if (n.ifname !== undefined && n.type !== "tap")
    ctx.error("network.ifname", "network.ifname", "only tap networks have an ifname", { got: n.type });
  if (n.type === "none" && n.mac !== undefined) {
    ctx.warn("network.unused", "network.mac", "has no effect with network type none", {
      got: n.mac,
      hint: "set network.type: user or tap",
    });
  }
};

/** Fields holding a path QEMU or qcvm opens. A control character in one (a newline, a NUL) cannot
 *  reach QEMU intact, so it is refused here, at its position, not later by the renderer. */
function pathFields(p: Profile): string[] {
  const out = ["memory.path", "firmware.bios", "firmware.pflash.code", "firmware.pflash.vars", "firmware.igvm"];
  out.push("boot.kernel", "boot.initrd", "qmp", "serial", "confidential.dhCertFile", "confidential.sessionFile");
  out.push("confidential.quoteGenerationSocket.path", ...Object.keys(BLOB_BYTES).map((k) => `confidential.${k}.file`));
  p.disks.forEach((_, i) => out.push(`disks[${i}].path`));
  return out;
}

const pathCharacters: Rule = (ctx) => {
  for (const path of pathFields(ctx.profile)) {
    const v = ctx.written(path);
    // eslint-disable-next-line no-control-regex -- control characters are what this looks for
    if (typeof v === "string" && /[\x00-\x1f\x7f]/.test(v))
      ctx.error(
        "path.control-character",
        path,
        "contains a control character (a newline, tab or NUL): no file name QEMU can take",
        {
          got: v,
          hint: "remove it; file names in profiles are plain text",
        },
      );
  }
};

import { extraArgs } from "./extra-args.js";

export const RULES: readonly Rule[] = [
  name,
  cpuTopology,
  cpuModel,
  numaCpus,
  numaMemory,
  placement,
  distances,
  sizes,
  hugepages,
  prealloc,
  confidentialProperties,
  confidentialVersion,
  sevCommon,
  guestPolicy,
  attributes,
  machineFlags,
  firmware,
  blobs,
  disks,
  network,
  pathCharacters,
  extraArgs,
];

/** Rules name fields by the same few dozen paths in every profile: parse each once per process
 *  (bounded: a 100k-node profile's indexed paths clear the cache rather than grow it). */
const PARSED = new Map<string, readonly (string | number)[]>();
function parsedPath(path: string): readonly (string | number)[] {
  let segs = PARSED.get(path);
  if (segs === undefined) {
    if (PARSED.size >= 4096) PARSED.clear();
    segs = parsePath(path) ?? [];
    PARSED.set(path, segs);
  }
  return segs;
}

/** Run every rule; diagnostics carry the position of the field that set the value. */
export function runRules(
  raw: RawProfile,
  profile: Profile,
  locate: Locate,
  rules: readonly Rule[] = RULES,
): { errors: Diagnostic[]; warnings: Diagnostic[] } {
  const errors: Diagnostic[] = [];
  const warnings: Diagnostic[] = [];
  const get = (path: string): unknown => {
    let cur: unknown = raw;
    for (const seg of parsedPath(path)) {
      if (cur === null || typeof cur !== "object") return undefined;
      cur = (cur as Record<string, unknown>)[seg as string];
    }
    return cur;
  };
  const push =
    (list: Diagnostic[], severity: "error" | "warning") =>
    (code: string, path: string, message: string, extra: { got?: unknown; hint?: string } = {}) => {
      const d = diag(severity, code, path, message, { ...locate(parsePath(path) ?? []), ...extra });
      if (d.hint === undefined) delete d.hint;
      if (!("got" in extra)) delete d.got;
      list.push(d);
    };
  const ctx: RuleContext = {
    raw,
    profile,
    has: (p) => get(p) !== undefined,
    written: get,
    error: push(errors, "error"),
    warn: push(warnings, "warning"),
  };
  for (const rule of rules) rule(ctx);
  return { errors, warnings };
}
