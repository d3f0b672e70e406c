// qcvm validate <files, dirs or globs...>: every problem of every profile, at once.
// Exit 0 all valid, 1 any invalid (or any warning with --strict), 2 usage (nothing matched).
import type { Outcome } from "../core/errors.js";
import type { ValidateOptions } from "../cli/command-options.js";
import { readdir, stat } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { Document, isPair, isScalar, visit } from "yaml";
import { readProfile } from "../pipeline/read-profile.js";
import type { ReadOptions } from "../pipeline/read-profile.js";
import { diag, formatDiagnostic } from "../core/diagnostics.js";
import type { Diagnostic, LoadedProfile, Profile } from "../core/types.js";
import { orderFields, profileToRaw } from "../export/raw.js";
import { formatGithub, formatJunit, formatSarif } from "./validate-formats.js";

const PROFILE_EXT = /\.ya?ml$/i;
/** Profiles read at once: enough to keep the disk busy, few enough for the fd limit. */
const CONCURRENCY = 64;

function skipDir(name: string): boolean {
  return name === "node_modules" || name.startsWith(".");
}

/** Directories a walk could not read: reported as errors, so a CI run never passes on a tree it
 *  only partly saw (an unreadable subdirectory was skipped silently). */
type Unreadable = Array<{ dir: string; code: string }>;

async function readDir(dir: string, unreadable: Unreadable) {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (e) {
    // `**` reads a directory twice (zero levels, then one more): report it once.
    if (!unreadable.some((u) => u.dir === dir))
      unreadable.push({ dir, code: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
    return [];
  }
}

async function walk(dir: string, out: string[], unreadable: Unreadable): Promise<void> {
  const entries = await readDir(dir, unreadable);
  const subdirs: Promise<void>[] = [];
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (!skipDir(e.name)) subdirs.push(walk(p, out, unreadable));
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
        const body = glob
          .slice(i + 1, end)
          .replace(/^!/, "^")
          .replace(/\\/g, "\\\\");
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
          .map((s) =>
            s
              .replace(/[.+^$()|\\]/g, "\\$&")
              .replace(/\*/g, "[^/]*")
              .replace(/\?/g, "[^/]"),
          )
          .join("|")})`;
        i = end;
      }
    } else re += c.replace(/[.+^$()|\\\]]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

async function expandGlob(pattern: string, unreadable: Unreadable): Promise<string[]> {
  const posix = pattern.split(sep).join("/");
  const segs = posix.split("/");
  const firstGlob = segs.findIndex((s) => GLOB_CHARS.test(s));
  const baseSegs = segs.slice(0, firstGlob);
  const base = baseSegs.length === 0 ? "." : baseSegs.join("/") || "/";
  const out: string[] = [];
  await walkGlob(
    resolve(base),
    segs.slice(firstGlob).filter((s) => s !== ""),
    out,
    unreadable,
  );
  return out.sort();
}

/**
 * Match the glob one path segment at a time, reading only directories a match could be in: so an
 * unreadable directory on the way is one that could hold a profile, and is reported.
 */
async function walkGlob(dir: string, segs: readonly string[], out: string[], unreadable: Unreadable): Promise<void> {
  const [seg, ...rest] = segs;
  if (seg === undefined) return;
  if (seg === "**" && rest.length === 0) {
    // A trailing `**`: every profile below, as for a directory.
    await walk(dir, out, unreadable);
    return;
  }
  if (seg === "**") {
    // Zero directories here, or one more and `**` again.
    await walkGlob(dir, rest, out, unreadable);
    const entries = await readDir(dir, unreadable);
    await Promise.all(
      entries
        .filter((e) => e.isDirectory() && !skipDir(e.name))
        .map((e) => walkGlob(join(dir, e.name), segs, out, unreadable)),
    );
    return;
  }
  const literal = !GLOB_CHARS.test(seg);
  const re = globToRegExp(seg);
  const entries = await readDir(dir, unreadable);
  const subdirs: Promise<void>[] = [];
  for (const e of entries) {
    if (!re.test(e.name) || (!literal && e.isDirectory() && skipDir(e.name))) continue;
    const p = join(dir, e.name);
    if (rest.length === 0) {
      // Only profiles: `examples/*` must not read a README as YAML.
      if (!e.isDirectory() && PROFILE_EXT.test(e.name)) out.push(p);
    } else if (e.isDirectory()) subdirs.push(walkGlob(p, rest, out, unreadable));
  }
  await Promise.all(subdirs);
}

/** Files, directories (recursive *.yaml, *.yml) and globs -> profile files, and inputs that matched nothing. */
export async function expandInputs(
  inputs: readonly string[],
): Promise<{ files: string[]; unmatched: string[]; unreadable: Unreadable }> {
  const files: string[] = [];
  const unmatched: string[] = [];
  const unreadable: Unreadable = [];
  for (const input of inputs) {
    const st = await stat(input).catch(() => undefined);
    const before = unreadable.length;
    if (st?.isDirectory()) {
      const found: string[] = [];
      await walk(input, found, unreadable);
      found.sort();
      if (found.length === 0 && unreadable.length === before) unmatched.push(input);
      files.push(...found);
    } else if (st || !GLOB_CHARS.test(input)) {
      // An explicit file, or a path that does not exist: readProfile reports it as unreadable.
      files.push(input);
    } else {
      const found = await expandGlob(input, unreadable);
      if (found.length === 0 && unreadable.length === before) unmatched.push(input);
      files.push(...found);
    }
  }
  return { files: [...new Set(files)], unmatched, unreadable };
}

/** An unreadable directory, as a result among the profiles: it fails the run like an invalid one. */
function unreadableResult({ dir, code }: Unreadable[number]): LoadedProfile {
  const why = code === "EACCES" || code === "EPERM" ? "permission denied" : code;
  return {
    file: dir,
    raw: {},
    errors: [
      diag("error", "load.read-dir", "", `cannot read directory: ${why}`, {
        file: dir,
        hint: "profiles in it were not checked; make it readable to this user",
      }),
    ],
    warnings: [],
  };
}

async function readAll(files: readonly string[], opts: ReadOptions): Promise<LoadedProfile[]> {
  const results: LoadedProfile[] = new Array<LoadedProfile>(files.length);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      results[i] = await readProfile(files[i]!, opts);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, files.length) }, worker));
  return results;
}

