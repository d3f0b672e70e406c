// Issue 8 finding 6: a VM name is unique per host, not per run dir. The same name launched from two
// run dirs shared one cgroup, and stopping one moved the other's QEMU out of it while its status
// still said "running". The VM cgroup directory, made with one atomic mkdir, is the claim
// (src/vm/claim.ts); its holder's run dir is read from QEMU's HOME (its VM directory).
//   - on a host tree (no root needed): the claim, a second run dir refused naming the first, an
//     empty claim a moment old refused as a launch in progress;
//   - for real (root, cgroups): two launches of one name from two run dirs.
import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { claimVmCgroup } from "../src/vm/claim.js";
import { openCgroupLayout } from "../src/vm/cgroup.js";
import { probeHost } from "../src/probe/host.js";
import { makeHostTree } from "./helpers/fake-runner.js";
import { CGROUPS, KVM_2NODE, makeRunDir, qcvm, readStateFile, sweepRunDir, vmName } from "./helpers/launch.js";

describe("the VM cgroup claims the name on the host (a host tree)", () => {
  const tree = makeHostTree();
  const layout = openCgroupLayout(probeHost(tree.root));
  const runA = join(tmpdir(), "claim-run-a");
  const runB = join(tmpdir(), "claim-run-b");
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill("SIGKILL");
    tree.remove();
  });

  /** The VM cgroup as cgroupfs shows it: cgroup.procs listing `pids`. */
  function populate(name: string, pids: number[]): void {
    writeFileSync(join(tree.root, "sys/fs/cgroup/qcvm", name, "cgroup.procs"), pids.map((p) => `${p}\n`).join(""));
  }

  it("a second run dir's claim is refused naming the run dir whose QEMU holds it", async () => {
    const name = "web";
    expect(claimVmCgroup(layout, name, runA)).toBe(true);
    expect(existsSync(join(tree.root, "sys/fs/cgroup/qcvm", name))).toBe(true);
    // QEMU of run dir A, as qcvm starts it: HOME is its VM directory.
    const qemu = spawn("sleep", ["600"], { env: { HOME: join(runA, name) }, stdio: "ignore" });
    children.push(qemu);
    await new Promise((r) => qemu.once("spawn", r));
    populate(name, [qemu.pid!]);
    expect(() => claimVmCgroup(layout, name, runB)).toThrow(
      `VM name \`${name}\` is taken on this host: its cgroup ${join(tree.root, "sys/fs/cgroup/qcvm", name)} holds QEMU pid ${qemu.pid} of run dir ${runA} (stop it there: qcvm stop ${name} --run-dir ${runA})`,
    );
    // Its own run dir may take it again (a relaunch after a crash: the leftovers are its own).
    expect(claimVmCgroup(layout, name, runA)).toBe(true);
  });

  it("an empty claim made a moment ago is another launch in progress: refused, not removed", () => {
    const name = "db";
    expect(claimVmCgroup(layout, name, runA)).toBe(true);
    populate(name, []);
    expect(() => claimVmCgroup(layout, name, runB)).toThrow(
      `VM name \`${name}\` is taken on this host: its cgroup ${join(tree.root, "sys/fs/cgroup/qcvm", name)} was just created by another launch of that name`,
    );
    expect(existsSync(join(tree.root, "sys/fs/cgroup/qcvm", name))).toBe(true);
  });
});

const REAL = process.getuid?.() === 0 && CGROUPS.hierarchies.length > 0 && !CGROUPS.systemd;
describe.skipIf(!REAL)(
  "one name from two run dirs, for real (needs root and a cgroup hierarchy qcvm manages itself)",
  () => {
    const runA = makeRunDir("claim-a");
    const runB = mkdtempSync(join(tmpdir(), "qcvm-claim-b-"));
    afterAll(async () => {
      await sweepRunDir(runA);
      await sweepRunDir(runB);
    });

    it("the second launch is refused naming the first run dir; the first VM runs on, untouched", async () => {
      const name = vmName("claim");
      const launch = (dir: string) =>
        qcvm(["launch", KVM_2NODE, "--detach", "--quiet", "--set", `name=${name}`, "--run-dir", dir]);
      const first = await launch(runA);
      expect(first.code, first.stderr).toBe(0);
      const state = readStateFile(runA, name);
      const second = await launch(runB);
      expect(second.code).toBe(1);
      expect(second.stderr).toContain(
        `VM name \`${name}\` is taken on this host: its cgroup ${state.cgroup.paths[0]} holds QEMU pid ${state.pid} of run dir ${runA} (stop it there: qcvm stop ${name} --run-dir ${runA})`,
      );
      // Nothing of the refused launch is left in B, and A's VM still runs in its cgroup.
      expect(existsSync(join(runB, name))).toBe(false);
      const st = await qcvm(["status", name, "--run-dir", runA]);
      expect(st.code, st.stdout).toBe(0);
      expect(st.stdout).toMatch(new RegExp(`^VM ${name}: running`));
      for (const dir of state.cgroup.paths) expect(existsSync(dir), dir).toBe(true);
      expect((await qcvm(["stop", name, "--force", "--run-dir", runA])).code).toBe(0);
      for (const dir of state.cgroup.paths) expect(existsSync(dir), dir).toBe(false);
      rmSync(runB, { recursive: true, force: true });
    });
  },
);
