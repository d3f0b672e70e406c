// qcvm's command line. Only argument parsing lives here: each command's module is imported when
// that command runs, so `qcvm render` never loads the launcher, the probe or ajv's compiler.
// main() returns the exit code; only bin/qcvm.js sets it on the process.
import { startupSnapshot } from "node:v8";
import yargs from "yargs";
import type { Argv } from "yargs";
import { UserError, resourceError } from "./core/diagnostics.js";
import { exitCodeFor } from "./cli/exit-codes.js";
import type { Outcome } from "./core/errors.js";
import { RUN_DIR, UsageError, exitCodes, hostOptions, secondsOption, setOptions } from "./cli/options.js";
import { engineCommands, profileCommands } from "./cli/profile-commands.js";
import { consoleCommands } from "./cli/vm-commands.js";

declare const QCVM_VERSION: string | undefined;

type Handler = (args: Record<string, unknown>) => Promise<Outcome>;

// Lazy command table: module path -> exported `run`.
const commands: Record<string, () => Promise<{ run: Handler }>> = {
  validate: () => import("./commands/validate.js"),
  render: () => import("./commands/render.js"),
  schema: () => import("./commands/schema.js"),
  init: () => import("./commands/init.js"),
  plan: () => import("./commands/plan.js"),
  doctor: () => import("./commands/doctor.js"),
  launch: () => import("./commands/launch.js"),
  status: () => import("./commands/status.js"),
  stop: () => import("./commands/stop.js"),
  stats: () => import("./commands/stats.js"),
  list: () => import("./commands/status.js"),
  logs: () => import("./commands/logs.js"),
  console: () => import("./commands/console.js"),
  completion: () => import("./commands/completion.js"),
  // `qcvm help CMD` is `qcvm CMD --help`, so the two can never say different things.
  help: () =>
    Promise.resolve({
      run: (a: Record<string, unknown>) => {
        const cmd = typeof a.command === "string" ? a.command : undefined;
        if (cmd !== undefined && !Object.hasOwn(commands, cmd))
          throw new UsageError(`unknown command \`${cmd}\` (qcvm --help lists the commands)`);
        return main(cmd === undefined ? ["--help"] : [cmd, "--help"]).then((code) => ({
          kind: "exit-status" as const,
          code,
        }));
      },
    }),
  export: () => import("./commands/export.js"),
  import: () => import("./commands/import.js"),
};

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

