// Launch as data: a pure function from (profile, host facts, capabilities, options) to the
// LaunchPlan, everything decided before the host is touched: the plan (planned for a launch, so
// the levers this process lacks are already dropped), QEMU's argv (rendered here, once), the run
// dir paths, the cgroup layout, the expected losses and the actions a dry run prints.
import { launchCommand } from "../render/process-policy.js";
import { formatDiagnostic } from "../core/diagnostics.js";
import { UserError } from "../core/diagnostics.js";
import type { OutcomeKind } from "../core/errors.js";
import { planPlacement } from "../plan/plan.js";
import { renderArgv } from "../render/render.js";
import { systemdScopePrefix } from "../vm/cgroup.js";
import { locksDir, vmLockPath } from "../vm/lock.js";
import { vmPaths } from "../vm/paths.js";
import { dryRunActions } from "./actions.js";
import { passedFiles } from "../render/passed-fds.js";
import type { PassedFile } from "../render/passed-fds.js";
import { privsepPrefix, qemuEnvironment } from "./privsep.js";
import type { QemuIdentity } from "./privsep.js";
import { countOf, strictError } from "./losses.js";
import type { Action } from "./actions.js";
import type { Serial } from "../core/serial.js";
import type { CgroupLayout } from "../vm/cgroup.js";
import type {
  Accel,
  Diagnostic,
  HostInfo,
  LostPlacement,
  Plan,
  Profile,
  QemuCapabilities,
  Result,
} from "../core/types.js";

/** Unix socket paths are limited to 108 bytes including the NUL (sun_path). */
const SUN_PATH_MAX = 107;

/** What prepare starts from: gathered by launch/inputs.ts (the I/O half). */
export interface LaunchInputs {
  /** The profile as the user wrote it (normalized). */
  profile: Profile;
  /** The same with its {file} blobs read in (render/files.ts), or why they could not be. */
  inlined: Result<Profile>;
  host: HostInfo;
  caps: QemuCapabilities;
  /** Profile (validation) warnings. */
  warnings: Diagnostic[];
  /** Who QEMU runs as (launch/privsep.ts). */
  qemuIdentity: QemuIdentity;
  /** The cgroup hierarchies this launch uses, read from the host (the delegated unit's cgroup v2
   *  with --cgroup delegated): a fact gathered with the others, so prepare reads nothing. */
  cgroups: CgroupLayout;
}

export interface LaunchOptions {
  /** The profile argument as typed (for messages). */
  profileArg: string;
  runDir: string;
  detach: boolean;
}

/** Everything a launch will do, as a value: execute.ts carries it out, a dry run prints it. */
export interface LaunchPlan {
  name: string;
  profile: Profile;
  plan: Plan;
  /** The accelerator QEMU runs with (machine.accel, or the plan's TCG fallback). */
  accel: Accel;
  /** QEMU's argv as executed: systemd scope, setpriv, numactl, QEMU, -S. */
  argv: string[];
  /** Who QEMU runs as, and its whole environment (issue 8: nothing of qcvm's caller leaks in). */
  identity: QemuIdentity;
  env: Record<string, string>;
  /** Files qcvm opens and hands QEMU as fds (render/passed-fds.ts), in fd order after QMP's. */
  passed: PassedFile[];
  runDir: string;
  paths: ReturnType<typeof vmPaths>;
  /** The QMP socket (profile.qmp, else the run dir's). */
  qmpPath: string;
  /** The serial console socket qcvm binds for a detached `serial: stdio` guest (render/passed-fds.ts). */
  consolePath?: string;
  layout: CgroupLayout;
  /** Root the host was read under ("/" or a tree): where the cgroup mounts are. */
  hostRoot: string;
  detach: boolean;
  /** Profile, plan and render warnings, in that order, printed before anything is done. */
  warnings: Diagnostic[];
  /** Placements lost before anything starts (memory policies refused). */
  lost: LostPlacement[];
  /** The steps, as a dry run lists them. */
  actions: Action[];
}

/** A launch refused before anything was done; `warnings` are printed before the message. */
export class LaunchRefused extends UserError {
  constructor(
    message: string,
    readonly warnings: readonly Diagnostic[] = [],
    kind: OutcomeKind = "failed",
    diagnostics: readonly Diagnostic[] = [],
  ) {
    super(message, kind, diagnostics);
  }
}

/** Refusals that come before any warning is shown: the plan does not hold, or KVM is needed. */
function refuseEarly(inputs: LaunchInputs, plan: Plan, profileArg: string): void {
  if (plan.errors.length > 0) {
    const lines = plan.errors.map(formatDiagnostic);
    throw new UserError(
      `cannot launch ${profileArg}: the plan does not hold (${countOf(lines.length, "error")}):\n${lines.join("\n")}\n` +
        `(qcvm plan ${profileArg} shows the whole plan)`,
      "invalid",
      plan.errors,
    );
  }
  const { profile, host } = inputs;
  if (profile.machine.accel === "kvm" && profile.confidential.type !== "none" && !host.kvmAccess.usable) {
    throw new UserError(
      `${profile.confidential.type} guests need KVM, but ${host.kvmAccess.problem ?? "/dev/kvm is not usable"}: ` +
        "load kvm_amd or kvm_intel, and run qcvm as root or as a member of the kvm group",
    );
  }
}

