// What a semantic rule sees and how rules run: the context (normalized profile, the raw one to know
// what was written, and error/warn with a field path), the runner, and the small helpers rules
// share. The rules themselves are in rules-*.ts; rules.ts lists them with the fields each reads.
import { FEATURES, versionAtLeast } from "../probe/capabilities.js";
import type { Feature } from "../probe/capabilities.js";
import { diag } from "../core/diagnostics.js";
import { parsePath, valueAt } from "../core/field-path.js";
import type { Segment } from "../core/field-path.js";
import type { Position } from "../load/positions.js";
import type { Diagnostic, Profile, RawProfile } from "../core/types.js";

export interface RuleContext {
  raw: RawProfile;
  profile: Profile;
  /** Was this field written (by a base, the file or --set), as opposed to defaulted? */
  has(path: string): boolean;
  /** The value as written, or undefined. */
  written(path: string): unknown;
  error(code: string, path: string, message: string, extra?: { got?: unknown; hint?: string }): void;
  warn(code: string, path: string, message: string, extra?: { got?: unknown; hint?: string }): void;
}

export type Rule = (ctx: RuleContext) => void;

export type Locate = (path: readonly Segment[], key?: boolean) => Position;

export function s(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export function needVersion(ctx: RuleContext, feature: Feature, path: string, what?: string): void {
  const since = FEATURES[feature].since;
  const version = ctx.profile.qemu.version;
  if (since !== null && !versionAtLeast(version, since)) {
    ctx.error("qemu.version", path, `${what ?? FEATURES[feature].what} needs qemu.version >= ${since}`, {
      got: version,
      hint: `set qemu.version: "${since}" or newer, and use a QEMU that new`,
    });
  }
}

/** Rules name fields by the same few dozen paths in every profile: parse each once per process
 *  (bounded: a 100k-node profile's indexed paths clear the cache rather than grow it). */
const PARSED = new Map<string, readonly (string | number)[]>();
function parsedPath(path: string): readonly (string | number)[] {
  let segs = PARSED.get(path);
  if (segs === undefined) {
    if (PARSED.size >= 4096) PARSED.clear();
    segs = parsePath(path) ?? [];
    PARSED.set(path, segs);
  }
  return segs;
}

/** Run every rule; diagnostics carry the position of the field that set the value. */
export function runRules(
  raw: RawProfile,
  profile: Profile,
  locate: Locate,
  rules: readonly Rule[],
): { errors: Diagnostic[]; warnings: Diagnostic[] } {
  const errors: Diagnostic[] = [];
  const warnings: Diagnostic[] = [];
  const get = (path: string): unknown => valueAt(raw, parsedPath(path));
  const push =
    (list: Diagnostic[], severity: "error" | "warning") =>
    (code: string, path: string, message: string, extra: { got?: unknown; hint?: string } = {}) => {
      const d = diag(severity, code, path, message, { ...locate(parsedPath(path)), ...extra });
      if (d.hint === undefined) delete d.hint;
      if (!("got" in extra)) delete d.got;
      list.push(d);
    };
  const ctx: RuleContext = {
    raw,
    profile,
    has: (p) => get(p) !== undefined,
    written: get,
    error: push(errors, "error"),
    warn: push(warnings, "warning"),
  };
  for (const rule of rules) rule(ctx);
  return { errors, warnings };
}
