// The one seam through which qcvm starts child processes. argv arrays only: nothing here
// builds or runs a shell string. Tests and the dry-run path can swap the runner.
import { access, constants } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import type { Options, ResultPromise } from "execa";

export interface RunResult {
  command: string[];
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** A failed child process, carrying the command and what it printed. */
export class RunError extends Error {
  constructor(
    readonly result: RunResult,
    readonly reason: string,
  ) {
    super(`${prettyCommand(result.command)}: ${reason}${result.stderr ? `\n${result.stderr.trim()}` : ""}`);
    this.name = "RunError";
  }
}

/** POSIX-sh quoting of one word, for display and for `render --format shell`. */
export function shellQuote(word: string): string {
  if (word !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A command line a person can paste into a POSIX shell. */
export function prettyCommand(argv: readonly string[]): string {
  return argv.map(shellQuote).join(" ");
}

/** Run to completion and capture output. Never throws for a non-zero exit: the caller decides. */
export async function run(
  argv: readonly string[],
  options: { timeoutMs?: number; input?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error("run: empty argv");
  try {
    const r = await execa(file, args, {
      reject: false,
      timeout: options.timeoutMs,
      input: options.input,
      env: options.env,
      stripFinalNewline: false,
    });
    if (r.failed && r.exitCode === undefined) {
      // Spawn failure (ENOENT, EACCES) or timeout: no exit code to report.
      throw new RunError(
        { command: [...argv], exitCode: -1, stdout: String(r.stdout ?? ""), stderr: String(r.stderr ?? "") },
        r.timedOut ? `timed out after ${options.timeoutMs} ms` : (r.code ?? r.shortMessage ?? "could not start"),
      );
    }
    return { command: [...argv], exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  } catch (e) {
    if (e instanceof RunError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw new RunError({ command: [...argv], exitCode: -1, stdout: "", stderr: "" }, err.code ?? err.message);
  }
}

/** Start a long-running child (QEMU). Synchronous on purpose: execa's subprocess is itself a
 *  promise (of its exit), so returning it from an async function would wait for the child to end.
 *  The caller owns the returned process (`.pid`, `.kill()`, and awaiting it waits for exit). */
export function spawn(argv: readonly string[], options: Options = {}): ResultPromise {
  const [file, ...args] = argv;
  if (!file) throw new Error("spawn: empty argv");
  return execa(file, args, { reject: false, ...options });
}

/** Is a program on PATH (or an existing path)? Resolved without running it. */
export async function which(program: string): Promise<string | undefined> {
  if (program.includes("/")) {
    try {
      await access(program, constants.X_OK);
      return program;
    } catch {
      return undefined;
    }
  }
  for (const dir of (process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(":")) {
    if (!dir) continue;
    const candidate = join(dir, program);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}
