// Diagnostics: construction and the one text format every command prints:
//   file:line:col: path: message, got X (hint)
import { isAbsolute, relative } from "node:path";
import type { Diagnostic, Severity } from "./types.js";
import { ToolFailure, UserError } from "./errors.js";

export function diag(
  severity: Severity,
  code: string,
  path: string,
  message: string,
  extra: Partial<Pick<Diagnostic, "got" | "hint" | "file" | "line" | "col">> = {},
): Diagnostic {
  const d: Diagnostic = { severity, code, path, message, ...extra };
  // A report stays bounded in every format: a value can be most of a 1 MiB file.
  if (typeof d.got === "string" && d.got.length > 1000) d.got = `${d.got.slice(0, 1000)}...`;
  return d;
}

/** Longest `got` shown for a string: a value can be most of a 1 MiB file. */
const MAX_SHOWN_STRING = 200;

/** Characters that look like a space or nothing: shown as \uXXXX so `"2\u00a0"` is not read as "2 ". */
const INVISIBLE = /[\u0080-\u00a0\u00ad\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]/g;

function quoted(s: string): string {
  return JSON.stringify(s).replace(INVISIBLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function showValue(v: unknown): string {
  if (typeof v === "string")
    return v.length > MAX_SHOWN_STRING
      ? `${quoted(v.slice(0, MAX_SHOWN_STRING))}... (${v.length} characters)`
      : quoted(v);
  if (v === undefined) return "nothing";
  // YAML's words for what JSON cannot write (.inf, 1e400, .nan), not JSON's `null`.
  if (typeof v === "number" && !Number.isFinite(v)) return Number.isNaN(v) ? ".nan" : v > 0 ? ".inf" : "-.inf";
  const s = JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? `0x${x.toString(16)}` : x));
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** A file as a person in this directory would write it: relative when it is below the cwd. */
export function displayPath(file: string): string {
  if (!isAbsolute(file)) return file;
  const rel = relative(process.cwd(), file);
  return rel && !rel.startsWith("..") && !isAbsolute(rel) ? rel : file;
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = d.file ? `${displayPath(d.file)}${d.line ? `:${d.line}:${d.col ?? 1}` : ""}: ` : "";
  const path = d.path ? `${d.path}: ` : "";
  const sev = d.severity === "warning" ? "warning: " : "";
  const got = "got" in d && d.got !== undefined ? `, got ${showValue(d.got)}` : "";
  const hint = d.hint ? ` (${d.hint})` : "";
  return `${where}${sev}${path}${d.message}${got}${hint}`;
}

/** Sort by file, then line, then column, errors before warnings at the same place. */
export function sortDiagnostics(list: Diagnostic[]): Diagnostic[] {
  return [...list].sort(
    (a, b) =>
      (a.file ?? "").localeCompare(b.file ?? "") ||
      (a.line ?? 0) - (b.line ?? 0) ||
      (a.col ?? 0) - (b.col ?? 0) ||
      (a.severity === b.severity ? 0 : a.severity === "error" ? -1 : 1),
  );
}

/**
 * Columns for human-readable reports: the terminal's width, else $COLUMNS, else `max`; never more
 * than `max` (prose wider than ~100 columns reads badly even on a wide terminal).
 */
export function outputWidth(max = 100): number {
  const columns = process.stdout.columns || Number(process.env.COLUMNS) || max;
  return Math.max(40, Math.min(max, columns));
}

/** A failed file operation in words a person acts on ("no such file or directory", not ENOENT). */
export function describeFsError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err?.code) {
    case "ENOENT":
      return "no such file or directory";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "is a directory";
    case "EEXIST":
      return "a file of that name is in the way";
    case "ENOTDIR":
      return "a directory in the path is a file";
    case "EROFS":
      return "read-only file system";
    case "ENOSPC":
      return "no space left on the device";
    default:
      return err?.code ?? err?.message ?? String(e);
  }
}

// The error type lives with the outcome kinds; imported from here too, as it always was.
export { UserError };
/**
 * A condition an earlier phase guarantees (the schema, the rules or the planner) failed: qcvm's
 * bug, not the user's. The CLI reports it as an internal error (exit 70), never as a profile error.
 */
export class InternalError extends Error {
  constructor(message: string) {
    super(`broken invariant: ${message}`);
    this.name = "InternalError";
  }
}

export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new InternalError(message);
}

/** Errors that mean the host ran out of something, not that qcvm or the profile is wrong. */
const RESOURCE_ERRORS: Record<string, string> = {
  ENOSPC: "no space left on the device",
  EDQUOT: "the disk quota is exhausted",
  EROFS: "the file system is read-only",
  EMFILE: "qcvm has too many files open (ulimit -n)",
  ENFILE: "the system has too many files open",
};

/**
 * A resource error (ENOSPC, EDQUOT, EROFS, EMFILE, ENFILE) as a user error naming the path, or
 * undefined for any other error. Node's write errors carry no path, so the caller passes it.
 */
export function resourceError(e: unknown, path?: string): UserError | undefined {
  const err = e as NodeJS.ErrnoException;
  const what = typeof err?.code === "string" ? RESOURCE_ERRORS[err.code] : undefined;
  if (!what) return undefined;
  const where = path ?? err.path;
  return new UserError(
    `cannot ${err.syscall ?? "write"} ${where ?? "a file"}: ${what} (${err.code}); nothing of this launch was left behind (free some, or pass another --run-dir)`,
  );
}

/**
 * The one place an error becomes what the user is told: a UserError as it is, a failure of a tool
 * qcvm drives (ToolFailure) as a failure with that tool's words, a resource error naming its path;
 * undefined for anything else, which is a bug in qcvm.
 */
export function asUserError(e: unknown): UserError | undefined {
  if (e instanceof UserError) return e;
  if (e instanceof ToolFailure) return new UserError(e.message, "failed");
  return resourceError(e);
}
