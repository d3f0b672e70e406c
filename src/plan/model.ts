// The planner's vocabulary: where a half of a guest node's memory lands (Placement), what a lever
// gives one node (Outcome) and the whole guest (Strategy), the context every planning step reads,
// and the small helpers they share. Pure.
import { formatList } from "../core/lists.js";
import type {
  Diagnostic,
  Fidelity,
  GuestNumaNode,
  HostInfo,
  HostNode,
  MemPolicy,
  PrivateBackend,
  PrivateMechanism,
  ProcessPolicy,
  Profile,
  QemuCapabilities,
} from "../core/types.js";

export const HUGEPAGE_BYTES = { "2M": 2 ** 21, "1G": 2 ** 30 } as const;
/** More than this share of a node's free memory (or free hugepages) is "tight". */
export const TIGHT_RATIO = 0.9;

export const FIDELITY_RANK: Record<Fidelity, number> = {
  none: 0,
  coarse: 1,
  "first-touch": 2,
  "exact-at-launch": 3,
  exact: 4,
};

/** Where one half of a guest node's memory lands, for capacity: policy over nodes, and whether the
 *  kernel may put it elsewhere when those nodes fill (soft) or must fail (hard: bind, cpuset). */
export interface Placement {
  policy: MemPolicy;
  nodes: number[];
  weights?: Record<number, number>;
  hard: boolean;
}

export interface Outcome {
  mechanism: PrivateMechanism;
  fidelity: Fidelity;
  reason: string;
  place: Placement;
  /** guest-memfd-mempolicy only: the backend that carries the policy. */
  backend?: PrivateBackend;
}

/** A process policy as the planner holds it: the plan's data, plus how reasons show it. */
export interface ProcessChoice {
  policy: ProcessPolicy;
  /** What the numactl option says, for reasons: "numactl --membind=0-1". */
  shown: string;
}

export interface Strategy {
  outcomes: Outcome[];
  process?: ProcessChoice;
  /** Per guest node cpuset.mems of its vCPU cgroup, when (c) is used. */
  childMems?: number[][];
  /** Extra diagnostics the strategy brings when chosen. */
  warnings?: Diagnostic[];
}

export type Unavailable = { unavailable: string };

export interface Ctx {
  profile: Profile;
  host: HostInfo;
  caps: QemuCapabilities;
  nodes: GuestNumaNode[];
  paths: string[];
  hostCpus: number[][];
  allHostNodes: number[];
  populate: string;
  guestMemfd: boolean;
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

export const nodesText = (nodes: readonly number[]) =>
  nodes.length === 1 ? `host node ${nodes[0]}` : `host nodes ${formatList(nodes)}`;
export const union = (lists: readonly (readonly number[])[]) => [...new Set(lists.flat())].sort((a, b) => a - b);
export const sameList = (a: readonly number[], b: readonly number[]) => formatList(a) === formatList(b);
export const weightsKey = (w?: Record<number, number>) =>
  w ? JSON.stringify(Object.entries(w).sort(([a], [b]) => Number(a) - Number(b))) : "";

export function hasCpuset(host: HostInfo): boolean {
  return (
    host.cgroup.v1Mounts.cpuset !== undefined ||
    (host.cgroup.version === 2 && host.cgroup.controllers.includes("cpuset"))
  );
}

export function numactlInstalled(host: HostInfo): boolean {
  return host.numactl.version !== undefined || host.numactl.preferredMany || host.numactl.weightedInterleave;
}

export function nodeById(host: HostInfo, id: number): HostNode | undefined {
  return host.nodes.find((n) => n.id === id);
}

/** Host CPUs for a guest node's vCPUs, with a note for each memory-only node that borrowed CPUs. */
export function hostCpusFor(g: GuestNumaNode, host: HostInfo): { cpus: number[]; notes: string[] } {
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

export const isPlaced = (g: GuestNumaNode) => g.policy !== "default";

export function ownPlacement(g: GuestNumaNode): Placement {
  const p: Placement = { policy: g.policy, nodes: g.hostNodes, hard: g.policy === "bind" };
  if (g.weights) p.weights = g.weights;
  return p;
}

export const SOFT_ANYWHERE: Placement = { policy: "default", nodes: [], hard: false };

/** A node that asks for no placement: nothing to enforce, whatever lever the others use. */
export function defaultOutcome(): Outcome {
  return {
    mechanism: "none",
    fidelity: "exact",
    reason:
      "policy default asks for no placement: private pages go to the node local to the thread that faults them, as shared pages do",
    place: SOFT_ANYWHERE,
  };
}
