import { describe, expect, it, afterAll, beforeAll } from "vitest";
import {
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import {
  acquireDiskLock,
  acquireDiskLocks,
  acquireVmLock,
  locksDir,
  releaseVmLocks,
  vmLockPath,
} from "../src/vm/lock.js";
import { pidStartTime } from "../src/vm/process.js";

const tmp = mkdtempSync(join(tmpdir(), "qcvm-lock-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
const freshRunDir = () => join(tmp, `run-${n++}`);

/** A real other process to hold locks: a sleep we kill at the end. */
const sleepers: ChildProcess[] = [];
async function otherProcess(): Promise<{ pid: number; startTime: string }> {
  const child = spawn("sleep", ["600"], { stdio: "ignore" });
  sleepers.push(child);
  await new Promise((r) => child.once("spawn", r));
  return { pid: child.pid!, startTime: pidStartTime(child.pid!)! };
}
afterAll(() => sleepers.forEach((c) => c.kill("SIGKILL")));

/** pid + start time of a process that has exited: what a crashed run leaves in its lock. */
function deadProcess(): { pid: number; startTime: string } {
  const r = spawnSync("true");
  return { pid: r.pid, startTime: "12345" };
}

function writeLock(path: string, owner: Record<string, unknown>): void {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, JSON.stringify({ role: "qemu", since: "2026-01-01T00:00:00.000Z", nonce: "old", ...owner }));
}

describe("VM name lock", () => {
  it("refuses a second launch of a running VM, naming its pid and how to stop it", async () => {
    const runDir = freshRunDir();
    const lock = acquireVmLock(runDir, "web", []);
    const qemu = await otherProcess();
    lock.retarget(qemu.pid, qemu.startTime);
    expect(() => acquireVmLock(runDir, "web", [])).toThrow(
      new RegExp(`VM \`web\` is already running \\(pid ${qemu.pid}, started .*\\); stop it with \`qcvm stop web\``),
    );
    // Other names are independent.
    expect(acquireVmLock(runDir, "db", []).path).toBe(vmLockPath(runDir, "db"));
  });

  it("says so when the holder is a qcvm still launching the VM", () => {
    const runDir = freshRunDir();
    acquireVmLock(runDir, "web", []);
    expect(() => acquireVmLock(runDir, "web", [])).toThrow(/being launched by another qcvm \(pid \d+/);
  });

  it("clears a stale lock whose holder is gone, with a note", () => {
    const runDir = freshRunDir();
    const dead = deadProcess();
    writeLock(vmLockPath(runDir, "web"), { vm: "web", ...dead });
    const notes: string[] = [];
    const lock = acquireVmLock(runDir, "web", notes);
    expect(notes).toEqual([
      expect.stringMatching(new RegExp(`stale lock for VM \`web\`: QEMU pid ${dead.pid} .* is gone`)),
    ]);
    expect(JSON.parse(readFileSync(lock.path, "utf8")).pid).toBe(process.pid);
  });

  it("treats a reused pid (same pid, other start time) as stale", () => {
    const runDir = freshRunDir();
    writeLock(vmLockPath(runDir, "web"), { vm: "web", pid: process.pid, startTime: "1" });
    const notes: string[] = [];
    acquireVmLock(runDir, "web", notes);
    expect(notes).toHaveLength(1);
  });

  it("never deletes a file it cannot identify as a qcvm lock", () => {
    const runDir = freshRunDir();
    mkdirSync(locksDir(runDir), { recursive: true });
    writeFileSync(vmLockPath(runDir, "web"), "something else");
    expect(() => acquireVmLock(runDir, "web", [])).toThrow(/is not a qcvm lock/);
    expect(readFileSync(vmLockPath(runDir, "web"), "utf8")).toBe("something else");
  });

  it("release removes only its own lock", () => {
    const runDir = freshRunDir();
    const lock = acquireVmLock(runDir, "web", []);
    lock.release();
    expect(existsSync(lock.path)).toBe(false);
    const again = acquireVmLock(runDir, "web", []);
    lock.release(); // the old handle must not remove the new holder's lock
    expect(existsSync(again.path)).toBe(true);
  });
});

describe("disk image locks", () => {
  let image: string;
  let imageStat: { mtimeMs: number; size: number };
  beforeAll(() => {
    mkdirSync(join(tmp, "images"));
    image = join(tmp, "images", "disk.raw");
    writeFileSync(image, Buffer.alloc(4096, 7));
    const st = statSync(image);
    imageStat = { mtimeMs: st.mtimeMs, size: st.size };
  });

  it("refuses a second writer, naming the VM that has the image", async () => {
    const runDir = freshRunDir();
    const lock = acquireDiskLock(runDir, "a", image, false, []);
    const qemu = await otherProcess();
    lock.retarget(qemu.pid, qemu.startTime);
    expect(() => acquireDiskLock(runDir, "b", image, false, [])).toThrow(
      new RegExp(`disk image .*disk.raw is in use \\(writable\\) by VM \`a\` \\(pid ${qemu.pid}`),
    );
    // A reader is refused too: it would see the writer's changes under its feet.
    expect(() => acquireDiskLock(runDir, "c", image, true, [])).toThrow(/in use \(writable\) by VM `a`/);
  });

  it("lets read-only users share, and refuses a writer while they run", () => {
    const runDir = freshRunDir();
    acquireDiskLock(runDir, "a", image, true, []);
    acquireDiskLock(runDir, "b", image, true, []);
    expect(() => acquireDiskLock(runDir, "c", image, false, [])).toThrow(/in use \(read-only\) by VM `a`/);
    // The refused writer left nothing behind.
    expect(readdirSync(readdirSync(locksDir(runDir)).map((d) => join(locksDir(runDir), d))[0]!).sort()).toEqual([
      "ro-a",
      "ro-b",
    ]);
  });

  it("names what the locked file is to the VM, and how it may be shared (not 'disk image' for all)", () => {
    const runDir = freshRunDir();
    acquireDiskLock(runDir, "a", image, false, [], "pflash-vars");
    expect(() => acquireDiskLock(runDir, "b", image, false, [], "pflash-vars")).toThrow(
      /^firmware\.pflash\.vars .*disk\.raw is in use \(writable\) by VM `a`.*; each VM needs its own UEFI variable store$/,
    );
    expect(() => acquireDiskLock(runDir, "b", image, false, [], "serial")).toThrow(
      /^serial file .*; each VM needs its own serial file or device$/,
    );
  });

  it("keys by device and inode: a symlink or a hard link to the image is the same image", () => {
    const runDir = freshRunDir();
    const sym = join(tmp, "images", "sym.raw");
    const hard = join(tmp, "images", "hard.raw");
    symlinkSync(image, sym);
    linkSync(image, hard);
    acquireDiskLock(runDir, "a", image, false, []);
    expect(() => acquireDiskLock(runDir, "b", sym, false, [])).toThrow(/by VM `a`/);
    expect(() => acquireDiskLock(runDir, "b", hard, false, [])).toThrow(/by VM `a`/);
  });

  it("clears a stale writer lock with a note", () => {
    const runDir = freshRunDir();
    const first = acquireDiskLock(runDir, "a", image, false, []);
    writeLock(first.path, { vm: "a", ...deadProcess(), mode: "rw", image });
    const notes: string[] = [];
    acquireDiskLock(runDir, "b", image, false, notes);
    expect(notes).toEqual([expect.stringMatching(/stale lock for disk image .*disk.raw/)]);
  });

  it("names a missing image and creates nothing", () => {
    const runDir = freshRunDir();
    const missing = join(tmp, "images", "missing.qcow2");
    expect(() => acquireDiskLock(runDir, "a", missing, false, [])).toThrow(
      /does not exist \(qcvm never creates disk images/,
    );
    expect(existsSync(missing)).toBe(false);
  });

  it("takes all or none of a VM's disk locks", () => {
    const runDir = freshRunDir();
    const other = join(tmp, "images", "other.raw");
    writeFileSync(other, "x");
    acquireDiskLock(runDir, "a", other, false, []);
    expect(() =>
      acquireDiskLocks(
        runDir,
        "b",
        [
          { path: image, readOnly: false },
          { path: other, readOnly: false },
        ],
        [],
      ),
    ).toThrow(/by VM `a`/);
    // b's lock on the first image was given back: a third VM can write it.
    expect(acquireDiskLock(runDir, "c", image, false, []).owner.vm).toBe("c");
  });

  it("releaseVmLocks removes one VM's name and disk locks and nothing else", () => {
    const runDir = freshRunDir();
    acquireVmLock(runDir, "a", []);
    acquireVmLock(runDir, "b", []);
    acquireDiskLock(runDir, "a", image, true, []);
    acquireDiskLock(runDir, "b", image, true, []);
    const removed = releaseVmLocks(runDir, "a");
    expect(removed).toHaveLength(2);
    expect(existsSync(vmLockPath(runDir, "b"))).toBe(true);
    expect(() => acquireDiskLock(runDir, "c", image, false, [])).toThrow(/by VM `b`/);
  });

  it("never touched the image itself", () => {
    const st = statSync(image);
    expect({ mtimeMs: st.mtimeMs, size: st.size }).toEqual(imageStat);
    expect(readFileSync(image).every((b) => b === 7)).toBe(true);
  });
});

describe("racing launchers (separate processes)", () => {
  it("exactly one of several processes clearing the same stale lock gets it", async () => {
    const bundle = join(tmp, "lock-bundle.mjs");
    await build({
      entryPoints: ["src/vm/lock.ts"],
      bundle: true,
      format: "esm",
      platform: "node",
      outfile: bundle,
      logLevel: "silent",
    });
    const runDir = freshRunDir();
    writeLock(vmLockPath(runDir, "race"), { vm: "race", ...deadProcess() });
    // Each racer tries once, reports, then holds what it got until the parent closes its stdin.
    const script =
      `const { acquireVmLock } = await import(${JSON.stringify(bundle)});` +
      `let r; try { acquireVmLock(${JSON.stringify(runDir)}, "race", []); r = "ok"; } catch (e) { r = "refused"; }` +
      `process.stdout.write(r + "\\n"); process.stdin.resume(); process.stdin.on("end", () => process.exit(0));`;
    const racers = Array.from({ length: 6 }, () =>
      spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "inherit"] }),
    );
    const results = await Promise.all(
      racers.map(
        (c) =>
          new Promise<string>((resolve) => {
            let out = "";
            c.stdout.on("data", (d) => {
              out += d;
              if (out.endsWith("\n")) resolve(out.trim());
            });
          }),
      ),
    );
    racers.forEach((c) => c.stdin.end());
    await Promise.all(racers.map((c) => new Promise((r) => c.once("exit", r))));
    expect(results.filter((r) => r === "ok")).toHaveLength(1);
    expect(results.filter((r) => r === "refused")).toHaveLength(5);
  });
});
