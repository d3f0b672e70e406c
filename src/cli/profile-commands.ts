// The commands that read profiles, as data: validate, render, schema, init, plan, doctor (and
// export, import: engineCommands). Each is its yargs definition, the conversion of yargs' argv to
// its handler's typed options (src/cli/command-options.ts), and the handler's module, imported
// when the command runs. The order of the tables is the order of `qcvm --help`.
import { RUN_DIR, defineCommand, exitCodes, hostOptions, readOptions, required } from "./options.js";
import { formatOption, secondsOption, setOptions } from "./options.js";
import type { Command } from "./options.js";
import type { HostOptions, ProfileReadOptions } from "./command-options.js";

/** --set, --root and --host-check, as readOptions and setOptions define them. */
function profileRead(a: { set?: string[]; root?: string; hostCheck: boolean }): ProfileReadOptions {
  return { set: a.set, root: a.root, hostCheck: a.hostCheck };
}

/** --host and --capabilities, as hostOptions defines them. */
function hostArgs(a: { host?: string; capabilities?: string }): HostOptions {
  return { host: a.host, capabilities: a.capabilities };
}

const validateCommand = defineCommand({
  command: "validate <files..>",
  describe: "Validate profiles (files, directories or globs): every problem at once, file:line:col",
  builder: (y) =>
    setOptions(
      readOptions(y)
        .positional("files", { type: "string", array: true, describe: "Profiles, directories or globs" })
        .option("format", {
          choices: ["text", "json", "github", "junit", "sarif"] as const,
          default: "text" as const,
          describe:
            "json: one report on stdout; github: Actions annotations; junit: JUnit XML (GitLab, Jenkins); sarif: SARIF 2.1.0 (code scanning)",
        })
        .option("strict", { type: "boolean", default: false, describe: "Warnings fail validation too" })
        .option("fill", {
          type: "boolean",
          default: false,
          describe:
            "Print each profile with its bases merged and every default written out (a profile that validates as it is; summary on stderr)",
        }),
    )
      .example("$0 validate profiles/", "Validate every profile in a directory")
      .example("$0 validate 'vms/**/*.yaml' --format json --strict", "CI: JSON report, warnings fail")
      .example("$0 validate profiles/ --strict --format junit > qcvm.xml", "GitLab: artifacts:reports:junit")
      .example("$0 validate profiles/ --format sarif > qcvm.sarif", "GitHub code scanning (upload-sarif)")
      .example("$0 validate base.yaml --fill", "Show the profile with every default filled in")
      .epilog(exitCodes("0 every profile valid; 1 any profile invalid (with --strict: or any warning)")),
  options: (a) => ({
    files: a.files ?? [],
    format: a.format,
    strict: a.strict,
    fill: a.fill,
    ...profileRead(a),
  }),
  load: () => import("../commands/validate.js"),
});

const renderCommand = defineCommand({
  command: "render <profile>",
  describe: "Print the QEMU command line for a profile without running it",
  builder: (y) =>
    setOptions(
      hostOptions(
        readOptions(y)
          .positional("profile", { type: "string", describe: "Profile YAML file" })
          .option("format", {
            choices: ["shell", "json"] as const,
            default: "shell" as const,
            describe: "shell: pasteable, one option per line; json: argv, prefix and warnings",
          }),
      ).option("literal", {
        type: "boolean",
        default: false,
        describe:
          "Render the profile as written: no host, no plan, placement not checked (render otherwise refuses what launch would refuse)",
      }),
    )
      .example("$0 render profiles/snp-2node.yaml", "Pasteable shell command, one option per line")
      .example("$0 render profiles/kvm-1node.yaml --format json", '{"argv": [...], "warnings": [...]}')
      .example("$0 render profiles/snp-2node.yaml --host epyc-2s4n", "For another host's topology")
      .example("$0 render profiles/snp-2node.yaml --literal", "As written, for no host in particular")
      .epilog(
        exitCodes(
          "0 command line printed; 1 invalid profile, a plan launch would refuse, or a QEMU that cannot run it",
        ),
      ),
  options: (a) => ({
    profile: required(a.profile, "profile"),
    format: a.format,
    literal: a.literal,
    ...profileRead(a),
    ...hostArgs(a),
  }),
  load: () => import("../commands/render.js"),
});

