import { describe, expect, it, afterAll } from "vitest";
import { mkdtempSync, statSync, rmSync, writeFileSync, copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { spawn, spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createVmDir, defaultRunDir, vmPaths } from "../src/vm/paths.js";
import { formatLost, listStates, readState, writeState } from "../src/vm/state.js";
import { isAlive, pidStartTime, readProcStat, selfIdentity } from "../src/vm/process.js";
import type { VmState } from "../src/vm/state.js";
import type { Plan } from "../src/core/types.js";

const tmp = mkdtempSync(join(tmpdir(), "qcvm-runtime-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const plan: Plan = {
  name: "vm",
  confidential: "none",
  guestMemfd: false,
  nodes: [],
  launch: { cgroups: [], pinning: [] },
  capacity: [],
  warnings: [],
  errors: [],
};

function stateFor(runDir: string, name: string, pid: number, pidStartTime: string): VmState {
  const p = vmPaths(runDir, name);
  return {
    version: 1,
    name,
    pid,
    pidStartTime,
    profile: "/x/p.yaml",
    plan: { ...plan, name },
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
    launcher: { pid: 1, startTime: "1" },
    hostRoot: "/",
    lost: [],
  };
}

describe("defaultRunDir", () => {
  it("prefers QCVM_RUN_DIR, then /run/qcvm for root, then XDG_RUNTIME_DIR", () => {
    expect(defaultRunDir({ QCVM_RUN_DIR: "/tmp/x", XDG_RUNTIME_DIR: "/run/user/1" })).toBe("/tmp/x");
    const expected = process.getuid?.() === 0 ? "/run/qcvm" : "/run/user/1/qcvm";
    expect(defaultRunDir({ XDG_RUNTIME_DIR: "/run/user/1" })).toBe(expected);
  });
});

describe("VM runtime directory", () => {
  it("is created mode 0700 whatever the umask, and replaces leftovers of a dead run", () => {
    const runDir = join(tmp, "dirs");
    const old = process.umask(0o000);
    try {
      const dir = createVmDir(runDir, "a");
      writeFileSync(join(dir, "qemu.log"), "old run");
      createVmDir(runDir, "a");
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(() => statSync(join(dir, "qemu.log"))).toThrow();
    } finally {
      process.umask(old);
    }
  });
});

describe("state.json", () => {
  it("round-trips, lists by name and skips damaged files", () => {
    const runDir = join(tmp, "states");
    const me = selfIdentity();
    for (const name of ["b", "a"]) {
      createVmDir(runDir, name);
      writeState(stateFor(runDir, name, me.pid, me.startTime));
    }
    mkdirSync(join(runDir, "broken"));
    writeFileSync(join(runDir, "broken", "state.json"), "{not json");
    expect(readState(runDir, "a")?.pid).toBe(process.pid);
    expect(readState(runDir, "missing")).toBeUndefined();
    expect(listStates(runDir).map((s) => s.name)).toEqual(["a", "b"]);
    expect(() => readState(runDir, "broken")).toThrow(/damaged.*qcvm stop broken/);
    expect(readFileSync(vmPaths(runDir, "a").state, "utf8")).toContain('"phase": "running"');
  });
});

describe("liveness", () => {
  it("a live pid with its start time is alive; the same pid with another start time is reuse", () => {
    const me = selfIdentity();
    expect(isAlive({ pid: me.pid, pidStartTime: me.startTime })).toBe(true);
    expect(isAlive({ pid: me.pid, pidStartTime: String(Number(me.startTime) - 1) })).toBe(false);
  });

  it("an exited process is dead", () => {
    const r = spawnSync("true");
    expect(r.pid).toBeGreaterThan(0);
    expect(pidStartTime(r.pid)).toBeUndefined();
    expect(isAlive({ pid: r.pid, pidStartTime: "1" })).toBe(false);
  });

  it("reads the start time of a process whose name contains ') ' (comm is not space-free)", async () => {
    const dir = join(tmp, "comm");
    mkdirSync(dir);
    const odd = join(dir, "x) S 1 2");
    copyFileSync("/bin/sleep", odd);
    spawnSync("chmod", ["+x", odd]);
    const child = spawn(odd, ["30"], { stdio: "ignore" });
    await new Promise((r) => child.once("spawn", r));
    try {
      const st = readProcStat(child.pid!);
      expect(st?.state).toMatch(/^[RS]$/);
      // Started after this test process, so its start time (clock ticks since boot) is not earlier.
      expect(Number(st?.startTime)).toBeGreaterThanOrEqual(Number(selfIdentity().startTime));
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("formatLost", () => {
  it("names the node, the mechanism, the cause and the consequence", () => {
    expect(
      formatLost({
        guestNode: 1,
        what: "private memory",
        mechanism: "vcpu-cpuset",
        reason: "EACCES writing /sys/fs/cgroup/cpuset/qcvm/x/cpuset.mems",
        consequence: "it will follow QEMU's process policy",
      }),
    ).toBe(
      "guest node 1 private memory: vcpu-cpuset not applied (EACCES writing /sys/fs/cgroup/cpuset/qcvm/x/cpuset.mems); it will follow QEMU's process policy",
    );
  });
});
