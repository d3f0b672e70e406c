// readProfile: load (YAML with positions, extends, --set) -> schema -> normalize -> rules.
// Every user mistake comes back as a diagnostic in the result; nothing here throws for them.
import { loadProfileFile } from "../load/load.js";
import type { Segment } from "../load/load.js";
import { checkSchema } from "../validate/schema.js";
import { normalizeProfile } from "../normalize/normalize.js";
import { runRules } from "../validate/rules.js";
import { sortDiagnostics } from "../core/diagnostics.js";
import type { Diagnostic, LoadedProfile, RawProfile } from "../core/types.js";

export interface ReadOptions {
  /** `--set path=value` overrides, applied after extends and before defaults. */
  set?: string[];
}

function without(data: RawProfile, paths: Segment[][]): RawProfile {
  const copy = structuredClone(data);
  for (const path of paths) {
    let cur: unknown = copy;
    for (const seg of path.slice(0, -1)) cur = (cur as Record<string, unknown>)?.[seg as string];
    if (cur && typeof cur === "object") delete (cur as Record<string, unknown>)[path.at(-1) as string];
  }
  return copy;
}

export async function readProfile(file: string, opts: ReadOptions = {}): Promise<LoadedProfile> {
  const loaded = await loadProfileFile(file, { set: opts.set });
  const errors: Diagnostic[] = [...loaded.errors];
  const warnings: Diagnostic[] = [...loaded.warnings];
  if (!loaded.raw) return { file, raw: {}, errors, warnings };
  let raw = loaded.raw;
  const schema = await checkSchema(raw, loaded.locate);
  errors.push(...schema.errors);
  // Unknown fields add nothing to the profile: drop them and check the rest too, so one typo does
  // not hide every other problem. Any other schema error stops here (values would be guesses).
  if (schema.errors.length > 0) {
    if (!schema.onlyUnknownFields) return { file, raw, errors: sortDiagnostics(errors), warnings };
    raw = without(
      raw,
      schema.errors.map((e) => pathSegments(e.path)),
    );
  }
  const profile = normalizeProfile(raw, file);
  const rules = runRules(raw, profile, loaded.locate);
  errors.push(...rules.errors);
  warnings.push(...rules.warnings);
  return {
    file,
    raw: loaded.raw,
    profile: errors.length === 0 ? profile : undefined,
    errors: sortDiagnostics(errors),
    warnings: sortDiagnostics(warnings),
  };
}

function pathSegments(path: string): Segment[] {
  const out: Segment[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}
