// The one place qcvm calls the kernel directly (FFI): pidfd_open, pidfd_getfd, fallocate and
// set_mempolicy, which Node has no API for. Everything goes through the koffi package: it ships
// prebuilt binaries for every platform Node runs on (npm optional dependencies), so users' hosts
// need no compiler, unlike node-gyp addons (ffi-napi, unmaintained since 2022, needs one).
//
// Loaded lazily (loadNative): render, validate and plan never load koffi; launch and doctor do.
// koffi is resolved at run time with createRequire, never bundled (a native addon cannot be, and
// the V8 startup snapshot has no module loader): from this file's URL in the ESM bundle and under
// vitest, from the snapshot blob's directory (bin/qcvm passes --snapshot-blob) in the snapshot.
//
// The same bindings run in the pre-allocation helper process (helperMain, spawned by qcvm inside
// the VM cgroup) and its worker threads (workerMain: mempolicy is per thread, so each worker sets
// its own). Both run from their source text (`node -e`, `new Worker(..., { eval: true })`), so
// bindNative, helperMain and workerMain use nothing from this module's scope, only their arguments
// (test/prealloc.test.ts runs them from a minified bundle too).
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { arch } from "node:process";
import { constants as osConstants } from "node:os";

/** Linux syscall numbers. pidfd_open and pidfd_getfd (Linux 5.6) have one number on every
 *  architecture (added after the 5.1 unification); set_mempolicy predates it. */
const SYSCALLS: Record<string, { pidfdOpen: number; pidfdGetfd: number; setMempolicy: number }> = {
  x64: { pidfdOpen: 434, pidfdGetfd: 438, setMempolicy: 238 },
  arm64: { pidfdOpen: 434, pidfdGetfd: 438, setMempolicy: 237 },
};

/** include/uapi/linux/mempolicy.h. PREFERRED_MANY: Linux 5.15; WEIGHTED_INTERLEAVE: Linux 6.9
 *  (weights are host-wide, /sys/kernel/mm/mempolicy/weighted_interleave/nodeN). */
export const MPOL = {
  DEFAULT: 0,
  PREFERRED: 1,
  BIND: 2,
  INTERLEAVE: 3,
  PREFERRED_MANY: 5,
  WEIGHTED_INTERLEAVE: 6,
} as const;
export type MpolMode = (typeof MPOL)[keyof typeof MPOL];

/** fallocate mode: allocate without changing the size. guest_memfd has a fixed size, so
 *  kvm_gmem_fallocate() (Linux 6.8) accepts only this (and PUNCH_HOLE). */
export const FALLOC_FL_KEEP_SIZE = 1;
/** Release a range: kvm_gmem_punch_hole (Linux 6.8) frees the folios. */
export const FALLOC_FL_PUNCH_HOLE = 2;

/** A failed call, by name and errno name (EPERM, ENOMEM, ...). */
export class NativeCallError extends Error {
  constructor(
    readonly call: string,
    readonly errno: string,
  ) {
    super(`${call}: ${errno}`);
    this.name = "NativeCallError";
  }
}

type Call = [ret: number, errno: number];

/** What bindNative returns: raw calls, each with the errno read right after it. */
export interface RawNative {
  pidfdOpen(pid: number): Call;
  pidfdGetfd(pidfd: number, fd: number): Call;
  close(fd: number): Call;
  fallocate(fd: number, mode: number, offset: number, length: number): Call;
  setMempolicy(mode: number, nodes: readonly number[]): Call;
}

interface KoffiLike {
  load(path: string): { func(decl: string): (...args: unknown[]) => unknown };
  errno(): number;
}

