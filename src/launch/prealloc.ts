// guest-memfd-prealloc: place each guest node's private memory exactly, at launch, on released
// kernels and QEMUs (DOMAIN.md "Placing private memory on today's kernels"). With QEMU paused
// (-S, before `cont`):
//   1. find QEMU's guest_memfd files and map each to its guest node (gmem-map.ts);
//   2. spawn a helper process (helperMain in io/native.ts) *inside* the VM cgroup
//      (VmCgroup.spawnInside), because the pages are charged to the allocating task's memory
//      cgroup and walled by its cpuset. It takes each file with pidfd_open + pidfd_getfd (Linux
//      5.6: needs ptrace-attach rights over QEMU: root, Yama ptrace_scope < 3, no seccomp filter
//      refusing the call);
//   3. the helper fallocates (FALLOC_FL_KEEP_SIZE) each node's file from worker threads, each
//      under that node's mempolicy (set_mempolicy is per thread), a large node split over several
//      workers bound alike, all nodes in parallel. kvm_gmem_allocate (guest_memfd, Linux 6.8)
//      only allocates folios, so SNP launch update (SNP host: Linux 6.11), TDX page add (TDX
//      host: Linux 6.16) and private faults later use them where they are.
// Why a helper and not qcvm's own threads with qcvm moved into the VM cgroup (measured here,
// Linux 6.18, cgroup v1): a charge over the VM cgroup's memory limit either OOM-kills a task in
// that cgroup (qcvm, at ~80 MiB RSS, is the likeliest victim) or, with oom_kill_disable, stalls
// every task of the cgroup that faults a page: qcvm moved in hung in mem_cgroup_oom_synchronize.
// The helper costs one Node start plus koffi (~45 ms idle; 0.5 s on this loaded 2-CPU machine)
// and ~43 MiB charged to the VM while it runs, freed when it exits; a helper that dies or stalls
// is qcvm's to report and to clean up after (releaseAll punches its pages out from outside).
// Nothing here throws for a kernel refusal: every failure comes back naming the guest node and the
// call, and the caller aborts (placement.strict) or keeps going and says what was lost.
// After launch a private->shared conversion punches a page out of guest_memfd and a later
// shared->private fault allocates it again from the faulting vCPU thread: those pages follow the
// vCPU cgroups (first-touch), not this.
import { closeSync, openSync, writeSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join, relative } from "node:path";
import { FsRoot } from "../io/fsroot.js";
import { formatList } from "../core/lists.js";
import {
  MPOL,
  NativeCallError,
  WORKER,
  WORKER_STEP,
  errnoName,
  helperSource,
  loadNative,
  workerSource,
} from "../io/native.js";
import type { HelperReply, HelperRequest, MpolMode } from "../io/native.js";
import { start as startChild } from "../io/exec.js";
import type { Child } from "../io/exec.js";
import { backendsOf, listGuestMemfds, mapGuestMemfds } from "./gmem-map.js";
import type { BackendFile, GmemFile } from "./gmem-map.js";
import type { VmCgroup } from "../vm/cgroup.js";
import type { PlanNode } from "../core/types.js";

export interface NodePrealloc {
  guestNode: number;
  hostNodes: number[];
  policy: string;
  /** The mempolicy mode used (MPOL_BIND, ...), when one was. */
  mode?: string;
  bytes: number;
  doneBytes: number;
  workers: number;
  ms: number;
  /** What failed for this node, in words naming the call and errno. */
  error?: string;
  /** Why this node was left alone (policy default). */
  skipped?: string;
  errno?: string;
}

export interface PreallocOutcome {
  /** done: every placed node allocated; partial: some failed; skipped: nothing attempted. */
  status: "done" | "partial" | "skipped";
  /** Why nothing was attempted (skipped), or nothing to do ("nothing to pre-allocate"). */
  reason?: string;
  nodes: NodePrealloc[];
  notes: string[];
  ms: number;
  workers: number;
}

