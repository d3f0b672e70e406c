// Load: profile file(s) -> one merged plain object, plus a way back from any field path to the
// file:line:col that set it. No validation here beyond what is needed to read and merge.
//
// Precedence (lowest to highest) is documented in ONE place, docs/profile.md#precedence:
//   built-in defaults < bases named by `extends:` (in order) < the file itself < --set
// Defaults are applied later, by normalize.ts, so this module only merges bases, file and --set.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { isUtf8 } from "node:buffer";
import { dirname, resolve, relative, isAbsolute } from "node:path";
import { parseDocument, isMap, isSeq, isAlias, isScalar, parse as parseYaml } from "yaml";
import type { Document, Node as YamlNode, Pair } from "yaml";
import { diag } from "../core/diagnostics.js";
import { parseFastYaml } from "./yaml-fast.js";
import { mapPathFields } from "../normalize/normalize.js";
import { coerceSetValue } from "./set-coerce.js";
import type { Diagnostic, RawProfile } from "../core/types.js";

/** A profile may name bases that name bases; deeper than this is almost surely a mistake. */
export const MAX_EXTENDS_DEPTH = 8;
/** Profiles are small; a bigger file is the wrong file (and must not be read into memory whole). */
export const MAX_PROFILE_BYTES = 1024 * 1024;
/** Deeper `[`/`{` nesting than any profile has. The `yaml` package recurses per level and runs the
 *  process out of memory (a fatal abort, not an exception) at about 20,000, which fits in 40 KB. */
export const MAX_FLOW_DEPTH = 64;
/** Aliases `yaml` may expand while building the profile: enough for real reuse, not a billion laughs. */
export const MAX_ALIAS_COUNT = 100;
/** The profile argument that means "read standard input" (validate, render, plan). */
export const STDIN_ARG = "-";
/** How a profile read from standard input is named in messages; its relative paths are the cwd's. */
export const STDIN_NAME = "<stdin>";

/** The pseudo file name of diagnostics about --set overrides. */
export const SET_FILE = "--set";

export type Segment = string | number;

export interface Position {
  file: string;
  line?: number;
  col?: number;
}

interface Layer {
  abs: string;
  /** Path as shown in messages (as given for the top file, relative to cwd for bases). */
  shown: string;
  text: string;
  /** yaml's document, parsed only when a position is needed (or the fast reader declined). */
  doc?: Document.Parsed;
  data: Record<string, unknown>;
  lineStarts?: number[];
}

export interface LoadResult {
  /** Merged profile (bases, file, --set), `extends` removed; undefined when nothing usable was read. */
  raw?: RawProfile;
  errors: Diagnostic[];
  warnings: Diagnostic[];
  /** Position of the value at `path` (or of its key with `key`), in the file that set it. */
  locate: (path: readonly Segment[], key?: boolean) => Position;
}

