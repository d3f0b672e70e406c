// The conventions operators bring from virsh, limactl and incus: `list`/`ls`, `help CMD`, shell
// completion, `-` for standard input, unknown options named as such, and --set values that mean
// what the schema says. Each case runs the built bin/qcvm.js.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { KVM_2NODE, QCVM, REPO, qcvm } from "./helpers/launch.js";
import { coerceSetValue, schemaAt, typesAllowed } from "../src/load/set-coerce.js";
import { unknownOptions } from "../src/cli.js";

const SNP_2NODE = join(REPO, "profiles", "snp-2node.yaml");
const EPYC = join(REPO, "examples/hosts/epyc-2s4n");

/** Run qcvm with `input` on its standard input. */
function withStdin(args: string[], input: string, env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(process.execPath, [QCVM, ...args], { input, encoding: "utf8", env, timeout: 60_000 });
  return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
}

describe("list, ls and help", () => {
  it("list and ls print status's table (and its JSON)", async () => {
    const runDir = join(REPO, "examples/hosts"); // no VM directories with state in it
    const status = await qcvm(["status", "--run-dir", runDir, "--format", "json"]);
    for (const cmd of ["list", "ls"]) {
      const r = await qcvm([cmd, "--run-dir", runDir, "--format", "json"]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(status.stdout);
    }
  });

  it.each([["validate"], ["render"], ["stop"], ["list"]])("help %s is %s --help", async (cmd) => {
    const env = { ...process.env, COLUMNS: "120" };
    const help = await qcvm(["help", cmd], { env });
    const direct = await qcvm([cmd, "--help"], { env });
    expect(help.code).toBe(0);
    expect(help.stdout).toBe(direct.stdout);
    expect(help.stdout).toContain(`qcvm ${cmd}`);
  });

  it("help with no command is the command list; an unknown command is a usage error", async () => {
    const env = { ...process.env, COLUMNS: "120" };
    expect((await qcvm(["help"], { env })).stdout).toBe((await qcvm(["--help"], { env })).stdout);
    const r = await qcvm(["help", "bogus"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command `bogus`");
  });
});

describe("unknown options are reported as unknown options", () => {
  it.each([
    [["validate", "--bogus", "profiles"], "qcvm: unknown option --bogus\nRun 'qcvm validate --help' for usage.\n"],
    [["render", "--nope", KVM_2NODE], "qcvm: unknown option --nope\nRun 'qcvm render --help' for usage.\n"],
    [["plan", "-Z", "--format", "json"], "qcvm: unknown option -Z\nRun 'qcvm plan --help' for usage.\n"],
    // Where no positional went missing, yargs' own check already names it.
    [["doctor", "--bogus"], "qcvm: Unknown argument: bogus\nRun 'qcvm doctor --help' for usage.\n"],
  ])("%j", async (args, stderr) => {
    const r = await qcvm(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(stderr);
  });

  it("knows both spellings of an option, its aliases and --no-", () => {
    const opts = { key: { "dry-run": true, strict: true, help: true }, alias: { "dry-run": ["dryRun"] } };
    expect(unknownOptions(["x", "--dry-run", "--dryRun", "--no-strict", "-h", "-", "--", "--after"], opts)).toEqual([]);
    expect(unknownOptions(["--dry-runs", "-xy", "--strict=1"], opts)).toEqual(["--dry-runs", "-x", "-y"]);
  });
});

describe("- reads the profile from standard input", () => {
  const text = readFileSync(KVM_2NODE, "utf8");
  it.each([
    [["validate", "-"], /1 profile: 1 valid/],
    [["render", "-", "--host", EPYC], /qemu-system-x86_64 \\\n/],
    [["plan", "-", "--host", EPYC], /guest node/],
  ])("%j", (args, out) => {
    const r = withStdin([...args, "--set", "name=from-stdin"], text);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(out);
  });

  it("names <stdin> in diagnostics, with line and column", () => {
    const r = withStdin(["validate", "-"], "apiVersion: qcvm/v1\nname: ok\nmemroy: {}\n");
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("<stdin>:3:1: memroy:");
  });

  it("renders the same argv from stdin as from the file", async () => {
    const file = await qcvm(["render", SNP_2NODE, "--host", EPYC, "--format", "json", "--set", "name=snp-2node"]);
    const piped = withStdin(
      ["render", "-", "--host", EPYC, "--format", "json", "--set", "name=snp-2node"],
      readFileSync(SNP_2NODE, "utf8").replace(/^(\s*\w+:\s*)(\.\.?\/)/gm, `$1${REPO}profiles/$2`),
    );
    expect(piped.code, piped.stderr).toBe(0);
    expect(JSON.parse(piped.stdout).argv).toEqual(JSON.parse(file.stdout).argv);
  });
});

describe("--set values take the schema's type", () => {
  it.each([
    ["qemu.version=9.1", "9.1"],
    ["qemu.version=9.10", "9.10"],
    ["qemu.version=10", undefined], // not MAJOR.MINOR: still an error, but a string's error
  ])("%s", async (expr, version) => {
    const r = await qcvm(["validate", KVM_2NODE, "--set", expr, "--format", "json", "--fill"]);
    const report = JSON.parse(r.stdout) as {
      files: Array<{ errors: Array<{ message: string }>; profile?: { qemu: { version: string } } }>;
    };
    if (version === undefined) {
      expect(r.code).toBe(1);
      expect(report.files[0]!.errors[0]!.message).toBe("must be a QEMU version MAJOR.MINOR[.PATCH]");
    } else {
      expect(r.code, r.stdout).toBe(0);
      expect(report.files[0]!.profile!.qemu.version).toBe(version);
    }
  });

  it("coerces by the schema, not by guess", () => {
    expect(coerceSetValue(["qemu", "version"], 9.1, "9.1")).toBe("9.1");
    expect(coerceSetValue(["name"], 123, "123")).toBe("123");
    // Numbers and booleans where the schema wants them stay numbers and booleans.
    expect(coerceSetValue(["cpu", "count"], 4, "4")).toBe(4);
    expect(coerceSetValue(["memory", "size"], 4096, "4096")).toBe(4096);
    expect(coerceSetValue(["placement", "strict"], true, "true")).toBe(true);
    // Inside a flow map too.
    expect(coerceSetValue(["qemu"], { version: 9.1 })).toEqual({ version: "9.1" });
    expect([...typesAllowed(schemaAt(["qemu", "version"]))]).toEqual(["string"]);
    expect(schemaAt(["no", "such"])).toEqual([]);
  });

  it("appends to an unset list at [0], as docs/profile.md says", async () => {
    // Any existing file but the profile itself: a writable disk on the profile is refused (issue 8).
    const disk = KVM_2NODE.replace("kvm-2node.yaml", "kvm-1node.yaml");
    const r = await qcvm([
      "render",
      KVM_2NODE,
      "--host",
      EPYC,
      "--format",
      "json",
      "--set",
      `disks[0]={path: ${disk}, format: raw}`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    // The disk reaches QEMU as a descriptor qcvm opens (issue 8): fdset 4, and its path in the list
    // of what launch does.
    const out = JSON.parse(r.stdout) as { argv: string[]; notExpressed: string[] };
    expect(out.argv.join(" ")).toContain("filename=/dev/fdset/4");
    expect(out.notExpressed).toContain(`fd 4: disks[0].path ${disk} (read-write), opened by qcvm`);
    const gap = await qcvm(["validate", KVM_2NODE, "--set", "disks[1]={path: x, format: raw}"]);
    expect(gap.code).toBe(1);
    expect(gap.stdout).toContain("disks is not set, so it has no item 1 (start with [0])");
  });

  it("--set before the profile does not swallow it", async () => {
    const r = await qcvm(["validate", "--set", "cpu.count=2", "--set", "name=two", KVM_2NODE]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain("1 profile: 1 valid");
  });
});

describe("completion", () => {
  it("bash: the script completes commands, options and choices through qcvm itself", () => {
    const script = spawnSync(process.execPath, [QCVM, "completion", "bash"], { encoding: "utf8" });
    expect(script.status).toBe(0);
    // Run the script in a real bash, with a `qcvm` on PATH that is this build.
    const bin = join(REPO, "bin");
    const r = spawnSync(
      "bash",
      [
        "-c",
        `eval "$COMPLETION"
         complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _qcvm_yargs_completions; echo "\${COMPREPLY[*]}"; }
         complete_words qcvm val
         complete_words qcvm validate --fo
         complete_words qcvm plan x.yaml --format ""`,
      ],
      { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, COMPLETION: script.stdout } },
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("validate\n--format\ntext json dot svg\n");
  });

  it.each([
    ["zsh", "#compdef qcvm"],
    ["fish", "complete -f -c qcvm -a '(qcvm --get-yargs-completions"],
  ])("%s: yargs' %s template, naming qcvm", async (shell, line) => {
    const r = await qcvm(["completion", shell]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(line);
  });

  it("defaults to $SHELL's template; refuses a shell it has none for", async () => {
    const zsh = await qcvm(["completion"], { env: { ...process.env, SHELL: "/usr/bin/zsh" } });
    expect(zsh.stdout).toContain("#compdef qcvm");
    const bad = await qcvm(["completion", "tcsh"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("Invalid values");
  });
});

describe("LICENSE", () => {
  it("is the full Apache-2.0 text that package.json names (npm packs it whatever `files` says)", () => {
    const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { license: string };
    const text = readFileSync(join(REPO, "LICENSE"), "utf8");
    expect(pkg.license).toBe("Apache-2.0");
    expect(text).toMatch(/Apache License\s+Version 2\.0, January 2004/);
    expect(text).toContain("END OF TERMS AND CONDITIONS");
  });
});
