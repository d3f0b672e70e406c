// The options and help lines several commands share, the command-line error type, and the shape of
// a command as data (CommandSpec): src/cli/*-commands.ts define the commands with these, and
// src/cli.ts registers the table with yargs.
import type { ArgumentsCamelCase, Argv } from "yargs";
import type { Outcome } from "../core/errors.js";
import { resolveHostArg } from "../io/package-dir.js";

/** A command line yargs or a check of qcvm's refuses: exit 2, with the help of the command typed. */
export class UsageError extends Error {}

/** A command's module: its `run` takes the command's typed options (src/cli/command-options.ts). */
export interface HandlerModule<O> {
  run(options: O): Promise<Outcome>;
}

/**
 * One command as data. `builder` is its yargs definition (options, examples, exit codes); yargs'
 * types carry what it defines (A) to `options`, the one place argv becomes the handler's typed
 * options (O); `load` imports the handler's module only when the command runs.
 */
export interface CommandSpec<A, O> {
  command: string | readonly string[];
  describe: string;
  builder: (y: Argv) => Argv<A>;
  options: (argv: ArgumentsCamelCase<A>) => NoInfer<O>;
  load: () => Promise<HandlerModule<O>>;
  /**
   * With --format json, whether stdout is one JSON event per line (launch, but for --dry-run):
   * a failure is then one more line, `{"event": "error", "error": ..., "diagnostics": ...}`,
   * where other commands print the indented error document.
   */
  jsonLines?: (options: O) => boolean;
}

/**
 * How src/cli.ts runs a command: `format` is the command line's --format (errors follow it to
 * stdout as JSON), `run` calls the handler, `lines` is the spec's jsonLines for these options.
 */
export type Dispatch = (format: unknown, run: () => Promise<Outcome>, lines: boolean) => Promise<void>;

/** A command with its option types closed over, so commands of every shape sit in one table. */
export interface Command {
  /** Its name (the first word of `command`): usage errors point at `qcvm NAME --help`. */
  name: string;
  command: string | readonly string[];
  /** The spec's builder and argv conversion, types erased (test/cli-options.test.ts walks them). */
  builder: (y: Argv) => Argv<unknown>;
  options: (argv: ArgumentsCamelCase) => unknown;
  register(y: Argv, dispatch: Dispatch): Argv;
}

export function defineCommand<A, O>(spec: CommandSpec<A, O>): Command {
  const first = typeof spec.command === "string" ? spec.command : spec.command[0]!;
  return {
    name: first.split(" ")[0]!,
    command: spec.command,
    builder: spec.builder,
    options: (argv) => spec.options(argv as ArgumentsCamelCase<A>),
    register: (y, dispatch) =>
      y.command(spec.command, spec.describe, spec.builder, (argv) => {
        const options = spec.options(withStdinArg(argv));
        return dispatch(argv.format, async () => (await spec.load()).run(options), spec.jsonLines?.(options) ?? false);
      }),
  };
}

/** A positional yargs demands (`<name>` in the command): absent only if qcvm defined it wrong. */
export function required<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw new Error(`yargs passed no <${name}>`);
  return value;
}

/**
 * yargs drops a lone `-` (it reads it as an empty group of short options), so it is carried
 * through the parser as a token no argv can hold (a NUL byte) and turned back into `-`, which
 * validate, render and plan read as standard input (src/load/load.ts STDIN_ARG).
 */
export const STDIN_TOKEN = "\u0000-";

/** argv as the command line had it: every STDIN_TOKEN back to `-` (same keys, same types). */
export function withStdinArg<T extends object>(args: T): T {
  const back = (v: unknown): unknown => (v === STDIN_TOKEN ? "-" : Array.isArray(v) ? v.map(back) : v);
  return Object.fromEntries(Object.entries(args).map(([k, v]) => [k, back(v)])) as T;
}

export function hostOptions<T>(y: Argv<T>) {
  return y
    .option("host", {
      type: "string",
      describe:
        "Read host topology from this directory (shaped like /, with sys/ and proc/; qcvm doctor --save-host writes one) instead of /, or a tree qcvm ships, by name (epyc-2s4n)",
      coerce: (v: unknown): string => resolveHostArg(Array.isArray(v) ? String(v.at(-1)) : String(v)),
    })
    .option("capabilities", {
      type: "string",
      describe: "QEMU capabilities saved by `qcvm doctor --save` (otherwise the profile's target version decides)",
    });
}

/** How validate, render and plan read a profile: where its bases may live, and the host check. */
export function readOptions<T>(y: Argv<T>) {
  return y
    .option("root", {
      type: "string",
      requiresArg: true,
      describe: "extends: bases must be under DIR (default: the profile's git root, else its directory)",
    })
    .option("host-check", {
      type: "boolean",
      default: true,
      describe:
        "Check that every file QEMU opens (kernel, initrd, firmware, disks, blob files) exists; --no-host-check for a repository validated without its images",
    });
}

export function setOptions<T>(y: Argv<T>) {
  return y
    .option("set", {
      // Not `array: true`: an array option takes every word after it, so `--set a=1 vm.yaml` took
      // the profile as a second override. Repeated, a string option still collects a list.
      type: "string",
      describe: "Override a profile field: --set memory.size=8G (repeatable; applied after extends:, before defaults)",
      coerce: (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : [String(v)]),
    })
    .check((argv) => {
      // A bare `--set` (or `--set=`) would silently override nothing.
      if (Array.isArray(argv.set) && argv.set.some((s) => s === ""))
        throw new UsageError("--set needs path=value, e.g. --set memory.size=8G");
      return true;
    });
}

/**
 * A number of seconds. Taken as a string and converted here: yargs' own `number` type turns
 * `--timeout abc` into NaN, and the message could then only say "got NaN".
 */
export function secondsOption(name: string, describe: string, dflt: number, min: "zero" | "positive") {
  return {
    describe,
    default: dflt,
    requiresArg: true,
    coerce: (v: unknown): number => {
      const text = Array.isArray(v) ? String(v.at(-1)) : String(v);
      const n = text.trim() === "" ? NaN : Number(text);
      if (!Number.isFinite(n) || (min === "zero" ? n < 0 : n <= 0)) {
        const what = min === "zero" ? "a number of seconds >= 0" : "a positive number of seconds";
        throw new UsageError(`--${name} must be ${what}, got ${JSON.stringify(text)}`);
      }
      return n;
    },
  } as const;
}

/**
 * `--format text|json`, one definition for every command whose output is text or one JSON value
 * (status, list, stats, doctor, launch, stop, logs, console, export, import, init). With json a
 * failure prints `{"error": {kind, message}, "diagnostics": [...]}` on stdout (src/cli.ts).
 */
export function formatOption(describe?: string) {
  return {
    choices: ["text", "json"] as const,
    default: "text" as const,
    ...(describe === undefined ? {} : { describe }),
  };
}

/** One line of help per command: what its exit codes mean (every command: 2 usage, 70 internal error). */
export function exitCodes(text: string): string {
  return `Exit codes: ${text}; 2 usage error; 70 internal error (a bug in qcvm).`;
}

export const RUN_DIR = "Runtime state directory (default $QCVM_RUN_DIR, /run/qcvm as root, else $XDG_RUNTIME_DIR/qcvm)";
