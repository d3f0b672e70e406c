// Where a VM's memory really is, per host node, against the plan. Two sources, because the two
// halves of a confidential guest's memory are visible in different places (DOMAIN.md, "Accounting"):
//   - private (guest_memfd) memory has no userspace mapping: it is not in VmRSS, smaps or
//     numa_maps. It is page cache on the unevictable LRU, charged to the memory cgroup of the
//     task that allocated it, so the VM cgroup's memory.numa_stat `unevictable` row gives it per
//     node. (Measured on Linux 6.18, cgroup v1: a 256 MiB guest_memfd filled by fallocate reads
//     `unevictable=65536 N0=65536`, VmRSS 1.5 MiB: test/fixtures/observe/v1/gmem-256m.)
//   - shared memory is QEMU's mapping of each memory backend: /proc/<pid>/numa_maps gives its
//     policy and resident pages per node, /proc/<pid>/maps its size.
// Caveat: mlock'ed memory (QEMU -overcommit mem-lock=on) is also unevictable; when VmLck is not 0
// the private figure includes it and a note says so.
//
// The parsers of those files are in proc-files.ts (re-exported here). Everything here is a pure
// summary, except readVmMemory() at the bottom, which reads the files through FsRoot.
import { join, relative } from "node:path";
import { FsRoot } from "../io/fsroot.js";
import { formatList } from "../core/lists.js";
import {
  entryBytesPerNode,
  parseMaps,
  parseNumaMaps,
  parseNumaStat,
  parseProcStatus,
  privateBytesPerNode,
} from "./proc-files.js";
import type { MapsEntry, MemPolicyInfo, NumaMapsEntry, NumaStat, ProcStatus } from "./proc-files.js";
import type { HostInfo, Plan } from "../core/types.js";

export { entryBytesPerNode, parseMaps, parseNumaMaps, parseNumaStat, parseProcStatus, privateBytesPerNode };
export type { MapsEntry, MemPolicyInfo, NumaMapsEntry, NumaStat, ProcStatus };

// ---------------------------------------------------------------------------------------------
// QEMU memory backends in numa_maps
// ---------------------------------------------------------------------------------------------

export type BackendKind = "memfd" | "file" | "ram";

export interface BackendMapping {
  start: string;
  sizeBytes: number;
  kind: BackendKind;
  file?: string;
  huge: boolean;
  policy: MemPolicyInfo;
  /** Resident bytes per host node. */
  bytes: Record<number, number>;
  /** Guest node this backend was matched to, when a plan was given and it matched. */
  guestNode?: number;
}

// QEMU names a memory-backend-memfd's memfd after its QOM type (backends/hostmem-memfd.c:
// qemu_memfd_create(TYPE_MEMORY_BACKEND_MEMFD, ...)); the kernel shows it as /memfd:<name>.
const QEMU_MEMFD = "/memfd:memory-backend-memfd";

/**
 * Which numa_maps entries are QEMU's memory backends (the guest's shared memory). Heuristic,
 * in this order:
 *  1. a mapping of QEMU's backend memfd (`file=/memfd:memory-backend-memfd`, with `huge` for
 *     hugetlb memfds) is a memfd backend, whatever its size;
 *  2. with a plan: an anonymous (ram backend) or shared file mapping (file backend) whose size is
 *     exactly a guest node's size. QEMU maps each backend as one VMA of exactly its size (the
 *     guard page qemu_ram_mmap leaves is a separate PROT_NONE VMA), and other guest RAM blocks
 *     (VGA, ROMs) are far smaller than a NUMA node;
 *  3. an anonymous mapping with a non-default policy: QEMU mbind()s only backends
 *     (backends/hostmem.c host_memory_backend_memory_complete).
 * Backends are matched to guest nodes by size, preferring the one whose policy nodes are the
 * nodes the plan expects for that node's shared half.
 */
