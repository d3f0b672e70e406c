// Cgroup errors as values (CgroupError: operation, file, errno, and which placement it costs) and
// the seam every cgroup write goes through (CgroupFiles: the real file system, or a test's fake).
import { closeSync, mkdirSync, openSync, rmdirSync, writeSync } from "node:fs";
import { relative } from "node:path";
import type { FsRoot } from "../io/fsroot.js";

export type CgroupOp = "mkdir" | "write" | "read" | "rmdir";

/** A cgroup operation that failed, as a value. `subject` says which placement it costs. */
export class CgroupError extends Error {
  constructor(
    readonly op: CgroupOp,
    /** Absolute path of the file or directory (after the FsRoot). */
    readonly file: string,
    /** errno code ("EACCES", "ENOENT", ...), or "EMISSING" for a controller that isn't there. */
    readonly errno: string,
    /** "VM cgroup", "vCPU cgroup vcpu-node0", "qcvm parent cgroup". */
    readonly subject: string,
    readonly value?: string,
  ) {
    const what = op === "write" ? `cannot write ${JSON.stringify(value ?? "")} to ${file}` : `cannot ${op} ${file}`;
    super(`${subject}: ${what}: ${errno}${errnoHint(errno, file) ? ` (${errnoHint(errno, file)})` : ""}`);
    this.name = "CgroupError";
  }
}

function errnoHint(errno: string, file: string): string {
  switch (errno) {
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return "no permission to manage cgroups here, as inside a container or without root: run as root, or in a delegated cgroup (systemd-run --scope -p Delegate=yes)";
    case "ENOENT":
    case "EMISSING":
      return "the controller is not mounted or not enabled for this cgroup";
    case "EINVAL":
    case "ERANGE":
      return file.endsWith(".cpus") || file.endsWith(".mems")
        ? "not a subset of the parent cgroup's, or an offline CPU/node"
        : "the kernel refused the value";
    case "ENOSPC":
      return "cgroup v1 cpuset with empty cpuset.cpus or cpuset.mems cannot take tasks";
    case "EBUSY":
      return file.endsWith("cgroup.subtree_control")
        ? "cgroup v2 no-internal-process rule: this cgroup holds processes, as a container's cgroup root does; move them into a leaf cgroup first, or run qcvm in a delegated cgroup"
        : "the cgroup still holds tasks, or its cpus/mems are in use by a child";
    case "EOPNOTSUPP":
      return "cgroup v2 rules: a threaded subtree cannot have domain controllers, and a domain cgroup with processes cannot have threaded children under domain controllers";
    case "ESRCH":
      return "the process or thread is gone";
    default:
      return "";
  }
}

export function errnoOf(e: unknown): string {
  return (e as NodeJS.ErrnoException)?.code ?? "EIO";
}

/**
 * The writes qcvm makes to cgroup filesystems, as a seam: the real one below, or a test's fake
 * (useCgroupFiles) that answers EACCES where a container would. Paths are absolute (after the root).
 */
export interface CgroupFiles {
  mkdir(dir: string): void;
  write(file: string, value: string): void;
  rmdir(dir: string): void;
}

const realCgroupFiles: CgroupFiles = {
  mkdir: (dir) => mkdirSync(dir),
  write: (path, value) => {
    // O_WRONLY without O_CREAT: a missing cgroup file is ENOENT (as on cgroupfs), even in fixture trees.
    const fd = openSync(path, "r+");
    try {
      writeSync(fd, value);
    } finally {
      closeSync(fd);
    }
  },
  rmdir: (dir) => rmdirSync(dir),
};

let active = realCgroupFiles;

/** Install other cgroup writes (a test's fake); returns the function that puts the previous back. */
export function useCgroupFiles(files: CgroupFiles): () => void {
  const previous = active;
  active = files;
  return () => {
    active = previous;
  };
}

export function writeValue(path: string, value: string): void {
  active.write(path, value);
}

export function makeCgroupDir(dir: string): void {
  active.mkdir(dir);
}

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// A process that just exited may still count as a member for a moment (it is unlinked from its
// css_set when reaped), so rmdir can see EBUSY briefly.
export function rmdirRetry(dir: string): string | undefined {
  for (let attempt = 0; ; attempt++) {
    try {
      active.rmdir(dir);
      return undefined;
    } catch (e) {
      const code = errnoOf(e);
      if (code === "ENOENT") return undefined;
      if (code !== "EBUSY" || attempt >= 20) return code;
      sleepSync(25);
    }
  }
}

export function readIds(fs: FsRoot, absolute: string, root: string): number[] {
  return (fs.read(relative(root, absolute)) ?? "")
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}
