// EINTR during guest-memfd-prealloc. kvm_gmem_allocate (Linux 6.8) stops with EINTR when a signal
// is pending; the worker (src/io/native.ts workerMain) retries that chunk, keeping the folios
// already there, and gives up after 1000 in a row, naming the call. A signal cannot be aimed at
// one of the helper's worker threads from here (the kernel hands a process-directed signal to its
// main thread), so EINTR is injected at the binding seam (workerMain's `bind` argument): every
// other call is the real one, on a real guest_memfd taken from the stand-in with pidfd_getfd.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { run } from "../src/io/exec.js";
import { WORKER, WORKER_STEP, bindNative, errnoName, loadNative, workerMain } from "../src/io/native.js";
import type { RawNative, WorkerTask } from "../src/io/native.js";
import { errnoHint } from "../src/launch/prealloc.js";
import { spawn } from "./helpers/exec.js";
import { REPO } from "./helpers/host.js";

const MiB = 2 ** 20;
const EINTR = 4;
const work = mkdtempSync(join(tmpdir(), "qcvm-eintr-"));
const standIn = join(work, "gmem-vm");
const cc = await run(["cc", "-O2", "-Wall", "-o", standIn, join(REPO, "test/helpers/gmem-vm.c")]);
if (cc.exitCode !== 0) throw new Error(`cc gmem-vm.c: ${cc.stderr}`);
const probe = await run([standIn, "4"], { input: "", timeoutMs: 10_000 });
const noGmem = probe.stdout.includes("created") ? false : `no guest_memfd here (${probe.stdout.trim()})`;
const native = loadNative();
const skip = noGmem || ("unavailable" in native ? native.unavailable : false);
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A stand-in with one guest_memfd of `mib` MiB, and that file's fd in this process. */
async function takeFile(mib: number) {
  const child = spawn([standIn, String(mib)], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const first = (await lines.next()).value as string;
  const remoteFd = Number(first.split(" ")[1]);
  if ("unavailable" in native) throw new Error(native.unavailable);
  const pidfd = native.pidfdOpen(child.pid!);
  const fd = native.pidfdGetfd(pidfd, remoteFd);
  native.close(pidfd);
  return {
    fd,
    stop: async () => {
      native.close(fd);
      child.stdin!.end();
      child.kill("SIGKILL");
      await child.catch(() => undefined);
    },
  };
}

/** Run one worker's job on this thread (GO already given), with `eintr` failures injected. */
function runWorker(fd: number, length: number, eintr: (call: number) => boolean) {
  if ("unavailable" in native) throw new Error(native.unavailable);
  const shared = new SharedArrayBuffer(40);
  const st = new Int32Array(shared, 0, 4);
  Atomics.store(st, 3, 1);
  const task: WorkerTask = {
    koffi: native.koffiPath,
    nr: native.syscalls,
    fd,
    offset: 0,
    length,
    chunk: 4 * MiB,
    // MPOL_DEFAULT: this thread (vitest's) keeps the policy it has.
    mode: 0,
    nodes: [],
    shared,
  };
  const calls: [number, number, number][] = [];
  const bind = (koffi: Parameters<typeof bindNative>[0], nr: WorkerTask["nr"]): RawNative => {
    const raw = bindNative(koffi, nr);
    return {
      ...raw,
      fallocate: (f, mode, offset, len) => {
        calls.push([mode, offset, len]);
        return mode === 1 && eintr(calls.length) ? [-1, EINTR] : raw.fallocate(f, mode, offset, len);
      },
    };
  };
  workerMain(createRequire(import.meta.url), task, bind);
  const done = new Float64Array(shared, 16, 3);
  return { state: st[0]!, errno: st[1]!, step: st[2]!, doneBytes: done[0]!, calls };
}

describe.skipIf(skip)(`EINTR from fallocate${skip ? ` (skipped: ${skip})` : ""}`, () => {
  it("is retried on the same chunk; the file is filled to the end", async () => {
    const f = await takeFile(16);
    try {
      // The 2nd and 3rd calls are interrupted: chunk 4-8 MiB is asked three times.
      const r = runWorker(f.fd, 16 * MiB, (n) => n === 2 || n === 3);
      expect(r.state).toBe(WORKER.DONE);
      expect(r.doneBytes).toBe(16 * MiB);
      expect(r.calls.map(([, off]) => off / MiB)).toEqual([0, 4, 4, 4, 8, 12]);
    } finally {
      await f.stop();
    }
  });

  it("1000 in a row: the worker fails at fallocate with EINTR, which launch names", async () => {
    const f = await takeFile(8);
    try {
      const r = runWorker(f.fd, 8 * MiB, (n) => n > 1);
      expect(r.state).toBe(WORKER.FAILED);
      expect(r.step).toBe(WORKER_STEP.FALLOCATE);
      expect(errnoName(r.errno)).toBe("EINTR");
      // One good chunk, then the first attempt and 1000 retries of the second.
      expect(r.calls).toHaveLength(1 + 1 + 1000);
      expect(r.doneBytes).toBe(4 * MiB);
      expect(errnoHint("fallocate", "EINTR")).toBe("interrupted by signals 1000 times in a row");
    } finally {
      await f.stop();
    }
  });
});
