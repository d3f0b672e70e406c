// inspectVm, the one classifier of a VM dir that status, stop and launch share: each condition
// from a real run dir (state files, locks, this test process and a dead pid as the processes).
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspectVm } from "../src/vm/inspect.js";
import { acquireVmLock } from "../src/vm/lock.js";
import { createVmDir, vmPaths } from "../src/vm/paths.js";
import { selfIdentity } from "../src/vm/process.js";
import { writeState } from "../src/vm/state.js";
import type { VmState } from "../src/vm/state.js";

const runDir = mkdtempSync(join(tmpdir(), "qcvm-inspect-"));
afterAll(() => rmSync(runDir, { recursive: true, force: true }));
const me = selfIdentity();
// A pid that exists nowhere (pid_max is at most 2^22).
const GONE = { pid: 4_194_304 + 7, startTime: "1" };

function stateOf(name: string, over: Partial<VmState>): VmState {
  const p = vmPaths(runDir, name);
  return {
    version: 1,
    name,
    pid: me.pid,
    pidStartTime: me.startTime,
    profile: "/x/p.yaml",
    plan: {
      name,
      confidential: "none",
      guestMemfd: false,
      nodes: [],
      launch: { cgroups: [], pinning: [] },
      capacity: [],
      warnings: [],
      errors: [],
    },
    argv: ["qemu-system-x86_64"],
    cgroup: { paths: [] },
    dir: p.dir,
    qmp: p.qmp,
    pidfile: p.pidfile,
    log: p.log,
    startedAt: new Date().toISOString(),
    accel: "kvm",
    phase: "running",
    detached: true,
    launcher: me,
    hostRoot: "/",
    lost: [],
    ...over,
  };
}

function withState(name: string, over: Partial<VmState>) {
  createVmDir(runDir, name);
  writeState(stateOf(name, over));
  return inspectVm(runDir, name);
}

describe("inspectVm", () => {
  it("absent: nothing of the name in the run dir", () => {
    expect(inspectVm(runDir, "nothing-here")).toBeUndefined();
  });

  it("running, starting, dead and interrupted from a state file", () => {
    expect(withState("up", {})).toMatchObject({ condition: "running" });
    expect(withState("booting", { phase: "starting" })).toMatchObject({ condition: "starting" });
    expect(withState("died", { pid: GONE.pid, pidStartTime: GONE.startTime })).toMatchObject({
      condition: "dead",
      reason: `pid ${GONE.pid} is gone`,
    });
    expect(withState("orphan", { phase: "starting", launcher: GONE })).toMatchObject({
      condition: "interrupted",
      reason: `the launching qcvm (pid ${GONE.pid}) died before the guest was started: QEMU is paused`,
    });
  });

  it("damaged: a state file that is not one", () => {
    createVmDir(runDir, "broken");
    writeFileSync(vmPaths(runDir, "broken").state, "{not json");
    expect(inspectVm(runDir, "broken")).toMatchObject({
      condition: "damaged",
      reason: expect.stringContaining("is damaged"),
    });
  });

  it("no state file: starting while its launcher holds the lock, interrupted once it is gone", () => {
    const lock = acquireVmLock(runDir, "early", []);
    expect(inspectVm(runDir, "early")).toMatchObject({
      condition: "starting",
      reason: `qcvm pid ${me.pid} is launching it`,
      left: { nameLock: true, dir: false },
    });
    // The launch itself holds the lock: then only the directory counts.
    expect(inspectVm(runDir, "early", { ownLock: true })).toBeUndefined();
    createVmDir(runDir, "early");
    expect(inspectVm(runDir, "early", { ownLock: true })).toMatchObject({ condition: "interrupted" });
    lock.release();
    expect(inspectVm(runDir, "early")).toMatchObject({
      condition: "interrupted",
      reason: `a launch died before writing ${vmPaths(runDir, "early").state}; left: its runtime directory`,
    });
  });
});
