// qcvm as a user meets it: names and paths typed on the command line, bad input of every kind,
// exit codes, and nothing the user owns touched. Each case runs the built bin/qcvm.js.
import { afterAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KVM_2NODE, makeRunDir, qcvm, sweepRunDir } from "./helpers/launch.js";

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
