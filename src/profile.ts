// Placeholder: load (YAML with positions, extends, --set) -> validate -> normalize.
import type { LoadedProfile } from "./types.js";

export interface ReadOptions {
  /** `--set path=value` overrides, applied after extends and before defaults. */
  set?: string[];
}

export async function readProfile(file: string, _opts: ReadOptions = {}): Promise<LoadedProfile> {
  return { file, raw: {}, errors: [{ severity: "error", code: "todo", path: "", message: "not implemented" }], warnings: [] };
}
