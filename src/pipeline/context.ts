// The front half every profile command shares: read the profile, probe (or load) the host and
// QEMU capabilities, and plan. render, plan and launch all start here, so they cannot disagree.
import { readProfile } from "./read-profile.js";
import type { ReadOptions } from "./read-profile.js";
import { checkHostRoot } from "../io/fsroot.js";
import { UserError, diag, formatDiagnostic } from "../core/diagnostics.js";
import { builtinCapabilities, compareVersions } from "../probe/capabilities.js";
import { usesGuestMemfd } from "../core/confidential.js";
import type { Diagnostic, HostInfo, Plan, Profile, QemuCapabilities } from "../core/types.js";

export interface ContextArgs {
  profile: string;
  set?: string[];
  /** `--root DIR`: where extends: bases may live. */
  root?: string;
  /** The host-check step (`--no-host-check` sets false). */
  hostCheck?: boolean;
  /** Host root for the probe (`--host DIR`); "/" when absent. */
  host?: string;
  /** Saved capabilities file (`--capabilities FILE`). */
  capabilities?: string;
  /** Probe the real QEMU binary instead of using built-in capabilities. */
  probeQemu?: boolean;
  /** Decide the capabilities another way once the profile is known (launch: a per-binary cache);
   *  used when no --capabilities file is given. */
  resolveCaps?: (profile: Profile) => Promise<QemuCapabilities>;
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
export async function loadValidProfile(
  file: string,
  opts: ReadOptions = {},
): Promise<{ profile: Profile; warnings: Diagnostic[] }> {
  const loaded = await readProfile(file, opts);
  if (loaded.errors.length > 0 || !loaded.profile) {
    const lines = [...loaded.errors, ...loaded.warnings].map(formatDiagnostic);
    throw new UserError(
      `${file} is not a valid profile (${loaded.errors.length} error${loaded.errors.length === 1 ? "" : "s"}):\n${lines.join("\n")}`,
      "invalid",
      [...loaded.errors, ...loaded.warnings],
    );
  }
  return { profile: loaded.profile, warnings: loaded.warnings };
}

/** Capabilities: a saved file, a live probe, or the built-in table for the profile's target version. */
export async function resolveCapabilities(profile: Profile, args: ContextArgs): Promise<QemuCapabilities> {
  if (args.capabilities) {
    const { loadCapabilities } = await import("../probe/qemu.js");
    return loadCapabilities(args.capabilities);
  }
  if (args.probeQemu) {
    const { probeQemu } = await import("../probe/qemu.js");
    return probeQemu(profile.qemu.binary);
  }
  return builtinCapabilities(profile.qemu.version);
}

/** Can the plan for this profile use a process-wide numactl policy? */
export function needsNumactl(profile: Profile): boolean {
  const guestMemfd = usesGuestMemfd(profile.confidential.type);
  const weighted = [profile.memory.policy, ...profile.numa.nodes.map((n) => n.policy)].includes("weighted-interleave");
  return guestMemfd || weighted;
}

/** What a plan is made from: the valid profile (with its warnings), the host and QEMU's capabilities. */
export interface Inputs {
  profile: Profile;
  host: HostInfo;
  caps: QemuCapabilities;
  /** Profile warnings (validation). */
  warnings: Diagnostic[];
}

/**
 * Read the profile, probe (or read) the host and resolve the capabilities. `testMempolicy`: a
 * launch here asks the kernel whether memory policies are allowed (HostInfo.mempolicy).
 */
export async function loadInputs(args: ContextArgs, probe: { testMempolicy?: boolean } = {}): Promise<Inputs> {
  if (args.host !== undefined) checkHostRoot(args.host);
  const { profile, warnings } = await loadValidProfile(args.profile, {
    set: args.set,
    root: args.root,
    hostCheck: args.hostCheck,
  });
  const { probeHost, probeHostAsync } = await import("../probe/host.js");
  // Asking the real numactl what it supports costs two process starts; only a process-wide policy
  // needs it (private memory of SNP/TDX guests, weighted interleave), so only then is it asked.
  const root = args.host ?? "/";
  const numactl = needsNumactl(profile);
  const host =
    numactl || probe.testMempolicy
      ? await probeHostAsync(root, { numactl, testMempolicy: probe.testMempolicy })
      : probeHost(root);
  const caps =
    !args.capabilities && args.resolveCaps ? await args.resolveCaps(profile) : await resolveCapabilities(profile, args);
  return { profile, host, caps, warnings };
}

export async function loadContext(args: ContextArgs): Promise<Context> {
  const { profile, host, caps, warnings } = await loadInputs(args);
  const { planPlacement } = await import("../plan/plan.js");
  const plan = planPlacement(profile, host, caps);
  const older = olderQemuWarning(profile, caps);
  return { profile, host, caps, plan, warnings: [...warnings, ...(older ? [older] : []), ...plan.warnings] };
}

/**
 * The profile targets a newer QEMU than the binary that was probed (or whose capabilities were
 * saved): what is rendered for the target may not start on the binary, so say which binary it is.
 */
export function olderQemuWarning(profile: Profile, caps: QemuCapabilities): Diagnostic | undefined {
  if (caps.source === "builtin" || compareVersions(profile.qemu.version, caps.version) <= 0) return undefined;
  const binary = caps.binary ?? profile.qemu.binary;
  return diag(
    "warning",
    "qemu.version-newer",
    "qemu.version",
    `targets QEMU ${profile.qemu.version}, but ${binary} is QEMU ${caps.version}${caps.source === "file" ? " (saved capabilities)" : ""}: what needs a newer QEMU will fail at start`,
    {
      got: profile.qemu.version,
      hint: `set qemu.version: "${caps.version}", or point qemu.binary at a QEMU ${profile.qemu.version}`,
      file: profile.file,
    },
  );
}
