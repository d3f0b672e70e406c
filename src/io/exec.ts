// The one seam through which qcvm starts child processes: the Runner. argv arrays only: nothing
// here builds or runs a shell string. The execa implementation is the default; a test installs a
// fake with useRunner() (test/helpers/fake-runner.ts) to drive launch's failure paths without root
// or QEMU. No execa type leaves this file.
import { ToolFailure } from "../core/errors.js";
import { access, constants } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import type { Options, ResultPromise } from "execa";
import { prettyCommand } from "../core/shell-words.js";

export interface RunResult {
  command: string[];
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
  input?: string;
  env?: Record<string, string>;
}

/** How a long-running child (QEMU) ended. */
export interface ChildExit {
  exitCode?: number;
  signal?: string;
  /** Why it could not start at all (ENOENT, EACCES, ...), when it never ran. */
  code?: string;
  /** What it wrote to stderr, with `captureStderr`. */
  stderr?: string;
  /** What it wrote to stdout, with `captureStdout`. */
  stdout?: string;
  /** Killed because it outlived `timeoutMs`. */
  timedOut?: boolean;
}

export interface StartOptions {
  /** Where stdin, stdout and stderr go: the terminal ("inherit", the default), nowhere
   *  ("ignore"), or an open file descriptor taking stdout and stderr (stdin is then ignored). */
  output?: "inherit" | "ignore" | number;
  /** Keep what the child writes to stderr for ChildExit.stderr (instead of `output`). */
  captureStderr?: boolean;
  /** Keep what the child writes to stdout for ChildExit.stdout (instead of `output`). */
  captureStdout?: boolean;
  /** Kill the child (SIGTERM) once it has run this long. */
  timeoutMs?: number;
  /** Own session (setsid): the terminal's Ctrl-C and qcvm's own death do not reach the child. */
  detached?: boolean;
  /** Open descriptors the child gets as fds 3, 4, ... (QMP's socket, files QEMU may not open). */
  fds?: readonly number[];
  /** The child's whole environment (nothing of qcvm's is inherited); unset: qcvm's own. */
  env?: Record<string, string>;
  /** The child's working directory. */
  cwd?: string;
}

/** A started child. `exited` settles (never rejects) when it ends. */
export interface Child {
  readonly pid: number | undefined;
  readonly exited: Promise<ChildExit>;
  kill(signal?: NodeJS.Signals): void;
  /** Let qcvm exit while the child runs on. */
  unref(): void;
}

export interface Runner {
  /** Run to completion and capture output. Never throws for a non-zero exit: the caller decides;
   *  throws RunError when the program could not be started or timed out. */
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
  /** Start a long-running child. Synchronous: the child is forked before it returns (launch
   *  relies on this to spawn QEMU from inside the VM cgroup). */
  start(argv: readonly string[], options?: StartOptions): Child;
  /** Is a program on PATH (or an existing path)? Resolved without running it. */
  which(program: string): Promise<string | undefined>;
}

/** A failed child process, carrying the command and what it printed. */
export class RunError extends ToolFailure {
  constructor(
    readonly result: RunResult,
    readonly reason: string,
  ) {
    super(`${prettyCommand(result.command)}: ${reason}${result.stderr ? `\n${result.stderr.trim()}` : ""}`);
    this.name = "RunError";
  }
}

async function execaRun(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
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

function execaOptions(o: StartOptions): Options {
  const out = o.output ?? "inherit";
  const stdin = typeof out === "number" ? "ignore" : out;
  const stdout = o.captureStdout ? "pipe" : out;
  const stderr = o.captureStderr ? "pipe" : out;
  return {
    reject: false,
    // Extra descriptors need the stdio array form (execa refuses it beside stdin/stdout/stderr).
    ...(o.fds?.length ? { stdio: [stdin, stdout, stderr, ...o.fds] } : { stdin, stdout, stderr }),
    ...(o.env ? { env: o.env, extendEnv: false } : {}),
    ...(o.cwd ? { cwd: o.cwd } : {}),
    detached: o.detached ?? false,
    cleanup: !o.detached,
    buffer: (o.captureStderr ?? false) || (o.captureStdout ?? false),
    ...(o.timeoutMs !== undefined ? { timeout: o.timeoutMs } : {}),
  } as Options;
}

function execaStart(argv: readonly string[], options: StartOptions = {}): Child {
  const [file, ...args] = argv;
  if (!file) throw new Error("start: empty argv");
  const sub: ResultPromise = execa(file, args, execaOptions(options));
  // The subprocess is a thenable that settles when the child exits (reject: false, so never
  // rejects). It is only awaited through `exited`, never returned from an async function.
  const exited: Promise<ChildExit> = sub.then((r) => ({
    exitCode: r.exitCode,
    signal: r.signal,
    code:
      r.failed && r.exitCode === undefined && !r.signal ? ((r as { code?: string }).code ?? r.shortMessage) : undefined,
    ...(options.captureStderr ? { stderr: String(r.stderr ?? "") } : {}),
    ...(options.captureStdout ? { stdout: String(r.stdout ?? "") } : {}),
    ...(r.timedOut ? { timedOut: true } : {}),
  }));
  return {
    pid: sub.pid,
    exited,
    kill: (signal = "SIGTERM") => {
      sub.kill(signal);
    },
    unref: () => sub.unref(),
  };
}

async function pathWhich(program: string): Promise<string | undefined> {
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

/** The real runner: execa for processes, PATH for programs. */
export const execaRunner: Runner = { run: execaRun, start: execaStart, which: pathWhich };

let active: Runner = execaRunner;

/** Install another runner (a test's fake); returns the function that puts the previous one back. */
export function useRunner(r: Runner): () => void {
  const previous = active;
  active = r;
  return () => {
    active = previous;
  };
}

/** The runner in use. */
export function runner(): Runner {
  return active;
}

export function run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return active.run(argv, options);
}

export function start(argv: readonly string[], options: StartOptions = {}): Child {
  return active.start(argv, options);
}

export function which(program: string): Promise<string | undefined> {
  return active.which(program);
}
