// `qcvm launch`: gather, prepare (launch as data), then execute (execute.ts) and supervise
// (supervise.ts); --dry-run prints the LaunchPlan instead (dry-run.ts). The order of the steps
// matters and each says why:
//
//   1. plan      inputs.ts gathers profile, host facts and capabilities; prepare.ts (pure) turns
//                them into a LaunchPlan: the plan for a launch, QEMU's argv, paths, actions.
//                Refused on plan errors. The host facts decide the fallbacks, in the planner: KVM
//                unusable (probeKvm: no KVM device 10:232 that opens read-write) makes plain guests
//                run under TCG, with one warning; the kernel refusing memory policies (seccomp)
//                drops them, or refuses with placement.strict. Should QEMU itself then fail to
//                initialize KVM (a detached launch reads that in qemu.log), the whole launch is
//                undone and prepared again with that fact, once, under TCG.
//   2. locks     VM name, then every disk image (read-only images may be shared).
//   3. run dir   <runDir>/<name>, mode 0700: QMP socket, pidfile, log, state.json.
//   4. cgroup    the VM cgroup (memory + cpuset: the accounting unit) and one child per guest
//                node's vCPUs, with the planned cpus and mems.
//   5. QEMU      spawned with the plan's numactl prefix and -S, *from inside* the VM cgroup: qcvm
//                moves itself in, spawns, and moves itself back (VmCgroup.spawnInside, the same
//                trick as cgexec). So QEMU is born in its cgroup: every page it ever allocates,
//                preallocation and an SNP launch update included, is charged to the VM and obeys
//                its cpuset mems. Moving QEMU in after it started would leave early charges behind
//                (memory charges do not follow a task). QEMU gets its own session, so Ctrl-C at
//                the terminal and qcvm's own death (even SIGKILL) do not take it down.
//   6. QMP       connect (the socket is polled every 2 ms while QEMU starts).
//   7. vCPUs     query-cpus-fast -> each vCPU thread into its node's cgroup, then pinned (taskset);
//                pinning after the cgroup move, because a cpuset attach resets the affinity.
//   8. running   `cont`: the guest's vCPUs start only now, with placement in force.
//
// Placement that cannot be applied (EACCES/EPERM on cgroups as in containers, a seccomp'd mbind,
// TCG without a thread per vCPU) is recorded as a LostPlacement naming the node, the mechanism, the
// errno and the file, printed, and kept in state.json; with placement.strict it aborts the launch
// and everything created so far is removed.
import { formatDiagnostic } from "../core/diagnostics.js";
import { resolveRunDir } from "../vm/paths.js";
import { printDryRun } from "./dry-run.js";
import { Launch } from "./execute.js";
import { interruptedError } from "./explain.js";
import { gatherInputs } from "./inputs.js";
import { LaunchRefused, prepareLaunch } from "./prepare.js";
import { Reporter } from "./reporter.js";
import { SignalGuard, superviseForeground } from "./supervise.js";
import type { ExecuteOptions, Started } from "./execute.js";
import type { LaunchInputs, LaunchPlan } from "./prepare.js";
import type { Outcome } from "../core/errors.js";

export { POWERDOWN_TIMEOUT_MS } from "./supervise.js";

export interface LaunchArgs {
  profile: string;
  host?: string;
  capabilities?: string;
  set?: string[];
  detach: boolean;
  dryRun: boolean;
  quiet: boolean;
  format: "text" | "json";
  runDir?: string;
  /** See LaunchOptions.cgroup. */
  cgroup?: "auto" | "delegated";
  /** --qemu-user: who QEMU runs as under a root qcvm (launch/privsep.ts). */
  qemuUser?: string;
}

const RETRY_HINT =
  "set machine.accel: tcg to say so; on a VM host, enable nested virtualization; in a container, allow KVM's ioctls";

function prepareOrExplain(inputs: LaunchInputs, a: LaunchArgs, runDir: string, r: Reporter): LaunchPlan {
  try {
    const p = prepareLaunch(inputs, { profileArg: a.profile, runDir, detach: a.detach });
    for (const w of p.warnings) r.diagnostic(w);
    return p;
  } catch (e) {
    if (e instanceof LaunchRefused) for (const w of e.warnings) r.diagnostic(w);
    throw e;
  }
}

/**
 * The launch again under TCG, after QEMU itself could not use KVM although /dev/kvm looked right
 * (probeKvm cannot issue KVM_CREATE_VM, which a nested host or a seccomp filter may refuse): the
 * same inputs with that fact, prepared again. Warnings the first plan gave are not repeated.
 */
function prepareTcgRetry(inputs: LaunchInputs, first: LaunchPlan, a: LaunchArgs, r: Reporter, said: string) {
  const host = {
    ...inputs.host,
    kvmAccess: { usable: false, problem: `QEMU could not use KVM ("${said}")`, hint: RETRY_HINT },
  };
  const p = prepareLaunch({ ...inputs, host }, { profileArg: a.profile, runDir: first.runDir, detach: a.detach });
  const before = new Set(first.warnings.map(formatDiagnostic));
  const fresh = p.warnings.filter((w) => !before.has(formatDiagnostic(w)));
  for (const w of fresh.filter((x) => x.code === "host.kvm")) r.diagnostic(w);
  r.note("retrying the launch once with tcg");
  for (const w of fresh.filter((x) => x.code !== "host.kvm")) r.diagnostic(w);
  return p;
}

/** Execute, and once more under TCG when QEMU could not use KVM. */
async function executeWithRetry(
  inputs: LaunchInputs,
  first: LaunchPlan,
  a: LaunchArgs,
  r: Reporter,
  options: ExecuteOptions,
): Promise<{ started: Started; guard: SignalGuard }> {
  const guard = new SignalGuard(new Launch(first, r, options), r);
  try {
    try {
      return { started: await guard.current.run(), guard };
    } catch (e) {
      // Only detached launches see QEMU's words (in qemu.log); in the foreground they went to
      // the terminal.
      const said = guard.current.kvmInitFailure;
      if (!said) throw e;
      if (guard.current.interruptedBy) throw interruptedError(guard.current.interruptedBy);
      guard.current = new Launch(prepareTcgRetry(inputs, first, a, r, said), r, options);
      return { started: await guard.current.run(), guard };
    }
  } catch (e) {
    guard.release();
    throw e;
  }
}

/** Launch: "ok" once the guest runs detached (or a dry run printed), else QEMU's exit status. */
export async function launchVm(a: LaunchArgs, options: ExecuteOptions = {}): Promise<Outcome> {
  const r = new Reporter(a.format, a.quiet, { hold: a.dryRun });
  const runDir = resolveRunDir(a.runDir);
  let inputs: LaunchInputs;
  let prepared: LaunchPlan;
  try {
    inputs = await gatherInputs(a, runDir, r);
    prepared = prepareOrExplain(inputs, a, runDir, r);
  } catch (e) {
    r.releaseHeld();
    throw e;
  }
  if (a.dryRun) {
    printDryRun(a.profile, prepared, r);
    return "ok";
  }
  const { started, guard } = await executeWithRetry(inputs, prepared, a, r, options);
  try {
    if (a.detach) {
      // Let qcvm exit while QEMU runs on: no handle of ours may keep the event loop alive.
      started.child.unref();
      return "ok";
    }
    return { kind: "exit-status", code: await superviseForeground(started.exited, started.state, runDir, r) };
  } finally {
    guard.release();
  }
}
