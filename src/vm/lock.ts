// Locks that make a second launch fail early with a message a person can act on: one per VM name,
// and one per disk image (keyed by device and inode of its real path, so two paths to one file
// collide). QEMU takes its own image locks too; ours name the other VM before QEMU even starts.
//
// A lock is a file under <runDir>/locks whose content names its holder (pid + the pid's start time
// from /proc, so a reused pid is not mistaken for the holder). It appears atomically: the content
// is written to a private temp file first and then link()ed into place, which fails with EEXIST
// when the lock exists. A lock whose holder is gone is stale and is cleared with a note: it is
// renamed away first, and only deleted when the renamed file is the very lock judged stale (its
// nonce matches), so two launchers clearing the same stale lock cannot delete each other's fresh one.
//
// Disk images are only stat()ed here, never opened: qcvm never creates, truncates or modifies one.
import {
  linkSync,
  readFileSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmdirSync,
  statSync,
  unlinkSync,
} from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { UserError } from "../core/diagnostics.js";
import { isProcessAlive, pidStartTime, selfIdentity } from "./process.js";
import { makeDirs, vmNameProblem } from "./paths.js";
import { resourceError } from "../core/diagnostics.js";
import { writeFileReplacing, writeTempFile } from "./trust.js";

export interface LockOwner {
  vm: string;
  pid: number;
  startTime: string;
  /** Who the pid is: the qcvm launching the VM, then QEMU once it runs. */
  role: "qcvm" | "qemu";
  since: string;
  /** Unique per acquisition: tells this lock apart from a later one at the same path. */
  nonce: string;
  /** Disk locks: the image as the profile named it, and how it is used. */
  image?: string;
  mode?: "rw" | "ro";
}

export class Lock {
  constructor(
    readonly path: string,
    public owner: LockOwner,
  ) {}

  /** Hand the lock to another process (QEMU, once spawned): same nonce, new holder. */
  retarget(pid: number, startTime: string, role: LockOwner["role"] = "qemu"): void {
    this.owner = { ...this.owner, pid, startTime, role };
    writeFileReplacing(this.path, tempName(this.path), JSON.stringify(this.owner), 0o644);
  }

  /** Remove the lock if it is still ours; disk lock directories go when empty. */
  release(): void {
    const current = readOwner(this.path);
    if (current && current.nonce !== this.owner.nonce) return;
    unlinkQuiet(this.path);
    const dir = dirname(this.path);
    if (basename(dir).startsWith("disk-")) rmdirQuiet(dir);
  }
}

export function locksDir(runDir: string): string {
  return join(runDir, "locks");
}

