// One file of a profile's extends graph: read (read-file.ts), bounded (data.ts scanStructure),
// parsed (the fast reader, else `yaml`), checked for what `yaml` lets through (duplicate keys, tags
// outside the core schema, directives) and turned into safe data. A base that does not look like a
// qcvm profile gets one message that names it and never quotes it: it may be any file at all.
import { isMap, visit } from "yaml";
import type { Document } from "yaml";
import { diag } from "../core/diagnostics.js";
import { shippedPath } from "../io/package-dir.js";
import { parseFastYaml } from "./yaml-fast.js";
import { readProfileText } from "./read-file.js";
import { MAX_FLOW_DEPTH, MAX_ITEMS, isMap as isDataMap, scanStructure, toProfileData } from "./data.js";
import type { DataProblem } from "./data.js";
import { docOf, keyString, layerPos, locateIn } from "./positions.js";
import type { Layer, Position } from "./positions.js";
import { formatPath } from "../core/field-path.js";
import type { Diagnostic } from "../core/types.js";

/** Aliases `yaml` may expand while building the profile: enough for real reuse, not a billion laughs. */
export const MAX_ALIAS_COUNT = 100;

const YAML_CODES: Record<string, string> = {
  BAD_INDENT: "bad indentation",
  TAB_AS_INDENT: "tab used for indentation (YAML indents with spaces)",
  MISSING_CHAR: "missing character",
  MULTILINE_IMPLICIT_KEY: "implicit keys must be on one line",
};

/** Messages that replace yaml's own, which name its API rather than the fix. */
const YAML_MESSAGES: Record<string, { message: string; hint: string }> = {
  MULTIPLE_DOCS: {
    message: "a profile is one YAML document, and this file has more",
    hint: "remove the `---` line, or put each profile in its own file",
  },
};

/** Core-schema tags (YAML 1.2 failsafe + JSON + core): anything else is refused. */
const CORE_TAGS = new Set(
  ["!", "str", "int", "float", "bool", "null", "map", "seq"].map((t) => (t === "!" ? t : `tag:yaml.org,2002:${t}`)),
);

