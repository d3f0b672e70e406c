// Failures, each produced for real: a missing QEMU binary, QEMU refusing its command line,
// cgroups that deny access (qcvm run as an unprivileged user, which gets EACCES from the cgroup
// filesystem exactly as a process in a container without delegation does), memory policy denied
// by a seccomp filter (Docker's default profile answers EPERM to mbind/set_mempolicy), QEMU
// killed from outside, and qcvm itself killed with SIGKILL.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, chownSync, existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { vmLockPath } from "../src/vm/lock.js";
import { formatLost } from "../src/vm/state.js";
import { isAlive } from "../src/vm/process.js";
import {
  CGROUPS,
  KVM,
  KVM_2NODE,
  KVM_FALLBACK,
  KVM_USABLE,
  NO_CPUSET,
  REPO,
  events,
  makeRunDir,
  qcvm,
  qmpCommand,
  readStateFile,
  startQcvm,
  sweepRunDir,
  takeHostWarnings,
  until,
  vmName,
  warningLines,
} from "./helpers/launch.js";

const runDir = makeRunDir("failures");
afterAll(() => sweepRunDir(runDir));

/** Nothing of VM `name` is left: no run dir, no lock, no cgroup, no QEMU with its name. */
function expectNothingLeft(name: string): void {
  expect(existsSync(join(runDir, name)), "run dir").toBe(false);
  expect(existsSync(vmLockPath(runDir, name)), "name lock").toBe(false);
  for (const cg of [
    `/sys/fs/cgroup/cpuset/qcvm/${name}`,
    `/sys/fs/cgroup/memory/qcvm/${name}`,
    `/sys/fs/cgroup/qcvm/${name}`,
  ]) {
    expect(existsSync(cg), cg).toBe(false);
  }
  const qemus = readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(`guest=${name},`);
      } catch {
        return false;
      }
    });
  expect(qemus, "QEMU processes of this VM").toEqual([]);
}