const schemaCommand = defineCommand({
  command: "schema",
  describe: "Print the profile JSON Schema",
  builder: (y) =>
    y
      .option("plan", { type: "boolean", default: false, describe: "Print the plan schema instead" })
      .example("$0 schema > profile.schema.json", "Save the schema for an editor")
      .example("$0 schema --plan", "The schema of `qcvm plan --format json`")
      .epilog(exitCodes("0 schema printed")),
  options: (a) => ({ plan: a.plan }),
  load: () => import("../commands/schema.js"),
});

const initCommand = defineCommand({
  command: "init <file>",
  describe: "Write a new profile (a starter, or a copy of --from) whose $schema line resolves wherever it is saved",
  builder: (y) =>
    y
      .positional("file", { type: "string", describe: "The new profile (.yaml added); its name is the VM name" })
      .option("from", {
        type: "string",
        requiresArg: true,
        describe: "Copy this profile, or one qcvm ships by name (snp-2node, kvm-1node, reference, ...)",
      })
      .option("format", formatOption("json: one document on stdout: the file written, what from, its problems"))
      .example("$0 init web1", "web1.yaml: a plain KVM starter named web1")
      .example("$0 init vms/db1.yaml --from snp-2node", "A copy of the shipped two-node SEV-SNP profile")
      .epilog(
        exitCodes(
          "0 written, and it validates; 1 written, with the problems of --from listed, or it could not be written; 2 the file exists (never overwritten), its name is not a VM name, or --from names nothing",
        ),
      ),
  options: (a) => ({ file: required(a.file, "file"), from: a.from, format: a.format }),
  load: () => import("../commands/init.js"),
});

const planCommand = defineCommand({
  command: "plan <profile>",
  describe: "Show where each guest NUMA node's shared and private memory will go, and how faithfully",
  builder: (y) =>
    setOptions(
      hostOptions(
        readOptions(y)
          .positional("profile", { type: "string", describe: "Profile YAML file" })
          .option("format", {
            choices: ["text", "json", "dot", "svg"] as const,
            default: "text" as const,
            describe:
              "dot/svg: a graph of guest and host nodes, failing ones marked (svg is laid out by Graphviz, bundled as WebAssembly)",
          }),
      ),
    )
      .example("$0 plan profiles/snp-2node.yaml", "Placement table with fidelity and capacity")
      .example("$0 plan profiles/snp-2node.yaml --host epyc-2s4n --format json", "Plan for another host")
      .epilog(exitCodes("0 the plan holds; 1 the profile is invalid, or the plan has errors (printed in full)")),
  options: (a) => ({
    profile: required(a.profile, "profile"),
    format: a.format,
    ...profileRead(a),
    ...hostArgs(a),
  }),
  load: () => import("../commands/plan.js"),
});

const doctorCommand = defineCommand({
  command: "doctor [profiles..]",
  describe: "Report what this host and QEMU can run, and (given profiles) whether each runs here",
  builder: (y) =>
    hostOptions(y.positional("profiles", { type: "string", array: true, describe: "Profiles to check here" }))
      .option("format", formatOption("json: the whole report on stdout"))
      .option("qemu", { type: "string", default: "qemu-system-x86_64", describe: "QEMU binary to probe" })
      .option("save", { type: "string", describe: "Save the probed QEMU capabilities to this file" })
      .option("save-host", {
        type: "string",
        requiresArg: true,
        describe: "Write this host as a tree --host DIR reads: the files the probe reads (DIR must be new or empty)",
      })
      .example("$0 doctor", "Readable report")
      .example("$0 doctor profiles/snp-2node.yaml", "Does this profile run here? (planned as qcvm plan does)")
      .example("$0 doctor --save caps.json", "Save capabilities for offline dry-runs (--capabilities caps.json)")
      .example("$0 doctor --save-host hosts/web1", "Save this host for plans elsewhere (--host hosts/web1)")
      .example("$0 doctor --qemu /opt/qemu-9.2/bin/qemu-system-x86_64", "Probe another QEMU build")
      .epilog(
        exitCodes(
          "0 report printed, whatever it finds; 1 --save or --save-host could not write; 2 also when QEMU cannot be probed, or --save or --save-host would overwrite what is not theirs",
        ),
      ),
  options: (a) => ({
    profiles: a.profiles ?? [],
    format: a.format,
    qemu: a.qemu,
    save: a.save,
    saveHost: a.saveHost,
    ...hostArgs(a),
  }),
  load: () => import("../commands/doctor.js"),
});

