// The one seam for reading the host: every path under /sys and /proc is resolved against a root,
// `/` on a real host or a sysfs-shaped fixture tree (`--host DIR`) in tests and offline plans.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readdirSync, readlinkSync, statSync } from "node:fs";
import type { BigIntStats, Stats } from "node:fs";
import { join, resolve } from "node:path";
import { UserError } from "../core/diagnostics.js";
import { shippedHosts, shippedPath } from "./package-dir.js";

/**
 * The one answer to "is this the machine qcvm runs on, or a fixture tree (`--host DIR`)?". A tree
 * answers for its own files only: /dev/kvm access, numactl and the like are asked of the real
 * machine only when this is true.
 */
export function isRealHost(root: string): boolean {
  return resolve(root) === "/";
}

export class FsRoot {
  constructor(readonly root: string = "/") {}

  /** See isRealHost(). */
  get isRealHost(): boolean {
    return isRealHost(this.root);
  }

  path(p: string): string {
    return join(this.root, p);
  }

  exists(p: string): boolean {
    return existsSync(this.path(p));
  }

  /** File contents trimmed, or undefined when missing/unreadable. */
  read(p: string): string | undefined {
    try {
      return readFileSync(this.path(p), "utf8").trim();
    } catch {
      return undefined;
    }
  }

  /** Target of a symlink (for /proc/<pid>/fd/N: `anon_inode:[kvm-gmem]`), or undefined. */
  readlink(p: string): string | undefined {
    try {
      return readlinkSync(this.path(p));
    } catch {
      return undefined;
    }
  }

  /** stat(2), following links (/proc/<pid>/fd/N: the open file's inode and size), or undefined. */
  stat(p: string): Stats | undefined {
    try {
      return statSync(this.path(p));
    } catch {
      return undefined;
    }
  }

  /**
   * Open `p` read-write, as a device's user (QEMU on /dev/kvm) would, and say what opened: the
   * errno when it did not (with what is at the path, when anything is), else what the open file is.
   * The file is closed at once; nothing is read or written.
   */
  openReadWrite(p: string): { errno: string; stat?: BigIntStats } | { errno?: undefined; stat: BigIntStats } {
    const path = this.path(p);
    let fd: number;
    try {
      fd = openSync(path, "r+");
    } catch (e) {
      const errno = (e as NodeJS.ErrnoException).code ?? "EIO";
      try {
        return { errno, stat: statSync(path, { bigint: true }) };
      } catch {
        return { errno }; // gone between open and stat, or never there: errno says which
      }
    }
    try {
      return { stat: fstatSync(fd, { bigint: true }) };
    } finally {
      closeSync(fd);
    }
  }

  list(p: string): string[] {
    try {
      return readdirSync(this.path(p)).sort();
    } catch {
      return [];
    }
  }
}

/**
 * `--host DIR` must be a tree shaped like /: the probe reads what is there and takes anything
 * missing as "this host has none", so a mistyped path planned for an empty host, silently.
 */
export function checkHostRoot(root: string): void {
  const shipped = shippedHosts();
  const fix =
    "give a tree shaped like /, with sys/ and proc/, as `qcvm doctor --save-host DIR` writes" +
    (shipped.length > 0 ? `; or name one qcvm ships in ${shippedPath("examples/hosts")}: ${shipped.join(", ")}` : "");
  let isDir: boolean;
  try {
    isDir = statSync(root).isDirectory();
  } catch {
    throw new UserError(`--host ${root}: no such directory (${fix})`, "usage");
  }
  if (!isDir) throw new UserError(`--host ${root}: not a directory (${fix})`, "usage");
  let hasSys = false;
  try {
    hasSys = statSync(join(root, "sys")).isDirectory();
  } catch {
    // reported below
  }
  if (!hasSys) throw new UserError(`--host ${root}: has no sys/ directory, so it is not a host tree (${fix})`, "usage");
}