export interface LoadOptions {
  set?: readonly string[];
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `numa.nodes[1].cpus` -> ["numa", "nodes", 1, "cpus"]; undefined when malformed. */
export function parsePath(text: string): Segment[] | undefined {
  const out: Segment[] = [];
  const re = /([A-Za-z0-9_-]+)|\[([0-9]+)\]|(\.)/y;
  let expectKey = true;
  let m: RegExpExecArray | null;
  re.lastIndex = 0;
  while (re.lastIndex < text.length && (m = re.exec(text))) {
    if (m[1] !== undefined) {
      if (!expectKey) return undefined;
      out.push(m[1]);
      expectKey = false;
    } else if (m[2] !== undefined) {
      if (expectKey || out.length === 0) return undefined;
      out.push(Number(m[2]));
    } else {
      if (expectKey) return undefined;
      expectKey = true;
    }
  }
  if (re.lastIndex !== text.length || expectKey || out.length === 0) return undefined;
  return out;
}

/** ["numa", "nodes", 1, "cpus"] -> `numa.nodes[1].cpus` */
export function formatPath(path: readonly Segment[]): string {
  let s = "";
  for (const seg of path) s += typeof seg === "number" ? `[${seg}]` : s ? `.${seg}` : seg;
  return s;
}

/** Merge `over` onto `base`: maps merge deeply, everything else (lists, scalars) replaces. */
export function mergeDeep(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = k in base ? mergeDeep(base[k], v) : v;
  return out;
}

function showPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel && !rel.startsWith("..") && !isAbsolute(rel) ? rel : file;
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

function layerPos(layer: Layer, offset: number | undefined): Position {
  if (offset === undefined) return { file: layer.shown };
  return { file: layer.shown, ...lineCol(layer, offset) };
}

function docOf(layer: Layer): Document.Parsed {
  return (layer.doc ??= parseDocument(layer.text, { prettyErrors: false, keepSourceTokens: false, uniqueKeys: true }));
}

function deref(layer: Layer, node: unknown): unknown {
  return isAlias(node) ? node.resolve(docOf(layer)) : node;
}

function childPair(layer: Layer, node: unknown, key: string): Pair<YamlNode, YamlNode> | undefined {
  const n = deref(layer, node);
  if (!isMap(n)) return undefined;
  for (const pair of n.items as Pair<YamlNode, YamlNode>[]) {
    const k = isScalar(pair.key) ? pair.key.value : pair.key;
    if (String(k) === key) return pair;
  }
  return undefined;
}

type Tree = { layers: Layer[]; errors: Diagnostic[]; warnings: Diagnostic[] };

/**
 * Read a profile. Synchronous on purpose: profiles are small and in the page cache, and one
 * openSync/fstatSync/readSync costs a fraction of a FileHandle round trip through the thread pool
 * (validating 1,000 profiles spent more time in FileHandle bookkeeping than in reading).
 * At most MAX_PROFILE_BYTES + 1 bytes are read whatever the size says: /dev/zero, a pipe or a
 * /proc file report 0 and would otherwise be read until memory runs out.
 */
function readText(file: string, stdin = false): { text?: string; error?: string; hint?: string } {
  let fd: number | undefined;
  try {
    // fd 0 is not ours to close; the finally below closes only what it opened.
    if (!stdin) fd = openSync(file, "r");
    return readBounded(fd ?? 0);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOENT")
      return {
        error: "cannot read file: no such file",
        hint: "check the path: it is relative to the current directory",
      };
    if (err.code === "EACCES" || err.code === "EPERM") {
      return {
        error: "cannot read file: permission denied",
        hint: "make it readable to this user, or run qcvm as a user who can read it",
      };
    }
    if (err.code === "ENOTDIR")
      return { error: "cannot read file: a directory in its path is a file", hint: "check the path" };
    if (stdin && err.code === "EAGAIN")
      return {
        error: "cannot read standard input: it is non-blocking",
        hint: "pipe the profile in: cat vm.yaml | qcvm validate -",
      };
    return { error: `cannot read file: ${err.code ?? err.message}` };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Read at most MAX_PROFILE_BYTES + 1 bytes of an open file (or of standard input) as UTF-8 text. */
function readBounded(fd: number): { text?: string; error?: string; hint?: string } {
  const st = fstatSync(fd);
  if (st.isDirectory())
    return {
      error: "is a directory, not a profile file",
      hint: "name a .yaml file in it; qcvm validate also takes directories",
    };
  const tooBig = (size: number) => ({
    error: `file is ${size} bytes; profiles are limited to ${MAX_PROFILE_BYTES}`,
    hint: "is this the profile? profiles are a few KB of YAML",
  });
  if (st.size > MAX_PROFILE_BYTES) return tooBig(st.size);
  // A regular file's size is right (+1 to see EOF in one read); anything else grows as it reads.
  let buf = Buffer.allocUnsafe(st.isFile() ? st.size + 1 : 64 * 1024);
  let used = 0;
  for (;;) {
    if (used === buf.length) {
      if (buf.length > MAX_PROFILE_BYTES) break;
      const bigger = Buffer.allocUnsafe(Math.min(buf.length * 2, MAX_PROFILE_BYTES + 1));
      buf.copy(bigger, 0, 0, used);
      buf = bigger;
    }
    const n = readSync(fd, buf, used, buf.length - used, null);
    if (n === 0) break;
    used += n;
  }
  if (used > MAX_PROFILE_BYTES)
    return {
      ...tooBig(used),
      error: `file is over ${MAX_PROFILE_BYTES} bytes; profiles are limited to ${MAX_PROFILE_BYTES}`,
    };
  const bytes = buf.subarray(0, used);
  if (bytes.includes(0) || !isUtf8(bytes)) {
    return {
      error: "is not a text file: binary data, or text that is not UTF-8",
      hint: "a profile is UTF-8 YAML text; is this the right file?",
    };
  }
  return { text: bytes.toString("utf8") };
}

/** Deepest `[`/`{` nesting, counted over the raw text (quotes and comments too: a real profile is
 *  nowhere near the limit either way, and over-counting only refuses absurd input). */
function flowDepth(text: string): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
    } else if ((c === 0x5d || c === 0x7d) && depth > 0) depth--;
  }
  return max;
}