const exportCommand = defineCommand({
  command: "export <profile>",
  describe: "Hand a profile to another engine: a systemd unit that runs qcvm launch, or a libvirt domain",
  builder: (y) =>
    setOptions(
      hostOptions(
        y
          .positional("profile", { type: "string", describe: "Profile YAML file" })
          .option("to", {
            choices: ["systemd", "libvirt"] as const,
            demandOption: true,
            describe: "systemd: a service unit (stdout); libvirt: domain XML (stdout); what is lost goes to stderr",
          })
          .option("run-dir", { type: "string", describe: `systemd: the unit's run dir. ${RUN_DIR}` })
          .option("qemu-user", {
            type: "string",
            describe: "systemd: passed to qcvm launch --qemu-user (the user QEMU runs as)",
          })
          .option("qcvm", {
            type: "string",
            describe: "systemd: the qcvm executable the unit runs (default: qcvm on PATH, made absolute)",
          })
          .option(
            "stop-timeout",
            secondsOption("stop-timeout", "systemd: seconds the guest gets to power down", 30, "zero"),
          )
          .option(
            "start-timeout",
            secondsOption("start-timeout", "systemd: seconds launch may take (TimeoutStartSec)", 300, "positive"),
          )
          .option(
            "format",
            formatOption("json: one document on stdout: the unit or XML as `text`, with the losses and warnings"),
          ),
      ),
    )
      .example(
        "$0 export profiles/kvm-2node.yaml --to systemd > /etc/systemd/system/qcvm-kvm-2node.service",
        "One unit per VM",
      )
      .example("$0 export profiles/snp-2node.yaml --to libvirt --host epyc-2s4n", "Domain XML for another host")
      .epilog(exitCodes("0 exported (losses listed on stderr); 1 the profile is invalid")),
  options: (a) => ({
    profile: required(a.profile, "profile"),
    to: a.to,
    set: a.set,
    ...hostArgs(a),
    runDir: a.runDir,
    qemuUser: a.qemuUser,
    qcvm: a.qcvm,
    stopTimeout: a.stopTimeout,
    startTimeout: a.startTimeout,
    format: a.format,
  }),
  load: () => import("../commands/export.js"),
});

const importCommand = defineCommand({
  command: "import <domain>",
  describe: "A profile from a libvirt domain XML (virsh dumpxml, or qcvm export --to libvirt); - reads stdin",
  builder: (y) =>
    y
      .positional("domain", { type: "string", describe: "Domain XML file, or - for stdin" })
      .option("format", formatOption("json: one document on stdout: the profile YAML as `text`, what was not imported"))
      .example("virsh dumpxml web1 | $0 import - > web1.yaml", "From a running libvirt domain")
      .epilog(
        exitCodes(
          "0 imported (what has no profile field is listed on stderr); 1 not a domain, or the profile it gives is invalid (printed, with the problems)",
        ),
      ),
  options: (a) => ({ domain: required(a.domain, "domain"), format: a.format }),
  load: () => import("../commands/import.js"),
});

export const profileCommands: readonly Command[] = [
  validateCommand,
  renderCommand,
  schemaCommand,
  initCommand,
  planCommand,
  doctorCommand,
];

export const engineCommands: readonly Command[] = [exportCommand, importCommand];