export interface PreallocOptions {
  pid: number;
  nodes: readonly PlanNode[];
  /** The VM cgroup to allocate inside; without one the pages are charged to qcvm's cgroup. */
  cgroup?: VmCgroup;
  root?: string;
  /** Worker threads at most (default: CPUs available, at most 8). */
  maxWorkers?: number;
  /** Bytes per fallocate call. */
  chunkBytes?: number;
  /** false: skip the memory-limit check before allocating (for a caller that checked). */
  checkHeadroom?: boolean;
  /** Pre-allocate only these guest nodes (the plan's choice); the others are left on demand. */
  only?: readonly number[];
}

const MODE_NAMES = new Map<number, string>(Object.entries(MPOL).map(([k, v]) => [v, `MPOL_${k}`]));
const ALIGN = 2 * 2 ** 20;

/** The mempolicy for a node: its policy over its host nodes; undefined for default. */
export function modeFor(b: BackendFile): { mode: MpolMode; nodes: number[] } | undefined {
  switch (b.policy) {
    case "bind":
      return { mode: MPOL.BIND, nodes: b.hostNodes };
    case "interleave":
      return { mode: MPOL.INTERLEAVE, nodes: b.hostNodes };
    case "preferred":
      // MPOL_PREFERRED takes one node; more need MPOL_PREFERRED_MANY (Linux 5.15).
      return { mode: b.hostNodes.length > 1 ? MPOL.PREFERRED_MANY : MPOL.PREFERRED, nodes: b.hostNodes };
    case "weighted-interleave":
      // Linux 6.9; the weights are the host's (sysfs), as for numactl --weighted-interleave.
      return { mode: MPOL.WEIGHTED_INTERLEAVE, nodes: b.hostNodes };
    case "default":
      return undefined;
  }
}

/** Why a call failed, for people. */
export function errnoHint(call: string, errno: string): string {
  if (call === "pidfd_getfd" && (errno === "EPERM" || errno === "EACCES"))
    return "no ptrace-attach rights over QEMU: qcvm must run as root (or QEMU's user with CAP_SYS_PTRACE), Yama kernel.yama.ptrace_scope must be < 3, and no seccomp filter may refuse pidfd_getfd";
  if ((call === "pidfd_open" || call === "pidfd_getfd") && errno === "ENOSYS")
    return "the kernel has no pidfd_open/pidfd_getfd (Linux 5.6), or a seccomp filter hides them";
  if (errno === "ESRCH") return "QEMU exited";
  if (call === "set_mempolicy" && errno === "EINVAL")
    return "the host nodes are outside the VM cgroup's cpuset.mems, offline, or the mode is unknown to this kernel (preferred over several nodes: Linux 5.15; weighted interleave: Linux 6.9)";
  if (call === "set_mempolicy" && errno === "EPERM")
    return "a seccomp filter refuses set_mempolicy (containers without CAP_SYS_NICE)";
  if (call === "fallocate" && errno === "ENOMEM")
    return "the host nodes are full or the VM cgroup's memory limit is reached";
  if (call === "fallocate" && errno === "EINTR") return "interrupted by signals 1000 times in a row";
  return "";
}

function describe(call: string, errno: string): string {
  const hint = errnoHint(call, errno);
  return `${call} failed: ${errno}${hint ? ` (${hint})` : ""}`;
}

/** Split each node's file into slices so that about `workers` run at once, every node at least one. */
export function sliceNodes(sizes: readonly number[], workers: number): { offset: number; length: number }[][] {
  const total = sizes.reduce((a, b) => a + b, 0);
  return sizes.map((size) => {
    const want = total > 0 ? Math.max(1, Math.round((workers * size) / total)) : 1;
    const per = Math.max(ALIGN, Math.ceil(size / want / ALIGN) * ALIGN);
    const out: { offset: number; length: number }[] = [];
    for (let off = 0; off < size; off += per) out.push({ offset: off, length: Math.min(per, size - off) });
    return out.length > 0 ? out : [{ offset: 0, length: 0 }];
  });
}

