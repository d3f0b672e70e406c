// The placement planner: profile + host + QEMU capabilities -> plan. Pure: no I/O, no clock, so
// `qcvm plan`, `render` and `launch` see the same plan and tests can table it.
//
// A guest node's memory has two halves (DOMAIN.md): the shared half lives in the memory backend's
// mapping, which QEMU mbind()s to the backend's host-nodes/policy; the private half of an SEV-SNP
// or TDX guest lives in guest_memfd, which no upstream QEMU gives a policy, so its pages go where
// the allocating thread's mempolicy and cpuset allow. The planner picks, for the private half, the
// best lever this host and QEMU offer and says how faithful it is:
//   (a) guest_memfd mempolicy (Linux 6.19 + a QEMU that sets it)               exact
//   (b) one process-wide numactl policy, when every guest node wants the same   exact
//   (c) per-vCPU-thread cpuset cgroups (libvirt's restrictive mode)            first-touch
//   (d) one process-wide numactl policy over the union of the nodes             coarse
//   (e) nothing                                                                 none
// The best worst-node fidelity wins; ties go to the earlier lever ((b) beats (c) at equal
// fidelity because it also covers what QEMU's main thread populates at launch).
import { formatList } from "../io/fsroot.js";
import { FEATURES, compareVersions, hasFeature } from "../probe/capabilities.js";
import { diag } from "../core/diagnostics.js";
import { CONFIDENTIAL, usesGuestMemfd } from "../core/confidential.js";
import { confidentialHostSupport } from "../core/host-support.js";
import { applyKvmAccess, withoutMempolicy } from "./host-levers.js";
import type {
  CapacityRow,
  CgroupPlan,
  ConfidentialType,
  Diagnostic,
  Fidelity,
  GuestNumaNode,
  HostInfo,
  HostNode,
  MemPolicy,
  Plan,
  PlanNode,
  PrivateMechanism,
  Profile,
  QemuCapabilities,
  SharedMechanism,
  ThreadPin,
} from "../core/types.js";

const HUGEPAGE_BYTES = { "2M": 2 ** 21, "1G": 2 ** 30 } as const;
/** More than this share of a node's free memory (or free hugepages) is "tight". */
export const TIGHT_RATIO = 0.9;

const FIDELITY_RANK: Record<Fidelity, number> = { none: 0, coarse: 1, "first-touch": 2, exact: 3 };

/** Where one half of a guest node's memory lands, for capacity: policy over nodes, and whether the
 *  kernel may put it elsewhere when those nodes fill (soft) or must fail (hard: bind, cpuset). */
interface Placement {
  policy: MemPolicy;
  nodes: number[];
  weights?: Record<number, number>;
  hard: boolean;
}

interface Outcome {
  mechanism: PrivateMechanism;
  fidelity: Fidelity;
  reason: string;
  place: Placement;
}

/** A process-wide mempolicy set by numactl before exec; every QEMU thread inherits it. */
interface ProcessPolicy {
  policy: MemPolicy;
  nodes: number[];
  argv: string[];
  /** What the numactl option says, for reasons: "numactl --membind=0-1". */
  shown: string;
  /** Weighted interleave: the weights the profile wants (host-wide in sysfs, not in argv). */
  weights?: Record<number, number>;
}

interface Strategy {
  outcomes: Outcome[];
  process?: ProcessPolicy;
  /** Per guest node cpuset.mems of its vCPU cgroup, when (c) is used. */
  childMems?: number[][];
  /** Extra diagnostics the strategy brings when chosen. */
  warnings?: Diagnostic[];
}

type Unavailable = { unavailable: string };

interface Ctx {
  profile: Profile;
  host: HostInfo;
  caps: QemuCapabilities;
  nodes: GuestNumaNode[];
  paths: string[];
  hostCpus: number[][];
  allHostNodes: number[];
  populate: string;
}

/** A guest without numa.nodes is one implicit guest node 0 holding every vCPU and all memory. */
export function guestNodesOf(profile: Profile): GuestNumaNode[] {
  if (profile.numa.nodes.length > 0) return profile.numa.nodes;
  const node: GuestNumaNode = {
    id: 0,
    cpus: Array.from({ length: profile.cpu.count }, (_, i) => i),
    memoryBytes: profile.memory.sizeBytes,
    hostNodes: profile.memory.hostNodes,
    policy: profile.memory.policy,
  };
  if (profile.memory.weights) node.weights = profile.memory.weights;
  return [node];
}

export { usesGuestMemfd };

/** Bytes for people: 2 GiB, 512 MiB, 1.5 GiB. */
export function formatBytes(bytes: number): string {
  const units: [string, number][] = [
    ["TiB", 2 ** 40],
    ["GiB", 2 ** 30],
    ["MiB", 2 ** 20],
    ["KiB", 2 ** 10],
  ];
  for (const [unit, mult] of units) {
    if (Math.abs(bytes) >= mult) {
      const v = bytes / mult;
      return `${Number.isInteger(v) ? v : v.toFixed(1)} ${unit}`;
    }
  }
  return `${bytes} B`;
}

const nodesText = (nodes: readonly number[]) =>
  nodes.length === 1 ? `host node ${nodes[0]}` : `host nodes ${formatList(nodes)}`;
const union = (lists: readonly (readonly number[])[]) => [...new Set(lists.flat())].sort((a, b) => a - b);
const sameList = (a: readonly number[], b: readonly number[]) => formatList(a) === formatList(b);
const weightsKey = (w?: Record<number, number>) =>
  w ? JSON.stringify(Object.entries(w).sort(([a], [b]) => Number(a) - Number(b))) : "";

function hasCpuset(host: HostInfo): boolean {
  return (
    host.cgroup.v1Mounts.cpuset !== undefined ||
    (host.cgroup.version === 2 && host.cgroup.controllers.includes("cpuset"))
  );
}

function numactlInstalled(host: HostInfo): boolean {
  return host.numactl.version !== undefined || host.numactl.preferredMany || host.numactl.weightedInterleave;
}

function nodeById(host: HostInfo, id: number): HostNode | undefined {
  return host.nodes.find((n) => n.id === id);
}

