// Placeholder: the pure planner (profile + host + capabilities -> plan).
import type { HostInfo, Plan, Profile, QemuCapabilities } from "./types.js";

export function planPlacement(profile: Profile, _host: HostInfo, _caps: QemuCapabilities): Plan {
  return {
    name: profile.name,
    confidential: profile.confidential.type,
    guestMemfd: false,
    nodes: [],
    launch: { argvPrefix: [], cgroups: [], pinning: [] },
    capacity: [],
    warnings: [],
    errors: [],
  };
}
