// The I/O half before a launch: read the profile, probe the host (memory policies tested for a
// real launch), find the QEMU binary and its capabilities (probed once per binary and cached in
// the run dir), and read the profile's {file} blobs. prepare.ts turns the result into a LaunchPlan.
import { existsSync, realpathSync, renameSync, rmSync, statSync } from "node:fs";
import { createHash } from "node:crypto";
import { join, relative } from "node:path";
import { UserError } from "../core/diagnostics.js";
import { which } from "../io/exec.js";
import { FsRoot } from "../io/fsroot.js";
import { loadInputs, resolveCapabilities } from "../pipeline/context.js";
import { inlineProfileFiles } from "../render/files.js";
import { makeDirs } from "../vm/paths.js";
import { openCgroupLayout, selfDelegatedBase } from "../vm/cgroup.js";
import { chooseQemuUser, privsepPrefix, qemuEnvironment, resolveQemuIdentity, symbolicIdentity } from "./privsep.js";
import type { QemuIdentity } from "./privsep.js";
import type { LaunchInputs } from "./prepare.js";
import type { Reporter } from "./reporter.js";
import type { HostInfo, Profile, QemuCapabilities } from "../core/types.js";

/** What `qcvm launch` was asked, as far as gathering the inputs goes. */
export interface GatherArgs {
  profile: string;
  host?: string;
  capabilities?: string;
  set?: string[];
  dryRun: boolean;
  qemuUser?: string;
  /** "delegated": the VM cgroup goes under this process's own cgroup v2 (a systemd unit with
   *  Delegate=yes, see src/export/systemd.ts), not in qcvm/ or a transient scope. */
  cgroup?: "auto" | "delegated";
}

/** `--cgroup delegated`: the unit's cgroup v2 (this process's), which must exist. */
function delegatedBaseOf(cgroup: GatherArgs["cgroup"], host: HostInfo): string | undefined {
  if (cgroup !== "delegated") return undefined;
  const base = selfDelegatedBase(host);
  if (base === undefined)
    throw new UserError(
      "--cgroup delegated: this process is in no cgroup v2 hierarchy (no cgroup2 mount, or no 0:: line in /proc/self/cgroup); run it in a systemd unit with Delegate=yes on a cgroup v2 host, or drop --cgroup delegated",
    );
  return base;
}

/**
 * Capabilities of `binary`, probed once and cached in the run dir, keyed by the binary's real path,
 * inode, size and mtime: a probe starts a QEMU of its own, which would double launch time, and an
 * upgraded binary has a new inode or mtime, so it is probed again. A cache that cannot be written
 * (a read-only run dir) only costs the next launch another probe.
 */
async function cachedCapabilities(
  binary: string,
  runDir: string,
  write: boolean,
  qemu: QemuIdentity,
): Promise<QemuCapabilities> {
  const real = realpathSync(binary);
  const st = statSync(real);
  const key = createHash("sha256")
    .update(`${real}\0${st.dev}\0${st.ino}\0${st.size}\0${st.mtimeMs}`)
    .digest("hex")
    .slice(0, 20);
  const file = join(runDir, "caps", `${key}.json`);
  const { loadCapabilities, probeQemu, saveCapabilities } = await import("../probe/qemu.js");
  if (existsSync(file)) {
    try {
      return loadCapabilities(file);
    } catch {
      // damaged: probe again and replace it
    }
  }
  // The probe starts a QEMU too: it runs as the launch's QEMU would, never as root unless asked.
  const caps = await probeQemu(real, {
    prefix: privsepPrefix(qemu),
    env: qemuEnvironment("/nonexistent"),
  });
  if (write) {
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      makeDirs(join(runDir, "caps"), 0o755);
      saveCapabilities(caps, tmp);
      renameSync(tmp, file);
    } catch {
      // not cached: see above; a half-written temp file (ENOSPC) is not left behind
      try {
        rmSync(tmp, { force: true });
      } catch {
        // the caps directory could not even be made (ENOTDIR): nothing was written
      }
    }
  }
  return caps;
}

/**
 * The same steps as loadContext (profile, host, capabilities: render and plan use them too), with
 * the profile read once: the QEMU binary it names decides which capabilities apply (a cached probe
 * of that very binary).
 */
export async function gatherInputs(a: GatherArgs, runDir: string, r: Reporter): Promise<LaunchInputs> {
  // Who QEMU runs as comes from the host's /etc/passwd: a host tree's own when it has one (the
  // fake-runner tests), else this machine's (a sysfs fixture says nothing about users).
  const passwdRoot = a.host && existsSync(join(a.host, "etc/passwd")) ? a.host : "/";
  const identityFor = (profile: Profile) =>
    resolveQemuIdentity(chooseQemuUser(a.qemuUser, profile.qemu.user), new FsRoot(passwdRoot));
  const inputs = await loadInputs(
    {
      profile: a.profile,
      set: a.set,
      host: a.host,
      capabilities: a.capabilities,
      resolveCaps: async (profile) => {
        // A dry run for another host (--host) cannot know that host's QEMU: the profile's target
        // version stands in, as for render and plan.
        if (a.dryRun && a.host) return resolveCapabilities(profile, { profile: a.profile });
        // The binary is checked before anything else so a missing QEMU is one clear message.
        const binary = await which(profile.qemu.binary);
        if (!binary) {
          const msg =
            `QEMU binary \`${profile.qemu.binary}\` not found (qemu.binary in ${relative(process.cwd(), profile.file) || profile.file}): ` +
            "install it (Debian: apt-get install qemu-system-x86) or set qemu.binary to its path";
          if (!a.dryRun) throw new UserError(msg);
          r.note(`${msg}; this dry run uses the built-in capabilities of QEMU ${profile.qemu.version}`);
          return resolveCapabilities(profile, { profile: a.profile });
        }
        return cachedCapabilities(binary, runDir, !a.dryRun, identityFor(profile));
      },
    },
    // Only a launch that will run QEMU here asks the kernel (a dry run does not start numactl).
    { testMempolicy: !a.dryRun },
  );
  // Who QEMU runs as (identityFor); a dry run for another host (--host) shows the drop by name.
  const qemuIdentity =
    a.dryRun && a.host
      ? symbolicIdentity(chooseQemuUser(a.qemuUser, inputs.profile.qemu.user))
      : identityFor(inputs.profile);
  const cgroups = openCgroupLayout(inputs.host, { delegatedBase: delegatedBaseOf(a.cgroup, inputs.host) });
  return { ...inputs, inlined: inlineProfileFiles(inputs.profile), qemuIdentity, cgroups };
}