function tempName(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

function rmdirQuiet(path: string): void {
  try {
    rmdirSync(path);
  } catch {
    // not empty (another VM shares the image read-only) or already gone
  }
}

function readOwner(path: string): LockOwner | undefined {
  try {
    const o = JSON.parse(readFileSync(path, "utf8")) as LockOwner;
    return typeof o.pid === "number" && typeof o.startTime === "string" ? o : undefined;
  } catch {
    return undefined;
  }
}

function isHeld(owner: LockOwner | undefined): owner is LockOwner {
  return owner !== undefined && isProcessAlive(owner.pid, owner.startTime);
}

function describeHolder(o: LockOwner): string {
  return `${o.role === "qcvm" ? "qcvm launching it, " : ""}pid ${o.pid}, started ${o.since}`;
}

/** Create `path` atomically holding `owner`; false when it already exists. */
function tryCreate(path: string, owner: LockOwner): boolean {
  // A full disk fails the write: the temp file is removed there, so nothing is left behind.
  const tmp = writeTempFile(path, tempName(path), JSON.stringify(owner), 0o644);
  try {
    linkSync(tmp, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw resourceError(e, path) ?? e;
  } finally {
    unlinkQuiet(tmp);
  }
}

/**
 * Remove the lock at `path` that was judged stale (its owner is `stale`), unless a fresh lock
 * replaced it meanwhile. Returns true when the stale lock is gone.
 */
function clearStale(path: string, stale: LockOwner): boolean {
  const aside = tempName(path);
  try {
    renameSync(path, aside);
  } catch {
    return true; // someone else cleared it: try to acquire again
  }
  const moved = readOwner(aside);
  if (moved === undefined || moved.nonce === stale.nonce) {
    unlinkQuiet(aside);
    return true;
  }
  // A fresh lock took the stale one's place between our read and our rename: put it back.
  try {
    linkSync(aside, path);
  } catch {
    // A third launcher created a lock meanwhile; theirs stands, and the displaced holder's file is kept.
    return false;
  }
  unlinkQuiet(aside);
  return false;
}

function staleNote(what: string, o: LockOwner): string {
  const who = o.role === "qcvm" ? "qcvm" : "QEMU";
  return `cleared stale lock for ${what}: ${who} pid ${o.pid} (started ${o.since}) is gone; a run crashed or was killed`;
}

function newOwner(vm: string, extra: Partial<LockOwner> = {}): LockOwner {
  const me = selfIdentity();
  return {
    vm,
    pid: me.pid,
    startTime: me.startTime,
    role: "qcvm",
    since: new Date().toISOString(),
    nonce: randomBytes(8).toString("hex"),
    ...extra,
  };
}

export function vmLockPath(runDir: string, name: string): string {
  return join(locksDir(runDir), `vm-${name}.lock`);
}

/**
 * Take the lock on a VM name. Refused while a process holding it lives; a stale lock is cleared
 * and a note pushed to `notes`.
 */
export function acquireVmLock(runDir: string, name: string, notes: string[]): Lock {
  const problem = vmNameProblem(name);
  if (problem) throw new UserError(problem);
  makeDirs(locksDir(runDir), 0o755);
  const path = vmLockPath(runDir, name);
  const owner = newOwner(name);
  for (let attempt = 0; attempt < 5; attempt++) {
    if (tryCreate(path, owner)) return new Lock(path, owner);
    const holder = readOwner(path);
    if (isHeld(holder)) {
      throw new UserError(
        holder.role === "qcvm"
          ? `VM \`${name}\` is being launched by another qcvm (pid ${holder.pid}, started ${holder.since})`
          : `VM \`${name}\` is already running (pid ${holder.pid}, started ${holder.since}); stop it with \`qcvm stop ${name}\``,
      );
    }
    if (holder === undefined) {
      // Unreadable or not ours: never delete what we cannot identify.
      throw new UserError(`${path} exists but is not a qcvm lock; remove it if no VM \`${name}\` runs`);
    }
    if (clearStale(path, holder)) notes.push(staleNote(`VM \`${name}\``, holder));
  }
  throw new UserError(`could not take the lock ${path}: other launches of \`${name}\` keep racing for it`);
}

/** What a locked file is to the VM, for messages: disks are the usual case, but memory.path,
 *  pflash vars and serial files are locked the same way (open-files.ts filesToLock). */
export type LockedKind = "disk" | "memory-path" | "pflash-vars" | "serial";

const LOCKED: Record<LockedKind, { what: string; share: string }> = {
  disk: { what: "disk image", share: "two VMs may share an image only when both use it with readOnly: true" },
  "memory-path": {
    what: "memory.path",
    share: "two VMs may map one memory.path file only when both have memory.share: false (a private mapping)",
  },
  "pflash-vars": { what: "firmware.pflash.vars", share: "each VM needs its own UEFI variable store" },
  serial: { what: "serial file", share: "each VM needs its own serial file or device" },
};

/** Device and inode of the image's real path: the identity QEMU's own locks use, path-independent. */
export function imageKey(image: string): string {
  let real: string;
  try {
    real = realpathSync(image);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(
      code === "ENOENT"
        ? `disk image ${image} does not exist (qcvm never creates disk images: create it with qemu-img create)`
        : `disk image ${image}: ${code ?? (e as Error).message}`,
    );
  }
  const st = statSync(real);
  return `${st.dev}-${st.ino}`;
}

function diskDir(runDir: string, image: string): string {
  return join(locksDir(runDir), `disk-${imageKey(image)}`);
}

/**
 * Take a disk image lock. A writer excludes everyone; readers share with readers. Each side
 * publishes its own lock file first and then looks for the other side, so of two racing launches
 * at least one sees the other (both may back off; neither can slip past).
 */
export function acquireDiskLock(
  runDir: string,
  vm: string,
  image: string,
  readOnly: boolean,
  notes: string[],
  kind: LockedKind = "disk",
): Lock {
  const what = LOCKED[kind].what;
  const dir = diskDir(runDir, image);
  const mode = readOnly ? "ro" : "rw";
  const owner = newOwner(vm, { image, mode });
  const mine = join(dir, readOnly ? `ro-${vm}` : "rw");
  for (let attempt = 0; attempt < 5; attempt++) {
    makeDirs(dir, 0o755);
    let created: boolean;
    try {
      created = tryCreate(mine, owner);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") continue; // dir removed by a releasing VM
      throw e;
    }
    if (!created) {
      const holder = readOwner(mine);
      if (isHeld(holder)) throw diskConflict(image, holder, kind);
      if (holder) {
        if (clearStale(mine, holder)) notes.push(staleNote(`${what} ${image}`, holder));
        continue;
      }
      throw new UserError(`${mine} exists but is not a qcvm lock; remove it if no VM uses ${image}`);
    }
    const lock = new Lock(mine, owner);
    // Look at the other side: readers for a writer, the writer for a reader.
    const others = readdirSync(dir).filter(
      (f) => (readOnly ? f === "rw" : f.startsWith("ro-")) && !f.includes(".tmp-"),
    );
    for (const f of others) {
      const holder = readOwner(join(dir, f));
      if (isHeld(holder)) {
        lock.release();
        throw diskConflict(image, holder, kind);
      }
      if (holder && clearStale(join(dir, f), holder)) notes.push(staleNote(`${what} ${image}`, holder));
    }
    return lock;
  }
  throw new UserError(`could not take the lock on ${what} ${image}: other launches keep racing for it`);
}

function diskConflict(image: string, holder: LockOwner, kind: LockedKind): UserError {
  const how = holder.mode === "rw" ? "writable" : "read-only";
  return new UserError(
    `${LOCKED[kind].what} ${image} is in use (${how}) by VM \`${holder.vm}\` (${describeHolder(holder)}); ` +
      LOCKED[kind].share,
  );
}

/** Locks for every disk of a VM; on a conflict the ones already taken are released. */
export function acquireDiskLocks(
  runDir: string,
  vm: string,
  disks: readonly { path: string; readOnly: boolean; kind?: LockedKind }[],
  notes: string[],
): Lock[] {
  const taken: Lock[] = [];
  try {
    for (const d of disks) taken.push(acquireDiskLock(runDir, vm, d.path, d.readOnly, notes, d.kind));
  } catch (e) {
    for (const l of taken) l.release();
    throw e;
  }
  return taken;
}

/**
 * Remove every lock that belongs to VM `vm` (stop, and clean-up after a crash): its name lock and
 * the disk locks naming it. Locks of other VMs are left alone.
 */
export function releaseVmLocks(runDir: string, vm: string, options: { keepNameLock?: boolean } = {}): string[] {
  const removed: string[] = [];
  const dir = locksDir(runDir);
  const nameLock = vmLockPath(runDir, vm);
  if (!options.keepNameLock && readOwner(nameLock)?.vm === vm) {
    unlinkQuiet(nameLock);
    removed.push(nameLock);
  }
  let entries: string[];
  try {
    sweepDeadTemps(dir);
    entries = readdirSync(dir).filter((f) => f.startsWith("disk-"));
  } catch {
    return removed;
  }
  for (const d of entries) {
    const sub = join(dir, d);
    let files: string[];
    try {
      files = readdirSync(sub);
    } catch {
      continue;
    }
    sweepDeadTemps(sub);
    for (const f of files) {
      const p = join(sub, f);
      if (readOwner(p)?.vm === vm) {
        unlinkQuiet(p);
        removed.push(p);
      }
    }
    rmdirQuiet(sub);
  }
  return removed;
}

/**
 * Remove the temp files (`<lock>.tmp-<pid>-<hex>`) of writers that are gone: a launcher killed
 * between writing a lock's temp file and linking it (SIGKILL at any instant, issue 8) leaves one,
 * possibly half-written. A live writer's are left alone; a reused pid only keeps garbage a while.
 */
function sweepDeadTemps(dir: string): void {
  for (const f of readdirSync(dir)) if (deadTemp(f)) unlinkQuiet(join(dir, f));
}

/** Is `f` a lock temp file whose writer (the pid in its name) is gone? */
function deadTemp(f: string): boolean {
  const m = /\.tmp-(\d+)-[0-9a-f]+$/.exec(f);
  return m !== null && Number(m[1]) !== process.pid && pidStartTime(Number(m[1])) === undefined;
}

/** Temp files of VM `name`'s name lock left by a launcher killed before it linked the lock. */
export function strayNameLockTemps(runDir: string, name: string): string[] {
  try {
    return readdirSync(locksDir(runDir)).filter((f) => f.startsWith(`vm-${name}.lock.tmp-`) && deadTemp(f));
  } catch {
    return [];
  }
}

/** The holder recorded in a VM's name lock, if any (for status and stop when state.json is missing). */
export function readVmLock(runDir: string, name: string): LockOwner | undefined {
  return readOwner(vmLockPath(runDir, name));
}
