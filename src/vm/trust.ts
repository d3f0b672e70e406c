// Run-dir trust, as ssh's StrictModes: qcvm runs as root and acts on what it finds in the run dir
// (state.json names a pid to signal, locks name holders, the capability cache shapes QEMU's argv,
// QEMU's files live there). So the run dir and every directory qcvm uses in it must be the
// caller's, writable by no one else, reached through directories no one else can rewrite; then
// nobody else can plant, swap or symlink anything inside. Files are also created and opened with
// O_NOFOLLOW (and O_EXCL where qcvm creates them), and checked after opening (fstat), so even a
// link that got there anyway is never followed.
//
// Node has no openat(2), so the "checked directory fd" is done as lstat of every component of the
// real path: each is a real directory owned by root or the caller and writable by no one else
// (sticky, root-owned directories such as /tmp are accepted above the run dir, since nobody else
// may rename or remove the caller's entries in them).
import {
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  closeSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import type { Stats } from "node:fs";
import { dirname, join } from "node:path";
import { UserError, resourceError } from "../core/diagnostics.js";

const { O_NOFOLLOW, O_CREAT, O_EXCL } = constants;
/** The sticky bit (Node's fs.constants lacks it). */
const S_ISVTX = 0o1000;

/** The caller's uid (0 where getuid is missing: not POSIX, not a qcvm host). */
export function callerUid(): number {
  return process.getuid?.() ?? 0;
}

/** Why a directory qcvm keeps state in cannot be trusted, or undefined when it can. */
export function dirProblem(st: Stats, uid: number, options: { allowRoot?: boolean } = {}): string | undefined {
  if (st.isSymbolicLink()) return "is a symbolic link";
  if (!st.isDirectory()) return "is not a directory";
  if (st.uid !== uid && !(options.allowRoot && st.uid === 0))
    return `is owned by uid ${st.uid}, not by the caller (uid ${uid})`;
  if ((st.mode & 0o022) !== 0)
    return `is writable by ${st.mode & 0o020 ? "its group" : "others"} (mode ${octal(st.mode)})`;
  return undefined;
}

function octal(mode: number): string {
  return `0${(mode & 0o7777).toString(8)}`;
}

/** The fix a person can type for a refused directory. */
function fixFor(dir: string, problem: string, uid: number): string {
  if (problem.startsWith("is writable")) return `chmod go-w ${dir}`;
  if (problem.startsWith("is owned")) return `chown ${uid} ${dir}, or use a --run-dir of your own`;
  return "use a --run-dir that is a real directory of your own";
}

/**
 * Refuse `dir` unless it and every directory above it are safe: `dir` itself is the caller's
 * (or root's, for `allowRoot`: status reading root's /run/qcvm) and not group/other-writable; each
 * ancestor is root's or the caller's and not writable by others unless it is sticky (/tmp).
 */
export function checkTrustedDir(dir: string, what: string, options: { allowRoot?: boolean } = {}): void {
  const uid = callerUid();
  let real: string;
  try {
    real = realpathSync(dir);
  } catch (e) {
    throw new UserError(`cannot use ${what} ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const st = lstatSync(real);
  const problem = dirProblem(st, uid, options);
  if (problem) {
    throw new UserError(
      `refusing ${what} ${dir}: it ${problem}, so another user could plant or replace files qcvm acts on as ${uid === 0 ? "root" : `uid ${uid}`} (${fixFor(dir, problem, uid)})`,
    );
  }
  for (let p = dirname(real); ; p = dirname(p)) {
    const a = lstatSync(p);
    const owned = a.uid === 0 || a.uid === uid;
    const writable = (a.mode & 0o022) !== 0 && !((a.mode & S_ISVTX) !== 0 && a.uid === 0);
    if (!owned || writable) {
      throw new UserError(
        `refusing ${what} ${dir}: the directory above it, ${p}, ${owned ? `is writable by others (mode ${octal(a.mode)})` : `is owned by uid ${a.uid}`}, so another user could replace ${what} (use a --run-dir under a directory only you or root can write)`,
      );
    }
    if (p === dirname(p)) break;
  }
}

/**
 * Make `dir` (one level: its parent must already be trusted) with `mode`, or check the one that is
 * there: a directory, not a link, the caller's, and not writable by group or others.
 */
export function ensureTrustedSubdir(dir: string, mode: number, what: string): void {
  try {
    mkdirSync(dir, { mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  const problem = dirProblem(lstatSync(dir), callerUid());
  if (problem) {
    throw new UserError(
      `refusing ${what} ${dir}: it ${problem} (remove it, or ${fixFor(dir, problem, callerUid())}; qcvm creates it itself)`,
    );
  }
}

/**
 * Open a file inside a trusted directory without following a symlink at its last component, and
 * check what was opened: a regular file (a FIFO or device only with `special`), owned by the
 * caller and with one link (a hard link to someone else's file would otherwise be written through).
 * `create`: O_CREAT|O_EXCL, so an existing file, link or not, is never reused.
 */
export function openInTrustedDir(
  path: string,
  flags: number,
  options: { create?: boolean; mode?: number; special?: boolean; owner?: "caller" | "any" } = {},
): number {
  const f = flags | O_NOFOLLOW | (options.create ? O_CREAT | O_EXCL : 0);
  let fd: number;
  try {
    fd = openSync(path, f, options.mode ?? 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // O_NOFOLLOW on a symlink answers ELOOP.
    if (code === "ELOOP") throw new UserError(`refusing ${path}: it is a symbolic link, which qcvm never follows`);
    throw e;
  }
  const st = fstatSync(fd);
  const problem = openedProblem(st, options);
  if (problem) {
    closeSync(fd);
    throw new UserError(`refusing ${path}: it ${problem}`);
  }
  return fd;
}

function openedProblem(st: Stats, options: { special?: boolean; owner?: "caller" | "any" }): string | undefined {
  const special = st.isFIFO() || st.isCharacterDevice();
  if (!st.isFile() && !(options.special && special))
    return special ? "is a device or FIFO (say so in the profile to use one)" : "is not a regular file";
  if (st.isFile() && st.nlink !== 1) return `has ${st.nlink} hard links (another name could be someone else's file)`;
  if ((options.owner ?? "caller") === "caller" && st.uid !== callerUid())
    return `is owned by uid ${st.uid}, not by the caller`;
  return undefined;
}

/** A path inside `dir` for a name that must not contain a separator. */
export function inside(dir: string, name: string): string {
  if (name.includes("/")) throw new Error(`inside: ${name} is not a file name`);
  return join(dir, name);
}

/**
 * Write `data` to a new private temp file beside `path` (O_CREAT|O_EXCL|O_NOFOLLOW) and return
 * its name; on any failure (ENOSPC halfway through a write, say) the temp file is removed, so a
 * full disk leaves nothing behind.
 */
export function writeTempFile(path: string, tmp: string, data: string, mode: number): string {
  let fd: number | undefined;
  try {
    fd = openSync(tmp, constants.O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
    writeFileSync(fd, data);
    closeSync(fd);
    fd = undefined;
    return tmp;
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw resourceError(e, path) ?? e;
  }
}

/** writeTempFile, then rename over `path` (rename replaces a link, never writes through it). */
export function writeFileReplacing(path: string, tmp: string, data: string, mode: number): void {
  writeTempFile(path, tmp, data, mode);
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw resourceError(e, path) ?? e;
  }
}
