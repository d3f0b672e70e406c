// Issue 8, finding 4 (data loss): every path QEMU writes is checked against every other and against
// the files the profile reads, by path and by inode. Each case is a profile that QEMU 7.2 accepted
// and that destroyed a file before this rule.
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readProfile } from "../src/pipeline/read-profile.js";

const dir = mkdtempSync(join(tmpdir(), "qcvm-written-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, "disk.raw"), "precious");
writeFileSync(join(dir, "ro.raw"), "precious too");
symlinkSync(join(dir, "disk.raw"), join(dir, "alias.raw"));

async function collisions(name: string, body: string): Promise<string[]> {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, `apiVersion: qcvm/v1\nname: ${name}\n${body}`);
  const r = await readProfile(file);
  return r.errors.filter((e) => e.code === "paths.collision").map((e) => `${e.line}: ${e.path}: ${e.message}`);
}

describe("paths QEMU writes", () => {
  it("refuse the serial log on the VM's own disk image (it was truncated to 0 bytes)", async () => {
    expect(
      await collisions("serial-disk", "disks:\n  - path: ./disk.raw\n    format: raw\nserial: file:./disk.raw\n"),
    ).toEqual(["6: serial: is a writable disk (disks[0].path) too: QEMU would write the serial log over it"]);
  });

  it("refuse a serial device that is the VM's own disk image too", async () => {
    expect(
      await collisions("serial-dev-disk", "disks:\n  - path: ./disk.raw\n    format: raw\nserial: device:./disk.raw\n"),
    ).toEqual(["6: serial: is a writable disk (disks[0].path) too: QEMU would write the serial device over it"]);
  });

  it("refuse the profile as its own serial log", async () => {
    expect(await collisions("serial-self", "serial: file:./serial-self.yaml\n")).toEqual([
      "3: serial: is the profile itself too: QEMU would write the serial log over it",
    ]);
  });

  it("refuse memory.path on a read-only disk with share: true (guest RAM overwrote the image)", async () => {
    const body =
      "memory:\n  size: 256M\n  backend: file\n  path: ./ro.raw\n  share: true\n" +
      "disks:\n  - path: ./ro.raw\n    format: raw\n    readOnly: true\n";
    const found = await collisions("mem-disk", body);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/memory\.path: is a read-only disk \(disks\[0\]\.path\) too|disks\[0\]\.path: /);
  });

  it("see through another spelling of the same file (a symlink): compared by inode", async () => {
    expect(
      await collisions("alias", "disks:\n  - path: ./disk.raw\n    format: raw\nserial: file:./alias.raw\n"),
    ).toEqual(["6: serial: is a writable disk (disks[0].path) too: QEMU would write the serial log over it"]);
  });

  it("refuse two writable disks on one image, and pflash vars on the code", async () => {
    const body =
      "disks:\n  - path: ./disk.raw\n    format: raw\n  - path: ./alias.raw\n    format: raw\n" +
      "firmware:\n  pflash:\n    code: ./ro.raw\n    vars: ./ro.raw\n";
    const found = await collisions("twice", body);
    expect(found.map((f) => f.replace(/^\d+: /, ""))).toEqual([
      "disks[1].path: is a writable disk (disks[0].path) too: QEMU would write a writable disk over it",
      "firmware.pflash.vars: is the pflash code (firmware.pflash.code) too: QEMU would write the pflash variables over it",
    ]);
  });

  it("leave distinct files alone", async () => {
    expect(
      await collisions("fine", "disks:\n  - path: ./disk.raw\n    format: raw\nserial: file:./serial.log\n"),
    ).toEqual([]);
  });
});