const YAML_CODES: Record<string, string> = {
  DUPLICATE_KEY: "duplicate key",
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

/** Parse one file. `from` is where it was named (an extends: entry) for messages about reading it. */
async function parseLayer(file: string, from: Position | undefined, tree: Tree): Promise<Layer | undefined> {
  // Only the profile named on the command line can be standard input, never a base.
  const stdin = from === undefined && file === stdinPath();
  const shown = stdin ? STDIN_NAME : showPath(file);
  const { text, error, hint } = readText(file, stdin);
  if (text === undefined) {
    tree.errors.push(
      from
        ? diag(
            "error",
            "load.extends-read",
            "extends",
            `cannot read base profile ${shown}: ${error!.replace(/^cannot read file: /, "")}`,
            {
              ...from,
              hint: "paths in extends: are relative to the profile that names them",
            },
          )
        : diag("error", "load.read", "", error!, { file: shown, ...(hint ? { hint } : {}) }),
    );
    return undefined;
  }
  if (flowDepth(text) > MAX_FLOW_DEPTH) {
    tree.errors.push(
      diag("error", "load.too-deep", "", `[ ] or { } nested more than ${MAX_FLOW_DEPTH} levels deep`, {
        file: shown,
        hint: "a profile nests a few levels; is this the right file?",
      }),
    );
    return undefined;
  }
  const fast = parseFastYaml(text);
  if (fast) return { abs: file, shown, text, data: fast };
  const layer: Layer = { abs: file, shown, text, data: {} };
  const doc = docOf(layer);
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const what = YAML_CODES[e.code] ?? "YAML syntax error";
      const detail =
        e.code === "DUPLICATE_KEY"
          ? ` \`${duplicateKeyAt(text, e.pos[0])}\``
          : `: ${e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "")}`;
      const own = YAML_MESSAGES[e.code];
      const pos = layerPos(layer, e.pos[0]);
      tree.errors.push(
        diag("error", `yaml.${e.code.toLowerCase().replace(/_/g, "-")}`, "", own?.message ?? `${what}${detail}`, {
          ...pos,
          ...(own
            ? { hint: own.hint }
            : e.code === "DUPLICATE_KEY"
              ? { hint: "each key may appear once in a mapping" }
              : {}),
        }),
      );
    }
    return undefined;
  }
  for (const w of doc.warnings) {
    tree.warnings.push(diag("warning", "yaml.warning", "", w.message.split("\n")[0]!, layerPos(layer, w.pos[0])));
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch {
    // yaml's only toJS error for parsed input: "Excessive alias count indicates a resource exhaustion attack".
    tree.errors.push(
      diag("error", "yaml.alias", "", `aliases (*name) expand to too much: over ${MAX_ALIAS_COUNT} expansions`, {
        file: shown,
        hint: "write the values out, or share them through extends: base profiles",
      }),
    );
    return undefined;
  }
  if (!isPlainObject(data)) {
    const pos = doc.contents ? layerPos(layer, doc.contents.range[0]) : { file: shown };
    tree.errors.push(
      diag(
        "error",
        "load.not-a-map",
        "",
        data === null || data === undefined ? "profile is empty" : "profile must be a YAML mapping of fields",
        {
          ...pos,
          ...(data === null || data === undefined ? {} : { got: data }),
          hint: "start with `apiVersion: qcvm/v1`; examples/reference.yaml shows every field",
        },
      ),
    );
    return undefined;
  }
  layer.data = data;
  return layer;
}

