// qcvm's command line. Only argument parsing lives here: each command's module is imported when
// that command runs, so `qcvm render` never loads the launcher, the probe or ajv's compiler.
// main() returns the exit code; only bin/qcvm.js sets it on the process.
import yargs from "yargs";
import type { Argv } from "yargs";
import { UserError } from "./diagnostics.js";

declare const QCVM_VERSION: string | undefined;

/** Exit codes: 0 ok, 1 invalid input / failed plan / failed command, 2 usage, 70 internal error. */
export const EXIT = { ok: 0, invalid: 1, usage: 2, internal: 70 } as const;

type Handler = (args: Record<string, unknown>) => Promise<number>;

// Lazy command table: module path -> exported `run`.
const commands: Record<string, () => Promise<{ run: Handler }>> = {
  validate: () => import("./commands/validate.js"),
  render: () => import("./commands/render.js"),
  schema: () => import("./commands/schema.js"),
  plan: () => import("./commands/plan.js"),
  doctor: () => import("./commands/doctor.js"),
  launch: () => import("./commands/launch.js"),
  status: () => import("./commands/status.js"),
  stop: () => import("./commands/stop.js"),
  stats: () => import("./commands/stats.js"),
};

function hostOptions(y: Argv) {
  return y
    .option("host", {
      type: "string",
      describe: "Read host topology from this directory (shaped like /, with sys/ and proc/) instead of /",
    })
    .option("capabilities", {
      type: "string",
      describe: "QEMU capabilities saved by `qcvm doctor --save` (otherwise the profile's target version decides)",
    });
}

function setOptions(y: Argv) {
  return y.option("set", {
    type: "string",
    array: true,
    describe: "Override a profile field: --set memory.size=8G (applied after extends:, before defaults)",
  });
}