/** Declares the calls on libc. Runs in workers from its source text: arguments only. */
export function bindNative(koffi: KoffiLike, nr: { pidfdOpen: number; pidfdGetfd: number; setMempolicy: number }) {
  const libc = koffi.load("libc.so.6");
  // syscall(2) is variadic: koffi takes a type before each extra argument.
  const syscall = libc.func("long syscall(long nr, ...)") as (...a: unknown[]) => number;
  const fallocate = libc.func("int fallocate(int fd, int mode, int64_t offset, int64_t len)") as (
    ...a: number[]
  ) => number;
  const close = libc.func("int close(int fd)") as (fd: number) => number;
  const call = (ret: number): Call => [Number(ret), Number(ret) < 0 ? koffi.errno() : 0];
  const raw: RawNative = {
    pidfdOpen: (pid) => call(syscall(nr.pidfdOpen, "int", pid, "uint", 0)),
    pidfdGetfd: (pidfd, fd) => call(syscall(nr.pidfdGetfd, "int", pidfd, "int", fd, "uint", 0)),
    close: (fd) => call(close(fd)),
    fallocate: (fd, mode, offset, length) => call(fallocate(fd, mode, offset, length)),
    setMempolicy: (mode, nodes) => {
      // A nodemask of 64-bit words; the kernel reads maxnode - 1 bits (get_nodes), as libnuma
      // passes size + 1.
      const words = Math.max(1, Math.ceil((Math.max(-1, ...nodes) + 1) / 64));
      const mask = new BigUint64Array(words);
      for (const n of nodes) mask[n >> 6]! |= 1n << BigInt(n & 63);
      return call(syscall(nr.setMempolicy, "int", mode, "uint64_t *", mask, "ulong", words * 64 + 1));
    },
  };
  return raw;
}

/** One slice of one guest_memfd for one worker thread of the helper. */
export interface WorkerTask {
  koffi: string;
  nr: { pidfdOpen: number; pidfdGetfd: number; setMempolicy: number };
  /** The helper's fd for the file (fds are per process, so shared by every thread). */
  fd: number;
  offset: number;
  length: number;
  /** Bytes per fallocate call: progress and EINTR retries go by chunk. */
  chunk: number;
  mode: number;
  nodes: number[];
  /** Int32Array over it: [state, errno, step, go]; Float64Array at byte 16: [bytes done,
   *  first fallocate's start, last one's end] (ms, performance.timeOrigin-based). */
  shared: SharedArrayBuffer;
}

/** Worker states in shared[0]. */
export const WORKER = { STARTING: 0, READY: 1, RUNNING: 2, DONE: 3, FAILED: 4 } as const;
/** What a failed worker was doing, in shared[2]. */
export const WORKER_STEP = { LOAD: 1, MEMPOLICY: 2, FALLOCATE: 3 } as const;

/**
 * Body of a pre-allocation worker thread (runs from its source text: arguments only; the numbers
 * are WORKER and WORKER_STEP). Loads koffi, says READY, waits for GO, sets its thread's mempolicy
 * and fallocates its range chunk by chunk. EINTR (a signal arrived: kvm_gmem_allocate stops and
 * says so) retries the chunk; folios already there are kept. ENOMEM punches the range back out
 * (FALLOC_FL_PUNCH_HOLE | KEEP_SIZE), so a VM cgroup at its memory limit is not left there, with
 * its tasks stalled in the OOM path.
 */
export function workerMain(
  req: (id: string) => unknown,
  task: WorkerTask,
  bind: (koffi: KoffiLike, nr: WorkerTask["nr"]) => RawNative,
): void {
  const st = new Int32Array(task.shared, 0, 4);
  const done = new Float64Array(task.shared, 16, 3);
  const fail = (step: number, errno: number) => {
    Atomics.store(st, 1, errno);
    Atomics.store(st, 2, step);
    Atomics.store(st, 0, 4);
    Atomics.notify(st, 0);
  };
  let raw: RawNative;
  try {
    raw = bind(req(task.koffi) as KoffiLike, task.nr);
  } catch {
    fail(1, -1);
    return;
  }
  Atomics.store(st, 0, 1);
  Atomics.notify(st, 0);
  Atomics.wait(st, 3, 0);
  if (Atomics.load(st, 3) !== 1) return;
  Atomics.store(st, 0, 2);
  const [r, e] = raw.setMempolicy(task.mode, task.nodes);
  if (r < 0) return fail(2, e);
  const end = task.offset + task.length;
  const clock = () => performance.timeOrigin + performance.now();
  done[1] = clock();
  for (let off = task.offset; off < end;) {
    const len = Math.min(task.chunk, end - off);
    let ret = raw.fallocate(task.fd, 1, off, len);
    for (let tries = 0; ret[0] < 0 && ret[1] === 4 && tries < 1000; tries++) ret = raw.fallocate(task.fd, 1, off, len);
    if (ret[0] < 0) {
      if (ret[1] === 12) {
        raw.fallocate(task.fd, 3, task.offset, task.length);
        done[0] = 0;
      }
      return fail(3, ret[1]);
    }
    off += len;
    done[0] = off - task.offset;
  }
  done[2] = clock();
  Atomics.store(st, 0, 3);
  Atomics.notify(st, 0);
}