/** Free memory the memory limits leave: the least over the VM cgroup and its ancestors below
 *  the mount (v1 limit_in_bytes - usage_in_bytes, v2 max - current), undefined when unlimited. */
export function memoryHeadroom(cgroup: VmCgroup | undefined, root: string): number | undefined {
  const dir = cgroup?.paths.memory;
  const mount = cgroup?.dirs.find((d) => d.path === dir)?.hierarchy.mount;
  if (!dir || mount === undefined) return undefined;
  const fs = new FsRoot(root);
  const top = join(root, mount);
  let least: number | undefined;
  for (let d = dir; d.startsWith(top) && d !== top; d = dirname(d)) {
    const read = (f: string) => fs.read(relative(root, join(d, f)));
    const limit = read("memory.max") ?? read("memory.limit_in_bytes");
    const usage = read("memory.current") ?? read("memory.usage_in_bytes");
    if (!limit || limit === "max" || !usage) continue;
    const l = Number(limit);
    // cgroup v1 "unlimited" is PAGE_COUNTER_MAX pages in bytes: about 2^63.
    if (!Number.isFinite(l) || l >= 2 ** 62) continue;
    const left = Math.max(0, l - Number(usage));
    least = least === undefined ? left : Math.min(least, left);
  }
  return least;
}

/** cgroup v1: with oom_kill_disable a charge over the limit fails the fallocate with ENOMEM
 *  instead of OOM-killing a task in the VM cgroup (QEMU, or qcvm while inside). v2 has no such
 *  switch: the headroom check before is all there is. Returns the restore action. */
function holdOomKiller(cgroup: VmCgroup | undefined): () => void {
  const dir = cgroup?.paths.memory;
  if (!dir) return () => undefined;
  const file = join(dir, "memory.oom_control");
  const write = (v: string) => {
    try {
      const fd = openSync(file, "r+");
      try {
        writeSync(fd, v);
      } finally {
        closeSync(fd);
      }
      return true;
    } catch {
      return false;
    }
  };
  return write("1") ? () => void write("0") : () => undefined;
}

interface NodeWork {
  node: NodePrealloc;
  file: GmemFile;
  mode: { mode: MpolMode; nodes: number[] };
  slices: { offset: number; length: number }[];
}

function nodeEntry(backend: BackendFile, file: GmemFile): NodePrealloc {
  return {
    guestNode: backend.guestNode,
    hostNodes: backend.hostNodes,
    policy: backend.policy,
    bytes: file.sizeBytes,
    doneBytes: 0,
    workers: 0,
    ms: 0,
  };
}

/** Read the helper's reply into the nodes: bytes done, and each failure named. */
function applyReply(work: NodeWork[], reply: HelperReply): void {
  work.forEach((w, i) => {
    const f = reply.files[i];
    if (reply.error || !f) {
      const e = reply.error ?? { call: "helper", errno: -1 };
      w.node.error = describe(e.call, errnoName(e.errno));
      w.node.errno = errnoName(e.errno);
      return;
    }
    if (f.error) {
      const errno = f.error.call === "identity" ? "ESTALE" : errnoName(f.error.errno);
      w.node.error =
        f.error.call === "identity"
          ? `QEMU's fd ${w.file.fd} is no longer the file /proc showed`
          : describe(f.error.call, errno);
      w.node.errno = errno;
      return;
    }
    w.node.workers = f.slices.length;
    w.node.ms = reply.ms;
    f.slices.forEach((s, k) => {
      w.node.doneBytes += s.state === WORKER.DONE ? w.slices[k]!.length : s.done;
      if (s.state === WORKER.DONE || w.node.error) return;
      if (s.state !== WORKER.FAILED) w.node.error = "a worker thread did not run";
      else if (s.step === WORKER_STEP.LOAD) w.node.error = "a worker thread could not load koffi";
      else {
        const call = s.step === WORKER_STEP.MEMPOLICY ? "set_mempolicy" : "fallocate";
        w.node.errno = errnoName(s.errno);
        w.node.error = describe(call, w.node.errno);
        if (w.node.errno === "ENOMEM") w.node.error += "; its pages were released again";
      }
    });
  });
}

