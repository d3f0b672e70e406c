// Pure parsers of the kernel files that say where a process's memory is: /proc/<pid>/numa_maps,
// /proc/<pid>/maps, /proc/<pid>/status and a memory cgroup's memory.numa_stat. observe.ts matches
// their entries to QEMU's backends and the plan.
import { parseList } from "../core/lists.js";

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
