// qcvm validate <files, dirs or globs...>: every problem of every profile, at once.
// Exit 0 all valid, 1 any invalid (or any warning with --strict), 2 usage (nothing matched).
import { readdir, stat } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { Document, isPair, isScalar, visit } from "yaml";
import { readProfile } from "../profile.js";
import { formatDiagnostic } from "../diagnostics.js";
import type { Diagnostic, LoadedProfile } from "../types.js";

interface Args {
  files?: string[];
  format?: "text" | "json";
  strict?: boolean;
  fill?: boolean;
  set?: string[];
}

const PROFILE_EXT = /\.ya?ml$/i;
/** Profiles read at once: enough to keep the disk busy, few enough for the fd limit. */
const CONCURRENCY = 64;

function skipDir(name: string): boolean {
  return name === "node_modules" || name.startsWith(".");
}

async function walk(dir: string, out: string[]): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  const subdirs: Promise<void>[] = [];
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (!skipDir(e.name)) subdirs.push(walk(p, out));
    } else if (PROFILE_EXT.test(e.name) && (e.isFile() || e.isSymbolicLink())) out.push(p);
  }
  await Promise.all(subdirs);
}

const GLOB_CHARS = /[*?[{]/;

/** A glob as a RegExp over '/'-separated paths: `**` any depth, `*` `?` `[..]` `{a,b}` within a segment. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*") {
      if (glob[i + 1] === "*") {
        const slash = glob[i + 2] === "/";
        re += slash ? "(?:[^/]*/)*" : ".*";
        i += slash ? 2 : 1;
      } else re += "[^/]*";
    } else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 1);
      if (end === -1) re += "\\[";
      else {
        const body = glob.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\");
        re += `[${body}]`;
        i = end;
      }
    } else if (c === "{") {
      const end = glob.indexOf("}", i + 1);
      if (end === -1) re += "\\{";
      else {
        re += `(?:${glob
          .slice(i + 1, end)
          .split(",")
          .map((s) => s.replace(/[.+^$()|\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]"))
          .join("|")})`;
        i = end;
      }
    } else re += c.replace(/[.+^$()|\\\]]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

async function expandGlob(pattern: string): Promise<string[]> {
  const posix = pattern.split(sep).join("/");
  const segs = posix.split("/");
  const firstGlob = segs.findIndex((s) => GLOB_CHARS.test(s));
  const baseSegs = segs.slice(0, firstGlob);
  const base = baseSegs.length === 0 ? "." : baseSegs.join("/") || "/";
  const re = globToRegExp(resolve(base).split(sep).join("/") + "/" + segs.slice(firstGlob).join("/"));
  const all: string[] = [];
  await walkAll(resolve(base), all);
  return all.filter((p) => re.test(p.split(sep).join("/"))).sort();
}

async function walkAll(dir: string, out: string[]): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  await Promise.all(
    entries.map(async (e) => {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (!skipDir(e.name)) await walkAll(p, out);
      } else out.push(p);
    }),
  );
}

/** Files, directories (recursive *.yaml, *.yml) and globs -> profile files, and inputs that matched nothing. */
export async function expandInputs(inputs: readonly string[]): Promise<{ files: string[]; unmatched: string[] }> {
  const files: string[] = [];
  const unmatched: string[] = [];
  for (const input of inputs) {
    const st = await stat(input).catch(() => undefined);
    if (st?.isDirectory()) {
      const found: string[] = [];
      await walk(input, found);
      found.sort();
      if (found.length === 0) unmatched.push(input);
      files.push(...found);
    } else if (st || !GLOB_CHARS.test(input)) {
      // An explicit file, or a path that does not exist: readProfile reports it as unreadable.
      files.push(input);
    } else {
      const found = await expandGlob(input);
      if (found.length === 0) unmatched.push(input);
      files.push(...found);
    }
  }
  return { files: [...new Set(files)], unmatched };
}

async function readAll(files: readonly string[], set: string[] | undefined): Promise<LoadedProfile[]> {
  const results: LoadedProfile[] = new Array(files.length);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      results[i] = await readProfile(files[i]!, { set });
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, files.length) }, worker));
  return results;
}

function bigintSafe(_key: string, v: unknown): unknown {
  return typeof v === "bigint" ? (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : `0x${v.toString(16)}`) : v;
}

/** The normalized profile as YAML: id lists on one line, policy words in hex as AMD and Intel write them. */
function filledYaml(profile: unknown): string {
  const doc = new Document(profile);
  visit(doc, {
    Seq(_, node) {
      if (node.items.every((i) => isScalar(i))) node.flow = true;
    },
    Pair(_, pair) {
      if (isPair(pair) && isScalar(pair.key) && ["policy", "attributes"].includes(String(pair.key.value)) && isScalar(pair.value)) {
        if (typeof pair.value.value === "number" || typeof pair.value.value === "bigint") pair.value.format = "HEX";
      }
    },
  });
  return doc.toString({ lineWidth: 0 });
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export async function run(args: Record<string, unknown>): Promise<number> {
  const a = args as Args;
  const inputs = a.files ?? [];
  const { files, unmatched } = await expandInputs(inputs);
  if (unmatched.length > 0) {
    process.stderr.write(`qcvm: no profiles (*.yaml, *.yml) matched ${unmatched.map((u) => JSON.stringify(u)).join(", ")}\n`);
    return 2;
  }
  if (files.length === 0) {
    process.stderr.write("qcvm: name at least one profile, directory or glob\n");
    return 2;
  }
  const loaded = await readAll(files, a.set);
  const strict = a.strict === true;
  let valid = 0;
  let errors = 0;
  let warnings = 0;
  const reports = loaded.map((l) => {
    const ok = l.errors.length === 0 && (!strict || l.warnings.length === 0);
    if (ok) valid++;
    errors += l.errors.length;
    warnings += l.warnings.length;
    return { l, ok };
  });
  const summary = { profiles: files.length, valid, invalid: files.length - valid, errors, warnings };

  if (a.format === "json") {
    const out = {
      files: reports.map(({ l, ok }) => ({
        file: l.file,
        valid: ok,
        errors: l.errors,
        warnings: l.warnings,
        ...(a.fill && l.profile ? { profile: l.profile } : {}),
      })),
      summary,
    };
    process.stdout.write(`${JSON.stringify(out, bigintSafe, 2)}\n`);
  } else {
    const lines: string[] = [];
    for (const { l } of reports) {
      const all: Diagnostic[] = [...l.errors, ...l.warnings];
      for (const d of all) lines.push(formatDiagnostic(d));
    }
    if (a.fill) {
      for (const { l } of reports) {
        if (!l.profile) continue;
        lines.push(`---\n# ${l.file} (normalized: defaults filled, sizes in bytes)\n${filledYaml(l.profile).trimEnd()}`);
      }
    }
    lines.push(
      `${plural(summary.profiles, "profile")}: ${summary.valid} valid, ${summary.invalid} invalid (${plural(errors, "error")}, ${plural(warnings, "warning")})`,
    );
    process.stdout.write(`${lines.join("\n")}\n`);
  }
  return summary.invalid > 0 ? 1 : 0;
}
