// The commands that act on VMs, as data: launch, status, stop, stats, logs, console, list. Each is
// its yargs definition, the conversion of yargs' argv to its handler's typed options
// (src/cli/command-options.ts), and the handler's module, imported when the command runs.
import { RUN_DIR, defineCommand, exitCodes, formatOption, hostOptions, required, secondsOption } from "./options.js";
import { setOptions } from "./options.js";
import type { Command } from "./options.js";

const launchCommand = defineCommand({
  command: "launch <profile>",
  describe: "Launch QEMU with the planned placement enforced",
  builder: (y) =>
    setOptions(
      hostOptions(
        y
          .positional("profile", { type: "string", describe: "Profile YAML file" })
          .option("detach", { type: "boolean", default: false, describe: "Return once the guest runs" })
          .option("dry-run", { type: "boolean", default: false, describe: "Print every action without doing it" })
          .option("quiet", { type: "boolean", default: false, describe: "No progress lines" })
          .option("format", formatOption("json: one event per line on stdout (--dry-run: one object)"))
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
  options: (a) => ({
    profile: required(a.profile, "profile"),
    host: a.host,
    capabilities: a.capabilities,
    set: a.set,
    detach: a.detach,
    dryRun: a.dryRun,
    quiet: a.quiet,
    format: a.format,
    runDir: a.runDir,
    cgroup: a.cgroup,
    qemuUser: a.qemuUser,
  }),
  load: () => import("../commands/launch.js"),
  // Events, one per line, but for a dry run's one document.
  jsonLines: (o) => !o.dryRun,
});

const statusCommand = defineCommand({
  command: "status [name]",
  describe: "Show running VMs: pid, uptime, profile, plan fidelity",
  builder: (y) =>
    y
      .positional("name", { type: "string", describe: "One VM, in detail (default: a table of all)" })
      .option("format", formatOption())
      .option("run-dir", { type: "string", describe: RUN_DIR })
      .example("$0 status", "All VMs")
      .example("$0 status kvm-2node --format json", "One VM as JSON")
      .example("$0 status kvm-2node || qcvm stop kvm-2node", "Clean up after a VM that died")
      .epilog(
        exitCodes(
          "0 the table printed, or the named VM runs (or is starting); 3 the named VM is dead, or its launch was interrupted (qcvm stop cleans up); 1 no such VM, or its state file is damaged",
        ),
      ),
  options: (a) => ({ name: a.name, format: a.format, runDir: a.runDir }),
  load: () => import("../commands/status.js"),
});

const stopCommand = defineCommand({
  command: "stop <name>",
  describe: "Stop a VM: powerdown, then quit, then kill; clean up its cgroup, socket and pidfile",
  builder: (y) =>
    y
      .positional("name", { type: "string", describe: "The VM (qcvm status lists them)" })
      .option("force", { type: "boolean", default: false, describe: "Skip the guest powerdown" })
      .option("timeout", secondsOption("timeout", "Seconds to wait for powerdown", 30, "zero"))
      .option(
        "format",
        formatOption("json: one document on stdout: how it stopped, what was removed, where the log is kept"),
      )
      .option("run-dir", { type: "string", describe: RUN_DIR })
      .example("$0 stop kvm-2node", "Graceful stop")
      .example("$0 stop kvm-2node --force", "Quit QEMU now")
      .example("$0 stop kvm-2node --format json", "What was stopped and cleaned up, as JSON")
      .epilog(
        exitCodes("0 stopped and cleaned up (also when it had died); 1 no such VM, or clean-up left something (named)"),
      ),
  options: (a) => ({
    name: required(a.name, "name"),
    force: a.force,
    timeout: a.timeout,
    format: a.format,
    runDir: a.runDir,
  }),
  load: () => import("../commands/stop.js"),
});

const statsCommand = defineCommand({
  command: "stats <name>",
  describe: "Where a VM's memory is, per host node: private (guest_memfd) and shared, against the plan",
  builder: (y) =>
    y
      .positional("name", { type: "string", describe: "A running VM (qcvm status lists them)" })
      .option("format", formatOption())
      .option("watch", { type: "boolean", default: false, describe: "Refresh until the VM exits or Ctrl-C" })
      .option("interval", secondsOption("interval", "Seconds between refreshes with --watch", 2, "positive"))
      .option("run-dir", { type: "string", describe: RUN_DIR })
      .example("$0 stats snp-2node", "Per-node table")
      .example("$0 stats snp-2node --watch", "Refresh every 2 s")
      .epilog(
        exitCodes("0 measured (--watch: until Ctrl-C); 1 no such VM, or it is not running (--watch: it stopped)"),
      ),
  options: (a) => ({
    name: required(a.name, "name"),
    format: a.format,
    watch: a.watch,
    interval: a.interval,
    runDir: a.runDir,
  }),
  load: () => import("../commands/stats.js"),
});

const logsCommand = defineCommand({
  command: "logs <name>",
  describe: "Print QEMU's log of a VM: the live one while it runs detached, else the last one stop kept",
  builder: (y) =>
    y
      .positional("name", { type: "string", describe: "The VM (running or not)" })
      .option("list", { type: "boolean", default: false, describe: "List the kept logs (oldest first)" })
      .option("format", formatOption("json: one document on stdout: {name, file, live, text}, or with --list the logs"))
      .option("run-dir", { type: "string", describe: RUN_DIR })
      .example("$0 logs kvm-2node", "What QEMU printed, also after the VM died and was stopped")
      .example("$0 logs kvm-2node --list", "Every log kept for that name (the last 5 runs)")
      .epilog(exitCodes("0 log printed; 1 no log for that name")),
  options: (a) => ({ name: required(a.name, "name"), list: a.list, format: a.format, runDir: a.runDir }),
  load: () => import("../commands/logs.js"),
});

const consoleCommand = defineCommand({
  command: "console <name>",
  describe: "Attach this terminal to a running VM's serial console; Ctrl-] detaches",
  builder: (y) =>
    y
      .positional("name", { type: "string", describe: "A running VM with a serial port" })
      .option(
        "format",
        formatOption(
          "json: a failure to attach is printed as a JSON error document on stdout (the console itself is the terminal's)",
        ),
      )
      .option("run-dir", { type: "string", describe: RUN_DIR })
      .example("$0 console kvm-1node", "launched with --detach and serial: stdio (or serial: pty)")
      .epilog(
        exitCodes(
          "0 detached (Ctrl-]) or the VM stopped; 1 no such VM, not running, console in use, or no serial port to attach to",
        ),
      ),
  options: (a) => ({ name: required(a.name, "name"), format: a.format, runDir: a.runDir }),
  load: () => import("../commands/console.js"),
});

const listCommand = defineCommand({
  command: ["list", "ls"],
  describe: "List VMs with their state and plan fidelity (qcvm status without a name)",
  builder: (y) =>
    y
      .option("format", formatOption())
      .option("run-dir", { type: "string", describe: RUN_DIR })
      .example("$0 list", "A table of every VM in the run dir")
      .example("$0 ls --format json", "The same as JSON")
      .epilog(exitCodes("0 the table printed (also when empty)")),
  options: (a) => ({ format: a.format, runDir: a.runDir }),
  load: () => import("../commands/status.js"),
});

/** In the order of `qcvm --help`. */
export const vmCommands: readonly Command[] = [
  launchCommand,
  statusCommand,
  stopCommand,
  statsCommand,
  logsCommand,
  consoleCommand,
  listCommand,
];
