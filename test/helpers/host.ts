// Fixture hosts and real profiles for planner tests: hosts are probed from the sysfs-shaped trees
// under examples/hosts/ by the same probeHost() that reads /sys, profiles are read from YAML
// by readProfile(). The few host variants below (no cpuset, no numactl, no KVM) take one lever
// away from a probed fixture, so a table row can show what the planner does without it.
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { probeHost } from "../../src/probe/host.js";
import { readProfile } from "../../src/pipeline/read-profile.js";
import { formatDiagnostic } from "../../src/core/diagnostics.js";
import type { HostInfo, Profile } from "../../src/core/types.js";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));
export const HOSTS_DIR = join(REPO, "examples/hosts");
export const PROFILES_DIR = join(REPO, "profiles");
export const PLAN_PROFILES_DIR = join(REPO, "test/fixtures/plan-profiles");

export const FIXTURE_HOSTS = readdirSync(HOSTS_DIR).sort();
export const SHIPPED_PROFILES = readdirSync(PROFILES_DIR)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

export function fixtureHost(name: string): HostInfo {
  return probeHost(join(HOSTS_DIR, name));
}

/** No cpuset controller anywhere (e.g. a container without cgroup delegation). */
export function withoutCpuset(host: HostInfo): HostInfo {
  return { ...host, cgroup: { version: "none", v1Mounts: {}, controllers: [], systemd: false } };
}

export function withoutNumactl(host: HostInfo): HostInfo {
  return { ...host, numactl: { preferredMany: false, weightedInterleave: false } };
}

export function withNumactl(
  host: HostInfo,
  version: string,
  features: { preferredMany: boolean; weightedInterleave: boolean },
): HostInfo {
  return { ...host, numactl: { version, ...features } };
}

export function withoutKvm(host: HostInfo): HostInfo {
  return { ...host, kvm: false };
}

/** A profile from profiles/ or test/fixtures/plan-profiles/, valid or the test fails naming why. */
export async function loadProfile(file: string, set?: string[]): Promise<Profile> {
  const path = file.includes("/") ? join(REPO, file) : join(PROFILES_DIR, file);
  const loaded = await readProfile(path, { set });
  if (!loaded.profile) throw new Error(`${file} is not valid:\n${loaded.errors.map(formatDiagnostic).join("\n")}`);
  return loaded.profile;
}