/** Source text for `new Worker(source, { eval: true, workerData: task })`. */
export function workerSource(): string {
  return `"use strict";
const { workerData } = require("node:worker_threads");
(${workerMain.toString()})(require, workerData, ${bindNative.toString()});
`;
}

/** What the pre-allocation helper process is asked to do. */
export interface HelperRequest {
  koffi: string;
  nr: WorkerTask["nr"];
  pid: number;
  chunk: number;
  worker: string;
  files: {
    fd: number;
    ino: number;
    size: number;
    mode: number;
    nodes: number[];
    slices: { offset: number; length: number }[];
  }[];
}

/** A call that failed, with its errno number. */
export interface HelperError {
  call: string;
  errno: number;
}

/** What the helper prints (one JSON line) before it exits. */
export interface HelperReply {
  error?: HelperError;
  files: { error?: HelperError; slices: { state: number; step: number; errno: number; done: number }[] }[];
  /** Milliseconds from the first worker's first fallocate to the last one's end: the allocation
   *  itself, without thread start-up. */
  ms: number;
}

/**
 * Body of the pre-allocation helper process (runs from its source text, `node -e`: arguments
 * only). qcvm spawns it inside the VM cgroup; it takes QEMU's files with pidfd_open +
 * pidfd_getfd, checks each is the file /proc showed (inode, size), runs one worker per slice and
 * prints a HelperReply. A helper of its own, not qcvm's threads: a charge over the VM cgroup's
 * memory limit stalls or OOM-kills tasks in that cgroup, and that must never be qcvm.
 */
export async function helperMain(
  req: (id: string) => unknown,
  r: HelperRequest,
  bind: (koffi: KoffiLike, nr: WorkerTask["nr"]) => RawNative,
  print: (line: string) => void,
): Promise<void> {
  const reply: HelperReply = { files: r.files.map(() => ({ slices: [] })), ms: 0 };
  let raw: RawNative;
  try {
    raw = bind(req(r.koffi) as KoffiLike, r.nr);
  } catch {
    reply.error = { call: "load koffi", errno: -1 };
    return print(JSON.stringify(reply));
  }
  const [pidfd, e] = raw.pidfdOpen(r.pid);
  if (pidfd < 0) {
    reply.error = { call: "pidfd_open", errno: e };
    return print(JSON.stringify(reply));
  }
  const { Worker } = req("node:worker_threads") as typeof import("node:worker_threads");
  const { fstatSync } = req("node:fs") as typeof import("node:fs");
  const runs: { file: number; st: Int32Array; done: Float64Array; exit: Promise<unknown> }[] = [];
  r.files.forEach((f, i) => {
    const [fd, err] = raw.pidfdGetfd(pidfd, f.fd);
    if (fd < 0) return void (reply.files[i]!.error = { call: "pidfd_getfd", errno: err });
    const st = fstatSync(fd);
    // The fd number could have been reused since qcvm read /proc: it must be the same file.
    if (st.ino !== f.ino || st.size !== f.size) return void (reply.files[i]!.error = { call: "identity", errno: 116 });
    for (const s of f.slices) {
      const shared = new SharedArrayBuffer(40);
      const state = new Int32Array(shared, 0, 4);
      Atomics.store(state, 3, 1);
      const workerData = { koffi: r.koffi, nr: r.nr, fd, ...s, chunk: r.chunk, mode: f.mode, nodes: f.nodes, shared };
      const w = new Worker(r.worker, { eval: true, workerData });
      const exit = new Promise((resolve) => {
        w.on("exit", resolve);
        w.on("error", resolve);
      });
      runs.push({ file: i, st: state, done: new Float64Array(shared, 16, 3), exit });
    }
  });
  await Promise.all(runs.map((x) => x.exit));
  const starts = runs.map((x) => x.done[1]!).filter((t) => t > 0);
  const ends = runs.map((x) => x.done[2]!).filter((t) => t > 0);
  reply.ms = starts.length && ends.length ? Math.max(...ends) - Math.min(...starts) : 0;
  for (const x of runs) {
    const state = Atomics.load(x.st, 0);
    const done = state === 3 ? -1 : x.done[0]!;
    reply.files[x.file]!.slices.push({ state, step: Atomics.load(x.st, 2), errno: Atomics.load(x.st, 1), done });
  }
  print(JSON.stringify(reply));
}

