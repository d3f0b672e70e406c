// QEMU's log outlives the VM. A detached QEMU writes its messages to <runDir>/<name>/qemu.log, and
// clean-up removes that directory; so before it does, the log moves to <runDir>/logs/<name>/
// (mode 0700: a log can hold whatever the guest printed), under the time it was kept, and only the
// KEPT_LOGS newest stay. `qcvm logs NAME` prints the live log of a running VM, else the newest kept.
// Nothing here is trusted by path alone: directories are checked with lstat (a real directory, not
// a symlink, owned by this user) and logs are opened O_NOFOLLOW and checked to be regular files
// owned by this user before a byte is printed.
import {
  chmodSync,
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmSync,
} from "node:fs";
import { join } from "node:path";
import { UserError, describeFsError } from "../core/diagnostics.js";
import { vmPaths } from "./paths.js";

/** Logs kept per VM name: enough to compare a few runs, bounded so a crash loop cannot fill /run. */
export const KEPT_LOGS = 5;

/** Where the kept logs of one VM live. */
export function keptLogDir(runDir: string, name: string): string {
  // vmPaths checks the name (it becomes a path component here too).
  vmPaths(runDir, name);
  return join(runDir, "logs", name);
}

function euid(): number {
  return process.geteuid?.() ?? 0;
}

/** Why `path` is not a directory this user may trust, or undefined when it is (or is missing). */
function untrustedDir(path: string): string | undefined {
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    return describeFsError(e);
  }
  if (st.isSymbolicLink()) return "is a symbolic link";
  if (!st.isDirectory()) return "is not a directory";
  if (st.uid !== euid()) return `is owned by uid ${st.uid}, not by this user (uid ${euid()})`;
  return undefined;
}

function ensureDir(path: string, mode: number): void {
  const bad = untrustedDir(path);
  if (bad) throw new Error(`${path} ${bad}`);
  try {
    mkdirSync(path, { mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    return;
  }
  chmodSync(path, mode); // mkdir's mode passes through the umask
}

/** `2026-12-01T08:55:31.123Z` -> `20261201T085531.123Z`: sorts by time, no ':' in a file name. */
function stamp(date: Date): string {
  return date.toISOString().replace(/[-:]/g, "");
}

/** A kept log's name: the time it was kept, and a counter when two share a millisecond. */
const KEPT_NAME = /^(\d{8}T\d{6}\.\d{3}Z)(?:-(\d+))?\.log$/;

/** The kept logs of a VM, oldest first. */
export function listKeptLogs(runDir: string, name: string): string[] {
  const dir = keptLogDir(runDir, name);
  if (untrustedDir(dir)) return [];
  try {
    const order = (f: string): [string, number] => {
      const m = KEPT_NAME.exec(f)!;
      return [m[1]!, Number(m[2] ?? 0)];
    };
    return readdirSync(dir)
      .filter((f) => KEPT_NAME.test(f))
      .sort((a, b) => {
        const [ta, na] = order(a);
        const [tb, nb] = order(b);
        return ta < tb ? -1 : ta > tb ? 1 : na - nb;
      })
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}

/**
 * Move a VM's qemu.log into its kept logs and drop the oldest beyond KEPT_LOGS. Returns the kept
 * log's path; undefined when there was no log (a foreground QEMU writes to the terminal) or it was
 * empty. Throws with the reason when the log cannot be kept (the caller reports it and goes on).
 */
export function keepLog(runDir: string, name: string, now = new Date()): string | undefined {
  const log = vmPaths(runDir, name).log;
  let st;
  try {
    st = lstatSync(log);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  if (!st.isFile() || st.uid !== euid()) return undefined; // not one qcvm wrote: left to clean-up
  if (st.size === 0) return undefined;
  ensureDir(join(runDir, "logs"), 0o755);
  const dir = keptLogDir(runDir, name);
  ensureDir(dir, 0o700);
  let target = join(dir, `${stamp(now)}.log`);
  // Two stops in one millisecond (a relaunch loop): never overwrite a kept log.
  for (let i = 1; listKeptLogs(runDir, name).includes(target); i++) target = join(dir, `${stamp(now)}-${i}.log`);
  renameSync(log, target);
  const kept = listKeptLogs(runDir, name);
  for (const old of kept.slice(0, Math.max(0, kept.length - KEPT_LOGS))) rmSync(old, { force: true });
  return target;
}

/** Read a log this user wrote: a regular file, not through a symlink, owned by this user. */
export function readLogFile(path: string, maxBytes = 16 << 20): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UserError(`${path} is not a regular file: not printed`);
    if (st.uid !== euid()) throw new UserError(`${path} is owned by uid ${st.uid}, not by this user: not printed`);
    const size = Math.min(st.size, maxBytes);
    const buf = Buffer.alloc(size);
    let used = 0;
    while (used < size) {
      // The tail matters most (the last lines say why QEMU stopped): read the last maxBytes.
      const n = readSync(fd, buf, used, size - used, st.size - size + used);
      if (n === 0) break;
      used += n;
    }
    return buf.subarray(0, used).toString("utf8");
  } finally {
    closeSync(fd);
  }
}

/** The log `qcvm logs NAME` prints: the running VM's own, else the newest kept one. */
export function findLog(runDir: string, name: string): { path: string; live: boolean } | undefined {
  const live = vmPaths(runDir, name).log;
  const dirProblem = untrustedDir(vmPaths(runDir, name).dir);
  try {
    if (!dirProblem && lstatSync(live).isFile()) return { path: live, live: true };
  } catch {
    // no live log
  }
  const kept = listKeptLogs(runDir, name).at(-1);
  return kept ? { path: kept, live: false } : undefined;
}
