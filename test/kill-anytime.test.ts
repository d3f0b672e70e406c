// Issue 8 finding 5 and deliverable 4: SIGKILL qcvm at any instant of a launch, and what is left
// is either nothing or a VM that `status` lists and `stop` removes. Each try starts the real
// `qcvm launch --detach` (real QEMU, cgroups, locks), kills it after a random delay spread over a
// whole launch, then checks: every QEMU of that VM is one status lists; after `qcvm stop`, no QEMU,
// no cgroup, no lock (temp files included), no VM directory; the user's disk image and profile are
// byte for byte what they were. QCVM_KILL_TRIES sets the number of tries (default 40, which runs
// in well under a minute here; the 200 were run with QCVM_KILL_TRIES=200, see the report
// in the commit), QCVM_KILL_SEED makes the delays reproducible.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { inspectVm } from "../src/vm/inspect.js";
import {
  KVM_2NODE,
  QCVM,
  events,
  makeRunDir,
  qcvm,
  sweepRunDir,
  vmName,
  AS_ROOT,
  QEMU_USER_READY,
} from "./helpers/launch.js";

const TRIES = Number(process.env.QCVM_KILL_TRIES ?? 40);
/** A try is about 1.2 s on a quiet machine and 3-4 s with CI's other lane busy beside it: the
 *  timeout grows with the tries (200 once ran past a fixed 600 s under load). */
const TIMEOUT_MS = Math.max(600_000, TRIES * 8_000);
const ROOT = AS_ROOT;
// As root, launch drops QEMU to qcvm-qemu; without that user every launch is refused early.
const READY = !ROOT || QEMU_USER_READY;

const runDir = makeRunDir("kill");
const disk = join(runDir, "..", `${runDir.split("/").pop()}-disk.img`);
afterAll(async () => {
  await sweepRunDir(runDir);
  rmSync(disk, { force: true });
});

/** A small PRNG (mulberry32), so QCVM_KILL_SEED replays a run's delays. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sha(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

/** Pids of QEMUs of VM `name` (their -name guest=NAME). */
function qemusOf(name: string): number[] {
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(`\0guest=${name},`);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** What of VM `name` is on the host besides its kept log. */
function leftovers(name: string): string[] {
  const out: string[] = [];
  if (existsSync(join(runDir, name))) out.push(`VM directory ${join(runDir, name)}`);
  const locks = join(runDir, "locks");
  if (existsSync(locks)) {
    for (const f of readdirSync(locks)) {
      if (f.startsWith(`vm-${name}.lock`)) out.push(`lock ${f}`);
      if (!f.startsWith("disk-")) continue;
      for (const g of readdirSync(join(locks, f))) out.push(`disk lock ${f}/${g}`);
    }
  }
  for (const cg of ["cpuset/qcvm", "memory/qcvm", "qcvm"]) {
    const dir = `/sys/fs/cgroup/${cg}/${name}`;
    if (existsSync(dir)) out.push(`cgroup ${dir}`);
  }
  for (const pid of qemusOf(name)) out.push(`QEMU pid ${pid}`);
  return out;
}

function launchArgs(name: string): string[] {
  return [
    "launch",
    KVM_2NODE,
    "--detach",
    "--format",
    "json",
    "--set",
    `name=${name}`,
    "--set",
    `disks[0]={path: ${disk}, format: raw}`,
    "--run-dir",
    runDir,
  ];
}

/** Start a launch and SIGKILL it after `delayMs` (unless it finished first). */
function launchAndKill(name: string, delayMs: number): Promise<{ killed: boolean }> {
  const child = spawn(process.execPath, [QCVM, ...launchArgs(name)], { stdio: "ignore" });
  return new Promise((resolve) => {
    let killed = false;
    const timer = setTimeout(() => {
      killed = child.kill("SIGKILL");
    }, delayMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve({ killed });
    });
  });
}

/** A launch, with the wall-clock ms (from the spawn) at which its plan step and its "running"
 *  event reached us. */
