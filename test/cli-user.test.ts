// qcvm as a user meets it: names and paths typed on the command line, bad input of every kind,
// exit codes, and nothing the user owns touched. Each case runs the built bin/qcvm.js.
import { afterAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { vmLockPath } from "../src/lock.js";
import { KVM_2NODE, makeRunDir, qcvm, sweepRunDir, vmName } from "./helpers/launch.js";

const runDir = makeRunDir("cli-user");
afterAll(() => sweepRunDir(runDir));

describe("VM names typed on the command line", () => {
  // stop removes a VM's directory recursively: a name that is a path must never reach it.
  it.each([["stop"], ["status"], ["stats"]])("%s refuses a name that is a path, and removes nothing", async (command) => {
    const base = join(runDir, `victim-${command}`);
    const run = join(base, "run");
    mkdirSync(join(base, "precious"), { recursive: true });
    writeFileSync(join(base, "precious", "data"), "keep me");
    for (const name of ["../precious", "..", "/"]) {
      const r = await qcvm([command, name, "--run-dir", run]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain("is not a VM name: names are lowercase letters, digits and '-'");
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(readFileSync(join(base, "precious", "data"), "utf8")).toBe("keep me");
    expect(existsSync(base)).toBe(true);
  });

  it("stop refuses `locks` and `caps`: they hold every VM's locks and the capability cache", async () => {
    const run = join(runDir, "reserved");
    mkdirSync(join(run, "locks"), { recursive: true });
    writeFileSync(join(run, "locks", "vm-other.lock"), "{}");
    for (const name of ["locks", "caps"]) {
      const r = await qcvm(["stop", name, "--run-dir", run]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`qcvm: \`${name}\` cannot be a VM name: the run dir keeps qcvm's ${name} under that name`);
    }
    expect(existsSync(join(run, "locks", "vm-other.lock"))).toBe(true);
  });

  // --dry-run: without the check this would print a plan that empties <run dir>/locks.
  it("launch refuses a profile named `locks` before touching the run dir", async () => {
    const run = join(runDir, "reserved-launch");
    mkdirSync(join(run, "locks"), { recursive: true });
    writeFileSync(join(run, "locks", "vm-other.lock"), "{}");
    const r = await qcvm(["launch", KVM_2NODE, "--set", "name=locks", "--dry-run", "--run-dir", run]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain("`locks` cannot be a VM name");
    expect(r.stderr).toContain("rename the VM: `name:` in the profile, or --set name=...");
    expect(existsSync(join(run, "locks", "vm-other.lock"))).toBe(true);
  });
});

describe("status shows what a launch killed early left behind", () => {
  // What a launch killed between taking its lock and writing state.json leaves: the name lock
  // (its holder, the launching qcvm, is gone) and the runtime directory.
  function leaveInterruptedLaunch(run: string, name: string): void {
    const dead = spawnSync("true").pid!;
    mkdirSync(join(run, "locks"), { recursive: true });
    mkdirSync(join(run, name), { mode: 0o700 });
    writeFileSync(
      vmLockPath(run, name),
      JSON.stringify({ vm: name, pid: dead, startTime: "1", role: "qcvm", since: "2026-01-01T00:00:00.000Z", nonce: "killed" }),
    );
  }

  it("lists it as interrupted, exits 3 for its name, and stop cleans it up", async () => {
    const run = join(runDir, "interrupted");
    const name = vmName("early");
    leaveInterruptedLaunch(run, name);
    const list = await qcvm(["status", "--run-dir", run]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${name}\\s+interrupted\\s+-\\s`, "m"));
    const one = await qcvm(["status", name, "--run-dir", run]);
    expect(one.code, one.stderr).toBe(3);
    expect(one.stdout).toContain(`VM ${name}: interrupted (a launch`);
    expect(one.stdout).toContain("left: its name lock, its runtime directory");
    expect(one.stdout).toContain(`clean up with: qcvm stop ${name}`);
    const json = await qcvm(["status", "--format", "json", "--run-dir", run]);
    expect(JSON.parse(json.stdout).vms.map((v: { name: string; state: string }) => [v.name, v.state])).toEqual([[name, "interrupted"]]);
    const stop = await qcvm(["stop", name, "--run-dir", run]);
    expect(stop.code, stop.stderr).toBe(0);
    expect(existsSync(join(run, name))).toBe(false);
    expect((await qcvm(["status", "--run-dir", run])).stdout).toBe(`no VMs in ${run}\n`);
  });

  it("lists a damaged state.json as damaged instead of hiding it", async () => {
    const run = join(runDir, "damaged");
    const name = vmName("damaged");
    mkdirSync(join(run, name), { recursive: true });
    writeFileSync(join(run, name, "state.json"), "{ not json");
    const list = await qcvm(["status", "--run-dir", run]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${name}\\s+damaged\\s`, "m"));
  });
});