/** Spawn the helper inside the VM cgroup and wait for its reply (or its death). */
async function runHelper(
  request: HelperRequest,
  cgroup: VmCgroup | undefined,
  notes: string[],
  timeoutMs: number,
): Promise<{ reply?: HelperReply; death?: string }> {
  const argv = [process.execPath, "-e", helperSource(), JSON.stringify(request)];
  const start = () => startChild(argv, { output: "ignore", captureStdout: true, captureStderr: true, timeoutMs });
  let child: Child;
  if (cgroup) {
    const { value, errors } = cgroup.spawnInside(start);
    for (const e of errors) notes.push(`pre-allocation helper: ${e.message}`);
    child = value;
  } else {
    notes.push("no VM memory cgroup: the pre-allocated pages are charged to qcvm's own cgroup");
    child = start();
  }
  const r = await child.exited;
  const line =
    String(r.stdout ?? "")
      .trim()
      .split("\n")
      .pop() ?? "";
  try {
    return { reply: JSON.parse(line) as HelperReply };
  } catch {
    const how = r.timedOut
      ? `did not finish in ${Math.round(timeoutMs / 1000)} s`
      : r.signal
        ? `was killed by ${r.signal}${r.signal === "SIGKILL" ? " (the OOM killer, when the VM cgroup's memory limit is reached)" : ""}`
        : `exited with ${r.exitCode}`;
    const err = String(r.stderr ?? "")
      .trim()
      .split("\n")
      .pop();
    return { death: `the pre-allocation helper ${how}${err ? ` (${err})` : ""}` };
  }
}

