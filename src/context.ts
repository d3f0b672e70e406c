// The front half every profile command shares: read the profile, probe (or load) the host and
// QEMU capabilities, and plan. render, plan and launch all start here, so they cannot disagree.
import { readProfile } from "./profile.js";
import { UserError, formatDiagnostic } from "./diagnostics.js";
import { builtinCapabilities } from "./capabilities.js";
import type { Diagnostic, HostInfo, Plan, Profile, QemuCapabilities } from "./types.js";

export interface ContextArgs {
  profile: string;
  set?: string[];
  /** Host root for the probe (`--host DIR`); "/" when absent. */
  host?: string;
  /** Saved capabilities file (`--capabilities FILE`). */
  capabilities?: string;
  /** Probe the real QEMU binary instead of using built-in capabilities (launch does). */
  probeQemu?: boolean;
}

export interface Context {
  profile: Profile;
  host: HostInfo;
  caps: QemuCapabilities;
  plan: Plan;
  /** Profile warnings (validation) followed by plan warnings. */
  warnings: Diagnostic[];
}

/** Read, validate and normalize the profile; a profile with errors is a UserError listing them all. */
export async function loadValidProfile(file: string, set?: string[]): Promise<{ profile: Profile; warnings: Diagnostic[] }> {
  const loaded = await readProfile(file, { set });
  if (loaded.errors.length > 0 || !loaded.profile) {
    const lines = [...loaded.errors, ...loaded.warnings].map(formatDiagnostic);
    throw new UserError(
      `${file} is not a valid profile (${loaded.errors.length} error${loaded.errors.length === 1 ? "" : "s"}):\n${lines.join("\n")}`,
    );
  }
  return { profile: loaded.profile, warnings: loaded.warnings };
}

/** Capabilities: a saved file, a live probe, or the built-in table for the profile's target version. */
export async function resolveCapabilities(profile: Profile, args: ContextArgs): Promise<QemuCapabilities> {
  if (args.capabilities) {
    const { loadCapabilities } = await import("./probe/qemu.js");
    return loadCapabilities(args.capabilities);
  }
  if (args.probeQemu) {
    const { probeQemu } = await import("./probe/qemu.js");
    return probeQemu(profile.qemu.binary);
  }
  return builtinCapabilities(profile.qemu.version);
}

export async function loadContext(args: ContextArgs): Promise<Context> {
  const { profile, warnings } = await loadValidProfile(args.profile, args.set);
  const { probeHostAsync } = await import("./probe/host.js");
  // Async: on the real host it also asks numactl which policies it supports.
  const host = await probeHostAsync(args.host ?? "/");
  const caps = await resolveCapabilities(profile, args);
  const { planPlacement } = await import("./plan.js");
  const plan = planPlacement(profile, host, caps);
  return { profile, host, caps, plan, warnings: [...warnings, ...plan.warnings] };
}
