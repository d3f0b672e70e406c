// `qcvm stop <name> [--force] [--timeout S]`: ask the guest to power down (ACPI, over QMP), wait
// up to the timeout, then `quit` QEMU, then SIGKILL; and remove what the VM had on the host: its
// cgroups, runtime directory (socket, pidfile, state) and locks; QEMU's log is kept first
// (src/vm/logs.ts: <runDir>/logs/<name>/, `qcvm logs NAME`). Works on a VM whose QEMU is
// already dead (just cleans up) and on one whose launching qcvm was killed: everything needed is
// in state.json. A pid is signalled only while it still has the start time recorded at launch,
// so a reused pid is never killed. --format json: the same report as one document on stdout.
import type { Outcome } from "../core/errors.js";
import type { StopOptions } from "../cli/command-options.js";
import { UserError } from "../core/diagnostics.js";
import { inspectVm } from "../vm/inspect.js";
import { isProcessAlive } from "../vm/process.js";
import { existsSync } from "node:fs";
import { cleanupVm } from "../vm/cleanup.js";
import { requireVmName, resolveRunDir, trustRunDir, vmPaths } from "../vm/paths.js";
import { stopQemu } from "../vm/stop.js";
import type { StopOutcome } from "../vm/stop.js";
import { cgroupMembership } from "../vm/claim.js";
import { openCgroupLayout } from "../vm/cgroup.js";
import { probeHost } from "../probe/host.js";
import type { CleanupReport } from "../vm/cleanup.js";
import { errorMember, writeJson } from "./json-output.js";

export async function run(o: StopOptions): Promise<Outcome> {
  const runDir = resolveRunDir(o.runDir);
  const name = requireVmName(o.name);
  if (existsSync(runDir)) trustRunDir(runDir);
  const { force, timeout } = o;
  const json = o.format === "json";
  // With json, what stop notes on the way goes into the document instead of stderr.
  const notes: string[] = [];
  const note = (msg: string) => (json ? notes.push(msg) : process.stderr.write(`qcvm: ${msg}\n`));

  const found = inspectVm(runDir, name);
  if (!found)
    throw new UserError(
      `no VM named \`${name}\` in ${runDir} (qcvm status lists them; --run-dir picks another run dir)`,
      "not-found",
    );
  // Another user's VM: its QEMU cannot be signalled nor its files removed by this one, so try
  // nothing (a kill refused with EPERM used to read as "survived SIGKILL").
  if (found.condition === "not yours") throw new UserError(found.reason ?? `VM \`${name}\` is another user's`);
  const state = found.state;
  const holder = found.holder;
  let outcome: StopOutcome = "was not running";
  // Never the hostRoot state.json names: it is a file anyone with the run dir could have written.
  // A delegated VM cgroup (export --to systemd) is under the unit's subtree, which state.json
  // names; the run dir it is read from passed the trust checks above.
  const layout = openCgroupLayout(probeHost("/"), { delegatedBase: state?.cgroup.delegated });
  const member = cgroupMembership(layout, name);
  if (state) {
    outcome = await stopQemu(state, { force, timeoutMs: timeout * 1000, member }, note);
  } else {
    // No (readable) state: the lock still names QEMU once it was spawned.
    if (found.condition === "damaged" && found.reason) note(found.reason);
    if (holder && holder.role === "qemu") {
      outcome = await stopQemu(
        { pid: holder.pid, pidStartTime: holder.startTime, qmp: vmPaths(runDir, name).qmp },
        { force, timeoutMs: timeout * 1000, member },
        note,
      );
    } else if (holder && isProcessAlive(holder.pid, holder.startTime)) {
      throw new UserError(`VM \`${name}\` is being launched by qcvm pid ${holder.pid}; try again once it is up`);
    }
  }
  const report = await cleanupVm(runDir, name, "/", { delegatedBase: state?.cgroup.delegated });
  if (json) return printStopped({ name, runDir, force, outcome, report, notes });
  for (const e of report.errors) process.stderr.write(`qcvm: cleanup: ${e}\n`);
  if (report.killed.length > 0)
    note(`ended what was left in the VM's cgroup: pid ${report.killed.join(", ")} (SIGKILL)`);
  const what = outcome === "was not running" ? `\`${name}\` was not running` : `stopped \`${name}\` (${outcome})`;
  process.stderr.write(
    `qcvm: ${what}; removed ${report.removed.length ? report.removed.join(", ") : "nothing (already clean)"}\n`,
  );
  if (report.keptLog) process.stderr.write(`qcvm: QEMU's log is kept in ${report.keptLog} (qcvm logs ${name})\n`);
  return report.errors.length > 0 ? "failed" : "ok";
}

/**
 * stop's JSON document: `how` is StopOutcome ("powered down" is the graceful one; "quit",
 * "terminated", "killed" forced it; "was not running": only cleaned up), `removed` the paths
 * taken away, `killed` the pids left in the VM's cgroup that were ended, `cleanupErrors` what
 * could not be removed (then also `error`, exit 1).
 */
function printStopped(r: {
  name: string;
  runDir: string;
  force: boolean;
  outcome: StopOutcome;
  report: CleanupReport;
  notes: string[];
}): Outcome {
  const { report } = r;
  const failed = report.errors.length > 0;
  writeJson({
    name: r.name,
    runDir: r.runDir,
    wasRunning: r.outcome !== "was not running",
    how: r.outcome,
    graceful: r.outcome === "powered down",
    force: r.force,
    removed: report.removed,
    killed: report.killed,
    keptLog: report.keptLog ?? null,
    cleanupErrors: report.errors,
    notes: r.notes,
    ...errorMember(failed ? "failed" : "ok", `clean-up of \`${r.name}\` left something: ${report.errors.join("; ")}`),
  });
  return failed ? "failed" : "ok";
}
