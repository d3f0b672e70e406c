// Placeholder: the pure renderer (profile + plan + capabilities -> QEMU argv).
import type { Plan, Profile, QemuCapabilities, Result } from "./types.js";

export function renderArgv(_profile: Profile, _plan: Plan, _caps: QemuCapabilities): Result<string[]> {
  return { value: [], errors: [], warnings: [] };
}
