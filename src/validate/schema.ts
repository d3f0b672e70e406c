// Schema validation: the generated standalone ajv validator (scripts/gen-validator.mjs; nothing is
// compiled at run time), and its errors turned into diagnostics a person can act on: unknown keys
// with "did you mean", enums listing their values, one message per bad value instead of one per
// schema branch. The schema itself is only loaded when there is an error to explain.
import { validate as validateSchema } from "../generated/profile-validator.js";
import type { AjvError } from "../generated/profile-validator.js";
import { diag } from "../core/diagnostics.js";
import { formatPath, splitPointer, valueAt } from "../core/field-path.js";
import type { Segment } from "../core/field-path.js";
import type { Position } from "../load/positions.js";
import type { Diagnostic } from "../core/types.js";

type Locate = (path: readonly Segment[], key?: boolean) => Position;
type Schema = Record<string, unknown>;

export interface SchemaResult {
  errors: Diagnostic[];
  /** True when every error is an unknown field: the rest of the profile can still be checked. */
  onlyUnknownFields: boolean;
  /** Errors beyond MAX_EXPLAINED, counted but not explained. */
  unexplained?: number;
}

/** Validate against schemas/profile.schema.json. */
export async function checkSchema(data: unknown, locate: Locate): Promise<SchemaResult> {
  if (validateSchema(data)) return { errors: [], onlyUnknownFields: true, unexplained: 0 };
  const raw = validateSchema.errors ?? [];
  const schema = (await import("../../schemas/profile.schema.json", { with: { type: "json" } })).default as Schema;
  const r = explainSome(raw, data, schema, locate, MAX_EXPLAINED);
  return {
    errors: r.errors,
    unexplained: r.unexplained,
    onlyUnknownFields: r.unexplainedAllUnknown && r.errors.every((e) => e.code === "schema.unknown-field"),
  };
}

/** Edit distance counting a swap of two neighbours as one edit (`modle` -> `model` is 1). Three rows
 *  of memory, not a matrix: a key can be long. */
export function editDistance(a: string, b: string): number {
  let prev2: number[] = [];
  let prev: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, prev2[j - 2]! + 1);
      cur.push(v);
    }
    prev2 = prev;
    prev = cur;
  }
  return prev[b.length]!;
}

