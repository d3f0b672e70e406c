// `qcvm launch <profile>`: see src/launch/launch.ts for the steps.
// Static: this module is itself loaded only when `launch` runs.
import type { Outcome } from "../core/errors.js";
import { launchVm } from "../launch/launch.js";
import type { LaunchArgs } from "../launch/launch.js";

export async function run(args: Record<string, unknown>): Promise<Outcome> {
  const a: LaunchArgs = {
    profile: String(args.profile),
    host: args.host as string | undefined,
    capabilities: args.capabilities as string | undefined,
    set: args.set as string[] | undefined,
    detach: Boolean(args.detach),
    dryRun: Boolean(args.dryRun ?? args["dry-run"]),
    quiet: Boolean(args.quiet),
    format: args.format === "json" ? "json" : "text",
    runDir: (args.runDir ?? args["run-dir"]) as string | undefined,
    cgroup: args.cgroup === "delegated" ? "delegated" : "auto",
  };
  return launchVm(a);
}
