// The host-check step (src/validate/host-check.ts) and "every rule whose inputs passed the schema"
// (src/pipeline/read-profile.ts): issue 10 items 3 and 4.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { readProfile } from "../src/pipeline/read-profile.js";

let dir: string;
const QCVM = join(__dirname, "..", "bin", "qcvm");

function profile(name: string, body: string): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, `apiVersion: qcvm/v1\nname: ${name}\n${body}`);
  return file;
}

const codes = async (file: string, hostCheck = true) =>
  (await readProfile(file, { hostCheck })).errors.map((e) => `${e.path} ${e.code}`);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "qcvm-host-check-"));
  mkdirSync(join(dir, "images"));
  writeFileSync(join(dir, "images", "vmlinuz"), "k");
  writeFileSync(join(dir, "images", "disk.raw"), "");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("host check", () => {
  it("names every file QEMU opens that is not there, each at its field", async () => {
    const file = profile(
      "missing",
      [
        "boot: {kernel: ./nope/vmlinuz, initrd: /nonexistent/initrd}",
        "firmware: {pflash: {code: ./code.fd, vars: ./vars.fd}}",
        "disks:",
        "  - {path: ./images/disk.raw, format: raw}",
        "  - {path: ./gone.qcow2, format: qcow2}",
        "",
      ].join("\n"),
    );
    expect(await codes(file)).toEqual([
      "boot.kernel file.missing",
      "boot.initrd file.missing",
      "firmware.pflash.code file.missing",
      "firmware.pflash.vars file.missing",
      "disks[1].path disk.missing",
    ]);
    // --no-host-check: the same profile is valid.
    expect(await codes(file, false)).toEqual([]);
  });

  it("accepts files that are there, and leaves a bare bios name to QEMU's firmware directories", async () => {
    const file = profile(
      "present",
      "boot: {kernel: ./images/vmlinuz}\nfirmware: {bios: no-such-firmware.fd}\ndisks:\n  - {path: ./images/disk.raw, format: raw}\n",
    );
    expect(await codes(file)).toEqual([]);
  });

  it("refuses a directory where a file must be", async () => {
    const file = profile("dir", "boot: {kernel: ./images}\n");
    const r = await readProfile(file);
    expect(r.errors.map((e) => e.message)).toEqual(["kernel is not a regular file"]);
  });

  it("is one documented flag on the command line", () => {
    const file = profile("cli", "disks:\n  - {path: ./gone.qcow2, format: qcow2}\n");
    const on = spawnSync(QCVM, ["validate", file], { encoding: "utf8" });
    expect(on.status).toBe(1);
    expect(on.stdout).toContain("disks[0].path: disk image does not exist");
    const off = spawnSync(QCVM, ["validate", "--no-host-check", file], { encoding: "utf8" });
    expect(off.stdout).toContain("1 valid");
    expect(off.status).toBe(0);
    const help = spawnSync(QCVM, ["validate", "--help"], { encoding: "utf8" });
    expect(help.stdout).toContain("--host-check");
  });
});

describe("rules run beside schema errors", () => {
  it("reports a missing required field and the rule and host errors of the rest in one run", async () => {
    const file = profile(
      "all-at-once",
      [
        "cpu: {count: 4}",
        "memory: {size: 1G}",
        "numa:",
        "  nodes:",
        "    - {cpus: 0-1, memory: 512M}",
        "    - {cpus: 1-2, memory: 512M}",
        "disks:",
        "  - path: ./gone.qcow2",
        "",
      ].join("\n"),
    );
    expect(await codes(file)).toEqual([
      "numa.nodes numa.cpus-cover",
      "numa.nodes[1].cpus numa.cpus-overlap",
      "disks[0].format schema.required",
      "disks[0].path disk.missing",
    ]);
  });

  it("skips a rule whose input the schema refused, rather than guess at it", async () => {
    // memory.size of the wrong type: the NUMA sum rule would compare against a guess.
    const file = profile(
      "bad-size",
      "cpu: {count: 2}\nmemory: {size: [1G]}\nnuma:\n  nodes:\n    - {cpus: 0-1, memory: 512M}\nnetwork: {type: none, mac: '52:54:00:00:00:01'}\n",
    );
    const r = await readProfile(file);
    const all = [...r.errors, ...r.warnings].map((e) => `${e.path} ${e.code}`);
    expect(all.some((c) => c.startsWith("memory.size schema."))).toBe(true);
    expect(all).not.toContain("numa.nodes numa.memory-sum");
    // A rule on another section still runs.
    expect(all).toContain("network.mac network.unused");
  });
});