export function findBackendMappings(numaMaps: NumaMapsEntry[], maps: MapsEntry[], plan?: Plan): BackendMapping[] {
  const sizes = new Map(maps.map((m) => [m.start, m] as const));
  const nodeSizes = new Set((plan?.nodes ?? []).map((n) => n.sizeBytes));
  const found: BackendMapping[] = [];
  for (const e of numaMaps) {
    const map = sizes.get(e.start);
    const size = map?.sizeBytes ?? 0;
    let kind: BackendKind | undefined;
    if (e.file?.startsWith(QEMU_MEMFD)) kind = "memfd";
    else if (e.heap || e.stack) kind = undefined;
    else if (nodeSizes.has(size) && !e.file) kind = "ram";
    else if (nodeSizes.has(size) && e.file && map?.perms[3] === "s") kind = "file";
    else if (!e.file && e.policy.mode !== "default" && e.policy.mode !== "local") kind = "ram";
    if (!kind) continue;
    found.push({
      start: e.start,
      sizeBytes: size,
      kind,
      ...(e.file ? { file: e.file } : {}),
      huge: e.huge,
      policy: e.policy,
      bytes: entryBytesPerNode(e),
    });
  }
  for (const n of plan?.nodes ?? []) {
    const want = formatList(n.shared.hostNodes ?? n.hostNodes);
    const free = found.filter((b) => b.guestNode === undefined && b.sizeBytes === n.sizeBytes);
    const pick = free.find((b) => formatList(b.policy.nodes) === want) ?? free[0];
    if (pick) pick.guestNode = n.guestNode;
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Summary against the plan
// ---------------------------------------------------------------------------------------------

export type Half = "private" | "shared";

export interface NodeMemory {
  hostNode: number;
  /** guest_memfd bytes on this node; null when there is no memory cgroup to read them from. */
  privateBytes: number | null;
  sharedBytes: number;
  totalBytes: number;
  /** The plan's share for this node (its guest nodes' sizes split over their expected host
   *  nodes, by weight for weighted interleave, evenly otherwise); null without a plan. */
  planned: { private: number; shared: number } | null;
  drift: boolean;
}

export interface Drift {
  hostNode: number;
  half: Half;
  actualBytes: number;
  /** What the plan allows on this node: the sizes of every guest node expected (partly) here. */
  allowedBytes: number;
  excessBytes: number;
  message: string;
}

export interface VmMemory {
  pid: number;
  perNode: NodeMemory[];
  totals: { privateBytes: number | null; sharedBytes: number; totalBytes: number };
  vmRssBytes?: number;
  vmLckBytes?: number;
  backends: BackendMapping[];
  drift: Drift[];
  notes: string[];
  sources: { numaMaps: string; numaStat?: string };
}

export interface SummaryInput {
  pid: number;
  numaMaps: string;
  maps: string;
  /** memory.numa_stat of the VM cgroup; undefined when there is none (no memory controller). */
  numaStat?: string;
  status?: string;
  plan?: Plan;
  /** Host node ids to list even when nothing is on them. */
  hostNodes?: number[];
  /** A node is drifting when memory the plan didn't put there exceeds this share of the half's
   *  total (default 0.1 = 10%). */
  tolerance?: number;
  /** Below this many bytes nothing counts as drift (QEMU's own small allocations; default 4 MiB). */
  slackBytes?: number;
  sources?: VmMemory["sources"];
}

interface Expectation {
  /** Per host node: sizes of guest nodes expected (partly) there: the most that may land there. */
  allowed: Map<number, number>;
  /** Per host node: the plan's share. */
  share: Map<number, number>;
  /** Bytes of guest nodes with no expected host nodes (they may land anywhere). */
  anywhere: number;
}

function expectHalf(plan: Plan, half: Half): Expectation {
  const exp: Expectation = { allowed: new Map(), share: new Map(), anywhere: 0 };
  const add = (m: Map<number, number>, k: number, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  for (const n of plan.nodes) {
    if (half === "private" && (!plan.guestMemfd || n.private.mechanism === "not-applicable")) continue;
    const nodes = (half === "shared" ? n.shared.hostNodes : n.private.hostNodes) ?? n.hostNodes;
    if (nodes.length === 0) {
      exp.anywhere += n.sizeBytes;
      continue;
    }
    const weights =
      n.policy === "weighted-interleave" && n.weights ? nodes.map((h) => n.weights?.[h] ?? 1) : nodes.map(() => 1);
    const sum = weights.reduce((a, b) => a + b, 0) || 1;
    nodes.forEach((h, i) => {
      add(exp.allowed, h, n.sizeBytes);
      add(exp.share, h, Math.round((n.sizeBytes * weights[i]!) / sum));
    });
  }
  return exp;
}

const MiB = 1024 * 1024;

/** Human-readable binary size: 268435456 -> "256.0 MiB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Memory on host nodes the plan did not put it on, beyond the slack and the tolerance. */
function findDrift(
  nodeIds: number[],
  exp: Record<Half, Expectation>,
  actualOf: (half: Half, hostNode: number) => number,
  limits: { hasPrivate: boolean; slack: number; tolerance: number },
): Drift[] {
  const { slack, tolerance } = limits;
  const drift: Drift[] = [];
  for (const half of ["private", "shared"] as const) {
    const actual = (n: number) => actualOf(half, n);
    if (half === "private" && !limits.hasPrivate) continue;
    const total = nodeIds.reduce((a, n) => a + actual(n), 0);
    let anywhere = exp[half].anywhere;
    for (const n of nodeIds) {
      const allowed = exp[half].allowed.get(n) ?? 0;
      let excess = Math.max(0, actual(n) - allowed);
      // Guest nodes the plan lets land anywhere absorb excess before it counts as drift.
      const absorbed = Math.min(excess, anywhere);
      anywhere -= absorbed;
      excess -= absorbed;
      if (excess > slack && excess > tolerance * total) {
        const where = [...exp[half].allowed.keys()].sort((a, b) => a - b);
        drift.push({
          hostNode: n,
          half,
          actualBytes: actual(n),
          allowedBytes: allowed,
          excessBytes: excess,
          message:
            `host node ${n} holds ${formatBytes(excess)} of ${half} memory the plan did not put there` +
            (where.length > 0 ? ` (planned on host node${where.length > 1 ? "s" : ""} ${formatList(where)})` : ""),
        });
      }
    }
  }
  return drift;
}

/** Pure: per host node private/shared bytes, the plan's share, and drift. */
export function summarizeVmMemory(input: SummaryInput): VmMemory {
  const tolerance = input.tolerance ?? 0.1;
  const slack = input.slackBytes ?? 4 * MiB;
  const entries = parseNumaMaps(input.numaMaps);
  // The base page size is what ordinary (non-hugetlb) mappings report as kernelpagesize_kB.
  const basePageKb = Math.min(
    ...entries.filter((e) => !e.huge).map((e) => e.kernelPageSizeKb),
    Number.POSITIVE_INFINITY,
  );
  const pageSize = Number.isFinite(basePageKb) ? basePageKb * 1024 : 4096;
  const backends = findBackendMappings(entries, parseMaps(input.maps), input.plan);
  const status = input.status ? parseProcStatus(input.status) : {};
  const stat = input.numaStat !== undefined ? parseNumaStat(input.numaStat, pageSize) : undefined;
  const priv = stat ? privateBytesPerNode(stat) : undefined;

  const shared = new Map<number, number>();
  for (const b of backends)
    for (const [n, v] of Object.entries(b.bytes)) shared.set(Number(n), (shared.get(Number(n)) ?? 0) + v);

  const exp = input.plan
    ? { private: expectHalf(input.plan, "private"), shared: expectHalf(input.plan, "shared") }
    : undefined;
  const ids = new Set<number>([
    ...(input.hostNodes ?? []),
    ...shared.keys(),
    ...Object.keys(priv ?? {}).map(Number),
    ...(exp ? [...exp.private.share.keys(), ...exp.shared.share.keys()] : []),
  ]);
  const nodeIds = [...ids].sort((a, b) => a - b);

  const drift = exp
    ? findDrift(nodeIds, exp, (half, n) => (half === "shared" ? (shared.get(n) ?? 0) : (priv?.[n] ?? 0)), {
        hasPrivate: priv !== undefined,
        slack,
        tolerance,
      })
    : [];

  const perNode: NodeMemory[] = nodeIds.map((n) => {
    const p = priv ? (priv[n] ?? 0) : null;
    const s = shared.get(n) ?? 0;
    return {
      hostNode: n,
      privateBytes: p,
      sharedBytes: s,
      totalBytes: (p ?? 0) + s,
      planned: exp ? { private: exp.private.share.get(n) ?? 0, shared: exp.shared.share.get(n) ?? 0 } : null,
      drift: drift.some((d) => d.hostNode === n),
    };
  });
  const sum = (f: (x: NodeMemory) => number) => perNode.reduce((a, x) => a + f(x), 0);

  const notes: string[] = [];
  if (!stat) notes.push("no memory cgroup for this VM: private (guest_memfd) memory cannot be attributed per node");
  if (status.vmLckBytes) {
    notes.push(
      `QEMU has ${formatBytes(status.vmLckBytes)} locked (VmLck): locked memory is unevictable too, so the private figures include it`,
    );
  }
  if (input.plan && exp && exp.private.anywhere + exp.shared.anywhere > 0) {
    notes.push("some guest nodes have no planned host nodes (policy default): their memory may be on any node");
  }
  return {
    pid: input.pid,
    perNode,
    totals: {
      privateBytes: priv ? sum((x) => x.privateBytes ?? 0) : null,
      sharedBytes: sum((x) => x.sharedBytes),
      totalBytes: sum((x) => x.totalBytes),
    },
    ...(status.vmRssBytes !== undefined ? { vmRssBytes: status.vmRssBytes } : {}),
    ...(status.vmLckBytes !== undefined ? { vmLckBytes: status.vmLckBytes } : {}),
    backends,
    drift,
    notes,
    sources: input.sources ?? { numaMaps: `/proc/${input.pid}/numa_maps` },
  };
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/** Anything that can say where the VM's memory.numa_stat is (a VmCgroup does). */
export interface NumaStatSource {
  memoryNumaStatPath(): string | undefined;
}

/**
 * Read a running VM's memory: QEMU's numa_maps, maps and status under the host root, and the
 * VM cgroup's memory.numa_stat (an absolute path, or a VmCgroup). Throws nothing for a missing
 * cgroup (private reads as unknown); returns undefined when the process is gone.
 */
export function readVmMemory(
  pid: number,
  cgroup: NumaStatSource | string | undefined,
  host: Pick<HostInfo, "root" | "nodes">,
  options: { plan?: Plan; tolerance?: number; slackBytes?: number } = {},
): VmMemory | undefined {
  const fs = new FsRoot(host.root);
  const numaMaps = fs.read(`proc/${pid}/numa_maps`);
  const maps = fs.read(`proc/${pid}/maps`);
  if (numaMaps === undefined || maps === undefined) return undefined;
  const statPath = typeof cgroup === "string" ? cgroup : cgroup?.memoryNumaStatPath();
  // VmCgroup paths are already joined with the root; a plain string is taken as given too.
  const numaStat = statPath ? fs.read(relative(host.root, statPath)) : undefined;
  return summarizeVmMemory({
    pid,
    numaMaps,
    maps,
    ...(numaStat !== undefined ? { numaStat } : {}),
    status: fs.read(`proc/${pid}/status`) ?? "",
    hostNodes: host.nodes.map((n) => n.id),
    ...options,
    sources: {
      numaMaps: join(host.root, `proc/${pid}/numa_maps`),
      ...(numaStat !== undefined && statPath ? { numaStat: statPath } : {}),
    },
  });
}
