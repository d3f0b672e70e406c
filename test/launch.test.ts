// Real launches of profiles/kvm-2node.yaml with the real QEMU (KVM here; TCG where /dev/kvm is
// unusable, which qcvm falls back to and these tests then check), the real cgroup filesystem and
// /proc. placement.pinVcpus=true makes the plan put each guest node's vCPU thread in its own
// cgroup and pin it, so there is thread placement to check.
import { afterAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { formatList } from "../src/core/lists.js";
import { formatLost } from "../src/vm/state.js";
import { isAlive } from "../src/vm/process.js";
import {
  ACCEL,
  CGROUPS,
  KVM_2NODE,
  MEMORY_ACCOUNTING_LOST,
  NO_CPUSET,
  NO_MEMORY_CGROUP,
  events,
  makeRunDir,
  qcvm,
  qmpCommand,
  readIds,
  readStateFile,
  startQcvm,
  sweepRunDir,
  takeHostWarnings,
  threadPlacement,
  until,
  vmName,
} from "./helpers/launch.js";

const runDir = makeRunDir("launch");
afterAll(() => sweepRunDir(runDir));

interface CpuInfoFast {
  "cpu-index": number;
  "thread-id": number;
}

/** The file listing a cgroup's threads: v1 `tasks`, v2 `cgroup.threads`. */
function threadsFile(dir: string): string {
  return existsSync(join(dir, "tasks")) ? join(dir, "tasks") : join(dir, "cgroup.threads");
}

describe(`launch profiles/kvm-2node.yaml --detach (${ACCEL})`, () => {
  it("runs the guest with every vCPU thread in its node's cgroup and the backends bound, then stop leaves nothing", async () => {
    const name = vmName("kvm2");
    const r = await qcvm([
      "launch",
      KVM_2NODE,
      "--detach",
      "--format",
      "json",
      "--set",
      `name=${name}`,
      "--set",
      "placement.pinVcpus=true",
      "--run-dir",
      runDir,
    ]);
    expect(r.code, r.stderr + r.stdout).toBe(0);

    // One event per step, in order, and a final "running" event with a timestamp.
    const ev = events(r.stdout);
    expect(ev.filter((e) => e.event === "step").map((e) => e.name)).toEqual([
      "plan",
      "locks",
      "runtime-dir",
      "cgroup",
      "qemu",
      "qmp",
      "vcpus",
      "running",
    ]);
    const running = ev.at(-1)!;
    // Nothing is lost, except memory accounting where the host has no memory controller (which
    // costs qcvm stats, not placement).
    const lostLines = NO_MEMORY_CGROUP ? [MEMORY_ACCOUNTING_LOST] : [];
    expect(running).toMatchObject({ event: "running", name, accel: ACCEL, lost: lostLines });
    expect(typeof running.ms).toBe("number");
    expect(takeHostWarnings(ev.filter((e) => e.event === "warning").map((e) => String(e.message)))).toEqual([]);

    // qcvm has exited; QEMU runs on, and its vCPUs run.
    const state = readStateFile(runDir, name);
    expect(state).toMatchObject({ phase: "running", detached: true, accel: ACCEL });
    expect(state.lost.map(formatLost)).toEqual(lostLines);
    expect(state.lost.every((l) => l.accountingOnly)).toBe(true);
    expect(isAlive(state)).toBe(true);
    expect(await qmpCommand(state.qmp, "query-status")).toMatchObject({ status: "running", running: true });

    const cpus = await qmpCommand<CpuInfoFast[]>(state.qmp, "query-cpus-fast");
    expect(cpus.map((c) => c["cpu-index"]).sort()).toEqual([0, 1]);
    const vcpuTids = new Set(cpus.map((c) => c["thread-id"]));
    expect(vcpuTids.size).toBe(2);
    if (NO_CPUSET) {
      // No cpuset controller: the plan has no cgroups; each vCPU thread is pinned by affinity.
      expect(state.plan.launch.cgroups).toEqual([]);
      expect(state.plan.launch.pinning.map((p) => p.vcpu).sort()).toEqual([0, 1]);
      for (const c of cpus) {
        const pin = state.plan.launch.pinning.find((p) => p.vcpu === c["cpu-index"])!;
        const placement = threadPlacement(state.pid, c["thread-id"]);
        expect(placement.name).toBe(`CPU ${c["cpu-index"]}/${ACCEL.toUpperCase()}`);
        expect(placement.cpus).toBe(formatList(pin.hostCpus));
      }
    } else {
      // Each vCPU thread is in its node's cgroup, with that cgroup's CPUs and memory nodes.
      for (const c of cpus) {
        const cg = state.plan.launch.cgroups.find(
          (g) => g.tasks !== "process" && g.tasks.vcpus.includes(c["cpu-index"]),
        )!;
        expect(cg.name).toBe(`vcpu-node${c["cpu-index"]}`);
        const dir = state.cgroup.paths.find((p) => p.endsWith(`/${name}/${cg.name}`))!;
        expect(readIds(threadsFile(dir))).toContain(c["thread-id"]);
        const placement = threadPlacement(state.pid, c["thread-id"]);
        expect(placement.name).toBe(`CPU ${c["cpu-index"]}/${ACCEL.toUpperCase()}`);
        expect(placement.cpus).toBe(formatList(cg.cpus));
        expect(placement.mems).toBe(formatList(cg.mems));
      }
    }

    // The whole process is in the VM cgroup of every hierarchy that holds cpuset or memory (memory:
    // the accounting unit); with neither, there is no VM cgroup at all.
    const vmDirs = state.cgroup.paths.filter((p) => p.endsWith(`/${name}`));
    expect(vmDirs).toHaveLength(CGROUPS.hierarchies.length);
    for (const d of vmDirs) expect(readIds(join(d, "cgroup.procs"))).toContain(state.pid);
    if (!NO_CPUSET) {
      // QEMU's other threads (main loop, RCU, I/O) stay in the VM cgroup, out of the vCPU children.
      const vmCpuset = vmDirs.find((d) => existsSync(join(d, "vcpu-node0")))!;
      const mainThreads = readIds(threadsFile(vmCpuset));
      expect(mainThreads).toContain(state.pid);
      for (const tid of vcpuTids) expect(mainThreads).not.toContain(tid);
    }

    // Both memory backends carry the planned policy (QEMU mbind()s them: host-nodes=0,policy=bind).
    const maps = readFileSync(`/proc/${state.pid}/numa_maps`, "utf8")
      .split("\n")
      .filter((l) => l.includes("memfd:memory-backend-memfd"));
    expect(maps).toHaveLength(2);
    for (const m of maps) expect(m).toMatch(/ bind:0 /);

    // status agrees.
    const st = await qcvm(["status", name, "--format", "json", "--run-dir", runDir]);
    expect(st.code).toBe(0);
    const vm = JSON.parse(st.stdout);
    expect(vm).toMatchObject({ name, state: "running", pid: state.pid, accel: ACCEL, lost: lostLines });
    expect(vm.nodes.map((n: { guestNode: number; applied: boolean }) => [n.guestNode, n.applied])).toEqual([
      [0, true],
      [1, true],
    ]);

    // stop: QEMU gone, cgroups gone, runtime dir and locks gone.
    const s = await qcvm(["stop", name, "--force", "--run-dir", runDir]);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stderr).toMatch(new RegExp(`stopped \`${name}\` \\(quit\\)`));
    expect(isAlive(state)).toBe(false);
    for (const p of state.cgroup.paths) expect(existsSync(p), p).toBe(false);
    expect(existsSync(join(runDir, name))).toBe(false);
    expect(readdirSync(join(runDir, "locks")).filter((f) => f.includes(name))).toEqual([]);
  });

  it("reuses the QEMU capability probe: the second launch starts no probe QEMU", async () => {
    const name = vmName("caps");
    const caps = () => (existsSync(join(runDir, "caps")) ? readdirSync(join(runDir, "caps")) : []);
    const first = await qcvm([
      "launch",
      KVM_2NODE,
      "--detach",
      "--quiet",
      "--set",
      `name=${name}`,
      "--run-dir",
      runDir,
    ]);
    expect(first.code, first.stderr).toBe(0);
    const cached = caps();
    expect(cached).toHaveLength(1);
    const saved = JSON.parse(readFileSync(join(runDir, "caps", cached[0]!), "utf8"));
    // A real probe of this QEMU: it lists memory-backend-memfd and its properties.
    expect(saved.properties["memory-backend-memfd"]).toContain("host-nodes");
    const inode = statSync(join(runDir, "caps", cached[0]!)).ino;
    expect((await qcvm(["stop", name, "--force", "--run-dir", runDir])).code).toBe(0);
    const again = await qcvm([
      "launch",
      KVM_2NODE,
      "--detach",
      "--quiet",
      "--set",
      `name=${name}`,
      "--run-dir",
      runDir,
    ]);
    expect(again.code, again.stderr).toBe(0);
    // A new probe would have renamed a fresh file into place: same inode means no probe ran.
    expect(caps()).toEqual(cached);
    expect(statSync(join(runDir, "caps", cached[0]!)).ino).toBe(inode);
    expect((await qcvm(["stop", name, "--force", "--run-dir", runDir])).code).toBe(0);
  });
});