/** The closest candidate when it is close enough to be a typo. A candidate whose length alone
 *  differs by more than the limit is skipped unmeasured, so the work per word is bounded by the
 *  candidates' lengths, not the word's. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const w = word.toLowerCase();
  const limit = Math.max(1, Math.floor(word.length / 3));
  for (const c of candidates) {
    if (Math.abs(c.length - word.length) > limit) continue;
    const d = c.toLowerCase() === w ? 0 : editDistance(w, c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return bestD <= limit ? best : undefined;
}

function schemaAt(schema: Schema, schemaPath: string): Schema | undefined {
  let cur: unknown = schema;
  for (const seg of schemaPath.replace(/^#\/?/, "").split("/")) {
    if (!seg) continue;
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[seg.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return cur as Schema | undefined;
}

/** Messages for patterns, by the schema location of the pattern. */
const PATTERN_MESSAGES: [RegExp, string, string?][] = [
  [
    /^#\/properties\/name\//,
    "must be lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters",
    "e.g. snp-2node",
  ],
  [
    /\/\$defs\/size\//,
    "must be a size: a number of bytes, or a number with K, M, G or T (KiB, MiB, GiB, TiB)",
    "e.g. 512M, 64G, 1T",
  ],
  [/\/\$defs\/nodeList\//, 'must be a list of ids: "0-3,6" or [0, 1]', undefined],
  [/\/properties\/version\//, "must be a QEMU version MAJOR.MINOR[.PATCH]", 'quote it: version: "9.1"'],
  [/\/properties\/mac\//, "must be a MAC address", 'quote it: mac: "52:54:00:12:34:56"'],
  [
    /^#\/properties\/machine\/properties\/type\//,
    "must be a QEMU machine type: letters, digits, '.', '_' and '-'",
    "e.g. q35; qemu-system-x86_64 -machine help lists them",
  ],
  [
    /^#\/properties\/cpu\/properties\/model\//,
    "must be a QEMU CPU model: letters, digits, '.', '_' and '-' (with features after a comma: +, - and =)",
    "e.g. qemu64, EPYC-v4 or host; qemu-system-x86_64 -cpu help lists them",
  ],
  [/^#\/properties\/serial\//, "must be none, stdio, pty, file:PATH or device:PATH", undefined],
  [/\/properties\/base64\//, "must be base64 text", "encode with `base64 -w0 FILE`"],
  [/\/properties\/ifname\//, "must be a network interface name (at most 15 letters, digits, _ . -)", undefined],
  [/\/(policy|attributes)\/oneOf\/1\//, "must be a hex number 0x... (at most 64 bits)", undefined],
];

const TYPE_WORDS: Record<string, string> = {
  string: "a string",
  integer: "a whole number",
  number: "a number",
  boolean: "true or false",
  object: "a mapping (key: value)",
  array: "a list",
  null: "null",
};

/** What a composite (anyOf/oneOf) accepts, for when no branch comes close. */
const COMPOSITE_MESSAGES: [RegExp, string, string?][] = [
  [/\/\$defs\/size\//, "must be a size: a number of bytes, or a number with K, M, G or T", "e.g. 512M, 64G, 1T"],
  [/\/\$defs\/nodeList\//, 'must be a list of ids: "0-3,6" or [0, 1]', undefined],
  [/\/\$defs\/fileOrBase64\//, "must be {base64: TEXT} or {file: PATH}", undefined],
  [/\/\$defs\/socketAddress\//, "must be {type: vsock, cid: N, port: N} or {type: unix, path: PATH}", undefined],
  [/\/properties\/policy\//, 'must be a number, a hex string "0x..." or a list of named flags', undefined],
  [/\/properties\/attributes\//, 'must be a number, a hex string "0x..." or a list of named flags', undefined],
  [/\/properties\/extends\//, "must be a file name or a list of file names", undefined],
];

function isBranchOf(e: AjvError, c: AjvError): boolean {
  return (
    e !== c &&
    e.schemaPath.startsWith(`${c.schemaPath}/`) &&
    (e.instancePath === c.instancePath || e.instancePath.startsWith(`${c.instancePath}/`))
  );
}

function branchIndex(e: AjvError, c: AjvError): number {
  return Number(e.schemaPath.slice(c.schemaPath.length + 1).split("/")[0]);
}

/** The errors of composite `errors[k]`'s branches. ajv pushes a failed anyOf/oneOf right after the
 *  errors of its branches, so they are the run just before it: found walking back, not by a scan
 *  of every error per composite (which was quadratic in a profile with many bad values). */
function branchErrors(errors: readonly AjvError[], k: number): AjvError[] {
  const c = errors[k]!;
  const out: AjvError[] = [];
  for (let j = k - 1; j >= 0 && isBranchOf(errors[j]!, c); j--) out.push(errors[j]!);
  return out.reverse();
}

/** Which branches' errors to report for one failed composite (see pickBranches). */
function chooseBranch(c: AjvError, subs: AjvError[]): AjvError[] {
  const byBranch = new Map<number, AjvError[]>();
  for (const s of subs) {
    const i = branchIndex(s, c);
    const list = byBranch.get(i);
    if (list) list.push(s);
    else byBranch.set(i, [s]);
  }
  // A branch whose type (or const discriminator) does not match the value was not meant.
  const meant = [...byBranch.entries()].filter(
    ([, errs]) =>
      !errs.some(
        (e) =>
          (e.keyword === "type" || e.keyword === "oneOf" || e.keyword === "anyOf") && e.instancePath === c.instancePath,
      ) && !errs.some((e) => e.keyword === "const" && e.instancePath.startsWith(c.instancePath)),
  );
  const objectBranches = meant.filter(([, errs]) =>
    errs.every((e) => e.keyword === "required" || e.keyword === "additionalProperties"),
  );
  if (meant.length === 1) return meant[0]![1];
  if (meant.length > 1) {
    const deep = meant.filter(([, errs]) => errs.some((e) => e.instancePath !== c.instancePath));
    if (deep.length === 1) return deep[0]![1];
    if (objectBranches.length === meant.length) {
      // {bas64: ...}: every branch objects to the same unknown key; report that key, plus what is accepted.
      const unknown = meant[0]![1].filter(
        (e) =>
          e.keyword === "additionalProperties" &&
          meant.every(([, errs]) =>
            errs.some((x) => x.keyword === e.keyword && x.params.additionalProperty === e.params.additionalProperty),
          ),
      );
      return unknown.length > 0 ? unknown : [c];
    }
  }
  return [c];
}

/** Replace each failed anyOf/oneOf by the errors of the branch the user evidently meant, if any. */
function pickBranches(errors: AjvError[]): AjvError[] {
  const drop = new Set<AjvError>();
  const keep: AjvError[] = [];
  for (let k = 0; k < errors.length; k++) {
    const c = errors[k]!;
    if (c.keyword !== "anyOf" && c.keyword !== "oneOf") continue;
    const subs = branchErrors(errors, k);
    for (const s of subs) drop.add(s);
    for (const e of chooseBranch(c, subs)) keep.push(e);
  }
  if (keep.length === 0 && drop.size === 0) return errors;
  const out = errors.filter((e) => !drop.has(e) && e.keyword !== "anyOf" && e.keyword !== "oneOf");
  for (const e of keep) out.push(e);
  return out;
}

export function explainErrors(errors: AjvError[], data: unknown, schema: Schema, locate: Locate): Diagnostic[] {
  return explainSome(errors, data, schema, locate, Infinity).errors;
}

/** Errors explained (in ajv's order) before the rest are only counted: a report shows 50 per file,
 *  and 10,000 typos need not each be located and matched against the known fields. */
export const MAX_EXPLAINED = 500;

/** What one error's explanation needs: where it is, the value there, and the schema's known fields
 *  (one lookup per schema location, not per unknown key: 10,000 typos share one parent). */
interface ErrorAt {
  e: AjvError;
  at: Segment[];
  got: unknown;
  locate: Locate;
  knownFields: (schemaPath: string) => string[];
}

type Explainer = (x: ErrorAt) => Diagnostic;

const range: Explainer = ({ e, at, got, locate }) => {
  const op = { minimum: ">=", maximum: "<=", exclusiveMinimum: ">", exclusiveMaximum: "<" }[e.keyword];
  return diag("error", "schema.range", formatPath(at), `must be ${op} ${String(e.params.limit)}`, {
    ...locate(at),
    got,
  });
};

const composite: Explainer = ({ e, at, got, locate }) => {
  const hit = COMPOSITE_MESSAGES.find(([re]) => re.test(e.schemaPath));
  return diag("error", "schema.type", formatPath(at), hit ? hit[1] : "has the wrong shape", {
    ...locate(at),
    got,
    hint: hit?.[2],
  });
};

/** One explanation per ajv keyword; anything else gets ajv's own message. */
const EXPLAIN: Record<string, Explainer> = {
  additionalProperties: ({ e, at, locate, knownFields }) => {
    const key = String(e.params.additionalProperty);
    const known = knownFields(e.schemaPath);
    const guess = didYouMean(key, known);
    const path = [...at, key];
    return diag("error", "schema.unknown-field", formatPath(path), `unknown field \`${key}\``, {
      ...locate(path, true),
      hint: guess ? `did you mean \`${guess}\`?` : known.length > 0 ? `known fields: ${known.join(", ")}` : undefined,
    });
  },
  required: ({ e, at, locate }) => {
    const key = String(e.params.missingProperty);
    return diag("error", "schema.required", formatPath([...at, key]), `missing required field \`${key}\``, {
      ...(at.length === 0 ? { ...locate([]), line: 1, col: 1 } : locate(at, true)),
      hint: key === "apiVersion" ? "add `apiVersion: qcvm/v1`" : undefined,
    });
  },
  type: ({ e, at, got, locate }) => {
    const want = String(e.params.type)
      .split(",")
      .map((t) => TYPE_WORDS[t] ?? t)
      .join(" or ");
    const d = diag("error", "schema.type", formatPath(at), `must be ${want}`, { ...locate(at), got });
    if (e.params.type === "string" && typeof got === "number") d.hint = "quote it";
    return d;
  },
  enum: ({ e, at, got, locate }) => {
    const allowed = (e.params.allowedValues as unknown[]).map(String);
    const guess = typeof got === "string" ? didYouMean(got, allowed) : undefined;
    return diag("error", "schema.enum", formatPath(at), `must be one of ${allowed.join(", ")}`, {
      ...locate(at),
      got,
      hint: guess ? `did you mean \`${guess}\`?` : undefined,
    });
  },
  const: ({ e, at, got, locate }) =>
    diag("error", "schema.const", formatPath(at), `must be ${String(e.params.allowedValue)}`, { ...locate(at), got }),
  pattern: ({ e, at, got, locate }) => {
    const hit = PATTERN_MESSAGES.find(([re]) => re.test(e.schemaPath));
    const d = diag("error", "schema.pattern", formatPath(at), hit ? hit[1] : `must match ${String(e.params.pattern)}`, {
      ...locate(at),
      got,
      hint: hit?.[2],
    });
    if (!hit && String(e.params.pattern) === "\\S") d.message = "must not be empty";
    return d;
  },
  minimum: range,
  maximum: range,
  exclusiveMinimum: range,
  exclusiveMaximum: range,
  minItems: ({ e, at, got, locate }) =>
    diag("error", "schema.min-items", formatPath(at), `must have at least ${String(e.params.limit)} item(s)`, {
      ...locate(at),
      got,
    }),
  maxItems: ({ e, at, got, locate }) =>
    diag("error", "schema.max-items", formatPath(at), `must have at most ${String(e.params.limit)} items`, {
      ...locate(at),
      got: `${(got as unknown[]).length} items`,
    }),
  uniqueItems: ({ e, at, got, locate }) =>
    diag(
      "error",
      "schema.unique",
      formatPath(at),
      `items ${String(e.params.j)} and ${String(e.params.i)} are the same`,
      {
        ...locate(at),
        got,
      },
    ),
  propertyNames: ({ e, at, locate }) => {
    const name = String(e.params.propertyName);
    const path = [...at, name];
    return diag("error", "schema.key", formatPath(path), "key must be a host node number", {
      ...locate(path, true),
      got: name,
    });
  },
  anyOf: composite,
  oneOf: composite,
};

export function explainSome(
  errors: AjvError[],
  data: unknown,
  schema: Schema,
  locate: Locate,
  limit: number,
): { errors: Diagnostic[]; unexplained: number; unexplainedAllUnknown: boolean } {
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  const known = new Map<string, string[]>();
  const knownFields = (schemaPath: string): string[] => {
    let k = known.get(schemaPath);
    if (!k) {
      const parent = schemaAt(schema, schemaPath.replace(/\/additionalProperties$/, ""));
      k = Object.keys((parent?.properties as Schema | undefined) ?? {});
      known.set(schemaPath, k);
    }
    return k;
  };
  let unexplained = 0;
  let unexplainedAllUnknown = true;
  for (const e of pickBranches(errors)) {
    if (out.length >= limit) {
      unexplained++;
      if (e.keyword !== "additionalProperties") unexplainedAllUnknown = false;
      continue;
    }
    // propertyNames reports the name's own pattern error too; one message per place is enough.
    if (e.keyword === "pattern" && e.instancePath === "" && e.schemaPath.includes("propertyNames")) continue;
    const at = splitPointer(e.instancePath);
    const got = valueAt(data, at);
    const explain = Object.hasOwn(EXPLAIN, e.keyword) ? EXPLAIN[e.keyword] : undefined;
    const d = explain
      ? explain({ e, at, got, locate, knownFields })
      : diag("error", `schema.${e.keyword}`, formatPath(at), e.message ?? "is invalid", { ...locate(at), got });
    const key = `${d.path}|${d.code}|${d.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (d.hint === undefined) delete d.hint;
    out.push(d);
  }
  return { errors: out, unexplained, unexplainedAllUnknown };
}