export async function main(argv: string[]): Promise<number> {
  let exitCode: number = EXIT.ok;
  let handled = false;
  const dispatch = (name: string) => async (args: Record<string, unknown>) => {
    handled = true;
    const mod = await commands[name]!();
    exitCode = await mod.run(args);
  };

  const parser = yargs(argv)
    .scriptName("qcvm")
    .usage("qcvm: launch QEMU confidential guests from YAML profiles, with NUMA placement that reaches private memory\n\nUsage: $0 <command> [options]")
    .command(
      "validate <files..>",
      "Validate profiles (files, directories or globs): every problem at once, file:line:col",
      (y) =>
        setOptions(
          y
            .positional("files", { type: "string", array: true, describe: "Profiles, directories or globs" })
            .option("format", { choices: ["text", "json"] as const, default: "text" as const })
            .option("strict", { type: "boolean", default: false, describe: "Warnings fail validation too" })
            .option("fill", { type: "boolean", default: false, describe: "Print the normalized profile (defaults filled)" }),
        )
          .example("$0 validate profiles/", "Validate every profile in a directory")
          .example("$0 validate 'vms/**/*.yaml' --format json --strict", "CI: JSON report, warnings fail"),
      dispatch("validate"),
    )
    .command(
      "render <profile>",
      "Print the QEMU command line for a profile without running it",
      (y) =>
        setOptions(
          hostOptions(
            y
              .positional("profile", { type: "string", describe: "Profile YAML file" })
              .option("format", { choices: ["shell", "json"] as const, default: "shell" as const }),
          ),
        )
          .example("$0 render profiles/snp-2node.yaml", "Pasteable shell command, one option per line")
          .example("$0 render profiles/kvm-1node.yaml --format json", '{"argv": [...], "warnings": [...]}'),
      dispatch("render"),
    )
    .command(
      "schema",
      "Print the profile JSON Schema",
      (y) =>
        y
          .option("plan", { type: "boolean", default: false, describe: "Print the plan schema instead" })
          .example("$0 schema > profile.schema.json", "Save the schema for an editor"),
      dispatch("schema"),
    )
    .command(
      "plan <profile>",
      "Show where each guest NUMA node's shared and private memory will go, and how faithfully",
      (y) =>
        setOptions(
          hostOptions(
            y
              .positional("profile", { type: "string", describe: "Profile YAML file" })
              .option("format", { choices: ["text", "json", "dot", "svg"] as const, default: "text" as const }),
          ),
        )
          .example("$0 plan profiles/snp-2node.yaml", "Placement table with fidelity and capacity")
          .example("$0 plan profiles/snp-2node.yaml --host test/fixtures/hosts/epyc-2s4n --format json", "Plan for another host"),
      dispatch("plan"),
    )
    .command(
      "doctor",
      "Report what this host and QEMU can do, and which profile features that rules out",
      (y) =>
        hostOptions(y)
          .option("format", { choices: ["text", "json"] as const, default: "text" as const })
          .option("qemu", { type: "string", default: "qemu-system-x86_64", describe: "QEMU binary to probe" })
          .option("save", { type: "string", describe: "Save the probed QEMU capabilities to this file" })
          .example("$0 doctor", "Readable report")
          .example("$0 doctor --save caps.json", "Save capabilities for offline dry-runs (--capabilities caps.json)"),
      dispatch("doctor"),
    )
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
              .option("format", { choices: ["text", "json"] as const, default: "text" as const })
              .option("run-dir", { type: "string", describe: "Runtime state directory (default /run/qcvm, or $XDG_RUNTIME_DIR/qcvm)" }),
          ),
        )
          .example("$0 launch profiles/kvm-2node.yaml --detach", "Start in the background")
          .example("$0 launch profiles/snp-2node.yaml --dry-run", "Show cgroups, argv and pinning"),
      dispatch("launch"),
    )
    .command(
      "status [name]",
      "Show running VMs: pid, uptime, profile, plan fidelity",
      (y) =>
        y
          .positional("name", { type: "string" })
          .option("format", { choices: ["text", "json"] as const, default: "text" as const })
          .option("run-dir", { type: "string" })
          .example("$0 status", "All VMs")
          .example("$0 status kvm-2node --format json", "One VM as JSON"),
      dispatch("status"),
    )
    .command(
      "stop <name>",
      "Stop a VM: powerdown, then quit, then kill; clean up its cgroup, socket and pidfile",
      (y) =>
        y
          .positional("name", { type: "string" })
          .option("force", { type: "boolean", default: false, describe: "Skip the guest powerdown" })
          .option("timeout", { type: "number", default: 30, describe: "Seconds to wait for powerdown" })
          .option("run-dir", { type: "string" })
          .example("$0 stop kvm-2node", "Graceful stop")
          .example("$0 stop kvm-2node --force", "Quit QEMU now"),
      dispatch("stop"),
    )
    .command(
      "stats <name>",
      "Where a VM's memory is, per host node: private (guest_memfd) and shared, against the plan",
      (y) =>
        y
          .positional("name", { type: "string" })
          .option("format", { choices: ["text", "json"] as const, default: "text" as const })
          .option("watch", { type: "boolean", default: false })
          .option("interval", { type: "number", default: 2, describe: "Seconds between refreshes with --watch" })
          .option("run-dir", { type: "string" })
          .example("$0 stats snp-2node", "Per-node table")
          .example("$0 stats snp-2node --watch", "Refresh every 2 s"),
      dispatch("stats"),
    )
    .demandCommand(1, "Name a command: qcvm --help lists them")
    .strict()
    .recommendCommands()
    .version(typeof QCVM_VERSION === "string" ? QCVM_VERSION : "0.0.0-dev")
    .help()
    .alias("h", "help")
    .wrap(Math.min(110, process.stdout.columns || 110))
    .exitProcess(false)
    .fail((msg, err) => {
      if (err) throw err;
      throw new UsageError(msg);
    });

  try {
    await parser.parseAsync();
    if (!handled && exitCode === EXIT.ok) return EXIT.ok; // --help / --version
    return exitCode;
  } catch (e) {
    return reportError(e);
  }
}

class UsageError extends Error {}

function reportError(e: unknown): number {
  if (e instanceof UsageError) {
    process.stderr.write(`qcvm: ${e.message}\nRun 'qcvm --help' for usage.\n`);
    return EXIT.usage;
  }
  if (e instanceof UserError) {
    process.stderr.write(`qcvm: ${e.message}\n`);
    return e.exitCode;
  }
  const err = e as Error;
  process.stderr.write(
    `qcvm: internal error: ${err?.message ?? String(e)}\n` +
      "This is a bug in qcvm, not in your profile. Please report it with the command you ran" +
      (process.env.QCVM_DEBUG ? `\n${err?.stack ?? ""}` : " (set QCVM_DEBUG=1 for a stack trace).") +
      "\n",
  );
  return EXIT.internal;
}