/** After the helper died: release what it may have allocated, from qcvm (outside the cgroup). */
function releaseAll(pid: number, work: NodeWork[], notes: string[]): void {
  const native = loadNative();
  if ("unavailable" in native) return void notes.push(`cannot release partial allocations: ${native.unavailable}`);
  try {
    const pidfd = native.pidfdOpen(pid);
    try {
      for (const w of work) {
        const fd = native.pidfdGetfd(pidfd, w.file.fd);
        try {
          native.punchHole(fd, 0, w.file.sizeBytes);
        } finally {
          native.close(fd);
        }
      }
    } finally {
      native.close(pidfd);
    }
  } catch (e) {
    notes.push(`cannot release partial allocations: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** What doctor checks live: koffi loads, and pidfd_getfd takes an fd of another process here
 *  (a child of qcvm's: ptrace rights, Yama and seccomp all apply as they would to QEMU). */
export async function probePrealloc(): Promise<{ item: string; ok: boolean; detail: string; rulesOut: string }[]> {
  const lost =
    "guest-memfd-prealloc: SNP/TDX private memory is not placed exactly at launch (it falls back to first-touch)";
  const native = loadNative();
  if ("unavailable" in native) {
    return [{ item: "native calls (koffi)", ok: false, detail: native.unavailable, rulesOut: lost }];
  }
  const out = [{ item: "native calls (koffi)", ok: true, detail: `koffi at ${native.koffiPath}`, rulesOut: lost }];
  const child = startChild(["sleep", "10"], { output: "ignore" });
  let detail = "pidfd_open + pidfd_getfd on a child process work";
  let ok = true;
  try {
    const pidfd = native.pidfdOpen(child.pid!);
    try {
      native.close(native.pidfdGetfd(pidfd, 0));
    } finally {
      native.close(pidfd);
    }
  } catch (e) {
    ok = false;
    detail = e instanceof NativeCallError ? describe(e.call, e.errno) : String(e);
  } finally {
    child.kill("SIGKILL");
    await child.exited;
  }
  out.push({ item: "pidfd_getfd (live)", ok, detail, rulesOut: lost });
  return out;
}

function skippedOutcome(reason: string, notes: string[], t0: number): PreallocOutcome {
  return { status: "skipped", reason, nodes: [], notes, ms: performance.now() - t0, workers: 0 };
}

/** Pre-allocate every placed guest node's private memory in QEMU `pid`. */
export async function preallocate(o: PreallocOptions): Promise<PreallocOutcome> {
  const t0 = performance.now();
  const mapping = mapGuestMemfds(listGuestMemfds(new FsRoot(o.root ?? "/"), o.pid), backendsOf(o.nodes));
  if (mapping.kind !== "mapped") return skippedOutcome(mapping.reason, [], t0);
  return preallocateMapped(o, mapping.files, mapping.notes, t0);
}

/** Pre-allocate files already mapped to backends (preallocate's second half; a test on a host
 *  without KVM gives memfds here). */
export async function preallocateMapped(
  o: PreallocOptions,
  files: { backend: BackendFile; file: GmemFile }[],
  mappingNotes: string[] = [],
  t0 = performance.now(),
): Promise<PreallocOutcome> {
  const notes = [...mappingNotes];
  const native = loadNative();
  if ("unavailable" in native) return skippedOutcome(native.unavailable, notes, t0);
  const nodes: NodePrealloc[] = [];
  const work: NodeWork[] = [];
  for (const { backend, file } of files) {
    const node = nodeEntry(backend, file);
    nodes.push(node);
    const mode = modeFor(backend);
    if (o.only && !o.only.includes(backend.guestNode))
      node.skipped = "the plan places this node's private memory another way";
    else if (!mode) node.skipped = "policy default asks for no placement: its private pages are allocated on demand";
    else work.push({ node: Object.assign(node, { mode: MODE_NAMES.get(mode.mode)! }), file, mode, slices: [] });
  }
  const need = work.reduce((a, w) => a + w.file.sizeBytes, 0);
  const headroom = o.checkHeadroom === false ? undefined : memoryHeadroom(o.cgroup, o.root ?? "/");
  if (headroom !== undefined && need > headroom) {
    const mib = (b: number) => `${Math.floor(b / 2 ** 20)} MiB`;
    return skippedOutcome(
      `the VM cgroup's memory limit leaves ${mib(headroom)}, and guest node(s) ${formatList(work.map((w) => w.node.guestNode))} need ${mib(need)} of private memory (ENOMEM before any allocation)`,
      notes,
      t0,
    );
  }
  if (work.length === 0) return { status: "done", nodes, notes, ms: performance.now() - t0, workers: 0 };
  const maxWorkers = Math.max(1, o.maxWorkers ?? Math.min(8, availableParallelism()));
  sliceNodes(
    work.map((w) => w.file.sizeBytes),
    maxWorkers,
  ).forEach((s, i) => (work[i]!.slices = s));
  const request: HelperRequest = {
    koffi: native.koffiPath,
    nr: native.syscalls,
    pid: o.pid,
    chunk: o.chunkBytes ?? 256 * 2 ** 20,
    worker: workerSource(),
    files: work.map((w) => ({
      fd: w.file.fd,
      ino: w.file.ino,
      size: w.file.sizeBytes,
      mode: w.mode.mode,
      nodes: w.mode.nodes,
      slices: w.slices,
    })),
  };
  // Generous: 100 MiB/s is a tenth of the slowest rate seen here, plus a Node start.
  const timeoutMs = 30_000 + (need / (100 * 2 ** 20)) * 1000;
  const restore = holdOomKiller(o.cgroup);
  let result: Awaited<ReturnType<typeof runHelper>>;
  try {
    result = await runHelper(request, o.cgroup, notes, timeoutMs);
  } finally {
    restore();
  }
  if (result.reply) applyReply(work, result.reply);
  else {
    for (const w of work) w.node.error = `${result.death}: guest node ${w.node.guestNode} is not pre-allocated`;
    releaseAll(o.pid, work, notes);
  }
  const workers = work.reduce((a, w) => a + w.node.workers, 0);
  const failed = nodes.some((n) => n.error);
  return { status: failed ? "partial" : "done", nodes, notes, ms: performance.now() - t0, workers };
}