/** Source text for `node -e SOURCE REQUEST_JSON`. */
export function helperSource(): string {
  return `"use strict";
(${helperMain.toString()})(require, JSON.parse(process.argv[1]), ${bindNative.toString()}, (l) => process.stdout.write(l + "\\n"));
`;
}

/** The loaded native calls, throwing NativeCallError with the errno name on failure. */
export interface Native {
  /** Absolute path of koffi's entry, for workers to require. */
  koffiPath: string;
  syscalls: { pidfdOpen: number; pidfdGetfd: number; setMempolicy: number };
  /** pidfd_open(2), Linux 5.6. */
  pidfdOpen(pid: number): number;
  /** pidfd_getfd(2), Linux 5.6: needs PTRACE_MODE_ATTACH_REALCREDS over the target (root, and
   *  Yama ptrace_scope < 3), and no seccomp filter refusing it. */
  pidfdGetfd(pidfd: number, fd: number): number;
  close(fd: number): void;
  fallocateKeepSize(fd: number, offset: number, length: number): void;
  punchHole(fd: number, offset: number, length: number): void;
  setMempolicy(mode: MpolMode, nodes: readonly number[]): void;
}

let loaded: Native | { unavailable: string } | undefined;

const ERRNO_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name);

/** EPERM for 1: errno names from Node's own table (os.constants.errno). */
export function errnoName(n: number): string {
  return ERRNO_NAMES.get(n) ?? `errno ${n}`;
}

/** Where to resolve koffi from: this module's URL, or in the startup snapshot (whose
 *  import.meta.url is a stand-in) the package root above the blob. */
function requireFromHere(): NodeJS.Require {
  const here = createRequire(import.meta.url);
  try {
    here.resolve("koffi");
    return here;
  } catch {
    const i = process.execArgv.indexOf("--snapshot-blob");
    const blob = i >= 0 ? process.execArgv[i + 1] : undefined;
    if (!blob) return here;
    return createRequire(resolve(dirname(dirname(blob)), "package.json"));
  }
}

/** Load koffi and declare the calls once; `unavailable` says why not (in words). */
export function loadNative(): Native | { unavailable: string } {
  if (loaded) return loaded;
  const nr = SYSCALLS[arch];
  if (!nr) return (loaded = { unavailable: `no syscall table for ${arch} (qcvm knows x64 and arm64)` });
  let koffi: KoffiLike;
  let koffiPath: string;
  let raw: RawNative;
  try {
    const req = requireFromHere();
    koffiPath = req.resolve("koffi");
    koffi = req(koffiPath) as typeof koffi;
    raw = bindNative(koffi, nr);
  } catch (e) {
    const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
    return (loaded = { unavailable: `the koffi FFI package does not load (${why}): reinstall qcvm's dependencies` });
  }
  const check = (call: string, [ret, errno]: Call): number => {
    if (ret < 0) throw new NativeCallError(call, errnoName(errno));
    return ret;
  };
  return (loaded = {
    koffiPath,
    syscalls: nr,
    pidfdOpen: (pid) => check("pidfd_open", raw.pidfdOpen(pid)),
    pidfdGetfd: (pidfd, fd) => check("pidfd_getfd", raw.pidfdGetfd(pidfd, fd)),
    close: (fd) => void check("close", raw.close(fd)),
    fallocateKeepSize: (fd, offset, length) =>
      void check("fallocate", raw.fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length)),
    punchHole: (fd, offset, length) =>
      void check("fallocate", raw.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)),
    setMempolicy: (mode, nodes) => void check("set_mempolicy", raw.setMempolicy(mode, nodes)),
  });
}