function timeSteps(name: string): Promise<{ planMs: number; runningMs: number }> {
  const t0 = Date.now();
  const child = spawn(process.execPath, [QCVM, ...launchArgs(name)], { stdio: ["ignore", "pipe", "inherit"] });
  let buf = "";
  let planMs = 0;
  let runningMs = 0;
  child.stdout.on("data", (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf("\n"); nl !== -1; nl = buf.indexOf("\n")) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.startsWith("{")) continue;
      const e = JSON.parse(line) as { event: string; name?: string };
      if (e.event === "step" && e.name === "plan" && !planMs) planMs = Date.now() - t0;
      if (e.event === "running") runningMs = Date.now() - t0;
    }
  });
  return new Promise((resolve, reject) =>
    child.once("exit", (code) =>
      code === 0 && planMs && runningMs ? resolve({ planMs, runningMs }) : reject(new Error(`launch exited ${code}`)),
    ),
  );
}

let launchMs = 0;
/** When a launch starts making things (after node start-up and planning): kills before that only
 *  ever find nothing, so most delays are spread after it. */
let startMs = 0;
let profileHash = "";
let diskHash = "";

describe.skipIf(!READY)(
  `SIGKILL of qcvm at any instant of a launch (${TRIES} tries; as root needs the qcvm-qemu user)`,
  () => {
    beforeAll(async () => {
      writeFileSync(disk, Buffer.alloc(1 << 20, 0x5a));
      profileHash = sha(KVM_2NODE);
      diskHash = sha(disk);
      // One whole launch sets the range the kill delays are spread over (the first also probes
      // QEMU and caches its capabilities, which the tries then reuse).
      const name = vmName("calib");
      const t0 = Date.now();
      const r = await qcvm(launchArgs(name));
      launchMs = Date.now() - t0;
      expect(r.code, r.stderr).toBe(0);
      expect(events(r.stdout).some((e) => e.event === "running")).toBe(true);
      expect((await qcvm(["stop", name, "--force", "--run-dir", runDir])).code).toBe(0);
      // The second launch (capabilities cached) times the window, by when its step events reach
      // us: kills land from the end of planning (then the first file is made, the name lock) to a
      // little past "running", with one try in eight from 0 (node's start-up, where nothing exists).
      const timed = await timeSteps(name);
      startMs = timed.planMs;
      launchMs = timed.runningMs;
      expect((await qcvm(["stop", name, "--force", "--run-dir", runDir])).code).toBe(0);
    }, 120_000);

    it(
      "leaves nothing, or a VM status lists and stop removes, with the user's files untouched",
      async () => {
        const seed = Number(process.env.QCVM_KILL_SEED ?? Date.now() % 1_000_000);
        const random = prng(seed);
        const outcomes = { listedThenStopped: 0, nothing: 0, finished: 0 };
        for (let i = 0; i < TRIES; i++) {
          const name = vmName("kill");
          // Spread over the launch itself: from qcvm's own start-up to a little past the end.
          // One try in eight anywhere from 0; the rest over the part of the launch that makes things.
          const from = i % 8 === 0 ? 0 : startMs * 0.9;
          const delay = Math.floor(from + random() * (launchMs * 1.1 - from));
          const where = `try ${i} (seed ${seed}, kill after ${delay} of ~${launchMs} ms)`;
          const { killed } = await launchAndKill(name, delay);
          if (!killed) outcomes.finished++;
          // Whatever QEMU of it runs now is one status lists (never an invisible orphan).
          const found = inspectVm(runDir, name);
          const qemus = qemusOf(name);
          if (qemus.length > 0) expect(found, `${where}: QEMU ${qemus.join(",")} runs, unlisted`).toBeDefined();
          if (found) {
            const stop = await qcvm(["stop", name, "--force", "--run-dir", runDir]);
            expect(stop.code, `${where}: stop: ${stop.stderr}`).toBe(0);
            outcomes.listedThenStopped++;
          } else outcomes.nothing++;
          expect(leftovers(name), where).toEqual([]);
          expect(inspectVm(runDir, name), where).toBeUndefined();
        }
        expect(sha(KVM_2NODE)).toBe(profileHash);
        expect(sha(disk)).toBe(diskHash);
        // The delays did reach both ends: some launches killed before anything, some after QEMU ran.
        console.log(
          `kill-anytime: ${TRIES} tries, seed ${seed}, launch ~${launchMs} ms (makes things from ~${Math.round(startMs)} ms): ${JSON.stringify(outcomes)}`,
        );
        expect(outcomes.listedThenStopped).toBeGreaterThan(0);
      },
      TIMEOUT_MS,
    );
  },
);
