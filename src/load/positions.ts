// From a field path back to file:line:col. A layer is one file of the extends graph; `yaml`'s
// document of it is built only when a position is needed. Map lookups go through a per-map index,
// so locating N diagnostics in a map of N keys is linear, not quadratic.
import { parseDocument, isAlias, isMap, isScalar, isSeq } from "yaml";
import type { Document, Node as YamlNode, Pair, YAMLMap } from "yaml";
import type { Data, DataMap } from "./data.js";
import type { Segment } from "../core/field-path.js";

export interface Position {
  file: string;
  line?: number;
  col?: number;
}

export interface Layer {
  /** Real path (symbolic links resolved for bases). */
  abs: string;
  /** Path as shown in messages (as given for the top file, relative to cwd for bases). */
  shown: string;
  text: string;
  /** yaml's document, parsed only when a position is needed (or the fast reader declined). */
  doc?: Document.Parsed;
  data: DataMap;
  lineStarts?: number[];
}

/** The options every `yaml` parse of a profile uses. uniqueKeys is off because `yaml` checks it
 *  with a quadratic scan; layer.ts finds duplicates itself. resolveKnownTags off: `!!binary`,
 *  `!!set`, `!!timestamp` and the like are not core-schema YAML, so they are reported, not built. */
export const YAML_OPTIONS = {
  prettyErrors: false,
  keepSourceTokens: false,
  uniqueKeys: false,
  resolveKnownTags: false,
  version: "1.2",
  // "error", not "silent": silent also drops the MULTIPLE_DOCS error; warnings are read from doc.warnings.
  logLevel: "error",
} as const;

export function docOf(layer: Layer): Document.Parsed {
  return (layer.doc ??= parseDocument(layer.text, YAML_OPTIONS));
}

function lineCol(layer: Layer, offset: number): { line: number; col: number } {
  if (!layer.lineStarts) {
    const starts = [0];
    const t = layer.text;
    for (let i = t.indexOf("\n"); i !== -1; i = t.indexOf("\n", i + 1)) starts.push(i + 1);
    layer.lineStarts = starts;
  }
  const starts = layer.lineStarts;
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, col: offset - starts[lo]! + 1 };
}

export function layerPos(layer: Layer, offset: number | undefined): Position {
  if (offset === undefined) return { file: layer.shown };
  return { file: layer.shown, ...lineCol(layer, offset) };
}

export function deref(layer: Layer, node: unknown): unknown {
  return isAlias(node) ? node.resolve(docOf(layer)) : node;
}

/** A key as `yaml`'s toJS names it (scalars by their string value). */
export function keyString(key: unknown): string {
  return String(isScalar(key) ? key.value : key);
}

const INDEX = new WeakMap<YAMLMap, Map<string, Pair<YamlNode, YamlNode>>>();

export function childPair(layer: Layer, node: unknown, key: string): Pair<YamlNode, YamlNode> | undefined {
  const n = deref(layer, node);
  if (!isMap(n)) return undefined;
  let index = INDEX.get(n);
  if (!index) {
    index = new Map();
    for (const pair of n.items as Pair<YamlNode, YamlNode>[]) {
      const k = keyString(pair.key);
      if (!index.has(k)) index.set(k, pair);
    }
    INDEX.set(n, index);
  }
  return index.get(key);
}

interface Owner {
  layer: Layer;
  node: unknown;
  pair: Pair<YamlNode, YamlNode> | undefined;
}

/** One step down from each owner: the layers (highest priority first) whose value at the path is
 *  merged into the result. Below a list or scalar only the layer that set it counts. */
function step(owners: Owner[], seg: Segment): Owner[] {
  const next: Owner[] = [];
  if (typeof seg === "number") {
    const o = owners[0]!;
    const n = deref(o.layer, o.node);
    const item: unknown = isSeq(n) ? n.items[seg] : undefined;
    if (item !== undefined) next.push({ layer: o.layer, node: item, pair: undefined });
    return next;
  }
  for (const o of owners) {
    const pair = childPair(o.layer, o.node, seg);
    if (!pair) continue;
    next.push({ layer: o.layer, node: pair.value, pair });
    if (!isMap(deref(o.layer, pair.value))) break;
  }
  // A map merges only with the maps right below it; a non-map in between cut the chain.
  const firstNonMap = next.findIndex((o) => !isMap(deref(o.layer, o.node)));
  if (firstNonMap > 0) next.length = firstNonMap;
  return next;
}

/** Position of the value at `path` (or its key), looking through `layers` (lowest priority first). */
export function locateIn(layers: readonly Layer[], path: readonly Segment[], key = false): Position {
  let owners: Owner[] = [];
  for (let i = layers.length - 1; i >= 0; i--)
    owners.push({ layer: layers[i]!, node: docOf(layers[i]!).contents, pair: undefined });
  let found = owners[0]!;
  let complete = true;
  for (const seg of path) {
    const next = step(owners, seg);
    if (next.length === 0) {
      // Not written (a missing field, or a default): point at the key of the closest ancestor.
      complete = false;
      break;
    }
    owners = next;
    found = owners[0]!;
  }
  const node = found.node as YamlNode | undefined;
  const atKey = (key || !complete) && found.pair !== undefined;
  const offset = atKey ? (found.pair!.key as YamlNode | undefined)?.range?.[0] : node?.range?.[0];
  return layerPos(found.layer, offset ?? found.pair?.key?.range?.[0]);
}

export type { Data };