describe("QEMU cannot start", () => {
  it("binary missing: one clear message, exit 1, nothing left behind", async () => {
    const name = vmName("nobin");
    const r = await qcvm([
      "launch",
      KVM_2NODE,
      "--detach",
      "--set",
      `name=${name}`,
      "--set",
      "qemu.binary=/nonexistent/qemu",
      "--run-dir",
      runDir,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      "qcvm: QEMU binary `/nonexistent/qemu` not found (qemu.binary in profiles/kvm-2node.yaml): " +
        "install it (Debian: apt-get install qemu-system-x86) or set qemu.binary to its path\n",
    );
    expectNothingLeft(name);
  });

  it("QEMU rejects its command line (detached): its own message is shown, and everything is cleaned up", async () => {
    const name = vmName("badarg");
    const r = await qcvm([
      "launch",
      KVM_2NODE,
      "--detach",
      "--set",
      `name=${name}`,
      "--set",
      'extraArgs=["-no-such-option"]',
      "--run-dir",
      runDir,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /qcvm: QEMU exited during start-up \(exit code 1\); cleaned up\. QEMU said:\n.*-no-such-option: invalid option/,
    );
    expect(r.stderr).not.toContain("internal error");
    expectNothingLeft(name);
  });

  it("QEMU rejects its command line (foreground): its stderr streams through, then the same clean-up", async () => {
    const name = vmName("badfg");
    const r = await qcvm([
      "launch",
      KVM_2NODE,
      "--set",
      `name=${name}`,
      "--set",
      'extraArgs=["-no-such-option"]',
      "--run-dir",
      runDir,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/-no-such-option: invalid option/);
    expect(r.stderr).toContain("QEMU exited during start-up (exit code 1); cleaned up; QEMU's messages are above");
    expectNothingLeft(name);
  });
});

describe("KVM that looks usable but refuses QEMU (KVM_CREATE_VM denied by seccomp, as on a host without nested virtualization)", () => {
  let denyKvm: string;
  beforeAll(() => {
    denyKvm = join(runDir, "deny-kvm");
    execFileSync("cc", ["-O2", "-o", denyKvm, join(REPO, "test/helpers/deny-kvm.c")]);
  });

  it("detached: QEMU's own words are shown, the launch is retried once under TCG, and the guest runs", async () => {
    const name = vmName("kvmdenied");
    const r = await qcvm(["launch", KVM_2NODE, "--detach", "--set", `name=${name}`, "--run-dir", runDir], {
      prefix: [denyKvm],
    });
    expect(r.code, r.stderr).toBe(0);
    const fallbacks = warningLines(r.stderr).filter((l) => KVM_FALLBACK.test(l));
    expect(fallbacks, r.stderr).toHaveLength(1);
    if (KVM_USABLE) {
      // /dev/kvm is KVM's and opens, so QEMU got -accel kvm and failed; qcvm read why in qemu.log.
      expect(KVM_FALLBACK.exec(fallbacks[0]!)![1]).toBe(
        'QEMU could not use KVM ("qemu-system-x86_64: failed to initialize kvm: Operation not permitted")',
      );
      expect(r.stderr).toContain("qcvm: note: retrying the launch once with tcg");
      expect(r.stderr.match(/\[5\/8\] QEMU started \(pid \d+, (\w+)/g)!.map((l) => l.split(", ")[1])).toEqual([
        "kvm",
        "tcg",
      ]);
    } else {
      // No usable KVM here at all: the fallback happened before QEMU was started, and once.
      expect(KVM_FALLBACK.exec(fallbacks[0]!)![1]).toBe(KVM.problem);
      expect(r.stderr).not.toContain("retrying");
    }
    const state = readStateFile(runDir, name);
    expect(state.accel).toBe("tcg");
    expect(state.argv).toContain("q35,accel=tcg");
    expect(await qmpCommand(state.qmp, "query-status")).toMatchObject({ running: true });
    expect((await qcvm(["stop", name, "--force", "--run-dir", runDir])).code).toBe(0);
    expectNothingLeft(name);
  });
});

describe("placement the host does not allow", () => {
  // As root, run qcvm as nobody; as any other user qcvm already is unprivileged.
  const asUnprivileged =
    process.getuid?.() === 0 ? ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] : [];
  let userRunDir: string;
  beforeAll(() => {
    userRunDir = makeRunDir("failures-user");
    if (process.getuid?.() === 0) chownSync(userRunDir, 65534, 65534);
  });
  afterAll(() => sweepRunDir(userRunDir));

  it("EACCES on cgroups: the launch goes on and says exactly which placement was lost", async () => {
    const name = vmName("eacces");
    const r = await qcvm(
      [
        "launch",
        KVM_2NODE,
        "--detach",
        "--set",
        `name=${name}`,
        "--set",
        "placement.pinVcpus=true",
        "--run-dir",
        userRunDir,
      ],
      {
        prefix: asUnprivileged,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    if (NO_CPUSET) {
      // No cpuset controller (a cgroup-v2 host that did not delegate it): the planner pinned the
      // vCPUs by affinity and put no placement in a cgroup, so no EACCES can cost placement; what
      // is lost is the VM's memory accounting, named as such, and pinning still happens.
      const state = readStateFile(userRunDir, name);
      expect(state.plan.launch.cgroups).toEqual([]);
      expect(state.lost).toHaveLength(1);
      expect(state.lost[0]).toMatchObject({ accountingOnly: true });
      expect(r.stderr).toContain(`qcvm: warning: ${formatLost(state.lost[0]!)}`);
      expect(formatLost(state.lost[0]!)).toMatch(
        CGROUPS.hierarchies.length === 0
          ? /^memory accounting: memory cgroup not applied \(memory controller not available\)/
          : /^QEMU process: VM cgroup not applied \(EACCES /,
      );
      expect(r.stderr).toContain("[7/8] vCPU threads: vCPU 0 pinned to CPUs");
      expect(await qmpCommand(state.qmp, "query-status")).toMatchObject({ running: true });
      const table = await qcvm(["status", "--run-dir", userRunDir]);
      expect(table.stdout).toMatch(new RegExp(`${name} +running .* 0:exact,1:exact `));
      const stop = await qcvm(["stop", name, "--force", "--run-dir", userRunDir], { prefix: asUnprivileged });
      expect(stop.code, stop.stderr).toBe(0);
      expect(isAlive(state)).toBe(false);
      return;
    }
    const vmCg = `/sys/fs/cgroup/(cpuset/)?qcvm/${name}`;
    expect(r.stderr).toMatch(
      new RegExp(`qcvm: warning: QEMU process: VM cgroup not applied \\(EACCES creating ${vmCg}\\)`),
    );
    for (const node of [0, 1]) {
      expect(r.stderr).toMatch(
        new RegExp(
          `qcvm: warning: guest node ${node} vCPU placement: vcpu-cpuset not applied \\(EACCES creating ${vmCg}\\); its vCPU threads run wherever QEMU's process may`,
        ),
      );
    }
    // The same losses are kept in the state and shown by status; pinning still happened.
    const state = readStateFile(userRunDir, name);
    expect(state.lost.map((l) => [l.guestNode, l.mechanism])).toEqual([
      [undefined, "VM cgroup"],
      [0, "vcpu-cpuset"],
      [1, "vcpu-cpuset"],
    ]);
    expect(await qmpCommand(state.qmp, "query-status")).toMatchObject({ running: true });
    const st = await qcvm(["status", name, "--run-dir", userRunDir]);
    expect(st.stdout).toMatch(/ 0 +0 +bind .* exact, lost at launch/);
    expect(st.stdout).toContain("lost: guest node 1 vCPU placement: vcpu-cpuset not applied (EACCES");
    const table = await qcvm(["status", "--run-dir", userRunDir]);
    expect(table.stdout).toMatch(new RegExp(`${name} +running .* 0:lost,1:lost `));
    // Stopped by its owner: a root qcvm refuses a run dir another user owns (issue 8 finding 1).
    const stop = await qcvm(["stop", name, "--force", "--run-dir", userRunDir], { prefix: asUnprivileged });
    expect(stop.code, stop.stderr).toBe(0);
    expect(isAlive(state)).toBe(false);
  });

  it("a run dir the user cannot write: one clear message naming it, exit 1", async () => {
    const name = vmName("rodir");
    const readOnly = makeRunDir("failures-ro");
    chmodSync(readOnly, 0o555);
    try {
      const r = await qcvm(["launch", KVM_2NODE, "--detach", "--set", `name=${name}`, "--run-dir", readOnly], {
        prefix: asUnprivileged,
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`qcvm: cannot mkdir ${readOnly}/locks: EACCES; launch undone (check --run-dir)`);
      expect(r.stderr).not.toContain("internal error");
    } finally {
      chmodSync(readOnly, 0o755);
      await sweepRunDir(readOnly);
    }
  });

  it(`EACCES on cgroups with placement.strict: ${NO_CPUSET ? "no cpuset controller, so no placement to refuse: it launches, naming the lost accounting" : "the launch is refused and cleaned up"}`, async () => {
    const name = vmName("strict");
    const r = await qcvm(
      [
        "launch",
        KVM_2NODE,
        "--detach",
        "--set",
        `name=${name}`,
        "--set",
        "placement.pinVcpus=true",
        "--set",
        "placement.strict=true",
        "--run-dir",
        userRunDir,
      ],
      { prefix: asUnprivileged },
    );
    if (NO_CPUSET) {
      // No placement of this plan lives in a cgroup here (see above): strict has nothing to
      // refuse, and launches with the lost accounting named. Accounting is not placement.
      expect(r.code, r.stderr).toBe(0);
      const state = readStateFile(userRunDir, name);
      expect(state.lost.map((l) => l.accountingOnly)).toEqual([true]);
      expect(r.stderr).toContain(`qcvm: warning: ${formatLost(state.lost[0]!)}`);
      expect(r.stderr).not.toContain("placement.strict");
      // Stopped by its owner: a root qcvm refuses a run dir another user owns (issue 8 finding 1).
      const stop = await qcvm(["stop", name, "--force", "--run-dir", userRunDir], { prefix: asUnprivileged });
      expect(stop.code, stop.stderr).toBe(0);
      expect(isAlive(state)).toBe(false);
    } else {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /qcvm: placement\.strict: 3 placements could not be applied; launch aborted and cleaned up:\n {2}QEMU process: VM cgroup not applied \(EACCES/,
      );
      expect(existsSync(join(userRunDir, name))).toBe(false);
      expect(existsSync(vmLockPath(userRunDir, name))).toBe(false);
    }
  });

  describe("memory policy denied by seccomp (EPERM, as in a container)", () => {
    let deny: string;
    beforeAll(() => {
      deny = join(runDir, "deny-mempolicy");
      execFileSync("cc", ["-O2", "-o", deny, join(REPO, "test/helpers/deny-mempolicy.c")]);
    });

    it("non-strict: QEMU starts without its backend policies, and the launch names both lost placements", async () => {
      const name = vmName("eperm");
      const r = await qcvm(
        ["launch", KVM_2NODE, "--detach", "--format", "json", "--set", `name=${name}`, "--run-dir", runDir],
        { prefix: [deny] },
      );
      expect(r.code, r.stderr).toBe(0);
      const warnings = events(r.stdout)
        .filter((e) => e.event === "warning")
        .map((e) => e.message);
      for (const node of [0, 1]) {
        expect(warnings).toContain(
          `guest node ${node} shared memory: backend-policy not applied (EPERM from set_mempolicy/mbind, as under a container's seccomp profile); it goes wherever it is first touched`,
        );
      }
      const state = readStateFile(runDir, name);
      expect(state.argv.join(" ")).not.toContain("host-nodes");
      // Really unbound: the backends have the default policy in QEMU's numa_maps.
      const maps = readFileSync(`/proc/${state.pid}/numa_maps`, "utf8")
        .split("\n")
        .filter((l) => l.includes("memfd:memory-backend-memfd"));
      expect(maps).toHaveLength(2);
      for (const m of maps) expect(m).toMatch(/ default /);
      expect((await qcvm(["stop", name, "--force", "--run-dir", runDir])).code).toBe(0);
    });

    it("strict: refused before anything starts", async () => {
      const name = vmName("epermstrict");
      const r = await qcvm(
        [
          "launch",
          KVM_2NODE,
          "--detach",
          "--set",
          `name=${name}`,
          "--set",
          "placement.strict=true",
          "--run-dir",
          runDir,
        ],
        {
          prefix: [deny],
        },
      );
      expect(r.code).toBe(1);
      // The refusal is all qcvm says, after the warnings this host gives any launch (KVM missing).
      expect(takeHostWarnings(warningLines(r.stderr), { beforeCgroups: true })).toEqual([]);
      const said = r.stderr
        .split("\n")
        .filter((l) => !warningLines(l).length)
        .join("\n");
      expect(said).toMatch(
        /^qcvm: placement\.strict: 2 placements could not be applied; nothing was started:\n {2}guest node 0 shared memory/,
      );
      expectNothingLeft(name);
    });
  });
});

describe("QEMU or qcvm killed", () => {
  it("SIGINT while QEMU starts: the launch is abandoned, QEMU killed, everything undone, exit 130", async () => {
    const name = vmName("sigint");
    // A server chardev with wait=on makes QEMU block in start-up until a client connects, which
    // nobody does: qcvm is reliably caught between spawning QEMU and QMP answering.
    // In /tmp: QEMU runs as the unprivileged QEMU user, which may not create it in the run dir.
    const hold = join(tmpdir(), `${name}.hold.sock`);
    const extra = JSON.stringify(["-chardev", `socket,id=hold,path=${hold},server=on,wait=on`]);
    const fg = startQcvm([
      "launch",
      KVM_2NODE,
      "--detach",
      "--set",
      `name=${name}`,
      "--set",
      `extraArgs=${extra}`,
      // A socket chardev is a control interface: a profile must opt in to it by name.
      "--set",
      "qemu.allowControlArgs=true",
      "--run-dir",
      runDir,
    ]);
    await until(() => fg.out.stderr.includes("[5/8] QEMU started") && existsSync(hold), "QEMU to block in start-up");
    fg.child.kill("SIGINT");
    expect(await fg.exit).toBe(130);
    expect(fg.out.stderr).toContain("qcvm: launch interrupted by SIGINT; QEMU stopped and everything cleaned up");
    expectNothingLeft(name);
    rmSync(hold, { force: true });
  });

  it("QEMU killed from outside: status says dead (exit 3), stop cleans up", async () => {
    const name = vmName("killed");
    expect(
      (await qcvm(["launch", KVM_2NODE, "--detach", "--quiet", "--set", `name=${name}`, "--run-dir", runDir])).code,
    ).toBe(0);
    const state = readStateFile(runDir, name);
    process.kill(state.pid, "SIGKILL");
    await until(() => !isAlive(state), "QEMU to die");
    const st = await qcvm(["status", name, "--run-dir", runDir]);
    expect(st.code).toBe(3);
    expect(st.stdout).toMatch(new RegExp(`^VM ${name}: dead \\(pid ${state.pid} is gone\\)`));
    expect(st.stdout).toContain(`clean up with: qcvm stop ${name}`);
    expect(JSON.parse((await qcvm(["status", name, "--format", "json", "--run-dir", runDir])).stdout)).toMatchObject({
      state: "dead",
    });
    const sp = await qcvm(["stop", name, "--run-dir", runDir]);
    expect(sp.code, sp.stderr).toBe(0);
    expect(sp.stderr).toMatch(new RegExp(`\`${name}\` was not running; removed .*${name}`));
    expectNothingLeft(name);
  });

  it("QEMU killed under a foreground qcvm: qcvm exits with 128+9 and cleans up", async () => {
    const name = vmName("fgkill");
    const fg = startQcvm(["launch", KVM_2NODE, "--format", "json", "--set", `name=${name}`, "--run-dir", runDir]);
    await until(() => fg.out.stdout.includes('"event":"running"'), "the guest to run");
    const state = readStateFile(runDir, name);
    process.kill(state.pid, "SIGKILL");
    expect(await fg.exit).toBe(137);
    expect(events(fg.out.stdout).at(-1)).toMatchObject({ event: "exited", exitCode: 137 });
    expectNothingLeft(name);
  });

  it("qcvm SIGKILLed in the foreground: QEMU keeps running, and status and stop still work", async () => {
    const name = vmName("orphan");
    const fg = startQcvm(["launch", KVM_2NODE, "--format", "json", "--set", `name=${name}`, "--run-dir", runDir]);
    await until(() => fg.out.stdout.includes('"event":"running"'), "the guest to run");
    const state = readStateFile(runDir, name);
    fg.child.kill("SIGKILL");
    await fg.exit;
    // QEMU is in its own session: it survives its parent.
    expect(isAlive(state)).toBe(true);
    expect(await qmpCommand(state.qmp, "query-status")).toMatchObject({ status: "running" });
    const st = await qcvm(["status", name, "--format", "json", "--run-dir", runDir]);
    expect(JSON.parse(st.stdout)).toMatchObject({ state: "running", pid: state.pid, detached: false });
    const sp = await qcvm(["stop", name, "--force", "--run-dir", runDir]);
    expect(sp.code, sp.stderr).toBe(0);
    expect(isAlive(state)).toBe(false);
    expectNothingLeft(name);
  });
});