/** QEMU's argv for this profile and plan: the systemd scope, numactl, QEMU, -S and -pidfile. */
function renderLaunchArgv(
  inputs: LaunchInputs,
  plan: Plan,
  layout: CgroupLayout,
  paths: ReturnType<typeof vmPaths>,
  warnings: Diagnostic[],
  profileArg: string,
  detach: boolean,
): { argv: string[]; warnings: Diagnostic[] } {
  const inlined = inputs.inlined.value;
  // Detached, `serial: stdio` has no terminal: the port becomes console.sock for `qcvm console`.
  const serial: Serial | undefined =
    inlined && detach && inlined.serial.kind === "stdio" ? { kind: "socket", path: paths.console } : inlined?.serial;
  const rendered = inlined
    ? renderArgv({ ...inlined, serial: serial!, qmp: inlined.qmp ?? paths.qmp }, plan, inputs.caps, { launch: true })
    : { errors: inputs.inlined.errors, warnings: [], value: undefined };
  if (rendered.errors.length > 0 || !rendered.value) {
    const lines = rendered.errors.map(formatDiagnostic);
    throw new LaunchRefused(
      `cannot render ${profileArg} (${countOf(lines.length, "error")}):\n${lines.join("\n")}`,
      warnings,
      "invalid",
      rendered.errors,
    );
  }
  const scope = layout.systemd
    ? systemdScopePrefix(
        inputs.profile.name,
        plan.launch.cgroups.find((c) => c.name === ""),
      )
    : [];
  // setpriv drops to the QEMU user before numactl and QEMU run (launch/privsep.ts). -S: no vCPU
  // runs before its thread is placed. No -pidfile: QEMU as the QEMU user may not write in the VM
  // directory, and a pidfile QEMU opens by path is what a swapped directory redirected (issue 8);
  // qcvm writes qemu.pid itself.
  const argv = launchCommand({
    scope,
    drop: privsepPrefix(inputs.qemuIdentity),
    policy: plan.launch.processPolicy,
    qemu: rendered.value,
  });
  return { argv, warnings: rendered.warnings };
}

/** The LaunchPlan for these inputs, or a refusal (UserError / LaunchRefused). Pure. */
export function prepareLaunch(inputs: LaunchInputs, options: LaunchOptions): LaunchPlan {
  const { profile, host } = inputs;
  const plan = planPlacement(profile, host, inputs.caps, { launch: true });
  refuseEarly(inputs, plan, options.profileArg);
  const warnings = [...inputs.warnings, ...plan.warnings];
  const paths = vmPaths(options.runDir, profile.name);
  const qmpPath = profile.qmp ?? paths.qmp;
  if (qmpPath.length > SUN_PATH_MAX) {
    throw new LaunchRefused(
      `QMP socket path ${qmpPath} is longer than a unix socket allows (${SUN_PATH_MAX} bytes): use a shorter --run-dir`,
      warnings,
    );
  }
  if (options.detach && profile.serial.kind === "stdio" && paths.console.length > SUN_PATH_MAX) {
    throw new LaunchRefused(
      `console socket path ${paths.console} is longer than a unix socket allows (${SUN_PATH_MAX} bytes): use a shorter --run-dir`,
      warnings,
    );
  }
  const lost = plan.launch.lost ?? [];
  if (profile.placement.strict && lost.length > 0) {
    const e = strictError(lost, "nothing was started");
    throw new LaunchRefused(e.message, warnings);
  }
  const layout = inputs.cgroups;
  const rendered = renderLaunchArgv(inputs, plan, layout, paths, warnings, options.profileArg, options.detach);
  const accel = plan.launch.accel ?? profile.machine.accel;
  const actions = dryRunActions({
    name: profile.name,
    disks: profile.disks,
    plan,
    layout,
    paths,
    vmLock: vmLockPath(options.runDir, profile.name),
    locksDir: locksDir(options.runDir),
    argv: rendered.argv,
    detach: options.detach,
    identity: inputs.qemuIdentity,
    passed: passedFiles(profile),
    qmpPath,
  });
  return {
    name: profile.name,
    profile,
    plan,
    accel,
    argv: rendered.argv,
    identity: inputs.qemuIdentity,
    env: qemuEnvironment(paths.dir),
    passed: passedFiles(profile),
    runDir: options.runDir,
    paths,
    qmpPath,
    ...(options.detach && profile.serial.kind === "stdio" ? { consolePath: paths.console } : {}),
    layout,
    hostRoot: host.root,
    detach: options.detach,
    warnings: [...warnings, ...rendered.warnings],
    lost,
    actions,
  };
}