/** Does this text say it is a qcvm profile? Only then may messages about it quote it. */
const PROFILE_MARK = /^apiVersion:[ ]*["']?qcvm\/v1["']?[ ]*(#.*)?$/m;

export interface LayerResult {
  layer?: Layer;
  errors: Diagnostic[];
  warnings: Diagnostic[];
  bytes: number;
}

export interface LayerSource {
  /** Real path to read. */
  abs: string;
  shown: string;
  /** Where an extends: entry named it (undefined for the top file). */
  from?: Position;
  /** The top profile is standard input (`-`): read fd 0. */
  stdin?: boolean;
}

function notAProfile(src: LayerSource, why: string): Diagnostic {
  return diag("error", "load.extends-not-profile", "extends", `base profile ${src.shown} ${why}`, {
    ...src.from!,
    hint: "extends: names qcvm profiles (apiVersion: qcvm/v1); the file's content is not shown",
  });
}

function readError(src: LayerSource, error: string, hint: string | undefined): Diagnostic {
  if (!src.from) return diag("error", "load.read", "", error, { file: src.shown, ...(hint ? { hint } : {}) });
  return diag(
    "error",
    "load.extends-read",
    "extends",
    `cannot read base profile ${src.shown}: ${error.replace(/^cannot read file: /, "")}`,
    { ...src.from, hint: "paths in extends: are relative to the profile that names them" },
  );
}

/** Duplicate keys, tags and directives: what `yaml` (with uniqueKeys off) does not refuse itself. */
function yamlProblems(layer: Layer, doc: Document.Parsed, errors: Diagnostic[]): void {
  if (/^%/m.test(layer.text)) {
    errors.push(
      diag("error", "yaml.directive", "", "YAML directives (%YAML, %TAG) are not allowed in a profile", {
        ...layerPos(layer, 0),
        hint: "remove the % line: profiles are YAML 1.2 with the core schema",
      }),
    );
  }
  visit(doc, {
    Node(_, node) {
      const tag = (node as { tag?: string }).tag;
      if (tag !== undefined && !CORE_TAGS.has(tag)) {
        const shown = tag.startsWith("tag:yaml.org,2002:") ? `!!${tag.slice(18)}` : tag;
        errors.push(
          diag("error", "yaml.tag", "", `tag ${shown.slice(0, 40)} is not allowed: profiles use YAML's core schema`, {
            ...layerPos(layer, node.range?.[0]),
            hint: "remove the tag; only !!str, !!int, !!float, !!bool, !!null, !!map and !!seq are accepted",
          }),
        );
      }
      if (isMap(node)) {
        const seen = new Set<string>();
        for (const pair of node.items) {
          const k = keyString(pair.key);
          if (!seen.has(k)) seen.add(k);
          else
            errors.push(
              diag("error", "yaml.duplicate-key", "", `duplicate key \`${k.slice(0, 80)}\``, {
                ...layerPos(layer, (pair.key as { range?: [number] } | null)?.range?.[0]),
                hint: "each key may appear once in a mapping",
              }),
            );
        }
      }
    },
  });
}

function syntaxErrors(layer: Layer, doc: Document.Parsed, errors: Diagnostic[]): void {
  for (const e of doc.errors) {
    const what = YAML_CODES[e.code] ?? "YAML syntax error";
    const own = YAML_MESSAGES[e.code];
    const detail = `: ${e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "")}`;
    errors.push(
      diag("error", `yaml.${e.code.toLowerCase().replace(/_/g, "-")}`, "", own?.message ?? `${what}${detail}`, {
        ...layerPos(layer, e.pos[0]),
        ...(own ? { hint: own.hint } : {}),
      }),
    );
  }
}

function dataProblems(layer: Layer, problems: DataProblem[], errors: Diagnostic[]): void {
  for (const p of problems) {
    const keyOk = !p.atKey || p.code !== "load.long-key";
    const path = keyOk ? formatPath(p.path) : formatPath(p.path.slice(0, -1));
    errors.push(
      diag("error", p.code, path, p.message, {
        ...locateIn([layer], p.path, p.atKey),
        ...(p.hint ? { hint: p.hint } : {}),
      }),
    );
  }
}

function tooBig(src: LayerSource, message: string, hint: string): Diagnostic {
  return src.from
    ? diag("error", "load.extends-read", "extends", `cannot read base profile ${src.shown}: ${message}`, {
        ...src.from,
        hint,
      })
    : diag("error", "load.too-deep", "", message, { file: src.shown, hint });
}

/** The cheap pre-scan: refuses text too deep or too long for any YAML parser to be given it. */
function sizeProblem(src: LayerSource, text: string): Diagnostic | undefined {
  const scan = scanStructure(text, MAX_ITEMS);
  if (scan.flowDepth > MAX_FLOW_DEPTH)
    return tooBig(
      src,
      `[ ] or { } nested more than ${MAX_FLOW_DEPTH} levels deep`,
      "a profile nests a few levels; is this the right file?",
    );
  if (scan.items > MAX_ITEMS) {
    const d = tooBig(
      src,
      `has over ${MAX_ITEMS} lines and list or map items; profiles are limited to ${MAX_ITEMS}`,
      "a profile has a few hundred; is this the right file?",
    );
    d.code = src.from ? d.code : "load.too-many-items";
    return d;
  }
  return undefined;
}

/** Parse one file of the graph; undefined layer when it cannot be used (the errors say why). */
export function parseLayer(src: LayerSource): LayerResult {
  const errors: Diagnostic[] = [];
  const warnings: Diagnostic[] = [];
  const { text, error, hint } = readProfileText(src.abs, {
    regularOnly: src.from !== undefined,
    stdin: src.stdin === true,
  });
  if (text === undefined) return { errors: [readError(src, error!, hint)], warnings, bytes: 0 };
  const bytes = text.length;
  const isBase = src.from !== undefined;
  if (isBase && !PROFILE_MARK.test(text))
    return { errors: [notAProfile(src, "is not a qcvm profile: no `apiVersion: qcvm/v1` line")], warnings, bytes };
  const tooLarge = sizeProblem(src, text);
  if (tooLarge) return { errors: [tooLarge], warnings, bytes };
  const layer: Layer = { abs: src.abs, shown: src.shown, text, data: Object.create(null) as Layer["data"] };
  let parsed: unknown = parseFastYaml(text);
  if (parsed === undefined) {
    const doc = docOf(layer);
    syntaxErrors(layer, doc, errors);
    if (errors.length === 0) yamlProblems(layer, doc, errors);
    if (errors.length > 0) return { errors, warnings, bytes };
    for (const w of doc.warnings)
      warnings.push(diag("warning", "yaml.warning", "", w.message.split("\n")[0]!, layerPos(layer, w.pos[0])));
    try {
      parsed = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch {
      // yaml's only toJS error for parsed input: "Excessive alias count indicates a resource exhaustion attack".
      errors.push(
        diag("error", "yaml.alias", "", `aliases (*name) expand to too much: over ${MAX_ALIAS_COUNT} expansions`, {
          file: src.shown,
          hint: "write the values out, or share them through extends: base profiles",
        }),
      );
      return { errors, warnings, bytes };
    }
  }
  const problems: DataProblem[] = [];
  const data = toProfileData(parsed, problems);
  dataProblems(layer, problems, errors);
  if (data === undefined) return { errors, warnings, bytes };
  if (!isDataMap(data) || (isBase && data.apiVersion !== "qcvm/v1")) {
    if (isBase)
      return {
        errors: [notAProfile(src, "is not a qcvm profile: not a mapping with apiVersion: qcvm/v1")],
        warnings,
        bytes,
      };
    const contents = docOf(layer).contents;
    const pos = contents ? layerPos(layer, contents.range[0]) : { file: src.shown };
    const empty = data === null || data === undefined;
    errors.push(
      diag("error", "load.not-a-map", "", empty ? "profile is empty" : "profile must be a YAML mapping of fields", {
        ...pos,
        ...(empty ? {} : { got: data }),
        hint: `start with \`apiVersion: qcvm/v1\`; \`qcvm init FILE\` writes a starter profile, and ${shippedPath("examples/reference.yaml")} shows every field`,
      }),
    );
    return { errors, warnings, bytes };
  }
  layer.data = data;
  return { layer, errors, warnings, bytes };
}
