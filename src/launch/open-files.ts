// Opening the files QEMU is handed as descriptors (render/passed-fds.ts says which, at which fd),
// and binding QMP's listening socket. qcvm opens them as the caller, so QEMU (an unprivileged
// user) needs no access to them and nobody chowns or relabels the user's files.
//
// - Disks and pflash: opened as the profile names them (a symlinked image is the user's choice),
//   never created or truncated; the access mode is the one QEMU's /dev/fdset open asks for.
// - The serial log: written, so it must never be a file qcvm did not make (issue 8: a symlink at
//   the serial path made root truncate a root-owned file; fs.protected_symlinks was 0). A new one
//   is created with O_CREAT|O_EXCL|O_NOFOLLOW, 0600; an existing one is reused only when it is a
//   regular file of the caller's with one link whose first line is qcvm's SERIAL_HEADER, i.e.
//   one qcvm made. Then it is truncated through the descriptor just checked, never by path.
// - QMP and the console: bound by qcvm under umask 077 (a 0600 socket), vm/listen.ts.
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  ftruncateSync,
  lstatSync,
  openSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import type { Stats } from "node:fs";
import { UserError, resourceError } from "../core/diagnostics.js";
import type { PassedFile } from "../render/passed-fds.js";
import type { Profile } from "../core/types.js";
import type { QemuIdentity } from "./privsep.js";
import { callerUid } from "../vm/trust.js";
import type { LockedKind } from "../vm/lock.js";

const { O_RDONLY, O_RDWR, O_WRONLY, O_APPEND, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_NOCTTY } = constants;

/** The first line of every serial log qcvm creates: how it knows the file is its own. */
export const SERIAL_HEADER = "# qcvm serial log: written by QEMU for a qcvm VM; qcvm may truncate it\n";

/** Open descriptors for QEMU, by child fd number; close() closes every one. */
export class OpenedFiles {
  constructor(readonly fds: Map<number, number>) {}

  close(): void {
    for (const fd of this.fds.values()) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
    this.fds.clear();
  }
}

function fail(f: PassedFile, problem: string): UserError {
  return new UserError(`cannot give QEMU ${f.field} ${f.path}: ${problem}`);
}

function openImage(f: PassedFile): number {
  let fd: number;
  try {
    fd = openSync(f.path, f.access === "read" ? O_RDONLY : O_RDWR);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw (
      resourceError(e, f.path) ?? fail(f, code === "ENOENT" ? "no such file (qcvm never creates it)" : String(code))
    );
  }
  const st = fstatSync(fd);
  if (!st.isFile() && !st.isBlockDevice()) {
    closeSync(fd);
    throw fail(f, "is neither a regular file nor a block device");
  }
  return fd;
}

/**
 * A blob QEMU reopens through /proc/self/fd/N: the kernel checks that open against the file's own
 * mode and owner with QEMU's credentials (the directories above it do not matter), so refuse here,
 * naming the fix, what QEMU would refuse with a bare "could not load".
 */
function checkBlobReadable(f: PassedFile, st: { uid: number; gid: number; mode: number }, id: QemuIdentity): void {
  if (id.keepsCaller) return;
  const bit = st.uid === id.uid ? 0o400 : st.gid === id.gid || id.groups.includes(st.gid) ? 0o040 : 0o004;
  if ((st.mode & bit) !== 0) return;
  throw fail(
    f,
    `QEMU runs as ${id.user}, which may not read it (owner uid ${st.uid}, mode 0${(st.mode & 0o777).toString(8)}): ` +
      "make it readable by others (chmod o+r) or by a group of that user; qcvm never chowns a user's file",
  );
}

/**
 * `serial: device:PATH`, the explicit opt-in: an existing FIFO or character device, opened
 * write-only (the mode QEMU's file chardev asks /dev/fdset for), never created, never truncated,
 * never through a symlink. A FIFO is first held open read-write (which never blocks), so the
 * write-only open does not wait for a reader; a tty is opened without becoming qcvm's terminal.
 */
