// Clean-up after a VM whose QEMU is gone: its cgroups, its run-dir directory and its locks.
import { rmSync } from "node:fs";
import { probeHost } from "../probe/host.js";
import { findVmCgroup, openCgroupLayout } from "./cgroup.js";
import { releaseVmLocks } from "./lock.js";
import { foreignProcesses } from "./claim.js";
import { resolve } from "node:path";
import { vmDir } from "./paths.js";
import { keepLog } from "./logs.js";
import { describeFsError } from "../core/diagnostics.js";

/** What cleanupVm removed and what it could not. */
export interface CleanupReport {
  removed: string[];
  errors: string[];
  /** Where QEMU's log was kept (src/vm/logs.ts), when there was one. */
  keptLog?: string;
  /** Processes still in the VM cgroup that were ended (an orphan a killed launch left). */
  killed: number[];
}

/**
 * Remove everything a VM left on the host once its QEMU is gone: the VM cgroup (every hierarchy,
 * vCPU children included), the runtime directory (socket, pidfile, state; the log is kept first) and its locks.
 * Idempotent, so the foreground launcher and `qcvm stop` may both run it. `hostRoot` is the root
 * the cgroup mounts were read under at launch ("/" on a real host). `keepNameLock`: a launch
 * clearing an earlier run's leftovers (or its own, on failure) while holding the name.
 * `delegatedBase`: the VM cgroup is under a delegated v2 subtree (VmState.cgroup.delegated).
 */
export async function cleanupVm(
  runDir: string,
  name: string,
  hostRoot = "/",
  options: { keepNameLock?: boolean; delegatedBase?: string } = {},
): Promise<CleanupReport> {
  const report: CleanupReport = { removed: [], errors: [], killed: [] };
  const layout = openCgroupLayout(probeHost(hostRoot), { delegatedBase: options.delegatedBase });
  const cg = findVmCgroup(layout, name);
  // The cgroup is the record of what the VM runs: everything in it is ended before it is removed
  // (a paused QEMU a killed launch left behind included), unless it holds another run dir's VM
  // of the same name (from before names were claimed per host): that one is left alone.
  // Only on the real host: a fixture tree's cgroup.procs names no process of this machine.
  const real = hostRoot === "/";
  const foreign = cg && real ? foreignProcesses(cg, resolve(runDir)) : [];
  if (cg && foreign.length > 0) {
    report.errors.push(
      `cgroup ${cg.dirs[0]?.path} holds pid ${foreign[0]!.pid} of run dir ${foreign[0]!.runDir}: left alone (stop it there)`,
    );
  } else if (cg) {
    const ended = real ? cg.killAll() : { killed: [], left: [] };
    report.killed.push(...ended.killed);
    const left = ended.left;
    if (left.length > 0) report.errors.push(`pids ${left.join(", ")} in the VM cgroup survived SIGKILL`);
    const errors = cg.remove();
    if (errors.length === 0) report.removed.push(...cg.dirs.map((d) => d.path));
    report.errors.push(...errors.map((e) => e.message));
  }
  const dir = vmDir(runDir, name);
  // The log is the evidence of why a VM died: keep it before the directory goes.
  try {
    report.keptLog = keepLog(runDir, name);
  } catch (e) {
    report.errors.push(`cannot keep ${dir}/qemu.log: ${describeFsError(e)}`);
  }
  try {
    rmSync(dir, { recursive: true, force: true });
    report.removed.push(dir);
  } catch (e) {
    report.errors.push(`cannot remove ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  report.removed.push(...releaseVmLocks(runDir, name, options));
  return report;
}
