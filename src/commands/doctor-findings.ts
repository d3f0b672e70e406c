// doctor's findings: what this host and QEMU can do, each finding read from the same tables the
// planner uses (core/host-support.ts, core/confidential.ts, the capability table and the
// private-memory levers of plan/levers.ts), so doctor and plan cannot disagree. Two kinds: what
// decides whether a guest type runs at all ("runs"), and optional features that only the profiles
// using them need ("feature").
import { FEATURES, describeQemu, featureGap, hasFeature } from "../probe/capabilities.js";
import type { Feature, FeatureDef } from "../probe/capabilities.js";
import { CONFIDENTIAL } from "../core/confidential.js";
import {
  CONFIDENTIAL_HOST,
  CONFIDENTIAL_KINDS,
  KERNEL,
  NUMACTL,
  confidentialHostSupport,
  kernelAtLeast,
  pidfdGetfdSupport,
} from "../core/host-support.js";
import { FsRoot, isRealHost } from "../io/fsroot.js";
import { formatList } from "../core/lists.js";
import { checkQemuUser } from "../launch/privsep.js";
import { PRIVATE_LEVERS } from "../plan/levers.js";
import { readInterleaveWeights } from "../probe/host.js";
import type { HostInfo, QemuCapabilities } from "../core/types.js";

export type FindingStatus = "ok" | "missing" | "info";

export interface Finding {
  /** "summary": what host and QEMU together can run; "placement": the private-memory levers. */
  area: "host" | "qemu" | "summary" | "placement";
  /** runs: decides whether a guest type runs here at all; feature: only profiles using it need it. */
  kind: "runs" | "feature" | "info";
  /** Short name: "SEV-SNP", "numactl", or a FEATURES key for QEMU. */
  item: string;
  status: FindingStatus;
  /** What was found. */
  detail: string;
  /** For status "missing": the profile features this rules out, and what would fix it. */
  rulesOut?: string;
}

export interface DoctorReport {
  host: HostInfo;
  qemu: QemuCapabilities | null;
  /** Why QEMU could not be probed, when it could not. */
  qemuError?: string;
  findings: Finding[];
}

/** Findings that decide whether a guest type runs; every other check is an optional feature. */
const RUNS = new Set(["KVM", ...CONFIDENTIAL_KINDS.map((t) => CONFIDENTIAL[t].label)]);

export function check(area: Finding["area"], item: string, ok: boolean, detail: string, rulesOut: string): Finding {
  const kind = area === "summary" || (area === "host" && RUNS.has(item)) ? "runs" : "feature";
  return ok ? { area, item, kind, status: "ok", detail } : { area, item, kind, status: "missing", detail, rulesOut };
}

/** Who owns /dev/kvm, read through the host seam like every other /dev and /proc fact. */
function kvmDevice(fs: FsRoot): { uid: number; gid: number; mode: number } | undefined {
  return fs.stat("/dev/kvm");
}

/** How the host checks add findings: h for a check that can rule something out, info for a fact. */
interface Emit {
  h: (item: string, ok: boolean, detail: string, rulesOut: string) => void;
  info: (item: string, detail: string) => void;
}

/** The kernel, /dev/kvm as this user meets it, and (on the real host) the QEMU user. */
function kvmFindings(host: HostInfo, { h, info }: Emit): void {
  info("kernel", `Linux ${host.kernel}`);
  // The probe's verdict on /dev/kvm as this user meets it (a tree answers for its own dev/kvm).
  const kvm = host.kvmAccess;
  h(
    "KVM",
    host.kvm && kvm.usable,
    host.kvm
      ? kvm.usable
        ? "/dev/kvm present"
        : `/dev/kvm present but not read/write for this user${kvm.errno ? ` (${kvm.errno})` : ""}`
      : isRealHost(host.root)
        ? (kvm.problem ?? "the kvm module is not loaded")
        : "no /dev/kvm (or kvm module not loaded)",
    "machine.accel kvm profiles cannot run (TCG only), and no confidential guest can",
  );
  if (isRealHost(host.root)) {
    // As root, launch runs QEMU as this user (launch/privsep.ts): say whether it is set up.
    const fs = new FsRoot(host.root);
    const u = checkQemuUser(fs, kvmDevice(fs));
    h(
      "QEMU user",
      u.ok,
      u.detail,
      `launch as root refuses to start QEMU until it is set up (${u.fix ?? ""}), or needs --qemu-user root`,
    );
  }
}