export async function main(argv: string[]): Promise<number> {
  guardPipes();
  let exitCode = exitCodeFor("ok");
  let handled = false;
  // --format json: a command's error goes to stdout as JSON too (with its diagnostics).
  let format: unknown;
  let printed = false;
  const dispatch = (name: string) => async (args: Record<string, unknown>) => {
    handled = true;
    format = args.format;
    // Whether the command printed on stdout itself: then its output stays the one JSON value there.
    // eslint-disable-next-line @typescript-eslint/unbound-method -- kept to be put back as it was, and called with apply(process.stdout)
    const original = process.stdout.write;
    process.stdout.write = ((...w: Parameters<typeof original>) => {
      printed = true;
      return original.apply(process.stdout, w);
    }) as typeof original;
    try {
      const mod = await commands[name]!();
      exitCode = exitCodeFor(await mod.run(withStdinArg(args)));
    } finally {
      process.stdout.write = original;
    }
  };

  const top = yargs(argv.map((a, i) => (a === "-" && !argv.slice(0, i).includes("--") ? STDIN_TOKEN : a)))
    .scriptName("qcvm")
    .usage(
      "qcvm: launch QEMU confidential guests from YAML profiles, with NUMA placement that reaches private memory\n\nUsage: $0 <command> [options]",
    );
  // The order of the definitions is the order of `qcvm --help`.
  const vms = profileCommands(top, dispatch)
    .command(
      "launch <profile>",
      "Launch QEMU with the planned placement enforced",
      (y) =>
        setOptions(
          hostOptions(
            y
              .positional("profile", { type: "string", describe: "Profile YAML file" })
              .option("detach", { type: "boolean", default: false, describe: "Return once the guest runs" })
              .option("dry-run", { type: "boolean", default: false, describe: "Print every action without doing it" })
              .option("quiet", { type: "boolean", default: false, describe: "No progress lines" })
              .option("format", {
                choices: ["text", "json"] as const,
                default: "text" as const,
                describe: "json: one event per line on stdout (--dry-run: one object)",
              })
              .option("run-dir", { type: "string", describe: RUN_DIR })
              .option("cgroup", {
                choices: ["auto", "delegated"] as const,
                default: "auto" as const,
                describe:
                  "delegated: make the VM cgroup under this process's own cgroup v2 (a systemd unit with Delegate=yes, as qcvm export --to systemd writes)",
              })
              .option("qemu-user", {
                type: "string",
                describe: "User QEMU runs as when qcvm is root (default: qemu.user, else qcvm-qemu; root only by name)",
              }),
          ),
        )
          .example("$0 launch profiles/kvm-2node.yaml --detach", "Start in the background")
          .example("$0 launch profiles/snp-2node.yaml --dry-run", "Show cgroups, argv and pinning")
          .example("$0 launch profiles/kvm-1node.yaml", "Run in the foreground: Ctrl-C powers the guest down")
          .epilog(
            exitCodes(
              "0 the guest runs (--detach) or would (--dry-run); 1 refused or failed (what was set up is undone); 130 interrupted (Ctrl-C) before the guest ran, all undone; in the foreground, QEMU's exit code once it exits (128+N when killed by signal N)",
            ),
          ),
      dispatch("launch"),
    )
    .command(
      "status [name]",
      "Show running VMs: pid, uptime, profile, plan fidelity",
      (y) =>
        y
          .positional("name", { type: "string", describe: "One VM, in detail (default: a table of all)" })
          .option("format", { choices: ["text", "json"] as const, default: "text" as const })
          .option("run-dir", { type: "string", describe: RUN_DIR })
          .example("$0 status", "All VMs")
          .example("$0 status kvm-2node --format json", "One VM as JSON")
          .example("$0 status kvm-2node || qcvm stop kvm-2node", "Clean up after a VM that died")
          .epilog(
            exitCodes(
              "0 the table printed, or the named VM runs (or is starting); 3 the named VM is dead, or its launch was interrupted (qcvm stop cleans up); 1 no such VM, or its state file is damaged",
            ),
          ),
      dispatch("status"),
    )
    .command(
      "stop <name>",
      "Stop a VM: powerdown, then quit, then kill; clean up its cgroup, socket and pidfile",
      (y) =>
        y
          .positional("name", { type: "string", describe: "The VM (qcvm status lists them)" })
          .option("force", { type: "boolean", default: false, describe: "Skip the guest powerdown" })
          .option("timeout", secondsOption("timeout", "Seconds to wait for powerdown", 30, "zero"))
          .option("run-dir", { type: "string", describe: RUN_DIR })
          .example("$0 stop kvm-2node", "Graceful stop")
          .example("$0 stop kvm-2node --force", "Quit QEMU now")
          .epilog(
            exitCodes(
              "0 stopped and cleaned up (also when it had died); 1 no such VM, or clean-up left something (named)",
            ),
          ),
      dispatch("stop"),
    )
    .command(
      "stats <name>",
      "Where a VM's memory is, per host node: private (guest_memfd) and shared, against the plan",
      (y) =>
        y
          .positional("name", { type: "string", describe: "A running VM (qcvm status lists them)" })
          .option("format", { choices: ["text", "json"] as const, default: "text" as const })
          .option("watch", { type: "boolean", default: false, describe: "Refresh until the VM exits or Ctrl-C" })
          .option("interval", secondsOption("interval", "Seconds between refreshes with --watch", 2, "positive"))
          .option("run-dir", { type: "string", describe: RUN_DIR })
          .example("$0 stats snp-2node", "Per-node table")
          .example("$0 stats snp-2node --watch", "Refresh every 2 s")
          .epilog(
            exitCodes("0 measured (--watch: until Ctrl-C); 1 no such VM, or it is not running (--watch: it stopped)"),
          ),
      dispatch("stats"),
    );
  const others = consoleCommands(vms, dispatch)
    .command(
      ["list", "ls"],
      "List VMs with their state and plan fidelity (qcvm status without a name)",
      (y) =>
        y
          .option("format", { choices: ["text", "json"] as const, default: "text" as const })
          .option("run-dir", { type: "string", describe: RUN_DIR })
          .example("$0 list", "A table of every VM in the run dir")
          .example("$0 ls --format json", "The same as JSON")
          .epilog(exitCodes("0 the table printed (also when empty)")),
      dispatch("list"),
    )
    .command(
      "help [command]",
      "Show a command's options, examples and exit codes (as qcvm COMMAND --help)",
      (y) =>
        y
          .positional("command", { type: "string", describe: "A command (default: the list of commands)" })
          .example("$0 help validate", "The same as qcvm validate --help")
          .epilog(exitCodes("0 help printed")),
      dispatch("help"),
    )
    .command(
      "completion [shell]",
      "Print a shell completion script for bash, zsh or fish (yargs': Tab completes commands, options and values)",
      (y) =>
        y
          .positional("shell", {
            choices: ["bash", "zsh", "fish"] as const,
            describe: "The shell (default: $SHELL's, else bash)",
          })
          .example("$0 completion bash >> ~/.bashrc", "bash: complete qcvm in every new shell")
          .example("$0 completion zsh > ~/.zfunc/_qcvm", "zsh (with ~/.zfunc on $fpath, before compinit)")
          .example("$0 completion fish > ~/.config/fish/completions/qcvm.fish", "fish")
          .epilog(exitCodes("0 script printed")),
      dispatch("completion"),
    );
  const parser = engineCommands(others, dispatch)
    .demandCommand(1, "Name a command: qcvm --help lists them")
    .strict()
    .recommendCommands()
    .version(typeof QCVM_VERSION === "string" ? QCVM_VERSION : "0.0.0-dev")
    .help()
    .alias("h", "help")
    // The terminal's width; piped, $COLUMNS when set (so `COLUMNS=80 qcvm --help | less` fits).
    .wrap(Math.min(110, process.stdout.columns || Number(process.env.COLUMNS) || 110))
    .exitProcess(false)
    .fail((msg, err) => {
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
    });

  try {
    await parser.parseAsync();
    if (!handled) return exitCode; // --help / --version
    return exitCode;
  } catch (e) {
    // Point a usage error at the help of the command that was typed, when one was.
    const typed = argv.find((a) => !a.startsWith("-"));
    // yargs' suggestion alone ("Did you mean render?") does not say what was wrong.
    if (e instanceof UsageError && e.message.startsWith("Did you mean") && typed !== undefined) {
      e.message = `unknown command \`${typed}\`. ${e.message}`;
    }
    return reportError(
      e,
      typed !== undefined && Object.hasOwn(commands, typed) ? `qcvm ${typed} --help` : "qcvm --help",
      format === "json" && !printed,
    );
  }
}

