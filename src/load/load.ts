// Load: profile file(s) -> one merged prototype-less object, plus a way back from any field path to
// the file:line:col that set it. No validation here beyond what is needed to read and merge safely.
//
// Precedence (lowest to highest) is documented in ONE place, docs/profile.md#precedence:
//   built-in defaults < bases named by `extends:` (in order) < the file itself < --set
// Defaults are applied later, by normalize.ts, so this module only merges bases, file and --set.
//
// The extends graph is untrusted input too (CI validates pull requests): a base must be a regular
// file under the top profile's repository root (its git root, else its directory; --root widens
// it), the graph is bounded in files and bytes, and a base named twice is read and merged once.
import { existsSync, lstatSync, realpathSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { diag } from "../core/diagnostics.js";
import { formatPath, startsWith } from "../core/field-path.js";
import type { Segment } from "../core/field-path.js";
import { cloneData, mergeDeep, newMap } from "./data.js";
import type { DataMap } from "./data.js";
import { parseLayer } from "./layer.js";
import { childPair, deref, docOf, layerPos, locateIn } from "./positions.js";
import type { Layer, Position } from "./positions.js";
import { applySets } from "./set.js";
import { mapPathFields } from "../normalize/normalize.js";
import type { Diagnostic, RawProfile } from "../core/types.js";

export { formatPath, parsePath } from "../core/field-path.js";
export type { Segment } from "../core/field-path.js";
export { mergeDeep } from "./data.js";
export { MAX_PROFILE_BYTES } from "./read-file.js";
export { MAX_FLOW_DEPTH } from "./data.js";
export { MAX_ALIAS_COUNT } from "./layer.js";
export type { Position } from "./positions.js";
export { SET_FILE } from "./set.js";

/** The profile argument that means "read standard input" (validate, render, plan). */
export const STDIN_ARG = "-";
/** How a profile read from standard input is named in messages; its relative paths are the cwd's. */
export const STDIN_NAME = "<stdin>";

/** A profile may name bases that name bases; deeper than this is almost surely a mistake. */
export const MAX_EXTENDS_DEPTH = 8;
/** Files in one profile's whole extends graph (the profile included). */
export const MAX_EXTENDS_FILES = 32;
/** Bytes read for one profile's whole extends graph. */
export const MAX_EXTENDS_BYTES = 4 * 1024 * 1024;

export interface LoadResult {
  /** Merged profile (bases, file, --set), `extends` removed; undefined when nothing usable was read. */
  raw?: RawProfile;
  errors: Diagnostic[];
  warnings: Diagnostic[];
  /** Position of the value at `path` (or of its key with `key`), in the file that set it. */
  locate: (path: readonly Segment[], key?: boolean) => Position;
  /** Files read for this profile (itself and its bases, each once). */
  files: number;
}

export interface LoadOptions {
  set?: readonly string[];
  /** Bases must be under this directory (`--root DIR`); default: the top profile's repository root. */
  root?: string;
}

function showPath(file: string): string {
  const rel = relative(process.cwd(), file);
  if (rel === "") return ".";
  return !rel.startsWith("..") && !isAbsolute(rel) ? rel : file;
}

function realOr(file: string): string {
  try {
    // The native realpath(3): one system call, where the JavaScript one lstats every component.
    return realpathSync.native(file);
  } catch {
    return file;
  }
}

/**
 * The real path of a profile file: its directory's real path (resolved once per directory) joined
 * with its name, unless the file itself is a symbolic link. realpath(3) walks every component with
 * a system call each; a repository's thousand profiles share a few directories.
 */
function realFile(file: string): string {
  const dir = dirname(file);
  let realDir = realDirs.get(dir);
  if (realDir === undefined) {
    realDir = realOr(dir);
    realDirs.set(dir, realDir);
  }
  try {
    if (!lstatSync(file).isSymbolicLink()) return join(realDir, basename(file));
  } catch {
    return file;
  }
  return realOr(file);
}
const realDirs = new Map<string, string>();

/** The top profile's repository root: the nearest directory up with `.git`, else its own directory. */
export function repositoryRoot(file: string): string {
  // From where the file is named, not where a symbolic link points: a link in a repository to a
  // file outside it (/etc/shadow) must not move the root there.
  const named = dirname(resolve(file));
  // One answer per directory for the life of the process: validating a repository of a thousand
  // profiles walks up from the same few directories.
  const known = rootOfDir.get(named);
  if (known !== undefined) return known;
  const start = realOr(named);
  let root = start;
  for (let dir = start; ;) {
    if (existsSync(resolve(dir, ".git"))) {
      root = dir;
      break;
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  rootOfDir.set(named, root);
  return root;
}
const rootOfDir = new Map<string, string>();

function isInside(root: string, file: string): boolean {
  const rel = relative(root, file);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

interface Tree {
  layers: Layer[];
  errors: Diagnostic[];
  warnings: Diagnostic[];
  root: string;
  /** Real paths read so far (each is read and merged once). */
  seen: Set<string>;
  bytes: number;
}

/** The extends: entries of a layer with where each is written; a malformed extends is an error. */
function extendsEntries(layer: Layer, tree: Tree): { name: string; path: Segment[]; at: Position }[] {
  const ext = layer.data.extends;
  if (ext === undefined) return [];
  const pairValue = () => childPair(layer, docOf(layer).contents, "extends")?.value;
  if (typeof ext === "string") return [{ name: ext, path: ["extends"], at: layerPos(layer, pairValue()?.range?.[0]) }];
  if (Array.isArray(ext) && ext.length > 0 && ext.every((e) => typeof e === "string")) {
    const items = (deref(layer, pairValue()) as { items?: { range?: [number] }[] } | undefined)?.items;
    return ext.map((name, i) => ({ name, path: ["extends", i], at: layerPos(layer, items?.[i]?.range?.[0]) }));
  }
  tree.errors.push(
    diag("error", "load.extends-type", "extends", "must be a file name or a list of file names", {
      ...layerPos(layer, pairValue()?.range?.[0]),
      got: ext,
      hint: "extends: base.yaml, or extends: [base.yaml, snp.yaml]",
    }),
  );
  return [];
}

/** Why a base cannot be followed, or undefined when it can. */
function refuseBase(real: string, chain: string[], at: Position, path: string, tree: Tree): Diagnostic | undefined {
  if (chain.includes(real)) {
    const cycle = [...chain.slice(chain.indexOf(real)), real].map(showPath).join(" -> ");
    return diag("error", "load.extends-cycle", path, `extends loop: ${cycle}`, {
      ...at,
      hint: "a profile cannot be its own base",
    });
  }
  if (chain.length >= MAX_EXTENDS_DEPTH)
    return diag("error", "load.extends-depth", path, `extends chain deeper than ${MAX_EXTENDS_DEPTH} files`, {
      ...at,
      got: [...chain, real].map(showPath).join(" -> "),
      hint: "flatten the chain of bases",
    });
  if (!isInside(tree.root, real))
    return diag(
      "error",
      "load.extends-outside",
      path,
      `base profile ${showPath(real)} is outside the repository (root: ${showPath(tree.root)})`,
      {
        ...at,
        hint: "bases must be in the top profile's repository (its git root, else its directory); --root DIR widens that",
      },
    );
  if (tree.seen.size >= MAX_EXTENDS_FILES)
    return diag("error", "load.extends-files", path, `extends graph has more than ${MAX_EXTENDS_FILES} files`, {
      ...at,
      hint: "share fewer, larger bases",
    });
  if (tree.bytes > MAX_EXTENDS_BYTES)
    return diag("error", "load.extends-bytes", path, `extends graph holds more than ${MAX_EXTENDS_BYTES} bytes`, {
      ...at,
      hint: "bases are a few KB each",
    });
  return undefined;
}

/** Load `file` and, first, its bases (depth first, in order), appending layers lowest priority first. */
function loadTree(
  real: string,
  shown: string,
  chain: string[],
  from: Position | undefined,
  tree: Tree,
  stdin = false,
): void {
  tree.seen.add(real);
  const r = parseLayer({ abs: real, shown, from, stdin });
  tree.bytes += r.bytes;
  tree.errors.push(...r.errors);
  tree.warnings.push(...r.warnings);
  const layer = r.layer;
  if (!layer) return;
  const refusedHere = new Set<string>();
  for (const { name, path: segs, at } of extendsEntries(layer, tree)) {
    const path = formatPath(segs);
    const given = resolve(dirname(real), name);
    const target = realOr(given);
    // Read once: a base reached again (a diamond, or the same name twice) was merged at its first place.
    if (tree.seen.has(target) && !chain.includes(target)) continue;
    if (refusedHere.has(target)) continue; // the same name again: said once
    const refused = refuseBase(target, chain, at, path, tree);
    if (refused) {
      refusedHere.add(target);
      tree.errors.push(refused);
      continue;
    }
    const before = tree.errors.length;
    loadTree(target, showPath(given), [...chain, target], at, tree);
    // parseLayer reports an unreadable base at `from`; give it the path of the entry too.
    for (const e of tree.errors.slice(before))
      if (e.code.startsWith("load.extends-") && e.path === "extends") e.path = path;
  }
  tree.layers.push(layer);
}

/** Merge the layers (lowest priority first); paths written in a base are relative to the base. */
function mergeLayers(layers: readonly Layer[], top: Layer): DataMap {
  let merged: unknown = newMap();
  for (const l of layers) {
    const rest = newMap();
    for (const k of Object.keys(l.data)) if (k !== "extends") rest[k] = l.data[k]!;
    // The top file's paths are resolved by normalize against its own directory.
    if (l !== top) mapPathFields(rest, (p) => resolve(dirname(l.abs), p));
    merged = layers.length === 1 ? rest : mergeDeep(merged, rest);
  }
  return merged as DataMap;
}

/** Read `file` with its bases and --set overrides into one object. Never throws for user errors. */
export function loadProfileFile(file: string, opts: LoadOptions = {}): Promise<LoadResult> {
  return Promise.resolve(loadProfileSync(file, opts));
}

export function loadProfileSync(file: string, opts: LoadOptions = {}): LoadResult {
  // Only the profile named on the command line can be standard input, never a base; it is taken
  // to be in the cwd, so its relative paths (and its repository) are the cwd's.
  const stdin = file === STDIN_ARG;
  const abs = resolve(stdin ? STDIN_NAME : file);
  const topShown = stdin ? STDIN_NAME : showPath(abs);
  // repositoryRoot's answer is a real path already; only --root needs resolving.
  const root = opts.root !== undefined ? realOr(resolve(opts.root)) : repositoryRoot(abs);
  const tree: Tree = { layers: [], errors: [], warnings: [], root, seen: new Set(), bytes: 0 };
  const topReal = stdin ? abs : realFile(abs);
  if (!isInside(root, topReal)) {
    // A profile that is a link out of its repository: CI walking a pull request's tree would
    // otherwise print whatever file it points to.
    const d = diag(
      "error",
      "load.outside",
      "",
      `links to ${topReal}, outside the repository (root: ${showPath(root)})`,
      {
        file: topShown,
        hint: "profiles and their bases stay in the repository; --root DIR widens it",
      },
    );
    return { errors: [d], warnings: [], locate: () => ({ file: topShown }), files: 0 };
  }
  loadTree(topReal, topShown, [topReal], undefined, tree, stdin);
  const top = tree.layers.at(-1);
  // The top file failed to load: bases alone are no profile.
  const usable =
    top !== undefined &&
    top.shown === topShown &&
    tree.errors.every(
      (e) => e.file !== topShown || e.code.startsWith("load.extends") || e.code === "load.forbidden-key",
    );
  const layers = tree.layers;
  let sets: Segment[][] = [];
  let raw: DataMap | undefined;
  if (usable) {
    raw = mergeLayers(layers, top);
    if (opts.set && opts.set.length > 0) {
      raw = cloneData(raw);
      sets = applySets(raw, opts.set, tree.errors);
    }
  }
  const locate = (path: readonly Segment[], key = false): Position => {
    for (const s of sets) if (startsWith(path, s)) return { file: "--set" };
    if (layers.length === 0) return { file: topShown };
    return locateIn(layers, path, key);
  };
  return { raw, errors: tree.errors, warnings: tree.warnings, locate, files: tree.seen.size };
}