function duplicateKeyAt(text: string, offset: number): string {
  const m = /^[^:\n]*/.exec(text.slice(offset));
  return (m?.[0] ?? "").trim().replace(/^["']|["']$/g, "");
}

/** Load `file` and, first, its bases (depth first, in order), appending layers lowest priority first. */
async function loadTree(file: string, chain: string[], from: Position | undefined, tree: Tree): Promise<void> {
  const layer = await parseLayer(file, from, tree);
  if (!layer) return;
  const ext = layer.data.extends;
  if (ext !== undefined) {
    const entries: [string, Segment[]][] = [];
    if (typeof ext === "string") entries.push([ext, ["extends"]]);
    else if (Array.isArray(ext) && ext.length > 0 && ext.every((e) => typeof e === "string")) {
      ext.forEach((e, i) => entries.push([e, ["extends", i]]));
    } else {
      const pair = childPair(layer, docOf(layer).contents, "extends");
      tree.errors.push(
        diag("error", "load.extends-type", "extends", "must be a file name or a list of file names", {
          ...layerPos(layer, pair?.value?.range?.[0]),
          got: ext,
          hint: "extends: base.yaml, or extends: [base.yaml, snp.yaml]",
        }),
      );
    }
    for (const [name, segs] of entries) {
      const node =
        segs.length === 1
          ? childPair(layer, docOf(layer).contents, "extends")?.value
          : (deref(layer, childPair(layer, docOf(layer).contents, "extends")?.value) as { items?: YamlNode[] })
              ?.items?.[segs[1] as number];
      const at = layerPos(layer, (node as YamlNode | undefined)?.range?.[0]);
      const path = formatPath(segs);
      const base = resolve(dirname(file), name);
      if (chain.includes(base)) {
        const cycle = [...chain.slice(chain.indexOf(base)), base].map(showPath).join(" -> ");
        tree.errors.push(
          diag("error", "load.extends-cycle", path, `extends loop: ${cycle}`, {
            ...at,
            hint: "a profile cannot be its own base",
          }),
        );
        continue;
      }
      if (chain.length >= MAX_EXTENDS_DEPTH) {
        tree.errors.push(
          diag("error", "load.extends-depth", path, `extends chain deeper than ${MAX_EXTENDS_DEPTH} files`, {
            ...at,
            got: [...chain, base].map(showPath).join(" -> "),
            hint: "flatten the chain of bases",
          }),
        );
        continue;
      }
      await loadTree(base, [...chain, base], { ...at, file: at.file }, tree);
      // loadTree reports a missing base at `from`; give it the path of the entry too.
      const last = tree.errors.at(-1);
      if (last && last.code === "load.extends-read" && last.path === "extends") last.path = path;
    }
  }
  tree.layers.push(layer);
}

interface SetOverride {
  path: Segment[];
}

/** Apply `--set path=value` to the merged data; a bad path or value is a diagnostic at file `--set`. */
function applySets(data: Record<string, unknown>, sets: readonly string[], errors: Diagnostic[]): SetOverride[] {
  const applied: SetOverride[] = [];
  for (const expr of sets) {
    const eq = expr.indexOf("=");
    const pathText = eq === -1 ? expr : expr.slice(0, eq);
    const path = parsePath(pathText.trim());
    if (eq === -1 || !path) {
      errors.push(
        diag("error", "set.syntax", pathText, eq === -1 ? "--set needs path=value" : "is not a field path", {
          file: SET_FILE,
          got: expr,
          hint: "e.g. --set memory.size=8G or --set numa.nodes[1].hostNodes=2-3",
        }),
      );
      continue;
    }
    let value: unknown;
    try {
      value = parseYaml(expr.slice(eq + 1), { prettyErrors: false });
    } catch (e) {
      errors.push(
        diag("error", "set.value", formatPath(path), `value is not YAML: ${(e as Error).message.split("\n")[0]}`, {
          file: SET_FILE,
          got: expr.slice(eq + 1),
          hint: "quote it, or write a flow list/map: [0, 1], {base64: ...}",
        }),
      );
      continue;
    }
    // The schema's type decides what a scalar is: `qemu.version=9.1` is the string "9.1".
    value = coerceSetValue(path, value, expr.slice(eq + 1));
    let cur: unknown = data;
    let bad: string | undefined;
    for (let i = 0; i < path.length - 1; i++) {
      const seg = path[i]!;
      const next = path[i + 1]!;
      if (typeof seg === "number") {
        if (!Array.isArray(cur) || seg >= cur.length) {
          bad = `${formatPath(path.slice(0, i + 1))} does not exist (${Array.isArray(cur) ? `the list has ${cur.length} item${cur.length === 1 ? "" : "s"}` : "not a list"})`;
          break;
        }
      } else if (!isPlainObject(cur)) {
        bad = `${formatPath(path.slice(0, i))} is not a mapping`;
        break;
      } else if (cur[seg] === undefined || cur[seg] === null) {
        if (typeof next === "number") {
          // An unset list takes its first item, as a set list takes its next (docs/profile.md).
          if (next !== 0) {
            bad = `${formatPath(path.slice(0, i + 1))} is not set, so it has no item ${next} (start with [0])`;
            break;
          }
          cur[seg] = [];
        } else cur[seg] = {};
      }
      cur = (cur as Record<string, unknown>)[seg as never];
    }
    const last = path.at(-1)!;
    if (!bad) {
      if (typeof last === "number") {
        if (!Array.isArray(cur) || last > cur.length) bad = `${formatPath(path)} does not exist`;
        else if (value === null) cur.splice(last, 1);
        else cur[last] = value;
      } else if (!isPlainObject(cur)) {
        bad = `${formatPath(path.slice(0, -1))} is not a mapping`;
      } else if (value === null) {
        // `--set path=null` (or `path=`) removes the field: back to the base's or built-in default.
        delete cur[last];
      } else {
        cur[last] = value;
      }
    }
    if (bad) {
      errors.push(diag("error", "set.path", formatPath(path), `cannot set: ${bad}`, { file: SET_FILE, got: expr }));
      continue;
    }
    // A path given on the command line is relative to where the command runs.
    mapPathFields(data, (p, field) => (path.every((seg, i) => field[i] === seg) ? resolve(p) : p));
    applied.push({ path });
  }
  return applied;
}

/** Read `file` with its bases and --set overrides into one plain object. Never throws for user errors. */
/** Where a profile from standard input is taken to be: in the cwd, so its relative paths are the cwd's. */
function stdinPath(): string {
  return resolve(STDIN_NAME);
}

export async function loadProfileFile(file: string, opts: LoadOptions = {}): Promise<LoadResult> {
  const abs = file === STDIN_ARG ? stdinPath() : resolve(file);
  const tree: Tree = { layers: [], errors: [], warnings: [] };
  await loadTree(abs, [abs], undefined, tree);
  const top = tree.layers.at(-1);
  const topShown = file === STDIN_ARG ? STDIN_NAME : showPath(abs);
  // The top file failed to load: bases alone are no profile.
  const usable =
    top !== undefined &&
    top.shown === topShown &&
    tree.errors.every((e) => e.file !== topShown || e.code.startsWith("load.extends"));
  const layers = tree.layers; // lowest priority first
  let sets: SetOverride[] = [];
  let raw: Record<string, unknown> | undefined;
  if (usable) {
    let merged: unknown = {};
    for (const l of layers) {
      const { extends: _ext, ...rest } = l.data;
      // A path written in a base is relative to the base's directory; the top file's paths are
      // resolved by normalize against its own directory.
      if (l !== top) mapPathFields(rest, (p) => resolve(dirname(l.abs), p));
      merged = layers.length === 1 ? rest : mergeDeep(merged, rest);
    }
    raw = merged as Record<string, unknown>;
    if (opts.set && opts.set.length > 0) {
      raw = structuredClone(raw);
      sets = applySets(raw, opts.set, tree.errors);
    }
  }

  const locate = (path: readonly Segment[], key = false): Position => {
    for (const s of sets) {
      if (s.path.length <= path.length && s.path.every((seg, i) => seg === path[i])) return { file: SET_FILE };
    }
    if (layers.length === 0) return { file: topShown };
    // Owners: layers (highest priority first) whose value at the current path is merged into the result.
    let owners = layers.map((layer) => ({
      layer,
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- widens the inferred type: later steps assign other nodes
      node: docOf(layer).contents as unknown,
      pair: undefined as Pair<YamlNode, YamlNode> | undefined,
    }));
    owners.reverse();
    let found = owners[0]!;
    let complete = true;
    for (const seg of path) {
      const next: typeof owners = [];
      if (typeof seg === "number") {
        const o = owners[0]!;
        const n = deref(o.layer, o.node);
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- widens the inferred type: later steps assign other nodes
        const item = isSeq(n) ? (n.items[seg] as unknown) : undefined;
        if (item !== undefined) next.push({ layer: o.layer, node: item, pair: undefined });
      } else {
        for (const o of owners) {
          const pair = childPair(o.layer, o.node, seg);
          if (!pair) continue;
          const value = deref(o.layer, pair.value);
          next.push({ layer: o.layer, node: pair.value, pair });
          // Below a list or scalar only the layer that set it counts (it replaced the others).
          if (!isMap(value)) break;
        }
        // A map merges only with the maps right below it; a non-map in between cut the chain.
        const firstNonMap = next.findIndex((o) => !isMap(deref(o.layer, o.node)));
        if (firstNonMap > 0) next.length = firstNonMap;
      }
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
  };

  return { raw, errors: tree.errors, warnings: tree.warnings, locate };
}