/** guest_memfd and each confidential type, from the one host-support table. */
function confidentialFindings(host: HostInfo, { h }: Emit): void {
  h(
    "guest_memfd",
    kernelAtLeast(host, KERNEL.guestMemfd),
    `kernel ${host.kernel}`,
    `SEV-SNP and TDX guests keep private memory in guest_memfd: needs Linux >= ${KERNEL.guestMemfd}`,
  );
  for (const type of CONFIDENTIAL_KINDS) {
    const v = confidentialHostSupport(type, host);
    h(
      CONFIDENTIAL[type].label,
      v.ok,
      v.found,
      `confidential.type ${type} profiles cannot run on this host${CONFIDENTIAL_HOST[type].kernel ? ` (needs ${v.requires})` : ""}`,
    );
  }
}

/** NUMA nodes and hugepage pools. */
function memoryFindings(host: HostInfo, { h }: Emit): void {
  const memOnly = host.nodes.filter((n) => n.memoryOnly).map((n) => n.id);
  h(
    "NUMA",
    host.nodes.length > 1,
    `${host.nodes.length} node${host.nodes.length === 1 ? "" : "s"}${memOnly.length ? `, memory-only (CXL-like): ${formatList(memOnly)}` : ""}`,
    "one host node: every guest node's memory lands on host node 0; host-nodes other than 0 cannot be used",
  );
  for (const size of ["2M", "1G"] as const) {
    const total = host.nodes.reduce((s, n) => s + n.hugepages[size].total, 0);
    const free = host.nodes.reduce((s, n) => s + n.hugepages[size].free, 0);
    const where = host.nodes.filter((n) => n.hugepages[size].free > 0).map((n) => n.id);
    h(
      `hugepages ${size}`,
      free > 0,
      `${free}/${total} free${where.length ? ` on node${where.length > 1 ? "s" : ""} ${formatList(where)}` : ""}`,
      `memory.hugepages ${size} profiles cannot get memory (reserve pages in /sys/devices/system/node/nodeN/hugepages/hugepages-${size === "2M" ? "2048" : "1048576"}kB/nr_hugepages)`,
    );
  }
}

/** The cgroup hierarchy and the cpuset and memory controllers. */
function cgroupFindings(host: HostInfo, { h, info }: Emit): void {
  const cg = host.cgroup;
  const where = (c: string) => (cg.version === 1 ? cg.v1Mounts[c] : cg.version === 2 ? cg.v2Mount : undefined);
  info(
    "cgroups",
    cg.version === "none"
      ? "no cgroup hierarchy mounted"
      : `v${cg.version}${cg.version === 1 && cg.v2Mount ? ` (hybrid: v2 also at ${cg.v2Mount})` : ` at ${cg.version === 2 ? cg.v2Mount : "per controller"}`}${cg.systemd ? ", systemd" : ""}`,
  );
  h(
    "cpuset cgroup",
    cg.controllers.includes("cpuset"),
    cg.controllers.includes("cpuset") ? `at ${where("cpuset")}` : "cpuset controller not available",
    "per-vCPU cpuset placement of private memory (first-touch fidelity) and vCPU confinement cannot be applied",
  );
  h(
    "memory cgroup",
    cg.controllers.includes("memory"),
    cg.controllers.includes("memory") ? `at ${where("memory")}` : "memory controller not available",
    "per-VM memory accounting: `qcvm stats` cannot show private (guest_memfd) memory per node",
  );
}

