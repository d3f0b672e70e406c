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
// Everything here is a pure parser or a pure summary, except readVmMemory() at the bottom, which
// reads the files through FsRoot.
import { join, relative } from "node:path";
import { FsRoot, formatList, parseList } from "../io/fsroot.js";
import type { HostInfo, Plan } from "../core/types.js";

// ---------------------------------------------------------------------------------------------
// /proc/<pid>/numa_maps
// ---------------------------------------------------------------------------------------------

export interface MemPolicyInfo {
  /** Kernel names (mm/mempolicy.c policy_modes): default, prefer, bind, interleave,
   *  "weighted interleave", local, "prefer (many)". */
  mode: string;
  /** MPOL flags after `=`: static, relative, balancing. */
  flags: string[];
  nodes: number[];
}

export interface NumaMapsEntry {
  /** Start address, hex as the kernel prints it. */
  start: string;
  policy: MemPolicyInfo;
  /** Backing file with `\040`-style escapes undone ("/memfd:memory-backend-memfd (deleted)"). */
  file?: string;
  anon: number;
  dirty: number;
  mapped: number;
  /** hugetlbfs (and hugetlb memfd) mapping: page counts are in huge pages. */
  huge: boolean;
  heap: boolean;
  stack: boolean;
  /** Resident pages per node, in units of kernelPageSizeKb. */
  pages: Record<number, number>;
  kernelPageSizeKb: number;
}

// Longest names first: "prefer (many)" before "prefer", and the two names with spaces.
const POLICY_RE =
  /^([0-9a-f]+) (default|local|prefer \(many\)|weighted interleave|preferred interleave|prefer|bind|interleave)(?:=([a-z,]+))?(?::([0-9,-]*))?(?: (.*))?$/;

// seq_file escapes in paths: space, tab, newline and backslash as \ooo.
function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Parse numa_maps (fs/proc/task_mmu.c show_numa_map). Lines it cannot read are skipped. */
export function parseNumaMaps(text: string): NumaMapsEntry[] {
  const out: NumaMapsEntry[] = [];
  for (const line of text.split("\n")) {
    const m = POLICY_RE.exec(line.trim());
    if (!m) continue;
    const e: NumaMapsEntry = {
      start: m[1]!,
      policy: { mode: m[2]!, flags: m[3] ? m[3].split(",") : [], nodes: parseList(m[4]) },
      anon: 0,
      dirty: 0,
      mapped: 0,
      huge: false,
      heap: false,
      stack: false,
      pages: {},
      kernelPageSizeKb: 4,
    };
    for (const tok of (m[5] ?? "").split(/\s+/)) {
      if (!tok) continue;
      const eq = tok.indexOf("=");
      const key = eq < 0 ? tok : tok.slice(0, eq);
      const value = eq < 0 ? "" : tok.slice(eq + 1);
      const n = Number(value);
      const node = /^N(\d+)$/.exec(key);
      if (node) e.pages[Number(node[1])] = n;
      else if (key === "file") e.file = unescapeOctal(value);
      else if (key === "anon") e.anon = n;
      else if (key === "dirty") e.dirty = n;
      else if (key === "mapped") e.mapped = n;
      else if (key === "kernelpagesize_kB") e.kernelPageSizeKb = n;
      else if (key === "huge") e.huge = true;
      else if (key === "heap") e.heap = true;
      else if (key === "stack") e.stack = true;
    }
    out.push(e);
  }
  return out;
}

/** Bytes resident per node for one numa_maps entry. */
export function entryBytesPerNode(e: NumaMapsEntry): Record<number, number> {
  const out: Record<number, number> = {};
  for (const [node, pages] of Object.entries(e.pages)) out[Number(node)] = pages * e.kernelPageSizeKb * 1024;
  return out;
}

// ---------------------------------------------------------------------------------------------
// /proc/<pid>/maps (sizes: numa_maps has only start addresses)
// ---------------------------------------------------------------------------------------------

export interface MapsEntry {
  start: string;
  sizeBytes: number;
  perms: string;
  path?: string;
}

export function parseMaps(text: string): MapsEntry[] {
  const out: MapsEntry[] = [];
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line.trim());
    if (!m) continue;
    const size = Number(BigInt(`0x${m[2]}`) - BigInt(`0x${m[1]}`));
    out.push({ start: m[1]!, sizeBytes: size, perms: m[3]!, ...(m[4] ? { path: m[4] } : {}) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// memory.numa_stat (cgroup v1 and v2)
// ---------------------------------------------------------------------------------------------

export interface NumaStat {
  /** v1 (`key=total N0=pages ...`, Documentation/admin-guide/cgroup-v1/memory.rst 5.6) or v2
   *  (`key N0=bytes ...`, Documentation/admin-guide/cgroup-v2.rst memory.numa_stat). */
  format: "v1" | "v2";
  /** Per key, per node, in bytes (v1 pages multiplied by the page size). v2's workingset_*
   *  rows are event counts, not sizes; they are kept as printed and qcvm never reads them. */
  bytes: Record<string, Record<number, number>>;
}

/**
 * Parse memory.numa_stat. The format tells the version apart: v1 writes `key=<total>` before the
 * nodes and counts pages; v2 writes `key` alone and counts bytes ("All memory amounts are in
 * bytes", cgroup-v2.rst). The v1 page is the base page size (PAGE_SIZE), given by the caller.
 */
export function parseNumaStat(text: string, pageSize = 4096): NumaStat {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  const v1 = lines.some((l) => /^[a-z_]+=\d+/.test(l));
  const bytes: NumaStat["bytes"] = {};
  for (const line of lines) {
    const [head, ...rest] = line.split(/\s+/);
    const key = v1 ? head!.split("=")[0]! : head!;
    const perNode: Record<number, number> = {};
    for (const tok of rest) {
      const m = /^N(\d+)=(\d+)$/.exec(tok);
      if (m) perNode[Number(m[1])] = Number(m[2]) * (v1 ? pageSize : 1);
    }
    bytes[key] = perNode;
  }
  return { format: v1 ? "v1" : "v2", bytes };
}

/**
 * Private (guest_memfd) bytes per node: unevictable pages of the cgroup. v1 has per-cgroup and
 * hierarchical rows; the hierarchical one also counts child cgroups (v2's rows always do).
 */
export function privateBytesPerNode(stat: NumaStat): Record<number, number> {
  return { ...(stat.bytes.hierarchical_unevictable ?? stat.bytes.unevictable ?? {}) };
}

// ---------------------------------------------------------------------------------------------
// /proc/<pid>/status
// ---------------------------------------------------------------------------------------------

export interface ProcStatus {
  vmRssBytes?: number;
  vmLckBytes?: number;
  rssAnonBytes?: number;
  rssShmemBytes?: number;
}

export function parseProcStatus(text: string): ProcStatus {
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s*kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const out: ProcStatus = {};
  const set = (k: keyof ProcStatus, v: number | undefined) => {
    if (v !== undefined) out[k] = v;
  };
  set("vmRssBytes", kb("VmRSS"));
  set("vmLckBytes", kb("VmLck"));
  set("rssAnonBytes", kb("RssAnon"));
  set("rssShmemBytes", kb("RssShmem"));
  return out;
}

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

  const drift: Drift[] = [];
  if (exp) {
    for (const half of ["private", "shared"] as const) {
      const actual = (n: number) => (half === "shared" ? (shared.get(n) ?? 0) : (priv?.[n] ?? 0));
      if (half === "private" && !priv) continue;
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
  }

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
