// yargs definitions of the commands that read profiles: validate, render, schema, init, plan,
// doctor (and export, import: engineCommands). Kept out of src/cli.ts so it stays one screenful of
// dispatching; the order here is the order of `qcvm --help`.
import type { Argv } from "yargs";
import { RUN_DIR, exitCodes, hostOptions, readOptions, secondsOption, setOptions } from "./options.js";
import type { Dispatch } from "./options.js";

export function profileCommands(y: Argv, dispatch: Dispatch): Argv {
  return y
    .command(
      "validate <files..>",
      "Validate profiles (files, directories or globs): every problem at once, file:line:col",
      (y) =>
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
      dispatch("validate"),
    )
    .command(
      "render <profile>",
      "Print the QEMU command line for a profile without running it",
      (y) =>
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
      dispatch("render"),
    )
    .command(
      "schema",
      "Print the profile JSON Schema",
      (y) =>
        y
          .option("plan", { type: "boolean", default: false, describe: "Print the plan schema instead" })
          .example("$0 schema > profile.schema.json", "Save the schema for an editor")
          .example("$0 schema --plan", "The schema of `qcvm plan --format json`")
          .epilog(exitCodes("0 schema printed")),
      dispatch("schema"),
    )
    .command(
      "init <file>",
      "Write a new profile (a starter, or a copy of --from) whose $schema line resolves wherever it is saved",
      (y) =>
        y
          .positional("file", { type: "string", describe: "The new profile (.yaml added); its name is the VM name" })
          .option("from", {
            type: "string",
            requiresArg: true,
            describe: "Copy this profile, or one qcvm ships by name (snp-2node, kvm-1node, reference, ...)",
          })
          .example("$0 init web1", "web1.yaml: a plain KVM starter named web1")
          .example("$0 init vms/db1.yaml --from snp-2node", "A copy of the shipped two-node SEV-SNP profile")
          .epilog(
            exitCodes(
              "0 written, and it validates; 1 written, with the problems of --from listed, or it could not be written; 2 the file exists (never overwritten), its name is not a VM name, or --from names nothing",
            ),
          ),
      dispatch("init"),
    )
    .command(
      "plan <profile>",
      "Show where each guest NUMA node's shared and private memory will go, and how faithfully",
      (y) =>
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
      dispatch("plan"),
    )
    .command(
      "doctor [profiles..]",
      "Report what this host and QEMU can run, and (given profiles) whether each runs here",
      (y) =>
        hostOptions(y.positional("profiles", { type: "string", array: true, describe: "Profiles to check here" }))
          .option("format", {
            choices: ["text", "json"] as const,
            default: "text" as const,
            describe: "json: the whole report on stdout",
          })
          .option("qemu", { type: "string", default: "qemu-system-x86_64", describe: "QEMU binary to probe" })
          .option("save", { type: "string", describe: "Save the probed QEMU capabilities to this file" })
          .option("save-host", {
            type: "string",
            requiresArg: true,
            describe:
              "Write this host as a tree --host DIR reads: the files the probe reads (DIR must be new or empty)",
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
      dispatch("doctor"),
    );
}

export function engineCommands(y: Argv, dispatch: Dispatch): Argv {
  return y
    .command(
      "export <profile>",
      "Hand a profile to another engine: a systemd unit that runs qcvm launch, or a libvirt domain",
      (y) =>
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
              ),
          ),
        )
          .example(
            "$0 export profiles/kvm-2node.yaml --to systemd > /etc/systemd/system/qcvm-kvm-2node.service",
            "One unit per VM",
          )
          .example("$0 export profiles/snp-2node.yaml --to libvirt --host epyc-2s4n", "Domain XML for another host")
          .epilog(exitCodes("0 exported (losses listed on stderr); 1 the profile is invalid")),
      dispatch("export"),
    )
    .command(
      "import <domain>",
      "A profile from a libvirt domain XML (virsh dumpxml, or qcvm export --to libvirt); - reads stdin",
      (y) =>
        y
          .positional("domain", { type: "string", describe: "Domain XML file, or - for stdin" })
          .example("virsh dumpxml web1 | $0 import - > web1.yaml", "From a running libvirt domain")
          .epilog(
            exitCodes(
              "0 imported (what has no profile field is listed on stderr); 1 not a domain, or the profile it gives is invalid (printed, with the problems)",
            ),
          ),
      dispatch("import"),
    );
}
