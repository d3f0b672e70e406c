// A plan's process-wide memory policy as argv: the one place that spells numactl's options, and
// the one place the command around QEMU (scope, privilege drop, policy, QEMU, -S) is put together.
// The plan holds the policy as data (Plan.launch.processPolicy); render, plan's reasons and launch
// ask here for the words.
import { formatList } from "../core/lists.js";
import type { ProcessPolicy } from "../core/types.js";

/** numactl's option for the policy: "--membind=0-1". */
export function numactlOption(p: ProcessPolicy): string {
  return `--${p.numactl}=${formatList(p.nodes)}`;
}

/** Words put before QEMU's argv: ["numactl", "--membind=0-1", "--"]; [] when there is no policy. */
export function processPolicyArgv(p: ProcessPolicy | undefined): string[] {
  return p ? ["numactl", numactlOption(p), "--"] : [];
}

/**
 * The whole command launch runs, in order: the systemd scope (when qcvm's cgroups are systemd's),
 * the privilege drop (setpriv, launch/privsep.ts), the process-wide policy (numactl), QEMU's own
 * argv from renderArgv, and -S (no vCPU runs before its thread is placed). The one place these are
 * put together: launch runs it, and render shows it (with `qemu` empty: render prints QEMU's argv
 * apart, and cannot know the scope of a host it does not launch on).
 */
export function launchCommand(parts: {
  scope?: readonly string[];
  drop: readonly string[];
  policy: ProcessPolicy | undefined;
  qemu?: readonly string[];
}): string[] {
  const prefix = [...(parts.scope ?? []), ...parts.drop, ...processPolicyArgv(parts.policy)];
  return parts.qemu ? [...prefix, ...parts.qemu, "-S"] : prefix;
}
