// Run-dir trust (issue 8, finding 1), at the module level: directories another user owns or may
// write are refused with the fix, and files are opened without following links. The attacker
// is a real unprivileged uid (setpriv, util-linux) where the test runs as root.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  closeSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { constants } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { checkTrustedDir, ensureTrustedSubdir, openInTrustedDir } from "../src/vm/trust.js";

const ROOT = process.getuid?.() === 0;
const NOBODY = 65534;
const base = mkdtempSync(join(tmpdir(), "qcvm-trust-"));
// Traversable, so the unprivileged attacker can reach the directories it is given.
chmodSync(base, 0o755);
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** Run argv as uid/gid 65534 (nobody), as a hostile local user would. */
function asNobody(argv: string[]): void {
  execFileSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", ...argv]);
}

function dir(name: string, mode: number): string {
  const d = join(base, name);
  mkdirSync(d);
  chmodSync(d, mode);
  return d;
}

describe("run-dir trust", () => {
  it("accepts the caller's own 0755 and 0700 directories under a sticky /tmp", () => {
    expect(() => checkTrustedDir(dir("ok", 0o755), "run dir")).not.toThrow();
    expect(() => checkTrustedDir(dir("ok700", 0o700), "run dir")).not.toThrow();
  });

  it("refuses a group- or other-writable run dir, saying how to fix it", () => {
    const d = dir("open", 0o777);
    expect(() => checkTrustedDir(d, "run dir")).toThrow(
      `refusing run dir ${d}: it is writable by its group (mode 0777), so another user could plant or replace files qcvm acts on`,
    );
    expect(() => checkTrustedDir(d, "run dir")).toThrow(`(chmod go-w ${d})`);
    const g = dir("group", 0o770);
    expect(() => checkTrustedDir(g, "run dir")).toThrow("is writable by its group (mode 0770)");
  });

  it.skipIf(!ROOT)("refuses a run dir another user owns, even at mode 0755 (needs root to chown)", () => {
    const d = dir("theirs", 0o755);
    chownSync(d, NOBODY, NOBODY);
    expect(() => checkTrustedDir(d, "run dir")).toThrow(`it is owned by uid ${NOBODY}, not by the caller (uid 0)`);
  });

  it("refuses a run dir below a directory others may write (not sticky)", () => {
    const open = dir("open-parent", 0o777);
    const d = join(open, "run");
    mkdirSync(d, { mode: 0o755 });
    expect(() => checkTrustedDir(d, "run dir")).toThrow(`the directory above it, ${open}, is writable by others`);
  });

  it.skipIf(!ROOT)("refuses a VM directory an attacker replaced with a symlink (needs root for setpriv)", () => {
    const shared = dir("shared", 0o1777);
    const target = dir("target", 0o755);
    asNobody(["ln", "-s", target, join(shared, "vm")]);
    expect(() => ensureTrustedSubdir(join(shared, "vm"), 0o700, "VM directory")).toThrow(
      `refusing VM directory ${join(shared, "vm")}: it is a symbolic link`,
    );
  });
});

describe("opening files in a trusted directory", () => {
  const d = dir("files", 0o700);
  writeFileSync(join(d, "victim"), "root's file");

  it("never follows a symlink at the last component", () => {
    symlinkSync(join(d, "victim"), join(d, "link"));
    expect(() => openInTrustedDir(join(d, "link"), constants.O_WRONLY | constants.O_TRUNC)).toThrow(
      `refusing ${join(d, "link")}: it is a symbolic link, which qcvm never follows`,
    );
  });

  it("refuses a second hard link (someone else's file by another name)", () => {
    linkSync(join(d, "victim"), join(d, "hard"));
    expect(() => openInTrustedDir(join(d, "hard"), constants.O_WRONLY)).toThrow("has 2 hard links");
  });

  it("refuses a FIFO unless asked for one", () => {
    execFileSync("mkfifo", [join(d, "fifo")]);
    expect(() => openInTrustedDir(join(d, "fifo"), constants.O_RDWR)).toThrow(
      "is a device or FIFO (say so in the profile to use one)",
    );
    closeSync(openInTrustedDir(join(d, "fifo"), constants.O_RDWR, { special: true }));
  });

  it("creates with O_EXCL: an existing name is never reused", () => {
    expect(() => openInTrustedDir(join(d, "victim"), constants.O_WRONLY, { create: true })).toThrow(/EEXIST/);
    closeSync(openInTrustedDir(join(d, "new"), constants.O_WRONLY, { create: true }));
  });
});