type OptionTable = { key: Record<string, unknown>; alias: Record<string, string[]> };

/** yargs' table of the running command's options: public in yargs, missing from @types/yargs. */
function optionTable(parser: Argv): OptionTable {
  return (parser as unknown as { getOptions(): OptionTable }).getOptions();
}

/**
 * yargs drops a lone `-` (it reads it as an empty group of short options), so it is carried
 * through the parser as a token no argv can hold (a NUL byte) and turned back into `-`, which
 * validate, render and plan read as standard input (src/load/load.ts STDIN_ARG).
 */
const STDIN_TOKEN = "\u0000-";

function withStdinArg(args: Record<string, unknown>): Record<string, unknown> {
  const back = (v: unknown): unknown => (v === STDIN_TOKEN ? "-" : Array.isArray(v) ? v.map(back) : v);
  return Object.fromEntries(Object.entries(args).map(([k, v]) => [k, back(v)]));
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
 * stdout learns what went wrong. A usage error stops before any command runs: stderr only.
 */
function reportError(e: unknown, help: string, json: boolean): number {
  if (e instanceof UsageError) {
    process.stderr.write(`qcvm: ${e.message}\nRun '${help}' for usage.\n`);
    return exitCodeFor("usage");
  }
  // The host out of space, quota, files or writable file systems is not a bug in qcvm.
  const user = e instanceof UserError ? e : resourceError(e);
  if (user) {
    process.stderr.write(`qcvm: ${user.message}\n`);
    if (json) {
      const doc = { error: { kind: user.kind, message: user.message }, diagnostics: user.diagnostics };
      process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    }
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