export function openSerialDevice(f: PassedFile): number {
  let probe: number;
  try {
    probe = openSync(f.path, O_RDWR | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw (
      resourceError(e, f.path) ??
      fail(
        f,
        code === "ELOOP"
          ? "is a symbolic link, which qcvm never writes through (name the device itself)"
          : code === "ENOENT"
            ? "no such FIFO or device (qcvm never creates one: mkfifo it first)"
            : String(code),
      )
    );
  }
  try {
    const st = fstatSync(probe);
    if (!st.isFIFO() && !st.isCharacterDevice())
      throw fail(f, "is not a FIFO or character device (serial: file:PATH is for a log file)");
    const fd = openSync(f.path, O_WRONLY | O_NOFOLLOW | O_NOCTTY | (st.isFIFO() ? 0 : O_NONBLOCK));
    const w = fstatSync(fd);
    if (w.ino !== st.ino || w.dev !== st.dev) {
      closeSync(fd);
      throw fail(f, "was replaced while qcvm opened it");
    }
    return fd;
  } finally {
    closeSync(probe);
  }
}

/** The serial log's descriptor: created new, or a log qcvm made before, truncated through the fd. */
export function openSerialLog(f: PassedFile): number {
  let fd: number;
  try {
    fd = openSync(f.path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EEXIST") throw resourceError(e, f.path) ?? fail(f, String(code));
    fd = reopenOwnLog(f);
  }
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, SERIAL_HEADER);
  } catch (e) {
    closeSync(fd);
    throw resourceError(e, f.path) ?? e;
  }
  return fd;
}

function reopenOwnLog(f: PassedFile): number {
  const st = lstatSync(f.path);
  if (st.isSymbolicLink()) throw fail(f, "is a symbolic link, which qcvm never writes through (remove it)");
  if (!st.isFile())
    throw fail(
      f,
      st.isFIFO() || st.isCharacterDevice()
        ? "exists and is not a regular file: a FIFO or device is written only when the profile names it serial: device:PATH"
        : "exists and is not a regular file",
    );
  let fd: number;
  try {
    fd = openSync(f.path, O_RDWR | O_APPEND | O_NOFOLLOW);
  } catch (e) {
    throw resourceError(e, f.path) ?? fail(f, String((e as NodeJS.ErrnoException).code));
  }
  const now = fstatSync(fd);
  const head = Buffer.alloc(SERIAL_HEADER.length);
  let n: number;
  try {
    n = readAt(fd, head);
  } catch {
    n = 0;
  }
  const problem =
    now.ino !== st.ino || now.dev !== st.dev
      ? "was replaced while qcvm opened it"
      : now.nlink !== 1
        ? `has ${now.nlink} hard links`
        : now.uid !== callerUid()
          ? `is owned by uid ${now.uid}, not by the caller`
          : n !== head.length || head.toString() !== SERIAL_HEADER
            ? "exists and is not a serial log qcvm made (its first line is not qcvm's): remove it or pick another path"
            : undefined;
  if (problem) {
    closeSync(fd);
    throw fail(f, problem);
  }
  // QEMU's /dev/fdset open takes the descriptor whose access mode is its own (O_WRONLY): a
  // write-only one to the very inode just checked.
  const wfd = openSync(f.path, O_WRONLY | O_APPEND | O_NOFOLLOW);
  const w = fstatSync(wfd);
  closeSync(fd);
  if (w.ino !== st.ino || w.dev !== st.dev) {
    closeSync(wfd);
    throw fail(f, "was replaced while qcvm opened it");
  }
  return wfd;
}

function readAt(fd: number, buf: Buffer): number {
  // O_APPEND affects writes only: this reads from offset 0.
  return readSync(fd, buf, 0, buf.length, 0);
}

/** Open every passed file in fd order; on any failure the ones already open are closed. */
export function openPassedFiles(files: readonly PassedFile[], qemu?: QemuIdentity): OpenedFiles {
  const opened = new OpenedFiles(new Map());
  try {
    for (const f of files) {
      const fd =
        f.kind === "serial" ? openSerialLog(f) : f.kind === "serial-device" ? openSerialDevice(f) : openImage(f);
      opened.fds.set(f.fd, fd);
      if (f.kind === "blob" && qemu) checkBlobReadable(f, fstatSync(fd), qemu);
    }
  } catch (e) {
    opened.close();
    throw e;
  }
  return opened;
}