/** The memory-policy levers: numactl, weighted interleave, pidfd_getfd and guest_memfd mempolicy. */
function policyFindings(host: HostInfo, { h }: Emit): void {
  const nm = host.numactl;
  h(
    "numactl",
    nm.version !== undefined || nm.preferredMany,
    nm.version ? `numactl ${nm.version}` : nm.preferredMany ? "numactl (version unknown)" : "not installed",
    "process-wide memory policy (numactl before QEMU) cannot be applied: install numactl",
  );
  h(
    "preferred-many",
    nm.preferredMany,
    nm.preferredMany ? "numactl --preferred-many" : "numactl has no --preferred-many",
    `process-wide policy preferred over several host nodes (needs numactl >= ${NUMACTL.preferredMany} and Linux >= ${KERNEL.preferredMany})`,
  );
  const weights = readInterleaveWeights(host.root);
  const shown = Object.entries(weights)
    .map(([n, w]) => `${n}:${w}`)
    .join(" ");
  h(
    "weighted interleave (kernel)",
    host.weightedInterleave,
    host.weightedInterleave
      ? `sys/kernel/mm/mempolicy/weighted_interleave${shown ? ` (weights ${shown})` : ""}`
      : `kernel ${host.kernel}`,
    `policy weighted-interleave cannot be used (needs Linux >= ${KERNEL.weightedInterleave})`,
  );
  h(
    "weighted interleave (numactl)",
    nm.weightedInterleave,
    nm.weightedInterleave ? "numactl --weighted-interleave" : "numactl has no --weighted-interleave",
    `policy weighted-interleave for private memory through a numactl prefix (needs numactl >= ${NUMACTL.weightedInterleave})`,
  );
  // pidfd_getfd is how guest-memfd-prealloc takes QEMU's guest_memfd (the host-support answer
  // plan reads too). The live check (seccomp, rights) is doctor's probePrealloc, on the machine.
  const pidfd = pidfdGetfdSupport(host);
  h(
    "pidfd_getfd",
    pidfd.ok,
    pidfd.found,
    `guest-memfd-prealloc (exact private placement at launch) cannot take QEMU's guest_memfd: needs Linux >= ${KERNEL.pidfdGetfd} and kernel.yama.ptrace_scope < 3; SNP/TDX private memory falls back to first-touch (vCPU cpusets)`,
  );
  h(
    "guest_memfd mempolicy",
    host.guestMemfdMempolicy,
    `kernel ${host.kernel}`,
    `kernel < ${KERNEL.guestMemfdMempolicy}: the guest_memfd mempolicy lever (each guest node exact on its own nodes) is unavailable; the other levers still apply (see the private memory levers below)`,
  );
}

export function diagnoseHost(host: HostInfo): Finding[] {
  const f: Finding[] = [];
  const emit: Emit = {
    h: (item, ok, detail, rulesOut) => f.push(check("host", item, ok, detail, rulesOut)),
    info: (item, detail) => f.push({ area: "host", item, kind: "info", status: "info", detail }),
  };
  for (const findings of [kvmFindings, confidentialFindings, memoryFindings, cgroupFindings, policyFindings]) {
    findings(host, emit);
  }
  return f;
}

/** What each QEMU feature's absence rules out, in profile terms. */
const RULES_OUT: Record<Feature, string> = {
  "memory-backend-memfd": "memory.backend memfd (the default) cannot be rendered",
  "memory-backend-ram": "memory.backend ram cannot be rendered",
  "memory-backend-file": "memory.backend file cannot be rendered",
  sandbox: "QEMU runs without its seccomp sandbox (-sandbox): a compromised QEMU may call any syscall",
  "numa-memdev": "guest NUMA nodes (numa.nodes) cannot be rendered",
  "numa-dist": "numa.distances cannot be rendered",
  "machine-memory-backend": "guests without numa.nodes cannot name their memory backend",
  "prealloc-threads": "memory.preallocThreads cannot be set",
  reserve: "memory.reserve cannot be set",
  "thread-context":
    "NUMA-local preallocation (a thread-context per node) is unavailable: prealloc runs on whatever CPUs QEMU has",
  "prealloc-context": "NUMA-local preallocation (prealloc-context) is unavailable",
  "preferred-many": "policy preferred over several host nodes acts on the first node only",
  "sev-guest": "confidential.type sev and sev-es profiles cannot run",
  "sev-kernel-hashes": "confidential.kernelHashes cannot be set",
  "sev-legacy-vm-type": "confidential.legacyVmType cannot be set",
  "sev-snp-guest": "confidential.type sev-snp profiles cannot run",
  "tdx-guest": "confidential.type tdx profiles cannot run",
  igvm: "firmware.igvm profiles cannot run",
  "memory-backend-shm": "POSIX shm memory backends are unavailable (qcvm profiles do not need them)",
  "guest-memfd-backend": "exact private-memory placement through the backend's host-nodes/policy is unavailable",
  "memfd-guest-memfd":
    "exact placement of a non-confidential guest's guest_memfd through memory-backend-memfd is unavailable",
  "snp-convert-in-place": "in-place private/shared conversion for SEV-SNP is unavailable",
};

