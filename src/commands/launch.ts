// `qcvm launch <profile>`: see src/launch/launch.ts for the steps.
// Static: this module is itself loaded only when `launch` runs.
import type { Outcome } from "../core/errors.js";
import { launchVm } from "../launch/launch.js";
import type { LaunchOptions } from "../cli/command-options.js";

export async function run(o: LaunchOptions): Promise<Outcome> {
  return launchVm(o);
}
