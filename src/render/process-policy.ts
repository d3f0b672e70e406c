// A plan's process-wide memory policy as argv: the one place that spells numactl's options. The
// plan holds the policy as data (Plan.launch.processPolicy); render, plan's reasons and launch ask
// here for the words.
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
