// A VM's state file (<runDir>/<name>/state.json): what status, stop and stats read, written
// atomically by launch. Also the LostPlacement record launch keeps in it.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../core/diagnostics.js";
import type { Accel, LostPlacement, Plan } from "../core/types.js";
import { vmPaths } from "./paths.js";
import { writeFileReplacing } from "./trust.js";
import type { PreallocRecord } from "../launch/prealloc-step.js";

export type { LostPlacement };

/** Render a lost placement as the one line launch and status print. */
export function formatLost(l: LostPlacement): string {
  const where = l.guestNode === undefined ? "" : `guest node ${l.guestNode} `;
  return `${where}${l.what}: ${l.mechanism} not applied (${l.reason}); ${l.consequence}`;
}

export interface VmState {
  /** Format version of this file. */
  version: 1;
  name: string;
  /** QEMU's pid (numactl execs QEMU, so the pid qcvm spawned is QEMU's). */
  pid: number;
  /** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot): tells pid reuse apart. */
  pidStartTime: string;
  /** Absolute path of the profile file. */
  profile: string;
  plan: Plan;
  /** QEMU's full argv as executed, prefix (numactl ...) included. */
  argv: string[];
  cgroup: {
    /** Absolute cgroup directories created for this VM (every hierarchy, children included). */
    paths: string[];
    /** `launch --cgroup delegated`: the delegated v2 base (the unit's cgroup) the VM cgroup is under. */
    delegated?: string;
  };
  /** The VM's runtime directory. */
  dir: string;
  qmp: string;
  pidfile: string;
  log: string;
  startedAt: string;
  accel: Accel;
  /** QEMU's version from the QMP greeting, once connected. */
  qemuVersion?: string;
  /** Root the host was read under (`--host`; "/" normally): where the cgroup mounts are. */
  hostRoot: string;
  /** "starting" until the vCPUs run with placement applied, then "running". */
  phase: "starting" | "running";
  /** True when launched with --detach (no qcvm process supervises QEMU once it runs). */
  detached: boolean;
  /** The qcvm that launched QEMU (and, in the foreground, supervises it). */
  launcher: { pid: number; startTime: string };
  lost: LostPlacement[];
  /** guest-memfd-prealloc as it happened (launch/prealloc-step.ts), when the plan had it. */
  prealloc?: PreallocRecord;
}

/** Write state.json atomically (write + rename), so a reader never sees half a file. */
export function writeState(state: VmState): void {
  const file = join(state.dir, "state.json");
  // A private temp file (O_EXCL|O_NOFOLLOW) renamed over the old one; on ENOSPC or EDQUOT the
  // temp file is removed and the error names the state file (issue 8 finding 7).
  writeFileReplacing(file, `${file}.${process.pid}.tmp`, `${JSON.stringify(state, null, 2)}\n`, 0o600);
}

/** A VM's state that this user may not read: the VM is another user's (the run dir is shared). */
export class StateAccessError extends UserError {}

/** A VM's state, or undefined when there is no such VM (no state file). */
export function readState(runDir: string, name: string): VmState | undefined {
  const file = vmPaths(runDir, name).state;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    if (code === "EACCES" || code === "EPERM") {
      throw new StateAccessError(
        `VM \`${name}\` belongs to another user: ${file} is not readable by this one (run qcvm as the user who launched it, or as root)`,
      );
    }
    throw new UserError(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    const state = JSON.parse(text) as VmState;
    if (state.version !== 1 || typeof state.pid !== "number" || typeof state.name !== "string") {
      throw new Error("not a qcvm state file (version 1)");
    }
    return state;
  } catch (e) {
    throw new UserError(`${file} is damaged: ${(e as Error).message} (remove it, or run \`qcvm stop ${name}\`)`);
  }
}

/** Every VM with a state file in the run dir, sorted by name; damaged files are skipped. */
export function listStates(runDir: string): VmState[] {
  let names: string[];
  try {
    names = readdirSync(runDir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  } catch {
    return [];
  }
  const out: VmState[] = [];
  for (const name of names) {
    try {
      const s = readState(runDir, name);
      if (s) out.push(s);
    } catch {
      // A damaged state file is reported by `status <name>`; the listing shows the rest.
    }
  }
  return out;
}