/** Host CPUs for a guest node's vCPUs, with a note for each memory-only node that borrowed CPUs. */
function hostCpusFor(g: GuestNumaNode, host: HostInfo): { cpus: number[]; notes: string[] } {
  const all = union(host.nodes.map((n) => n.cpus));
  if (g.hostNodes.length === 0) return { cpus: all, notes: [] };
  const present = g.hostNodes.map((id) => nodeById(host, id)).filter((n): n is HostNode => n !== undefined);
  const own = union(present.map((n) => n.cpus));
  if (own.length > 0 || present.length === 0) return { cpus: own.length > 0 ? own : all, notes: [] };
  // Only memory-only nodes (CXL): no CPUs of their own to run the vCPUs on, so use the node with
  // CPUs closest to them (summed distance), which keeps the vCPUs as near that memory as it gets.
  const nearest = host.nodes
    .filter((n) => n.cpus.length > 0)
    .map((n) => ({ n, d: present.reduce((sum, m) => sum + (m.distances[n.id] ?? Number.POSITIVE_INFINITY), 0) }))
    .sort((x, y) => x.d - y.d || x.n.id - y.n.id)[0];
  if (!nearest) return { cpus: all, notes: [] };
  const distance = present.length === 1 && Number.isFinite(nearest.d) ? `distance ${nearest.d}` : "smallest distance";
  return {
    cpus: nearest.n.cpus,
    notes: [
      `${nodesText(present.map((n) => n.id))} ${present.length === 1 ? "is" : "are"} memory-only (no CPUs): guest node ${g.id}'s vCPUs use host node ${nearest.n.id}'s CPUs ${formatList(nearest.n.cpus)}, the nearest node with CPUs (${distance})`,
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// numactl
// ---------------------------------------------------------------------------------------------

/** The numactl option for a policy over nodes on this host, or why numactl cannot express it. */
function numactlPolicy(
  policy: MemPolicy,
  nodes: number[],
  host: HostInfo,
  weights?: Record<number, number>,
): { process: ProcessPolicy; degraded?: string } | Unavailable {
  if (!numactlInstalled(host)) return { unavailable: "numactl is not installed on this host" };
  const list = formatList(nodes);
  const make = (flag: string, p: MemPolicy, n: number[]): ProcessPolicy => {
    const arg = `--${flag}=${formatList(n)}`;
    return { policy: p, nodes: n, argv: ["numactl", arg, "--"], shown: `numactl ${arg}` };
  };
  switch (policy) {
    case "bind":
      return { process: make("membind", "bind", nodes) };
    case "interleave":
      return { process: make("interleave", "interleave", nodes) };
    case "preferred": {
      if (nodes.length === 1) return { process: make("preferred", "preferred", nodes) };
      // numactl 2.0.15 --preferred-many; the kernel needs MPOL_PREFERRED_MANY (Linux 5.15).
      if (host.numactl.preferredMany && compareVersions(host.kernel, "5.15") >= 0) {
        return { process: make("preferred-many", "preferred", nodes) };
      }
      const first = nodes[0]!;
      const why = !host.numactl.preferredMany
        ? `numactl ${host.numactl.version ?? ""} has no --preferred-many (numactl 2.0.15)`.replace("  ", " ")
        : `Linux ${host.kernel} has no MPOL_PREFERRED_MANY (Linux 5.15)`;
      return {
        process: make("preferred", "preferred", [first]),
        degraded: `${why}, so preferred over host nodes ${list} narrows to host node ${first}`,
      };
    }
    case "weighted-interleave": {
      // numactl 2.0.19 --weighted-interleave; the kernel policy is Linux 6.9.
      const missing: string[] = [];
      if (!host.numactl.weightedInterleave)
        missing.push(`numactl ${host.numactl.version ?? "here"} has no --weighted-interleave (numactl 2.0.19)`);
      if (!host.weightedInterleave) missing.push(`Linux ${host.kernel} has no weighted interleave (Linux 6.9)`);
      if (missing.length > 0) return { unavailable: missing.join(", and ") };
      const process = make("weighted-interleave", "weighted-interleave", nodes);
      if (weights) process.weights = weights;
      return { process };
    }
    case "default":
      return { unavailable: "policy default has nothing to set" };
  }
}

// ---------------------------------------------------------------------------------------------
// Private half: the five levers
// ---------------------------------------------------------------------------------------------

const isPlaced = (g: GuestNumaNode) => g.policy !== "default";

function ownPlacement(g: GuestNumaNode): Placement {
  const p: Placement = { policy: g.policy, nodes: g.hostNodes, hard: g.policy === "bind" };
  if (g.weights) p.weights = g.weights;
  return p;
}

const SOFT_ANYWHERE: Placement = { policy: "default", nodes: [], hard: false };

/** A node that asks for no placement: nothing to enforce, whatever lever the others use. */
function defaultOutcome(): Outcome {
  return {
    mechanism: "none",
    fidelity: "exact",
    reason:
      "policy default asks for no placement: private pages go to the node local to the thread that faults them, as shared pages do",
    place: SOFT_ANYWHERE,
  };
}

/** (a) The policy stored on the guest_memfd itself: Linux 6.19, and a QEMU that applies it. */
function tryGuestMemfdMempolicy(ctx: Ctx): Strategy | Unavailable {
  const { host, caps, profile } = ctx;
  const missing: string[] = [];
  if (!host.guestMemfdMempolicy) missing.push(`Linux ${host.kernel} has no guest_memfd mempolicy (Linux 6.19)`);
  const backend = hasFeature(caps, "guest-memfd-backend")
    ? FEATURES["guest-memfd-backend"].type
    : hasFeature(caps, "memfd-guest-memfd")
      ? "memory-backend-memfd,guest-memfd=on"
      : undefined;
  if (!backend) {
    missing.push(
      `QEMU ${caps.version} has no backend that applies host-nodes/policy to guest_memfd (memory-backend-guest-memfd or memory-backend-memfd guest-memfd=on: in no upstream release)`,
    );
  }
  // Linux 6.19 scopes the guest_memfd policy to VMs without private memory; SNP and TDX pages
  // also need in-place conversion (under review), which QEMU exposes only for SNP, out of tree.
  if (profile.confidential.type === "sev-snp" && !hasFeature(caps, "snp-convert-in-place")) {
    missing.push(
      `an SNP guest also needs in-place conversion, and QEMU ${caps.version} has no sev-snp-guest convert-in-place (in no upstream release)`,
    );
  }
  if (profile.confidential.type === "tdx") {
    missing.push("a TDX guest also needs in-place conversion, which no QEMU exposes for tdx-guest yet");
  }
  if (missing.length > 0) return { unavailable: missing.join("; ") };
  const weighted = ctx.nodes.filter((g) => g.policy === "weighted-interleave").map((g) => g.id);
  if (weighted.length > 0) {
    return {
      unavailable: `QEMU memory backends have no weighted-interleave policy (guest node ${formatList(weighted)})`,
    };
  }
  const preferredMany = hasFeature(caps, "preferred-many");
  const outcomes = ctx.nodes.map((g): Outcome => {
    if (!isPlaced(g)) return defaultOutcome();
    if (g.policy === "preferred" && g.hostNodes.length > 1 && !preferredMany) {
      return {
        mechanism: "guest-memfd-mempolicy",
        fidelity: "coarse",
        reason: `${backend} host-nodes=${formatList(g.hostNodes)},policy=preferred sets the policy on the guest_memfd, but QEMU ${caps.version} has no MPOL_PREFERRED_MANY (QEMU 8.0): the kernel prefers only host node ${g.hostNodes[0]}`,
        place: { policy: "preferred", nodes: [g.hostNodes[0]!], hard: false },
      };
    }
    return {
      mechanism: "guest-memfd-mempolicy",
      fidelity: "exact",
      reason: `${backend} host-nodes=${formatList(g.hostNodes)},policy=${g.policy}: the policy is stored on the guest_memfd (Linux 6.19) and every private allocation follows it, the launch-time populate included`,
      place: ownPlacement(g),
    };
  });
  return { outcomes };
}

/** (b) One numactl policy for the whole process, exact when every guest node wants the same. */
function tryProcessSame(ctx: Ctx): Strategy | Unavailable {
  const first = ctx.nodes[0]!;
  const same = ctx.nodes.every(
    (g) =>
      g.policy === first.policy &&
      sameList(g.hostNodes, first.hostNodes) &&
      weightsKey(g.weights) === weightsKey(first.weights),
  );
  if (!same)
    return {
      unavailable: "guest nodes want different host nodes or policies, so one process-wide policy cannot be exact",
    };
  const r = numactlPolicy(first.policy, first.hostNodes, ctx.host, first.weights);
  if ("unavailable" in r) return r;
  const { process, degraded } = r;
  const outcomes = ctx.nodes.map((g): Outcome => ({
    mechanism: "process-mempolicy",
    fidelity: degraded ? "coarse" : "exact",
    reason: degraded
      ? `${process.shown} before exec: every QEMU thread inherits it, but ${degraded}`
      : `${process.shown} before exec: every QEMU thread inherits it, so private pages follow it whichever thread allocates them (vCPU faults and the ${ctx.populate} by QEMU's main thread alike)`,
    place: degraded ? { policy: "preferred", nodes: process.nodes, hard: false } : ownPlacement(g),
  }));
  return { outcomes, process };
}

/** (c) libvirt's restrictive mode: each guest node's vCPU threads in a cpuset of its own nodes. */
function tryVcpuCpuset(ctx: Ctx): Strategy | Unavailable {
  const { host } = ctx;
  if (!hasCpuset(host)) {
    return {
      unavailable:
        host.cgroup.version === "none"
          ? "no cgroup hierarchy is mounted, so there is no cpuset to put vCPU threads in"
          : `no cpuset controller (cgroup v${host.cgroup.version} controllers: ${host.cgroup.controllers.join(" ") || "none"})`,
    };
  }
  const childMems = ctx.nodes.map((g) => (isPlaced(g) ? g.hostNodes : ctx.allHostNodes));
  const vmMems = union(childMems);
  const warnings: Diagnostic[] = [];
  // cpuset.mems is a hard wall; leaving mems wide would drop the preference altogether.
  const hardened = (g: GuestNumaNode, i: number) =>
    diag(
      "warning",
      "placement.preferred-hardened",
      `${ctx.paths[i]}.policy`,
      `guest node ${g.id} asks for preferred ${formatList(g.hostNodes)}, but the cpuset that places its private memory is a hard wall: when ${nodesText(g.hostNodes)} fill, private faults fail instead of falling back`,
      {
        got: "preferred",
        hint: "use policy bind to say so, or a host with guest_memfd mempolicy (Linux 6.19) for a real preference",
      },
    );
  const outcomes = ctx.nodes.map((g, i): Outcome => {
    if (!isPlaced(g)) return defaultOutcome();
    const where = `vCPU threads of guest node ${g.id} go to cgroup vcpu-node${g.id} (cpuset.mems=${formatList(g.hostNodes)}, cpuset.cpus=${formatList(ctx.hostCpus[i]!)})`;
    const caveat = `pages QEMU's main thread populates at launch (${ctx.populate}) land anywhere in the VM cgroup's mems ${formatList(vmMems)}, and a page first touched by another guest node's vCPU lands on that vCPU's nodes`;
    const place: Placement = { policy: g.hostNodes.length > 1 ? "interleave" : "bind", nodes: g.hostNodes, hard: true };
    // When this node's nodes are the VM cgroup's too, QEMU's main thread is walled in the same
    // place as the vCPUs, so what it populates at launch lands right as well.
    const everyThread = sameList(g.hostNodes, vmMems);
    const allThreads = `every QEMU thread's cpuset (the VM cgroup's and vcpu-node${g.id}'s) has mems ${formatList(g.hostNodes)}, so every private page lands on ${nodesText(g.hostNodes)}, the ${ctx.populate} by the main thread included`;
    if (everyThread && (g.policy === "bind" || g.policy === "preferred")) {
      if (g.policy === "preferred") warnings.push(hardened(g, i));
      return {
        mechanism: "vcpu-cpuset",
        fidelity: "exact",
        reason:
          g.policy === "bind"
            ? allThreads
            : `${allThreads}; cpuset.mems is a hard wall, so preferred acts as bind (no fallback)`,
        place,
      };
    }
    switch (g.policy) {
      case "bind":
        return {
          mechanism: "vcpu-cpuset",
          fidelity: "first-touch",
          reason: `${where}: private pages they fault land on ${nodesText(g.hostNodes)}; ${caveat}`,
          place,
        };
      case "preferred":
        warnings.push(hardened(g, i));
        return {
          mechanism: "vcpu-cpuset",
          fidelity: "first-touch",
          reason: `${where}: private pages they fault land on ${nodesText(g.hostNodes)}, with no fallback since cpuset.mems is a hard wall (preferred acts as bind); ${caveat}`,
          place,
        };
      case "interleave":
      case "weighted-interleave":
        return {
          mechanism: "vcpu-cpuset",
          fidelity: "coarse",
          reason: `${where}: cpuset can confine private pages to ${nodesText(g.hostNodes)} but cannot ${g.policy === "interleave" ? "interleave" : "weight"} them: each fault takes the node local to the CPU the vCPU runs on; ${caveat}`,
          place,
        };
      default:
        return defaultOutcome();
    }
  });
  return { outcomes, childMems, warnings };
}

/** (d) One numactl policy over the union of every guest node's host nodes. */
function tryProcessUnion(ctx: Ctx): Strategy | Unavailable {
  const placed = ctx.nodes.filter(isPlaced);
  const nodes = union(placed.map((g) => g.hostNodes));
  const policies = new Set(placed.map((g) => g.policy));
  // Mixed policies: bind is the one that keeps every node's memory inside the union.
  const policy: MemPolicy = policies.size === 1 ? placed[0]!.policy : "bind";
  if ((policy === "bind" || policy === "preferred") && sameList(nodes, ctx.allHostNodes)) {
    return {
      unavailable: `the guest nodes together span every host node (${formatList(nodes)}), so a process-wide ${policy} would constrain nothing`,
    };
  }
  const r = numactlPolicy(policy, nodes, ctx.host);
  if ("unavailable" in r) return r;
  const { process, degraded } = r;
  const outcomes = ctx.nodes.map((g): Outcome => ({
    mechanism: "process-mempolicy",
    fidelity: "coarse",
    reason: isPlaced(g)
      ? `${process.shown} before exec: private pages stay within ${nodesText(process.nodes)} (every guest node's nodes together), not within guest node ${g.id}'s own ${formatList(g.hostNodes)}${degraded ? `; ${degraded}` : ""}`
      : `policy default asks for no placement, but the process-wide ${process.shown} the other guest nodes need confines this node's private pages to ${nodesText(process.nodes)} too`,
    place: { policy: process.policy, nodes: process.nodes, hard: process.policy === "bind" },
  }));
  return { outcomes, process };
}

function noLever(ctx: Ctx, why: string[]): Strategy {
  const outcomes = ctx.nodes.map((g): Outcome =>
    isPlaced(g)
      ? {
          mechanism: "none",
          fidelity: "none",
          reason: `no lever reaches private memory here (${why.join("; ")}): guest node ${g.id}'s private pages land on whichever node is local to the thread that faults them, not on ${nodesText(g.hostNodes)}`,
          place: SOFT_ANYWHERE,
        }
      : defaultOutcome(),
  );
  return { outcomes };
}

function score(s: Strategy, nodes: GuestNumaNode[]): [number, number] {
  const ranks = s.outcomes.filter((_, i) => isPlaced(nodes[i]!)).map((o) => FIDELITY_RANK[o.fidelity]);
  if (ranks.length === 0) return [3, 0];
  return [Math.min(...ranks), ranks.reduce((a, b) => a + b, 0)];
}

function choosePrivate(ctx: Ctx): Strategy {
  if (!ctx.nodes.some(isPlaced)) return { outcomes: ctx.nodes.map(defaultOutcome) };
  const tries: [string, (c: Ctx) => Strategy | Unavailable][] = [
    ["guest_memfd mempolicy", tryGuestMemfdMempolicy],
    ["process-wide policy", tryProcessSame],
    ["vCPU cpusets", tryVcpuCpuset],
    ["process-wide policy over the union", tryProcessUnion],
  ];
  const why: string[] = [];
  let best: { s: Strategy; sc: [number, number]; whyBefore: string[] } | undefined;
  for (const [name, fn] of tries) {
    const r = fn(ctx);
    if ("unavailable" in r) {
      why.push(`${name}: ${r.unavailable}`);
      continue;
    }
    const sc = score(r, ctx.nodes);
    if (!best || sc[0] > best.sc[0] || (sc[0] === best.sc[0] && sc[1] > best.sc[1]))
      best = { s: r, sc, whyBefore: [...why] };
  }
  if (!best) return noLever(ctx, why);
  // A placement short of exact says what exact would have taken.
  for (const o of best.s.outcomes) {
    if (o.fidelity !== "exact" && best.whyBefore.length > 0)
      o.reason += `. Not exact because ${best.whyBefore.join("; ")}`;
  }
  return best.s;
}

function notApplicable(type: ConfidentialType, g: GuestNumaNode): Outcome {
  const place = g.policy === "default" ? SOFT_ANYWHERE : ownPlacement(g);
  const reason =
    type === "none"
      ? "a plain KVM guest has no private memory: all of it is the shared backend, which the shared policy covers"
      : `${type === "sev" ? "SEV" : "SEV-ES"} encrypts guest memory in place in the backend (sev-guest does not set require_guest_memfd), so the shared policy covers all of it`;
  return { mechanism: "not-applicable", fidelity: "exact", reason, place };
}

// ---------------------------------------------------------------------------------------------
// Shared half
// ---------------------------------------------------------------------------------------------

interface SharedOutcome {
  mechanism: SharedMechanism;
  reason: string;
  place: Placement;
  /** Shared pages are the private guest_memfd's own (in-place conversion): no second copy. */
  inPrivate?: boolean;
}

function planShared(
  ctx: Ctx,
  i: number,
  process: ProcessPolicy | undefined,
  cpuset: boolean,
  warnings: Diagnostic[],
): SharedOutcome {
  const { profile, caps } = ctx;
  const g = ctx.nodes[i]!;
  const hp = profile.memory.hugepages;
  const pool = (nodes: number[]) => (hp !== "none" ? `, from the ${hp} hugepage pool of ${nodesText(nodes)}` : "");
  const viaProcess = (what: string): SharedOutcome => ({
    mechanism: "process-mempolicy",
    reason: `${what}: the backend gets no mbind(), so its pages follow the process-wide ${process!.shown}${pool(process!.nodes)}`,
    place: {
      policy: process!.policy,
      nodes: process!.nodes,
      hard: process!.policy === "bind",
      ...(process!.weights ? { weights: process!.weights } : {}),
    },
  });
  // Without prealloc a shared page is faulted by whichever thread touches it first; a policy
  // outside that thread's cpuset.mems gives way to the cpuset (the kernel ignores such a bind).
  const cpusetCaveat =
    cpuset && !profile.memory.prealloc
      ? "; a page first faulted by another guest node's vCPU lands in that vCPU's cpuset.mems instead (prealloc would fault all of it from the VM cgroup)"
      : "";
  switch (g.policy) {
    case "default":
      if (process) return viaProcess("policy default");
      return {
        mechanism: "none",
        reason: `policy default: the backend has no host-nodes, so pages go to the node local to the faulting thread${hp !== "none" ? `, from that node's ${hp} hugepage pool` : ""}`,
        place: SOFT_ANYWHERE,
      };
    case "weighted-interleave": {
      if (process && process.policy === "weighted-interleave" && sameList(process.nodes, g.hostNodes)) {
        return viaProcess("QEMU memory backends have no weighted-interleave policy");
      }
      if (process)
        return viaProcess("QEMU memory backends have no weighted-interleave policy, so the weights are lost");
      return {
        mechanism: "none",
        reason:
          "QEMU memory backends have no weighted-interleave policy and no process-wide numactl --weighted-interleave is possible here",
        place: SOFT_ANYWHERE,
      };
    }
    case "preferred":
      if (g.hostNodes.length > 1) {
        // QEMU (8.0) switches to MPOL_PREFERRED_MANY only when numa_has_preferred_many() says the
        // running kernel has it (Linux 5.15, backends/hostmem.c); otherwise mbind() gets
        // MPOL_PREFERRED, which keeps only the first node of the mask.
        const kernelMany = compareVersions(ctx.host.kernel, "5.15") >= 0;
        if (hasFeature(caps, "preferred-many") && kernelMany) {
          return {
            mechanism: "backend-policy",
            reason: `QEMU mbind()s the backend's shared mapping to host-nodes=${formatList(g.hostNodes)},policy=preferred, which QEMU ${caps.version} makes MPOL_PREFERRED_MANY (QEMU 8.0)${pool(g.hostNodes)}${cpusetCaveat}`,
            place: ownPlacement(g),
          };
        }
        const first = g.hostNodes[0]!;
        const lacks = hasFeature(caps, "preferred-many")
          ? `Linux ${ctx.host.kernel} has no MPOL_PREFERRED_MANY (Linux 5.15)`
          : `QEMU ${caps.version} has no MPOL_PREFERRED_MANY (QEMU 8.0)`;
        warnings.push(
          diag(
            "warning",
            "placement.preferred-first-node",
            `${ctx.paths[i]}.hostNodes`,
            `${lacks}: preferred over ${nodesText(g.hostNodes)} prefers only host node ${first}`,
            {
              got: formatList(g.hostNodes),
              hint: hasFeature(caps, "preferred-many")
                ? "run on Linux >= 5.15, or name one preferred node"
                : "target QEMU >= 8.0, or name one preferred node",
            },
          ),
        );
        return {
          mechanism: "backend-policy",
          reason: `QEMU mbind()s the backend's shared mapping with policy=preferred, but ${lacks}, so the kernel prefers only the first node, host node ${first}${pool([first])}${cpusetCaveat}`,
          place: { policy: "preferred", nodes: [first], hard: false },
        };
      }
    // falls through: preferred on one node is a plain backend policy
    case "bind":
    case "interleave":
      return {
        mechanism: "backend-policy",
        reason: `QEMU mbind()s the backend's shared mapping: host-nodes=${formatList(g.hostNodes)},policy=${g.policy}${pool(g.hostNodes)}${cpusetCaveat}`,
        place: ownPlacement(g),
      };
  }
}

/** A process policy only the shared half needs: weighted interleave, which backends cannot do. */
function weightedProcessPolicy(ctx: Ctx, warnings: Diagnostic[]): ProcessPolicy | undefined {
  const weighted = ctx.nodes.map((g, i) => ({ g, i })).filter(({ g }) => g.policy === "weighted-interleave");
  if (weighted.length === 0) return undefined;
  const first = weighted[0]!.g;
  const ids = formatList(weighted.map(({ g }) => g.id));
  if (!weighted.every(({ g }) => sameList(g.hostNodes, first.hostNodes))) {
    warnings.push(
      diag(
        "warning",
        "placement.weighted-interleave-unavailable",
        `${ctx.paths[weighted[0]!.i]}.policy`,
        `guest nodes ${ids} weighted-interleave over different host nodes; QEMU backends have no weighted-interleave policy and one process can have only one, so their shared memory gets no policy`,
        {
          got: "weighted-interleave",
          hint: "give them the same hostNodes, or use policy interleave (a backend policy)",
        },
      ),
    );
    return undefined;
  }
  const r = numactlPolicy("weighted-interleave", first.hostNodes, ctx.host, first.weights);
  if ("unavailable" in r) {
    warnings.push(
      diag(
        "warning",
        "placement.weighted-interleave-unavailable",
        `${ctx.paths[weighted[0]!.i]}.policy`,
        `weighted-interleave for guest node ${ids} needs a process-wide numactl --weighted-interleave (QEMU backends have no such policy), but ${r.unavailable}: its shared memory gets no policy`,
        { got: "weighted-interleave", hint: "install numactl >= 2.0.19 on Linux >= 6.9, or use policy interleave" },
      ),
    );
    return undefined;
  }
  return r.process;
}

// ---------------------------------------------------------------------------------------------
// Capacity
// ---------------------------------------------------------------------------------------------

/** Spread `amount` over a placement's nodes: interleave evenly (or by weights), preferred all on
 *  the first node, bind evenly (bind fills the faulting thread's local node first; with vCPUs
 *  spread over those nodes' CPUs, even is the expectation), default evenly over nodes with CPUs. */
function spread(place: Placement, amount: number, host: HostInfo): Map<number, number> {
  const out = new Map<number, number>();
  if (amount <= 0) return out;
  let nodes = place.nodes.filter((n) => nodeById(host, n));
  if (place.policy === "default" || nodes.length === 0) {
    const withCpus = host.nodes.filter((n) => n.cpus.length > 0).map((n) => n.id);
    nodes = withCpus.length > 0 ? withCpus : host.nodes.map((n) => n.id);
  }
  if (nodes.length === 0) return out;
  if (place.policy === "preferred") {
    out.set(nodes[0]!, amount);
    return out;
  }
  const weights = nodes.map((n) => (place.policy === "weighted-interleave" ? (place.weights?.[n] ?? 1) : 1));
  const total = weights.reduce((a, b) => a + b, 0);
  let given = 0;
  nodes.forEach((n, k) => {
    const share = k === nodes.length - 1 ? amount - given : Math.floor((amount * weights[k]!) / total);
    given += share;
    out.set(n, (out.get(n) ?? 0) + share);
  });
  return out;
}

interface NodeNeed {
  need: number;
  upTo: number;
  hardNeed: number;
  pages: number;
  hardPages: number;
  /** Guest nodes with memory here, for pointing a diagnostic at the field to change. */
  guests: Set<number>;
}

/**
 * Capacity model, per host node:
 *  - A guest without guest_memfd (none, SEV, SEV-ES) needs its whole size in the shared backend
 *    (SEV pins all of it at launch; a plain guest touches all of it in time).
 *  - An SNP/TDX guest needs its whole size as private guest_memfd pages: regular pages, never
 *    from hugetlb pools (Linux 6.18 guest_memfd has no hugetlb). Its shared half is touched only
 *    for pages the guest shares, and QEMU frees a page's other half on each conversion, so
 *    without prealloc the shared half is counted as "up to" (upToBytes), not as need; with
 *    prealloc it is populated up front and stays: need = private + shared, double the size.
 *    With in-place conversion (guest_memfd mempolicy for SNP) shared pages are the guest_memfd's
 *    own: one copy, nothing more to count.
 *  - A hugetlb shared half needs its pages from the node's pool of that size: QEMU's mapping
 *    reserves the whole size at start (unless reserve=off), so the full size counts.
 *  - Soft placements (preferred, interleave, default) spill to other nodes when one fills, so a
 *    shortfall there is an error only when the host as a whole cannot hold the VM.
 */
function planCapacity(
  ctx: Ctx,
  guestMemfd: boolean,
  shared: SharedOutcome[],
  priv: Outcome[],
  errors: Diagnostic[],
  warnings: Diagnostic[],
): CapacityRow[] {
  const { profile, host } = ctx;
  const hp = profile.memory.hugepages;
  const hpBytes = hp === "none" ? 0 : HUGEPAGE_BYTES[hp];
  const needs = new Map<number, NodeNeed>();
  const at = (n: number) => {
    let v = needs.get(n);
    if (!v) needs.set(n, (v = { need: 0, upTo: 0, hardNeed: 0, pages: 0, hardPages: 0, guests: new Set() }));
    return v;
  };
  ctx.nodes.forEach((g, i) => {
    const size = g.memoryBytes;
    const sh = shared[i]!.place;
    if (guestMemfd) {
      for (const [n, b] of spread(priv[i]!.place, size, host)) {
        at(n).guests.add(i);
        at(n).need += b;
        if (priv[i]!.place.hard) at(n).hardNeed += b;
      }
    }
    if (shared[i]!.inPrivate) return;
    const sharedCertain = !guestMemfd || profile.memory.prealloc;
    if (hpBytes > 0) {
      const reserveAll = sharedCertain || profile.memory.reserve !== false;
      if (reserveAll) {
        for (const [n, b] of spread(sh, size, host)) {
          const pages = Math.ceil(b / hpBytes);
          at(n).guests.add(i);
          at(n).pages += pages;
          if (sh.hard) at(n).hardPages += pages;
        }
      }
    } else {
      for (const [n, b] of spread(sh, size, host)) {
        at(n).guests.add(i);
        if (sharedCertain) {
          at(n).need += b;
          if (sh.hard) at(n).hardNeed += b;
        } else at(n).upTo += b;
      }
    }
  });

  const totalFree = host.nodes.reduce((a, n) => a + n.memFreeBytes, 0);
  const totalNeed = [...needs.values()].reduce((a, v) => a + v.need, 0);
  const totalFreePages = hp === "none" ? 0 : host.nodes.reduce((a, n) => a + n.hugepages[hp].free, 0);
  const totalPages = [...needs.values()].reduce((a, v) => a + v.pages, 0);
  const rows: CapacityRow[] = [];
  for (const hn of [...host.nodes].sort((a, b) => a.id - b.id)) {
    const v = needs.get(hn.id);
    if (!v || (v.need === 0 && v.upTo === 0 && v.pages === 0)) continue;
    const memStatus = statusOf(v.need, hn.memFreeBytes);
    const row: CapacityRow = { hostNode: hn.id, needBytes: v.need, freeBytes: hn.memFreeBytes, status: memStatus };
    if (v.upTo > 0) row.upToBytes = v.upTo;
    let pageStatus: CapacityRow["status"] = "ok";
    if (hp !== "none" && v.pages > 0) {
      const free = hn.hugepages[hp].free;
      row.hugepages = { size: hp, need: v.pages, free };
      pageStatus = statusOf(v.pages, free);
    }
    row.status = worse(memStatus, pageStatus);
    rows.push(row);

    // One guest node's memory here: point at its size; several: at the total.
    const only = v.guests.size === 1 ? [...v.guests][0]! : undefined;
    const path = only !== undefined && ctx.paths[only] !== "memory" ? `${ctx.paths[only]}.memory` : "memory.size";
    if (memStatus === "insufficient") {
      const hard = v.hardNeed > hn.memFreeBytes || totalNeed > totalFree;
      errorsOrWarnings(hard, errors, warnings).push(
        diag(
          hard ? "error" : "warning",
          "capacity.insufficient",
          path,
          hard
            ? `host node ${hn.id} needs ${formatBytes(v.need)} for this VM but has ${formatBytes(hn.memFreeBytes)} free${totalNeed > totalFree ? ` (the host has ${formatBytes(totalFree)} free in all)` : ", and the placement does not let it spill to other nodes"}`
            : `host node ${hn.id} would take ${formatBytes(v.need)} of this VM but has ${formatBytes(hn.memFreeBytes)} free: the soft policy spills the rest to other nodes`,
          {
            got: formatBytes(v.need),
            hint: hard
              ? "shrink memory, move guest nodes to other host nodes, or free memory on that node"
              : "expect part of the memory off its planned node",
          },
        ),
      );
    } else if (memStatus === "tight") {
      warnings.push(
        diag(
          "warning",
          "capacity.tight",
          path,
          `host node ${hn.id} needs ${formatBytes(v.need)} of its ${formatBytes(hn.memFreeBytes)} free (over ${TIGHT_RATIO * 100}%)`,
          {
            got: formatBytes(v.need),
            hint: "the page cache and other VMs may push it over",
          },
        ),
      );
    }
    if (row.hugepages && pageStatus !== "ok") {
      const { need, free } = row.hugepages;
      const hard = pageStatus === "insufficient" && (v.hardPages > free || totalPages > totalFreePages);
      if (pageStatus === "insufficient") {
        errorsOrWarnings(hard, errors, warnings).push(
          diag(
            hard ? "error" : "warning",
            "capacity.hugepages",
            "memory.hugepages",
            `host node ${hn.id} needs ${need} free ${hp} hugepages (${formatBytes(need * hpBytes)}) but its pool has ${free}${hard ? "" : ": the soft policy takes the rest from other nodes' pools"}`,
            {
              got: hp,
              hint: `raise /sys/devices/system/node/node${hn.id}/hugepages/hugepages-${hpBytes / 1024}kB/nr_hugepages, or use another node`,
            },
          ),
        );
      } else {
        warnings.push(
          diag(
            "warning",
            "capacity.hugepages-tight",
            "memory.hugepages",
            `host node ${hn.id} needs ${need} of its ${free} free ${hp} hugepages (over ${TIGHT_RATIO * 100}%)`,
            {
              got: hp,
            },
          ),
        );
      }
    }
  }
  return rows;
}

function statusOf(need: number, free: number): CapacityRow["status"] {
  if (need > free) return "insufficient";
  if (need > TIGHT_RATIO * free) return "tight";
  return "ok";
}

function worse(a: CapacityRow["status"], b: CapacityRow["status"]): CapacityRow["status"] {
  const r = { ok: 0, tight: 1, insufficient: 2 };
  return r[a] >= r[b] ? a : b;
}

function errorsOrWarnings(hard: boolean, errors: Diagnostic[], warnings: Diagnostic[]): Diagnostic[] {
  return hard ? errors : warnings;
}

// ---------------------------------------------------------------------------------------------
// Host support
// ---------------------------------------------------------------------------------------------

function checkHost(profile: Profile, host: HostInfo, errors: Diagnostic[], warnings: Diagnostic[]): void {
  const type = profile.confidential.type;
  if (!host.kvm) {
    if (type !== "none") {
      errors.push(
        diag(
          "error",
          "host.kvm",
          "confidential.type",
          `a ${type} guest needs KVM, and this host has no usable /dev/kvm`,
          {
            got: type,
            hint: "load kvm_amd or kvm_intel, or plan for another host with --host",
          },
        ),
      );
    } else if (profile.machine.accel === "kvm") {
      warnings.push(
        diag(
          "warning",
          "host.kvm",
          "machine.accel",
          "this host has no usable /dev/kvm: launch falls back to TCG (emulation, much slower; -cpu host becomes max)",
          {
            got: "kvm",
            hint: "set machine.accel: tcg to say so, or load kvm_amd/kvm_intel",
          },
        ),
      );
    }
    return;
  }
  if (type === "none") return;
  const support = confidentialHostSupport(type, host);
  if (!support.ok) {
    errors.push(
      diag(
        "error",
        "host.confidential",
        "confidential.type",
        `${type} is not enabled on this host (${support.missing.join("; ")})`,
        { got: type, hint: `needs ${support.hint}` },
      ),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The planner
// ---------------------------------------------------------------------------------------------

export interface PlanOptions {
  /** Planning a launch on this host: the levers this process lacks (KVM it cannot use, memory
   *  policies the kernel refuses: HostInfo.kvmAccess, .mempolicy) are dropped (host-levers.ts). */
  launch?: boolean;
}

export function planPlacement(
  profile: Profile,
  host: HostInfo,
  caps: QemuCapabilities,
  options: PlanOptions = {},
): Plan {
  const plan = planFor(profile, host, caps);
  if (!options.launch) return plan;
  const accel = applyKvmAccess(plan, profile, host);
  return host.mempolicy.allowed
    ? accel
    : withoutMempolicy(accel, host.mempolicy.reason ?? "memory policies are refused");
}

function planFor(profile: Profile, host: HostInfo, caps: QemuCapabilities): Plan {
  const errors: Diagnostic[] = [];
  const warnings: Diagnostic[] = [];
  const type = profile.confidential.type;
  const guestMemfd = usesGuestMemfd(type);
  const implicit = profile.numa.nodes.length === 0;
  const nodes = guestNodesOf(profile);
  const paths = nodes.map((_, i) => (implicit ? "memory" : `numa.nodes[${i}]`));

  checkHost(profile, host, errors, warnings);

  const hostIds = host.nodes.map((n) => n.id).sort((a, b) => a - b);
  nodes.forEach((g, i) => {
    const missing = g.hostNodes.filter((n) => !hostIds.includes(n));
    if (missing.length > 0) {
      errors.push(
        diag(
          "error",
          "placement.host-node-missing",
          `${paths[i]}.hostNodes`,
          `${missing.length === 1 ? `host node ${missing[0]} does` : `host nodes ${formatList(missing)} do`} not exist on this host (it has ${nodesText(hostIds)})`,
          {
            got: formatList(g.hostNodes),
            hint: "name nodes this host has, or plan for the intended host with --host DIR",
          },
        ),
      );
    }
  });
  // Plan what exists; the errors above already say the plan does not hold.
  const planned = nodes.map((g) => ({ ...g, hostNodes: g.hostNodes.filter((n) => hostIds.includes(n)) }));
  for (const g of planned) if (g.hostNodes.length === 0 && g.policy !== "default") g.policy = "default";

  const cpuInfo = planned.map((g) => hostCpusFor(g, host));
  cpuInfo.forEach((c, i) => {
    for (const note of c.notes)
      warnings.push(diag("warning", "placement.memory-only-node", `${paths[i]}.hostNodes`, note));
  });

  const ctx: Ctx = {
    profile,
    host,
    caps,
    nodes: planned,
    paths,
    hostCpus: cpuInfo.map((c) => c.cpus),
    allHostNodes: hostIds,
    populate: (type !== "none" && CONFIDENTIAL[type].populate) || "launch-time populate",
  };

  const strategy: Strategy = guestMemfd ? choosePrivate(ctx) : { outcomes: planned.map((g) => notApplicable(type, g)) };
  if (strategy.warnings) warnings.push(...strategy.warnings);
  const process = strategy.process ?? weightedProcessPolicy(ctx, warnings);
  const cpuset = strategy.childMems !== undefined;
  const shared = planned.map((_, i) => planShared(ctx, i, process, cpuset, warnings));
  // With in-place conversion the guest_memfd is also the shared memory: one file, one policy.
  strategy.outcomes.forEach((o, i) => {
    if (o.mechanism !== "guest-memfd-mempolicy") return;
    shared[i] = {
      mechanism: "backend-policy",
      reason: `the backend's memory is the guest_memfd itself, converted in place: shared pages live in the same file under the same host-nodes=${formatList(planned[i]!.hostNodes)},policy=${planned[i]!.policy}`,
      place: o.place,
      inPrivate: true,
    };
  });

  const planNodes: PlanNode[] = planned.map((g, i) => {
    const o = strategy.outcomes[i]!;
    const node: PlanNode = {
      guestNode: g.id,
      hostNodes: nodes[i]!.hostNodes,
      policy: nodes[i]!.policy,
      sizeBytes: g.memoryBytes,
      cpus: g.cpus,
      hostCpus: ctx.hostCpus[i]!,
      shared: { mechanism: shared[i]!.mechanism, reason: shared[i]!.reason, hostNodes: shared[i]!.place.nodes },
      private: { mechanism: o.mechanism, fidelity: o.fidelity, reason: o.reason },
    };
    if (guestMemfd) node.private.hostNodes = o.place.nodes;
    if (g.weights) node.weights = g.weights;
    return node;
  });

  // Weights of weighted interleave are host-wide sysfs knobs, not part of the process policy.
  if (process?.policy === "weighted-interleave") {
    const w = planned.find((g) => g.policy === "weighted-interleave" && g.weights)?.weights;
    if (w) {
      warnings.push(
        diag(
          "warning",
          "placement.interleave-weights",
          `${paths[planned.findIndex((g) => g.weights === w)]}.weights`,
          `weighted-interleave weights are host-wide (/sys/kernel/mm/mempolicy/weighted_interleave/nodeN), not per process: numactl uses whatever they are when QEMU starts`,
          {
            got: w,
            hint: `set ${Object.entries(w)
              .map(([n, v]) => `node${n}=${v}`)
              .join(" ")} there before launch`,
          },
        ),
      );
    }
  }

  // Strict: a placement that cannot be enforced exactly is an error, not a footnote.
  if (profile.placement.strict) {
    planNodes.forEach((n, i) => {
      if (guestMemfd && n.private.fidelity !== "exact") {
        errors.push(
          diag(
            "error",
            "placement.strict",
            `${paths[i]}.hostNodes`,
            `private memory of guest node ${n.guestNode} can only be placed ${n.private.fidelity} (${n.private.mechanism}) on this host, and placement.strict is true`,
            {
              got: formatList(n.hostNodes),
              hint: "set placement.strict: false to accept it, or give every guest node the same hostNodes and policy, or use Linux >= 6.19 with a QEMU that sets guest_memfd policy",
            },
          ),
        );
      }
      if (n.policy !== "default" && n.shared.mechanism === "none") {
        errors.push(
          diag(
            "error",
            "placement.strict",
            `${paths[i]}.policy`,
            `shared memory of guest node ${n.guestNode} cannot be placed (${n.policy}) on this host, and placement.strict is true`,
            {
              got: n.policy,
            },
          ),
        );
      }
    });
  }

  // prealloc beside guest_memfd (a second, shared copy) is the rules' warning
  // (memory.prealloc-guest-memfd); the capacity rows below count the copy.
  if (guestMemfd && profile.memory.hugepages !== "none") {
    warnings.push(
      diag(
        "warning",
        "memory.hugepages-private",
        "memory.hugepages",
        `only the shared half comes from the ${profile.memory.hugepages} hugepage pool: private guest_memfd memory is regular pages (guest_memfd has no hugetlb support in Linux 6.18)`,
        { got: profile.memory.hugepages },
      ),
    );
  }
  if (guestMemfd && !implicit) {
    warnings.push(
      diag(
        "warning",
        "placement.measurement",
        "numa.nodes",
        `changing this ${type} guest's NUMA topology (nodes, their vCPUs or sizes) changes its launch measurement: attestation needs new reference values`,
      ),
    );
  }

  const capacity = planCapacity(ctx, guestMemfd, shared, strategy.outcomes, errors, warnings);

  // Cgroups: per-node vCPU cpusets when they place private memory (c), or to pin vCPUs.
  const cgroups: CgroupPlan[] = [];
  const allCpus = union(ctx.hostCpus);
  if (cpuset || (profile.placement.pinVcpus && hasCpuset(host))) {
    const childMems = strategy.childMems ?? planned.map(() => [] as number[]);
    // Only pinning: the VM cgroup must not turn soft policies into a wall, so it spans every
    // host node unless every guest node binds anyway.
    const vmMems = cpuset
      ? union(childMems)
      : planned.every((g) => g.policy === "bind")
        ? union(planned.map((g) => g.hostNodes))
        : hostIds;
    cgroups.push({ name: "", cpus: allCpus, mems: vmMems, tasks: "process" });
    planned.forEach((g, i) => {
      cgroups.push({
        name: `vcpu-node${g.id}`,
        cpus: ctx.hostCpus[i]!,
        mems: cpuset ? childMems[i]! : vmMems,
        tasks: { vcpus: g.cpus },
      });
    });
  }
  const pinning: ThreadPin[] = profile.placement.pinVcpus
    ? planned.flatMap((g, i) => g.cpus.map((vcpu) => ({ vcpu, hostCpus: ctx.hostCpus[i]! })))
    : [];
  pinning.sort((a, b) => a.vcpu - b.vcpu);

  // Plan diagnostics name the profile they are about, like the validator's.
  for (const d of [...errors, ...warnings]) d.file ??= profile.file;

  return {
    name: profile.name,
    confidential: type,
    guestMemfd,
    nodes: planNodes,
    launch: { argvPrefix: process ? process.argv : [], cgroups, pinning },
    capacity,
    warnings,
    errors,
  };
}

/** The lowest private fidelity over a plan's nodes (what `status` shows in one word). */
export function planFidelity(plan: Plan): Fidelity {
  let worst: Fidelity = "exact";
  for (const n of plan.nodes) if (FIDELITY_RANK[n.private.fidelity] < FIDELITY_RANK[worst]) worst = n.private.fidelity;
  return worst;
}