function bigintSafe(_key: string, v: unknown): unknown {
  return typeof v === "bigint" ? (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : `0x${v.toString(16)}`) : v;
}

/** A profile with every default written out, as a user would write it (export/raw.ts: normalize
 *  reads it back to the same profile), bases merged and paths made absolute. */
function filledProfile(file: string, profile: Profile): string {
  const raw = profileToRaw(profile);
  // With guest nodes, placement is per node: memory's own (defaults) would only draw a warning.
  const memory = raw.memory as Record<string, unknown>;
  if (profile.numa.nodes.length > 0) for (const k of ["hostNodes", "policy", "weights"]) delete memory[k];
  return `# ${file}: every default filled in (qcvm validate --fill)\n${filledYaml(orderFields(raw))}`;
}

/** A profile as YAML: id lists on one line, policy words in hex as AMD and Intel write them. */
function filledYaml(profile: unknown): string {
  const doc = new Document(profile);
  visit(doc, {
    Seq(_, node) {
      if (node.items.every((i) => isScalar(i))) node.flow = true;
    },
    Pair(_, pair) {
      if (
        isPair(pair) &&
        isScalar(pair.key) &&
        ["policy", "attributes"].includes(String(pair.key.value)) &&
        isScalar(pair.value)
      ) {
        if (typeof pair.value.value === "number" || typeof pair.value.value === "bigint") pair.value.format = "HEX";
      }
    },
  });
  return doc.toString({ lineWidth: 0 });
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export async function run(a: ValidateOptions): Promise<Outcome> {
  const started = performance.now();
  const inputs = a.files;
  const { files, unmatched, unreadable } = await expandInputs(inputs);
  if (unmatched.length > 0) {
    process.stderr.write(
      `qcvm: no profiles (*.yaml, *.yml) matched ${unmatched.map((u) => JSON.stringify(u)).join(", ")}\n`,
    );
    return "usage";
  }
  if (files.length === 0 && unreadable.length === 0) {
    process.stderr.write("qcvm: name at least one profile, directory or glob\n");
    return "usage";
  }
  const loaded = [
    ...(await readAll(files, { set: a.set, root: a.root, hostCheck: a.hostCheck })),
    ...unreadable.map(unreadableResult),
  ];
  const strict = a.strict;
  let valid = 0;
  let errors = 0;
  let warnings = 0;
  const reports = loaded.map((l) => {
    const ok = l.errors.length === 0 && (!strict || l.warnings.length === 0);
    if (ok) valid++;
    // A bounded report ends with one "and N more": count what it stands for.
    errors += l.errors.length + (l.moreErrors ? l.moreErrors - 1 : 0);
    warnings += l.warnings.length + (l.moreWarnings ? l.moreWarnings - 1 : 0);
    return { l, ok };
  });
  const summary = { profiles: loaded.length, valid, invalid: loaded.length - valid, errors, warnings };
  const summaryLine = `${plural(summary.profiles, "profile")}: ${summary.valid} valid, ${summary.invalid} invalid (${plural(errors, "error")}, ${plural(warnings, "warning")})`;
  const fileReports = reports.map(({ l, ok }) => ({ file: l.file, valid: ok, errors: l.errors, warnings: l.warnings }));

  if (a.format === "github") {
    // The summary is a plain line of the job's log; annotations carry the problems.
    process.stdout.write(`${[...formatGithub(fileReports), summaryLine].join("\n")}\n`);
  } else if (a.format === "junit" || a.format === "sarif") {
    // stdout is the document (redirected to the report file); the summary goes to the log.
    process.stdout.write(
      a.format === "junit" ? formatJunit(fileReports, (performance.now() - started) / 1000) : formatSarif(fileReports),
    );
    process.stderr.write(`qcvm: ${summaryLine}\n`);
  } else if (a.format === "json") {
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
  } else if (a.fill) {
    // stdout is the profiles, as YAML a person or `qcvm validate -` reads back; problems and the
    // summary go to stderr.
    const problems = reports.flatMap(({ l }) => [...l.errors, ...l.warnings].map(formatDiagnostic));
    process.stderr.write([...problems, summaryLine].map((x) => `${x}\n`).join(""));
    const docs = reports.flatMap(({ l }) => (l.profile ? [filledProfile(l.file, l.profile)] : []));
    if (docs.length > 0) process.stdout.write(`${docs.join("---\n")}`);
  } else {
    const lines: string[] = [];
    for (const { l } of reports) {
      const all: Diagnostic[] = [...l.errors, ...l.warnings];
      for (const d of all) lines.push(formatDiagnostic(d));
    }
    lines.push(summaryLine);
    process.stdout.write(`${lines.join("\n")}\n`);
  }
  return summary.invalid > 0 ? "invalid" : "ok";
}