export function diagnoseQemu(caps: QemuCapabilities): Finding[] {
  return (Object.keys(FEATURES) as Feature[]).map((feature) => {
    const def: FeatureDef = FEATURES[feature];
    const gap = featureGap(caps, feature);
    // "This build lacks X" is not "X needs QEMU >= v": Debian's QEMU 11.1 has no IGVM.
    const need =
      gap === "built-without"
        ? `this QEMU ${caps.version} build lacks it (upstream QEMU has it since ${def.since})`
        : def.since
          ? `needs QEMU >= ${def.since}`
          : "in no upstream QEMU release yet";
    return check("qemu", feature, gap === undefined, def.what, `${RULES_OUT[feature]}; ${need}`);
  });
}

/**
 * The private-memory levers of an SEV-SNP or TDX guest, from the planner's own table: which this
 * host and QEMU offer, and what each gives at best. What plan says for a profile is one of these.
 */
export function diagnoseLevers(host: HostInfo, caps: QemuCapabilities): Finding[] {
  return PRIVATE_LEVERS.map((lever) => {
    const blockers = (["sev-snp", "tdx"] as const).map((t) => lever.blocker(host, caps, t));
    const why = [...new Set(blockers.flatMap((b) => (b === undefined ? [] : b.split("; "))))].join("; ");
    const ok = blockers.some((b) => b === undefined);
    const only = ok && why ? ` (${blockers[0] === undefined ? "sev-snp" : "tdx"} only)` : "";
    return check(
      "placement",
      `${lever.name} (${lever.mechanism})`,
      ok,
      `${lever.best} ${lever.when}${only}`,
      `unavailable: ${why}`,
    );
  });
}

/** A confidential type runs where the host supports it (the host-support table) and QEMU has its object. */
const RUNNABLE: { type: string; host: (h: HostInfo) => boolean; feature: Feature | null }[] = [
  { type: "none (plain KVM)", host: (h) => h.kvm && h.kvmAccess.usable, feature: null },
  ...CONFIDENTIAL_KINDS.map((t) => ({
    type: t,
    host: (h: HostInfo) => confidentialHostSupport(t, h).ok,
    feature: CONFIDENTIAL[t].qomType satisfies Feature,
  })),
];

/** Which confidential.type values this host and this QEMU can run together. */
export function summarize(host: HostInfo, caps: QemuCapabilities): Finding[] {
  return RUNNABLE.map(({ type, host: hostOk, feature }) => {
    const h = hostOk(host);
    const q = feature === null || hasFeature(caps, feature);
    const why = [h ? "" : "the host cannot", q ? "" : `${describeQemu(caps)} cannot`].filter(Boolean).join(" and ");
    return check(
      "summary",
      `confidential.type ${type}`,
      h && q,
      h && q ? "host and QEMU can run it" : why,
      `profiles with confidential.type ${type.split(" ")[0]} cannot launch here`,
    );
  });
}

/** One line per missing thing, as the json `message` and the text report print it. */
export function findingMessage(f: Finding): string {
  if (f.status === "missing") return `${f.item} missing: ${f.rulesOut} (${f.detail})`;
  return `${f.item}: ${f.detail}`;
}