describe("launch in the foreground", () => {
  it("streams QEMU's output, powers down on SIGTERM, quits on a second one, mirrors QEMU's exit code and cleans up", async () => {
    const name = vmName("fg");
    // SeaBIOS writes its log to I/O port 0x402; a debugcon there on QEMU's stdout makes guest
    // output that must reach qcvm's own stdout.
    const extra = JSON.stringify(["-chardev", "stdio,id=dbg", "-device", "isa-debugcon,iobase=0x402,chardev=dbg"]);
    const fg = startQcvm([
      "launch",
      KVM_2NODE,
      "--set",
      `name=${name}`,
      "--set",
      `extraArgs=${extra}`,
      "--run-dir",
      runDir,
    ]);
    await until(() => fg.out.stderr.includes("[8/8] running"), "the guest to run");
    await until(() => fg.out.stdout.includes("SeaBIOS"), "SeaBIOS output through qcvm's stdout");
    const state = readStateFile(runDir, name);
    expect(state).toMatchObject({ detached: false, phase: "running", launcher: { pid: fg.child.pid } });

    fg.child.kill("SIGTERM");
    await until(() => fg.out.stderr.includes("asking the guest to power down"), "the powerdown note");
    // No OS answers the ACPI button here; the second signal quits QEMU at once.
    expect(isAlive(state)).toBe(true);
    fg.child.kill("SIGTERM");
    const code = await fg.exit;
    expect(code, fg.out.stderr).toBe(0); // QEMU's own exit status after `quit`
    expect(fg.out.stderr).toMatch(new RegExp(`\`${name}\` exited \\(exit code 0\\); cleaned up`));
    expect(isAlive(state)).toBe(false);
    expect(existsSync(join(runDir, name))).toBe(false);
    for (const p of state.cgroup.paths) expect(existsSync(p), p).toBe(false);
  });

  it("a SIGTERM the moment the guest runs is a power-down request, not an abandoned launch", async () => {
    const name = vmName("fgrace");
    const fg = startQcvm(["launch", KVM_2NODE, "--set", `name=${name}`, "--run-dir", runDir]);
    // Sent from the handler that first sees "[8/8] running" (startQcvm's own listener, registered
    // first, has appended it): qcvm has just marked the guest running and is still returning from
    // the launch steps, where a signal used to be able to SIGKILL QEMU as if start-up had failed.
    let sent = false;
    fg.child.stderr!.on("data", () => {
      if (!sent && fg.out.stderr.includes("[8/8] running")) {
        sent = true;
        fg.child.kill("SIGTERM");
      }
    });
    await until(() => fg.out.stderr.includes("asking the guest to power down"), "the powerdown note");
    const state = readStateFile(runDir, name);
    expect(state.phase).toBe("running");
    expect(isAlive(state)).toBe(true);
    expect(fg.out.stderr).not.toContain("interrupted");
    fg.child.kill("SIGTERM");
    expect(await fg.exit, fg.out.stderr).toBe(0);
    expect(fg.out.stderr).toMatch(new RegExp(`\`${name}\` exited \\(exit code 0\\); cleaned up`));
    expect(existsSync(join(runDir, name))).toBe(false);
  });

  it("`qcvm stop` from elsewhere stops a foreground VM: QMP is free for it, and the launcher exits with QEMU's code", async () => {
    const name = vmName("fgstop");
    const fg = startQcvm(["launch", KVM_2NODE, "--format", "json", "--set", `name=${name}`, "--run-dir", runDir]);
    await until(() => fg.out.stdout.includes('"event":"running"'), "the guest to run");
    const running = events(fg.out.stdout).find((e) => e.event === "running")!;
    expect(running.timings).toEqual({ spawned: expect.any(Number), qmpReady: expect.any(Number) });
    const state = readStateFile(runDir, name);
    const s = await qcvm(["stop", name, "--force", "--run-dir", runDir]);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stderr).toContain(`stopped \`${name}\` (quit)`);
    expect(await fg.exit).toBe(0);
    expect(events(fg.out.stdout).at(-1)).toMatchObject({ event: "exited", exitCode: 0 });
    expect(isAlive(state)).toBe(false);
    expect(existsSync(join(runDir, name))).toBe(false);
  });
});
