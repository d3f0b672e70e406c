// readProfile: load (YAML with positions, extends, --set) -> schema -> normalize -> rules -> host
// check. Every user mistake comes back as a diagnostic in the result; nothing here throws for them.
// A schema error does not stop the rules: the values it concerns are dropped, and every rule (and
// host check) whose inputs the schema passed still runs, so one run reports every problem.
// A report is bounded: the first MAX_REPORTED problems of a file, then one "and N more".
import { loadProfileFile } from "../load/load.js";
import { cloneData, isMap } from "../load/data.js";
import type { Data } from "../load/data.js";
import { overlapsPattern, readPath } from "../core/field-path.js";
import type { Segment } from "../core/field-path.js";
import { checkSchema } from "../validate/schema.js";
import { normalizeProfile } from "../normalize/normalize.js";
import { RULE_INPUTS, runRules } from "../validate/rules.js";
import type { Rule } from "../validate/rules.js";
import { HOST_CHECK_INPUTS } from "../validate/host-check.js";
import { InternalError, diag, sortDiagnostics } from "../core/diagnostics.js";
import type { Diagnostic, LoadedProfile, RawProfile } from "../core/types.js";

/** Problems reported per file (errors and warnings each); the rest are counted. */
export const MAX_REPORTED = 50;

export interface ReadOptions {
  /** `--set path=value` overrides, applied after extends and before defaults. */
  set?: string[];
  /** `--root DIR`: where bases may live (default: the profile's repository root). */
  root?: string;
  /** The host-check step (files QEMU opens exist); `--no-host-check` turns it off. Default on. */
  hostCheck?: boolean;
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
  // Values the schema refused are dropped (an unknown field adds nothing, a wrong type would be a
  // guess); a rule runs when none of the fields it reads is at, inside or above a schema error.
  // Past the explained errors (schema.ts bounds them) nothing is known about where the rest are.
  if (schema.errors.length > 0 && unexplained > 0) return finish(loaded.raw);
  const refused = schema.errors.map((e) => readPath(e.path));
  if (refused.length > 0) raw = without(raw, refused);
  // An unknown field, dropped, leaves the fields around it as they were: it blocks no rule.
  const doubtful = schema.errors.filter((e) => e.code !== "schema.unknown-field").map((e) => readPath(e.path));
  // A rule's inputs are patterns ("disks[*].path"); it is held back when one touches a doubtful path.
  const runnable = (table: ReadonlyMap<Rule, readonly string[]>): Rule[] =>
    doubtful.length === 0
      ? [...table.keys()]
      : [...table]
          .filter(([, inputs]) => !inputs.some((i) => doubtful.some((r) => overlapsPattern(r, readPath(i)))))
          .map(([r]) => r);
  let profile: LoadedProfile["profile"];
  try {
    // Where the data's type becomes the schema's: normalize reads it as WrittenProfile (generated
    // from the schema), which holds because checkSchema passed it minus the values it refused.
    profile = normalizeProfile(raw, file);
  } catch (e) {
    // Required fields the schema reported missing can leave nothing to normalize: those errors
    // are the report.
    if (refused.length > 0) return finish(loaded.raw);
    throw new InternalError(`normalize failed on a schema-valid profile: ${(e as Error).message}`);
  }
  const checks = runnable(RULE_INPUTS);
  if (opts.hostCheck !== false) checks.push(...runnable(HOST_CHECK_INPUTS));
  const rules = runRules(raw, profile, loaded.locate, checks);
  pushAll(errors, rules.errors);
  pushAll(warnings, rules.warnings);
  return finish(loaded.raw, profile);
}
