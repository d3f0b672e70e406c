// qcvm's command line. Only argument parsing lives here: the commands are a table of definitions
// (src/cli/*-commands.ts), each command's module imported when that command runs, so `qcvm render`
// never loads the launcher, the probe or ajv's compiler. main() returns the exit code; only
// bin/qcvm.js sets it on the process.
import { startupSnapshot } from "node:v8";
import yargs from "yargs";
import type { Argv } from "yargs";
import { asUserError } from "./core/diagnostics.js";
import { exitCodeFor } from "./cli/exit-codes.js";
import { STDIN_TOKEN, UsageError, defineCommand, exitCodes } from "./cli/options.js";
import type { Command, Dispatch } from "./cli/options.js";
import type { HelpOptions } from "./cli/command-options.js";
import { engineCommands, profileCommands } from "./cli/profile-commands.js";
import { vmCommands } from "./cli/vm-commands.js";

declare const QCVM_VERSION: string | undefined;

// `qcvm help CMD` is `qcvm CMD --help`, so the two can never say different things.
const helpCommand = defineCommand({
  command: "help [command]",
  describe: "Show a command's options, examples and exit codes (as qcvm COMMAND --help)",
  builder: (y) =>
    y
      .positional("command", { type: "string", describe: "A command (default: the list of commands)" })
      .example("$0 help validate", "The same as qcvm validate --help")
      .epilog(exitCodes("0 help printed")),
  options: (a) => ({ command: a.command }),
  load: () => Promise.resolve({ run: runHelp }),
});

async function runHelp(o: HelpOptions): Promise<{ kind: "exit-status"; code: number }> {
  const cmd = o.command;
  if (cmd !== undefined && !COMMAND_NAMES.has(cmd))
    throw new UsageError(`unknown command \`${cmd}\` (qcvm --help lists the commands)`);
  return { kind: "exit-status", code: await main(cmd === undefined ? ["--help"] : [cmd, "--help"]) };
}

const completionCommand = defineCommand({
  command: "completion [shell]",
  describe:
    "Print a shell completion script for bash, zsh or fish (yargs': Tab completes commands, options and values)",
  builder: (y) =>
    y
      .positional("shell", {
        choices: ["bash", "zsh", "fish"] as const,
        describe: "The shell (default: $SHELL's, else bash)",
      })
      .example("$0 completion bash >> ~/.bashrc", "bash: complete qcvm in every new shell")
      .example("$0 completion zsh > ~/.zfunc/_qcvm", "zsh (with ~/.zfunc on $fpath, before compinit)")
      .example("$0 completion fish > ~/.config/fish/completions/qcvm.fish", "fish")
      .epilog(exitCodes("0 script printed")),
  options: (a) => ({ shell: a.shell }),
  load: () => import("./commands/completion.js"),
});

/** Every command, in the order of `qcvm --help`. */
export const COMMANDS: readonly Command[] = [
  ...profileCommands,
  ...vmCommands,
  helpCommand,
  completionCommand,
  ...engineCommands,
];
const COMMAND_NAMES = new Set(COMMANDS.map((c) => c.name));

let pipesGuarded = false;

/**
 * A reader that stops early (`qcvm schema | head -1`) closes the pipe, and the next write fails
 * with EPIPE: Node's default is an unhandled 'error' event and a stack trace. Stop quietly
 * instead, with the status of a process killed by SIGPIPE (128 + 13), as cat or grep would.
 * Not while the startup snapshot is built: its warm-up runs main() with output discarded.
 */
function guardPipes(): void {
  if (pipesGuarded || startupSnapshot.isBuildingSnapshot()) return;
  pipesGuarded = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EPIPE") process.exit(exitCodeFor("pipe-closed"));
      throw e;
    });
  }
}

/** What a run of main() learned from the command it dispatched. */
interface RunState {
  exitCode: number;
  /** The command line's --format: with json, a command's error goes to stdout as JSON too. */
  format: unknown;
  /** Whether the command printed on stdout itself: then its output stays the one JSON value there. */
  printed: boolean;
  /** Whether its JSON output is one event per line (CommandSpec.jsonLines): an error is one more. */
  lines: boolean;
}

/** Runs a command's handler, noting its exit code and whether it wrote to stdout. */
function dispatcher(state: RunState): Dispatch {
  return async (format, run, lines) => {
    state.format = format;
    state.lines = lines;
    // eslint-disable-next-line @typescript-eslint/unbound-method -- kept to be put back as it was, and called with apply(process.stdout)
    const original = process.stdout.write;
    process.stdout.write = ((...w: Parameters<typeof original>) => {
      state.printed = true;
      return original.apply(process.stdout, w);
    }) as typeof original;
    try {
      state.exitCode = exitCodeFor(await run());
    } finally {
      process.stdout.write = original;
    }
  };
}

/** yargs with every command registered and qcvm's conventions: strict, no process exit, usage errors thrown. */
function buildParser(argv: string[], dispatch: Dispatch): Argv {
  let parser = yargs(argv.map((a, i) => (a === "-" && !argv.slice(0, i).includes("--") ? STDIN_TOKEN : a)))
    .scriptName("qcvm")
    .usage(
      "qcvm: launch QEMU confidential guests from YAML profiles, with NUMA placement that reaches private memory\n\nUsage: $0 <command> [options]",
    );
  for (const c of COMMANDS) parser = c.register(parser, dispatch);
  const configured: Argv = parser
    .demandCommand(1, "Name a command: qcvm --help lists them")
    .strict()
    .recommendCommands()
    .version(typeof QCVM_VERSION === "string" ? QCVM_VERSION : "0.0.0-dev")
    .help()
    .alias("h", "help")
    // The terminal's width; piped, $COLUMNS when set (so `COLUMNS=80 qcvm --help | less` fits).
    .wrap(Math.min(110, process.stdout.columns || Number(process.env.COLUMNS) || 110))
    .exitProcess(false)
    .fail((msg, err) => failure(msg, err, argv, configured));
  return configured;
}

