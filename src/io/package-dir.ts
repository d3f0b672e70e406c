// Where qcvm's own files are (schemas/, examples/, profiles/): its package directory, so messages,
// `qcvm init` and `--host NAME` name shipped files by absolute path and work from any directory,
// in a clone or an installed package alike. Found from this module's file (dist/ in the bundle,
// src/io/ under vitest); under the V8 startup snapshot a module has no real path (build.mjs sets a
// placeholder import.meta.url), so from the --snapshot-blob bin/qcvm passes (<package>/dist/qcvm.blob).
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The directory up from `start` holding qcvm's package.json, or undefined. */
function findUp(start: string): string | undefined {
  let dir = resolve(start);
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown }).name === "qcvm") return dir;
      } catch {
        // not a manifest qcvm can read: keep looking up
      }
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/**
 * qcvm's package directory, or undefined when it cannot be found (then messages name files
 * relatively). Not cached: the snapshot's warm-up runs at build time, in another directory.
 */
export function packageDir(): string | undefined {
  const starts: string[] = [];
  try {
    starts.push(dirname(fileURLToPath(import.meta.url)));
  } catch {
    // not a file: URL
  }
  const blobAt = process.execArgv.indexOf("--snapshot-blob");
  const blob = blobAt === -1 ? undefined : process.execArgv[blobAt + 1];
  if (blob) starts.push(dirname(blob));
  for (const s of starts) {
    const found = findUp(s);
    if (found) return found;
  }
  return undefined;
}

/** A file shipped with qcvm (`rel` as in the repository), absolute when the package is found. */
export function shippedPath(rel: string): string {
  const dir = packageDir();
  return dir ? join(dir, rel) : rel;
}

/** The host trees qcvm ships under examples/hosts/ (for `--host NAME`), sorted. */
export function shippedHosts(): string[] {
  try {
    return readdirSync(shippedPath("examples/hosts"), { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

/**
 * `--host` as given: a directory (relative to the cwd) when there is one, else the name of a tree
 * qcvm ships (`--host epyc-2s4n` is examples/hosts/epyc-2s4n of the package), else unchanged for
 * checkHostRoot() to report.
 */
export function resolveHostArg(arg: string): string {
  if (existsSync(arg) || !/^[a-z0-9][a-z0-9._-]*$/.test(arg)) return arg;
  return shippedHosts().includes(arg) ? shippedPath(`examples/hosts/${arg}`) : arg;
}
