// The one answer to "what is VM <name> in this run dir?": running, starting, dead, interrupted
// (a launch killed midway), damaged (a state file qcvm cannot read), not yours (another user's),
// or absent. status, stop and launch all ask here, so they cannot disagree about a leftover.
import { existsSync } from "node:fs";
import { readVmLock, strayNameLockTemps } from "./lock.js";
import { vmPaths } from "./paths.js";
import { isAlive, isProcessAlive, pidStartTime } from "./process.js";
import { StateAccessError, readState } from "./state.js";
import type { LockOwner } from "./lock.js";
import type { VmState } from "./state.js";

export type VmCondition = "running" | "starting" | "interrupted" | "dead" | "damaged" | "not yours";

export interface VmInspection {
  name: string;
  condition: VmCondition;
  /** Why a VM is dead, interrupted, damaged or not yours (and who launches a starting one). */
  reason?: string;
  /** Its state file, when one could be read. */
  state?: VmState;
  /** The holder its name lock records, when there is a lock. */
  holder?: LockOwner;
  /** What of it is on the host without a state file: the name lock, the runtime directory. */
  left: { nameLock: boolean; dir: boolean; strayTemp?: boolean };
}

/** What a readable state file says about its VM. */
function fromState(name: string, s: VmState, holder: LockOwner | undefined, dir: boolean): VmInspection {
  const left = { nameLock: holder !== undefined, dir };
  const base = { name, state: s, left, ...(holder ? { holder } : {}) };
  // pid 0: state.json is written before QEMU is spawned (launch step 3), so a launch killed
  // around the spawn leaves no pid; anything it started is in the VM's cgroup, which stop ends.
  if (s.pid === 0) {
    if (isProcessAlive(s.launcher.pid, s.launcher.startTime)) return { ...base, condition: "starting" };
    return {
      ...base,
      condition: "interrupted",
      reason: `the launching qcvm (pid ${s.launcher.pid}) died before it recorded QEMU's pid; stop ends whatever the VM's cgroup holds`,
    };
  }
  if (!isAlive(s)) {
    const reason =
      pidStartTime(s.pid) === undefined ? `pid ${s.pid} is gone` : `pid ${s.pid} now belongs to another process`;
    return { ...base, condition: "dead", reason };
  }
  if (s.phase === "running") return { ...base, condition: "running" };
  if (isProcessAlive(s.launcher.pid, s.launcher.startTime)) return { ...base, condition: "starting" };
  return {
    ...base,
    condition: "interrupted",
    reason: `the launching qcvm (pid ${s.launcher.pid}) died before the guest was started: QEMU is paused`,
  };
}

/** A VM without a readable state file: from its lock and runtime directory. */
function fromLeftovers(
  name: string,
  stateFile: string,
  holder: LockOwner | undefined,
  dir: boolean,
  unreadable: { damaged?: string; notYours?: string },
  strayTemp = false,
): VmInspection {
  const left = { nameLock: holder !== undefined, dir, ...(strayTemp ? { strayTemp } : {}) };
  const base = { name, left, ...(holder ? { holder } : {}) };
  if (unreadable.notYours) return { ...base, condition: "not yours", reason: unreadable.notYours };
  if (unreadable.damaged) return { ...base, condition: "damaged", reason: unreadable.damaged };
  const holderAlive = holder !== undefined && isProcessAlive(holder.pid, holder.startTime);
  if (holderAlive && holder.role === "qcvm")
    return { ...base, condition: "starting", reason: `qcvm pid ${holder.pid} is launching it` };
  if (holderAlive)
    return {
      ...base,
      condition: "interrupted",
      reason: `QEMU (pid ${holder.pid}) runs, but the launch died before writing ${stateFile}`,
    };
  const what = [
    holder ? "its name lock" : "",
    strayTemp ? "a half-made name lock" : "",
    dir ? "its runtime directory" : "",
  ].filter(Boolean);
  return {
    ...base,
    condition: "interrupted",
    reason: `a launch${holder ? ` (qcvm pid ${holder.pid})` : ""} died before writing ${stateFile}; left: ${what.join(", ")}`,
  };
}

/**
 * Inspect VM `name` in `runDir`; undefined when nothing of it is there. `ownLock`: the caller
 * holds the name lock itself (a launch clearing leftovers), so the lock says nothing about them.
 */
export function inspectVm(runDir: string, name: string, options: { ownLock?: boolean } = {}): VmInspection | undefined {
  const paths = vmPaths(runDir, name);
  const holder = options.ownLock ? undefined : readVmLock(runDir, name);
  const dir = existsSync(paths.dir);
  let state: VmState | undefined;
  const unreadable: { damaged?: string; notYours?: string } = {};
  try {
    state = readState(runDir, name);
  } catch (e) {
    if (e instanceof StateAccessError) unreadable.notYours = e.message;
    else unreadable.damaged = (e as Error).message;
  }
  if (state) return fromState(name, state, holder, dir);
  // A launch killed while writing its name lock leaves only the lock's temp file: listed too, so
  // stop removes it (a live launcher's temp file belongs to a launch in progress).
  const stray = !options.ownLock && !holder && strayNameLockTemps(runDir, name).length > 0;
  if (!holder && !dir && !stray && !unreadable.damaged && !unreadable.notYours) return undefined;
  return fromLeftovers(name, paths.state, holder, dir, unreadable, stray);
}