/** yargs' .fail: every refusal becomes a UsageError (a bug in qcvm is rethrown as it is). */
function failure(msg: string, err: Error | undefined, argv: readonly string[], parser: Argv): never {
  // yargs reports its own validation (requiresArg, a throwing coerce or check) as a YError:
  // that is the user's command line, not a bug.
  if (err instanceof UsageError) throw err;
  if (err && err.name !== "YError") throw err;
  // `validate --bogus profiles`: the unknown option took the file as its value, and yargs'
  // positional check (which runs before its unknown-option check) missed the file instead.
  const unknown = /^Not enough non-option arguments/.test(msg) ? unknownOptions(argv, optionTable(parser)) : [];
  if (unknown.length > 0)
    throw new UsageError(`unknown option${unknown.length === 1 ? "" : "s"} ${unknown.join(", ")}`);
  throw new UsageError(msg || err?.message || "bad command line");
}

export async function main(argv: string[]): Promise<number> {
  guardPipes();
  const state: RunState = { exitCode: exitCodeFor("ok"), format: undefined, printed: false, lines: false };
  try {
    await buildParser(argv, dispatcher(state)).parseAsync();
    return state.exitCode; // also after --help / --version, which dispatch nothing
  } catch (e) {
    // Point a usage error at the help of the command that was typed, when one was.
    const typed = argv.find((a) => !a.startsWith("-"));
    // yargs' suggestion alone ("Did you mean render?") does not say what was wrong.
    if (e instanceof UsageError && e.message.startsWith("Did you mean") && typed !== undefined) {
      e.message = `unknown command \`${typed}\`. ${e.message}`;
    }
    return reportError(
      e,
      typed !== undefined && COMMAND_NAMES.has(typed) ? `qcvm ${typed} --help` : "qcvm --help",
      state.format !== "json" ? "none" : state.lines ? "line" : state.printed ? "none" : "document",
    );
  }
}

type OptionTable = { key: Record<string, unknown>; alias: Record<string, string[]> };

/** yargs' table of the running command's options: public in yargs, missing from @types/yargs. */
function optionTable(parser: Argv): OptionTable {
  return (parser as unknown as { getOptions(): OptionTable }).getOptions();
}

/**
 * Options on the command line that the command does not have, as typed (`--bogus`, `-Z`). `opts`
 * is yargs' option table of the command that ran (its keys and aliases); yargs accepts both
 * spellings of a name (`dry-run`, `dryRun`) and `--no-x` for a boolean `x`.
 */
export function unknownOptions(
  argv: readonly string[],
  opts: { key: Record<string, unknown>; alias: Record<string, string[]> },
): string[] {
  const known = new Set<string>(["help", "h", "version"]);
  for (const k of Object.keys(opts.key)) known.add(k);
  for (const [k, as] of Object.entries(opts.alias)) for (const a of [k, ...as]) known.add(a);
  const camel = (t: string) => t.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  const isKnown = (name: string) =>
    known.has(name) || known.has(camel(name)) || (name.startsWith("no-") && known.has(name.slice(3)));
  const out: string[] = [];
  for (const arg of argv) {
    if (arg === "--") break;
    if (!arg.startsWith("-") || arg === "-" || /^-\d/.test(arg)) continue;
    const names = arg.startsWith("--") ? [arg.slice(2).split("=")[0]!] : [...arg.slice(1).split("=")[0]!];
    for (const n of names) {
      const shown = arg.startsWith("--") ? `--${n}` : `-${n}`;
      if (n !== "" && !isKnown(n) && !out.includes(shown)) out.push(shown);
    }
  }
  return out;
}

/**
 * A command's failure: its message on stderr (never a stack), and with --format json also one
 * JSON document on stdout, `{"error": {kind, message}, "diagnostics": [...]}`, so a program reading
 * stdout learns what went wrong; for a command printing events (`json: "line"`, launch) it is one
 * more event line, `{"event": "error", "error": ..., "diagnostics": ..., "ms"}`. A usage error stops
 * before any command runs: stderr only.
 */
function reportError(e: unknown, help: string, json: "document" | "line" | "none"): number {
  if (e instanceof UsageError) {
    process.stderr.write(`qcvm: ${e.message}\nRun '${help}' for usage.\n`);
    return exitCodeFor("usage");
  }
  // A failing tool (QMP, a child process) or the host out of space, quota, files or writable file
  // systems is not a bug in qcvm.
  const user = asUserError(e);
  if (user) {
    process.stderr.write(`qcvm: ${user.message}\n`);
    const doc = { error: { kind: user.kind, message: user.message }, diagnostics: user.diagnostics };
    // ms: the clock of launch's events (src/launch/reporter.ts now()), milliseconds since start.
    if (json === "line")
      process.stdout.write(
        `${JSON.stringify({ event: "error", ...doc, ms: Math.round(performance.now() * 100) / 100 })}\n`,
      );
    else if (json === "document") process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    return exitCodeFor(user.kind);
  }
  const err = e as Error;
  process.stderr.write(
    `qcvm: internal error: ${err?.message ?? String(e)}\n` +
      "This is a bug in qcvm, not in your profile. Please report it with the command you ran" +
      (process.env.QCVM_DEBUG ? `\n${err?.stack ?? ""}` : " (set QCVM_DEBUG=1 for a stack trace).") +
      "\n",
  );
  return exitCodeFor("internal");
}
