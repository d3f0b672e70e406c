// `--set path=value` reads its value as YAML, so `qemu.version=9.1` is the number 9.1 and `name=123`
// the number 123, where the schema wants strings; no shell quoting helps (the shell removes the
// quotes before qcvm sees them). This module owns the one conversion: a scalar --set value goes to
// a string when the profile schema allows a string at that path and not the value's own type.
// Numbers and booleans are never made from strings: `memory.size=8G` stays "8G" for the schema.
import profileSchema from "../../schemas/profile.schema.json" with { type: "json" };
import type { Segment } from "../core/field-path.js";

type SchemaNode = Record<string, unknown>;

const ROOT = profileSchema as unknown as SchemaNode;

function deref(node: SchemaNode): SchemaNode {
  let n = node;
  // Only local references (#/$defs/x) exist in the profile schema.
  for (let i = 0; i < 8 && typeof n.$ref === "string"; i++) {
    const parts = n.$ref.replace(/^#\//, "").split("/");
    let cur: unknown = ROOT;
    for (const p of parts) cur = (cur as SchemaNode | undefined)?.[p];
    if (typeof cur !== "object" || cur === null) return {};
    n = cur as SchemaNode;
  }
  return n;
}

/** The node and every branch of its oneOf/anyOf/allOf, references resolved. */
function branches(node: SchemaNode): SchemaNode[] {
  const n = deref(node);
  const out = [n];
  for (const key of ["oneOf", "anyOf", "allOf"]) {
    const list = n[key];
    if (Array.isArray(list)) for (const b of list as SchemaNode[]) out.push(...branches(b));
  }
  return out;
}

function child(node: SchemaNode, seg: Segment): SchemaNode[] {
  const out: SchemaNode[] = [];
  for (const b of branches(node)) {
    if (typeof seg === "number") {
      if (typeof b.items === "object" && b.items !== null) out.push(b.items as SchemaNode);
      continue;
    }
    const props = b.properties as Record<string, SchemaNode> | undefined;
    if (props && Object.hasOwn(props, seg)) out.push(props[seg]!);
    const pattern = b.patternProperties as Record<string, SchemaNode> | undefined;
    for (const [re, sub] of Object.entries(pattern ?? {})) if (new RegExp(re, "u").test(seg)) out.push(sub);
    if (typeof b.additionalProperties === "object" && b.additionalProperties !== null)
      out.push(b.additionalProperties as SchemaNode);
  }
  return out;
}

/** The schema nodes that describe the value at `path` (empty when the schema does not know it). */
export function schemaAt(path: readonly Segment[]): SchemaNode[] {
  let nodes: SchemaNode[] = [ROOT];
  for (const seg of path) nodes = nodes.flatMap((n) => child(n, seg));
  return nodes;
}

function jsonType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

/** JSON types the nodes accept: from `type`, `const` and `enum`, over every branch. */
export function typesAllowed(nodes: readonly SchemaNode[]): Set<string> {
  const out = new Set<string>();
  for (const b of nodes.flatMap(branches)) {
    const t = b.type;
    if (typeof t === "string") out.add(t);
    if (Array.isArray(t)) for (const x of t) out.add(String(x));
    if ("const" in b) out.add(jsonType(b.const));
    if (Array.isArray(b.enum)) for (const e of b.enum) out.add(jsonType(e));
  }
  if (out.has("number")) out.add("integer");
  return out;
}

/**
 * The --set value as the schema wants it. `text` is what followed `=` (so `9.10` stays "9.10",
 * not 9.1 made a string). Maps and lists are walked, so `qemu={version: 9.1}` works too.
 */
export function coerceSetValue(path: readonly Segment[], value: unknown, text?: string): unknown {
  if (value === null || value === undefined) return value;
  if (Array.isArray(value)) return value.map((v, i) => coerceSetValue([...path, i], v));
  if (typeof value === "object") {
    // Prototype-less, as all profile data (load/data.ts); the keys were checked there.
    const out = Object.create(null) as Record<string, unknown>;
    for (const [k, v] of Object.entries(value)) out[k] = coerceSetValue([...path, k], v);
    return out;
  }
  if (typeof value !== "number" && typeof value !== "boolean") return value;
  const allowed = typesAllowed(schemaAt(path));
  if (allowed.size === 0 || allowed.has(jsonType(value)) || !allowed.has("string")) return value;
  return text !== undefined ? text.trim() : String(value);
}