// Binding QMP's (and the console's) listening socket lives in vm/listen.ts, which the capability
// probe shares.
export { bindQmpSocket } from "../vm/listen.js";
export type { QmpListener } from "../vm/listen.js";

/** May `id` do `bits` (4 read, 2 write, 1 search) on a file of this owner and mode? */
function may(st: { uid: number; gid: number; mode: number }, id: QemuIdentity, bits: number): boolean {
  const shift = st.uid === id.uid ? 6 : st.gid === id.gid || id.groups.includes(st.gid) ? 3 : 0;
  return ((st.mode >> shift) & bits) === bits;
}

/**
 * `memory.backend: file` names a path QEMU itself opens (memory-backend-file has no fd form, and
 * the renderer cannot know whether it is a file or a hugetlbfs directory): refuse, before QEMU
 * starts, a path the QEMU user cannot use, naming the fix, instead of QEMU's bare "can't open
 * backing store". A file needs read-write, a directory write and search (QEMU makes its file
 * there), a missing file a writable parent; every directory above must be searchable.
 */
export function checkMemoryPath(path: string, id: QemuIdentity): void {
  if (id.keepsCaller) return;
  const problem = (what: string) =>
    new UserError(
      `cannot give QEMU memory.path ${path}: QEMU runs as ${id.user}, which ${what}; ` +
        "make it accessible to that user (a group of it, or a directory it owns); qcvm never chowns a user's file",
    );
  let st: Stats | undefined;
  try {
    st = statSync(path);
  } catch {
    st = undefined;
  }
  const dir = st?.isDirectory() ? path : dirname(path);
  for (let d = dirname(dir); ; d = dirname(d)) {
    if (!may(statSync(d), id, 1)) throw problem(`may not search ${d}`);
    if (d === "/") break;
  }
  if (st === undefined || st.isDirectory()) {
    const ds = statSync(dir);
    if (!may(ds, id, 3))
      throw problem(`may not create files in ${dir} (owner uid ${ds.uid}, mode 0${(ds.mode & 0o7777).toString(8)})`);
  } else if (!may(st, id, 6)) {
    throw problem(`may not read and write it (owner uid ${st.uid}, mode 0${(st.mode & 0o777).toString(8)})`);
  }
}

function isRegularFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * Every file QEMU writes joins the disk-image locks (issue 8): writable disks, pflash vars, a
 * serial device, the serial log (made now when missing, so it has an inode to lock; `undo`
 * removes it again on failure) and a memory backing file: guest RAM with share on writes it, so
 * two such VMs would write each other's memory; without share each maps it privately, so readers
 * may share it.
 */
export function filesToLock(
  profile: Profile,
  passed: readonly PassedFile[],
  undo: (u: () => void) => void,
): Array<{ path: string; readOnly: boolean; kind: LockedKind }> {
  const out: Array<{ path: string; readOnly: boolean; kind: LockedKind }> = profile.disks.map((d) => ({
    path: d.path,
    readOnly: d.readOnly,
    kind: "disk",
  }));
  const m = profile.memory;
  if (m.backend === "file" && m.path !== undefined && isRegularFile(m.path))
    out.push({ path: m.path, readOnly: !m.share, kind: "memory-path" });
  for (const f of passed) {
    if (f.kind === "pflash" && f.access === "read-write")
      out.push({ path: f.path, readOnly: false, kind: "pflash-vars" });
    if (f.kind === "serial-device") out.push({ path: f.path, readOnly: false, kind: "serial" });
    if (f.kind !== "serial") continue;
    if (!existsSync(f.path)) {
      closeSync(openSerialLog(f));
      undo(() => rmSync(f.path, { force: true }));
    }
    out.push({ path: f.path, readOnly: false, kind: "serial" });
  }
  return out;
}
