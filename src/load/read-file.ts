// Reading one profile file: never blocks (O_NONBLOCK, then fstat before any read), never reads more
// than MAX_PROFILE_BYTES + 1 bytes, and only regular files when the caller asks (extends: bases).
// Errors come back as words for a message; nothing here throws for a user's file.
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { isUtf8 } from "node:buffer";

/** Profiles are small; a bigger file is the wrong file (and must not be read into memory whole). */
export const MAX_PROFILE_BYTES = 1024 * 1024;

export interface ReadText {
  text?: string;
  error?: string;
  hint?: string;
}

const tooBig = (size: number): ReadText => ({
  error: `file is ${size} bytes; profiles are limited to ${MAX_PROFILE_BYTES}`,
  hint: "is this the profile? profiles are a few KB of YAML",
});

function kindOf(st: import("node:fs").Stats): string {
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice() || st.isBlockDevice()) return "a device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

/** Read up to MAX_PROFILE_BYTES + 1 bytes: a regular file's size is right (+1 sees EOF in one read);
 *  anything else (/dev/zero, a pipe, a /proc file reporting 0) grows as it reads, to the limit. */
function readBounded(fd: number, regular: boolean, size: number): Buffer {
  let buf = Buffer.allocUnsafe(regular ? Math.min(size, MAX_PROFILE_BYTES) + 1 : 64 * 1024);
  let used = 0;
  for (;;) {
    if (used === buf.length) {
      if (buf.length > MAX_PROFILE_BYTES) break;
      const bigger = Buffer.allocUnsafe(Math.min(buf.length * 2, MAX_PROFILE_BYTES + 1));
      buf.copy(bigger, 0, 0, used);
      buf = bigger;
    }
    const n = readSync(fd, buf, used, buf.length - used, null);
    if (n === 0) break;
    used += n;
  }
  return buf.subarray(0, used);
}

function describeError(e: unknown): ReadText {
  const err = e as NodeJS.ErrnoException;
  switch (err.code) {
    case "ENOENT":
      return {
        error: "cannot read file: no such file",
        hint: "check the path: it is relative to the current directory",
      };
    case "EACCES":
    case "EPERM":
      return {
        error: "cannot read file: permission denied",
        hint: "make it readable to this user, or run qcvm as a user who can read it",
      };
    case "ENOTDIR":
      return { error: "cannot read file: a directory in its path is a file", hint: "check the path" };
    case "EAGAIN":
      return { error: "cannot read file: nothing to read yet (a pipe or FIFO)", hint: "profiles are regular files" };
    case "ELOOP":
      return { error: "cannot read file: too many levels of symbolic links", hint: "check the path" };
    default:
      return { error: `cannot read file: ${err.code ?? err.message}` };
  }
}

/**
 * Read a profile. Synchronous on purpose: profiles are small and in the page cache, and one
 * openSync/fstatSync/readSync costs a fraction of a FileHandle round trip through the thread pool
 * (validating 1,000 profiles spent more time in FileHandle bookkeeping than in reading).
 * O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, forever.
 */
export function readProfileText(file: string, opts: { regularOnly?: boolean; stdin?: boolean } = {}): ReadText {
  let fd: number | undefined;
  try {
    // fd 0 is not ours to close; the finally below closes only what it opened.
    if (!opts.stdin) fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    const st = fstatSync(fd ?? 0);
    if (st.isDirectory())
      return {
        error: "is a directory, not a profile file",
        hint: "name a .yaml file in it; qcvm validate also takes directories",
      };
    if (!st.isFile() && opts.regularOnly)
      return { error: `is ${kindOf(st)}, not a profile file`, hint: "a base profile is a regular YAML file" };
    if (st.size > MAX_PROFILE_BYTES) return tooBig(st.size);
    const bytes = readBounded(fd ?? 0, st.isFile(), st.size);
    if (bytes.length > MAX_PROFILE_BYTES)
      return {
        ...tooBig(bytes.length),
        error: `file is over ${MAX_PROFILE_BYTES} bytes; profiles are limited to ${MAX_PROFILE_BYTES}`,
      };
    if (bytes.includes(0) || !isUtf8(bytes)) {
      return {
        error: "is not a text file: binary data, or text that is not UTF-8",
        hint: "a profile is UTF-8 YAML text; is this the right file?",
      };
    }
    return { text: bytes.toString("utf8") };
  } catch (e) {
    if (opts.stdin && (e as NodeJS.ErrnoException).code === "EAGAIN")
      return {
        error: "cannot read standard input: it is non-blocking",
        hint: "pipe the profile in: cat vm.yaml | qcvm validate -",
      };
    return describeError(e);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
