// readProfile: load (YAML with positions, extends, --set) -> schema -> normalize -> rules.
// Every user mistake comes back as a diagnostic in the result; nothing here throws for them.
// A report is bounded: the first MAX_REPORTED problems of a file, then one "and N more".
import { loadProfileFile } from "../load/load.js";
import { cloneData, isMap } from "../load/data.js";
import type { Data } from "../load/data.js";
import type { Segment } from "../core/field-path.js";
import { checkSchema } from "../validate/schema.js";
import { normalizeProfile } from "../normalize/normalize.js";
import { runRules } from "../validate/rules.js";
import { diag, sortDiagnostics } from "../core/diagnostics.js";
import type { Diagnostic, LoadedProfile, RawProfile } from "../core/types.js";

/** Problems reported per file (errors and warnings each); the rest are counted. */
export const MAX_REPORTED = 50;

export interface ReadOptions {
  /** `--set path=value` overrides, applied after extends and before defaults. */
  set?: string[];
  /** `--root DIR`: where bases may live (default: the profile's repository root). */
  root?: string;
}

function without(data: RawProfile, paths: Segment[][]): RawProfile {
  const copy = cloneData(data as Data) as RawProfile;
  for (const path of paths) {
    let cur: unknown = copy;
    for (const seg of path.slice(0, -1))
      cur = isMap(cur) || Array.isArray(cur) ? (cur as Record<string, unknown>)[seg as string] : undefined;
    if (cur && typeof cur === "object") delete (cur as Record<string, unknown>)[path.at(-1) as string];
  }
  return copy;
}

/** The first MAX_REPORTED, sorted, then "and N more" at the file. */
function bounded(
  list: Diagnostic[],
  file: string,
  what: "error" | "warning",
  uncounted = 0,
): { shown: Diagnostic[]; more: number } {
  const sorted = sortDiagnostics(list);
  if (sorted.length <= MAX_REPORTED && uncounted === 0) return { shown: sorted, more: 0 };
  const more = Math.max(0, sorted.length - MAX_REPORTED) + uncounted;
  const shown = sorted.slice(0, MAX_REPORTED);
  shown.push(
    diag(
      what,
      "report.more",
      "",
      `and ${more} more ${what}${more === 1 ? "" : "s"} (only the first ${MAX_REPORTED} are shown)`,
      {
        file: sorted[0]?.file ?? file,
        hint: "fix these and validate again",
      },
    ),
  );
  return { shown, more };
}

function pushAll(to: Diagnostic[], from: readonly Diagnostic[]): void {
  for (const d of from) to.push(d);
}

export async function readProfile(file: string, opts: ReadOptions = {}): Promise<LoadedProfile> {
  const loaded = await loadProfileFile(file, { set: opts.set, root: opts.root });
  const errors: Diagnostic[] = [...loaded.errors];
  let unexplained = 0;
  const warnings: Diagnostic[] = [...loaded.warnings];
  const finish = (raw: RawProfile, profile?: LoadedProfile["profile"]): LoadedProfile => {
    const e = bounded(errors, file, "error", unexplained);
    const w = bounded(warnings, file, "warning");
    return {
      file,
      raw,
      ...(profile && errors.length === 0 ? { profile } : {}),
      errors: e.shown,
      warnings: w.shown,
      ...(e.more > 0 ? { moreErrors: e.more } : {}),
      ...(w.more > 0 ? { moreWarnings: w.more } : {}),
    };
  };
  if (!loaded.raw) return finish({});
  let raw = loaded.raw;
  const schema = await checkSchema(raw, loaded.locate);
  pushAll(errors, schema.errors);
  unexplained = schema.unexplained ?? 0;
  // Unknown fields add nothing to the profile: drop them and check the rest too, so one typo does
  // not hide every other problem. Any other schema error stops here (values would be guesses).
  if (schema.errors.length > 0) {
    if (!schema.onlyUnknownFields) return finish(loaded.raw);
    raw = without(
      raw,
      schema.errors.map((e) => pathSegments(e.path)),
    );
  }
  const profile = normalizeProfile(raw, file);
  const rules = runRules(raw, profile, loaded.locate);
  pushAll(errors, rules.errors);
  pushAll(warnings, rules.warnings);
  return finish(loaded.raw, profile);
}

function pathSegments(path: string): Segment[] {
  const out: Segment[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}
