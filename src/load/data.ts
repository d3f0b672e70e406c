// Profile data as the later phases see it: prototype-less objects (Object.create(null)) and
// arrays only, no `__proto__`/`constructor`/`prototype` key at any depth, short keys, bounded depth
// and size. Every reader's output (the fast reader, `yaml`, a --set value) goes through
// toProfileData, which copies it (so aliases shared by `yaml` become a tree counted value by value:
// a bomb of reused anchors stops at MAX_VALUES instead of expanding). Also the cheap pre-scan that
// bounds what any YAML parser is given.
import type { Segment } from "../core/field-path.js";

/** Deeper `[`/`{` nesting than any profile has. The `yaml` package recurses per level and runs the
 *  process out of memory (a fatal abort, not an exception) at about 20,000, which fits in 40 KB. */
export const MAX_FLOW_DEPTH = 64;
/** Nesting (maps in lists in maps...) deeper than this is no profile: the deepest field is 4 levels. */
export const MAX_DEPTH = 64;
/** Lines plus list/map items a file may hold before any YAML parser sees it. `yaml` takes seconds
 *  and hundreds of MB on a 1 MiB file of 500k items (and is quadratic in the keys of one map with
 *  uniqueKeys); a real profile has a few hundred. */
export const MAX_ITEMS = 20_000;
/** Values in one file's data once aliases are expanded. */
export const MAX_VALUES = 50_000;
/** Longer than any field name; keys are quoted in messages, so they must stay short. */
export const MAX_KEY_LENGTH = 256;
/** Keys that mean something to JavaScript objects: refused everywhere, whatever the schema says. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(["__proto__", "constructor", "prototype"]);

export type Data = null | boolean | number | string | Data[] | DataMap;
export interface DataMap {
  [key: string]: Data;
}

export interface DataProblem {
  /** Where: the offending key itself (for key problems) or the value. */
  path: Segment[];
  atKey: boolean;
  code: string;
  message: string;
  hint?: string;
}

/** A new prototype-less map. */
export function newMap(): DataMap {
  return Object.create(null) as DataMap;
}

export function isMap(v: unknown): v is DataMap {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Deepest `[`/`{` nesting and the count of lines and items, over the raw text (quotes and comments
 *  too: a real profile is nowhere near either limit, and over-counting only refuses absurd input).
 *  Each item takes at least one character, so a text no longer than `itemLimit` cannot exceed it and
 *  its items are not counted (reported as 0); the nesting is followed bracket to bracket. */
export function scanStructure(text: string, itemLimit = 0): { flowDepth: number; items: number } {
  let depth = 0;
  let max = 0;
  const brackets = /[[\]{}]/g;
  for (let m = brackets.exec(text); m !== null; m = brackets.exec(text)) {
    const c = m[0];
    if (c === "[" || c === "{") {
      if (++depth > max) max = depth;
    } else if (depth > 0) depth--;
  }
  if (text.length <= itemLimit) return { flowDepth: max, items: 0 };
  let items = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b || c === 0x0a || c === 0x2c)
      items++; // [ { newline comma
    else if (c === 0x2d && text.charCodeAt(i + 1) === 0x20) items++; // "- "
  }
  return { flowDepth: max, items };
}

interface Walk {
  problems: DataProblem[];
  values: number;
  over: boolean;
  /** Where the walk is: one stack pushed and popped per level, copied only into a problem (a new
   *  array per value was most of this copy's garbage). */
  path: Segment[];
}

function problem(w: Walk, p: Omit<DataProblem, "path">, path: Segment[] = w.path): void {
  w.problems.push({ path: path.slice(), ...p });
}

function copy(v: unknown, w: Walk): Data {
  if (w.over) return null;
  if (++w.values > MAX_VALUES) {
    w.over = true;
    problem(
      w,
      {
        atKey: false,
        code: "load.too-many-values",
        message: `holds more than ${MAX_VALUES} values (aliases counted each time they are used)`,
        hint: "a profile has a few hundred values; write them out, or share them through extends: base profiles",
      },
      [],
    );
    return null;
  }
  if (v === null || typeof v === "boolean" || typeof v === "number" || typeof v === "string") return v;
  if (w.path.length >= MAX_DEPTH) {
    w.over = true;
    problem(
      w,
      {
        atKey: true,
        code: "load.too-deep",
        message: `nested more than ${MAX_DEPTH} levels deep`,
        hint: "a profile nests a few levels; is this the right file?",
      },
      w.path.slice(0, 1),
    );
    return null;
  }
  if (Array.isArray(v)) {
    const out: Data[] = new Array<Data>(v.length);
    for (let i = 0; i < v.length; i++) {
      w.path.push(i);
      out[i] = copy(v[i], w);
      w.path.pop();
    }
    return out;
  }
  if (typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) return copyMap(v, w);
  if (typeof v === "object" && Object.getPrototypeOf(v) === null) return copyMap(v, w);
  problem(w, {
    atKey: false,
    code: "load.value",
    message: "is not a YAML string, number, boolean, null, list or mapping",
  });
  return null;
}

function copyMap(v: object, w: Walk): DataMap {
  const out = newMap();
  for (const key of Object.keys(v)) {
    w.path.push(key);
    if (FORBIDDEN_KEYS.has(key)) {
      problem(w, {
        atKey: true,
        code: "load.forbidden-key",
        message: `\`${key}\` is not allowed as a key (qcvm refuses __proto__, constructor and prototype at any depth)`,
        hint: "remove it: no profile field has that name",
      });
    } else if (key.length > MAX_KEY_LENGTH) {
      problem(w, {
        atKey: true,
        code: "load.long-key",
        message: `has a key ${key.length} characters long; field names are at most ${MAX_KEY_LENGTH}`,
        hint: "is this the right file?",
      });
    } else {
      out[key] = copy((v as Record<string, unknown>)[key], w);
    }
    w.path.pop();
  }
  return out;
}

/** A safe copy of parsed YAML (see the header); problems are reported, offending keys dropped. */
export function toProfileData(value: unknown, problems: DataProblem[]): Data | undefined {
  const w: Walk = { problems, values: 0, over: false, path: [] };
  const out = copy(value, w);
  return w.over ? undefined : out;
}

/** Deep copy of data that is already safe (prototype-less maps stay prototype-less). */
export function cloneData<T extends Data | undefined>(v: T): T {
  if (Array.isArray(v)) return v.map((x) => cloneData(x)) as T;
  if (isMap(v)) {
    const out = newMap();
    for (const k of Object.keys(v)) out[k] = cloneData(v[k]!);
    return out as T;
  }
  return v;
}

/** Merge `over` onto `base`: maps merge deeply, everything else (lists, scalars) replaces. */
export function mergeDeep(base: unknown, over: unknown): unknown {
  if (!isMap(base) || !isMap(over)) return over;
  const out = newMap();
  for (const k of Object.keys(base)) out[k] = base[k]!;
  for (const k of Object.keys(over)) out[k] = (Object.hasOwn(base, k) ? mergeDeep(base[k], over[k]) : over[k]) as Data;
  return out;
}
