// qcvm as a user meets it: names and paths typed on the command line, bad input of every kind,
// exit codes, and nothing the user owns touched. Each case runs the built bin/qcvm.js.
import { afterAll, describe, expect, it } from "vitest";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { vmLockPath } from "../src/vm/lock.js";
import {
  KVM_2NODE,
  QCVM,
  REPO,
  makeRunDir,
  qcvm,
  sweepRunDir,
  takeHostWarnings,
  vmName,
  warningLines,
} from "./helpers/launch.js";

const runDir = makeRunDir("cli-user");
afterAll(() => sweepRunDir(runDir));

describe("VM names typed on the command line", () => {
  // stop removes a VM's directory recursively: a name that is a path must never reach it.
  it.each([["stop"], ["status"], ["stats"]])(
    "%s refuses a name that is a path, and removes nothing",
    async (command) => {
      const base = join(runDir, `victim-${command}`);
      const run = join(base, "run");
      mkdirSync(join(base, "precious"), { recursive: true });
      writeFileSync(join(base, "precious", "data"), "keep me");
      for (const name of ["../precious", "..", "/"]) {
        const r = await qcvm([command, name, "--run-dir", run]);
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr).toContain("is not a VM name: names are lowercase letters, digits and '-'");
        expect(r.stderr).not.toMatch(/\n\s+at /);
      }
      expect(readFileSync(join(base, "precious", "data"), "utf8")).toBe("keep me");
      expect(existsSync(base)).toBe(true);
    },
  );

  it("stop refuses `locks` and `caps`: they hold every VM's locks and the capability cache", async () => {
    const run = join(runDir, "reserved");
    mkdirSync(join(run, "locks"), { recursive: true });
    writeFileSync(join(run, "locks", "vm-other.lock"), "{}");
    for (const name of ["locks", "caps"]) {
      const r = await qcvm(["stop", name, "--run-dir", run]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(
        `qcvm: \`${name}\` cannot be a VM name: the run dir keeps qcvm's ${name} under that name`,
      );
    }
    expect(existsSync(join(run, "locks", "vm-other.lock"))).toBe(true);
  });

  // --dry-run: without the check this would print a plan that empties <run dir>/locks.
  it("launch refuses a profile named `locks` before touching the run dir", async () => {
    const run = join(runDir, "reserved-launch");
    mkdirSync(join(run, "locks"), { recursive: true });
    writeFileSync(join(run, "locks", "vm-other.lock"), "{}");
    const r = await qcvm(["launch", KVM_2NODE, "--set", "name=locks", "--dry-run", "--run-dir", run]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain("`locks` cannot be a VM name");
    expect(r.stderr).toContain("rename the VM: `name:` in the profile, or --set name=...");
    expect(existsSync(join(run, "locks", "vm-other.lock"))).toBe(true);
  });
});

describe("status shows what a launch killed early left behind", () => {
  // What a launch killed between taking its lock and writing state.json leaves: the name lock
  // (its holder, the launching qcvm, is gone) and the runtime directory.
  function leaveInterruptedLaunch(run: string, name: string): void {
    const dead = spawnSync("true").pid;
    mkdirSync(join(run, "locks"), { recursive: true });
    mkdirSync(join(run, name), { mode: 0o700 });
    writeFileSync(
      vmLockPath(run, name),
      JSON.stringify({
        vm: name,
        pid: dead,
        startTime: "1",
        role: "qcvm",
        since: "2026-01-01T00:00:00.000Z",
        nonce: "killed",
      }),
    );
  }

  it("lists it as interrupted, exits 3 for its name, and stop cleans it up", async () => {
    const run = join(runDir, "interrupted");
    const name = vmName("early");
    leaveInterruptedLaunch(run, name);
    const list = await qcvm(["status", "--run-dir", run]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${name}\\s+interrupted\\s+-\\s`, "m"));
    const one = await qcvm(["status", name, "--run-dir", run]);
    expect(one.code, one.stderr).toBe(3);
    expect(one.stdout).toContain(`VM ${name}: interrupted (a launch`);
    expect(one.stdout).toContain("left: its name lock, its runtime directory");
    expect(one.stdout).toContain(`clean up with: qcvm stop ${name}`);
    const json = await qcvm(["status", "--format", "json", "--run-dir", run]);
    expect(JSON.parse(json.stdout).vms.map((v: { name: string; state: string }) => [v.name, v.state])).toEqual([
      [name, "interrupted"],
    ]);
    const stop = await qcvm(["stop", name, "--run-dir", run]);
    expect(stop.code, stop.stderr).toBe(0);
    expect(existsSync(join(run, name))).toBe(false);
    expect((await qcvm(["status", "--run-dir", run])).stdout).toBe(`no VMs in ${run}\n`);
  });

  it("lists a damaged state.json as damaged instead of hiding it", async () => {
    const run = join(runDir, "damaged");
    const name = vmName("damaged");
    mkdirSync(join(run, name), { recursive: true });
    writeFileSync(join(run, name, "state.json"), "{ not json");
    const list = await qcvm(["status", "--run-dir", run]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${name}\\s+damaged\\s`, "m"));
  });
});

describe("bad profile files: a message naming the file and the fix, an exit code, never a crash", () => {
  const dir = join(runDir, "bad");
  mkdirSync(dir, { recursive: true });
  const file = (name: string, content: string | Buffer) => {
    const p = join(dir, name);
    writeFileSync(p, content);
    return p;
  };
  const laughs = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
  for (const [i, n] of ["b", "c", "d", "e", "f", "g", "h", "i"].entries()) {
    const prev = i === 0 ? "a" : ["b", "c", "d", "e", "f", "g", "h"][i - 1]!;
    laughs.push(`${n}: &${n} [${Array(9).fill(`*${prev}`).join(", ")}]`);
  }
  const cases: Array<[string, () => string, string]> = [
    [
      "binary data",
      () => file("binary.yaml", Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 0xff, 0x0a])),
      "is not a text file: binary data, or text that is not UTF-8",
    ],
    [
      "text that is not UTF-8",
      () => file("latin1.yaml", Buffer.from("apiVersion: qcvm/v1\nname: caf\xe9\n", "latin1")),
      "is not a text file",
    ],
    // Read until memory runs out before: its size is 0 and it never ends.
    [
      "a device that never ends",
      () => "/dev/zero",
      "/dev/zero: file is over 1048576 bytes; profiles are limited to 1048576",
    ],
    // yaml's recursion aborts the process (out of memory, no exception) at ~20,000 levels.
    [
      "deeply nested brackets",
      () => file("deep.yaml", `a: ${"[".repeat(30000)}${"]".repeat(30000)}\n`),
      "[ ] or { } nested more than 64 levels deep",
    ],
    [
      "a billion laughs",
      () => file("laughs.yaml", `${laughs.join("\n")}\n`),
      "aliases (*name) expand to too much: over 100 expansions",
    ],
    [
      "two YAML documents",
      () => file("two.yaml", "apiVersion: qcvm/v1\n---\nname: x\n"),
      "two.yaml:2:1: a profile is one YAML document, and this file has more (remove the `---` line",
    ],
    ["a missing file", () => join(dir, "missing.yaml"), "missing.yaml: cannot read file: no such file (check the path"],
  ];
  it.each(cases)("%s", async (_what, make, message) => {
    const path = make();
    for (const command of ["validate", "render", "plan"]) {
      const r = await qcvm([command, path]);
      expect(r.code, `${command}: ${r.stderr}`).toBe(1);
      const out = command === "validate" ? r.stdout : r.stderr;
      expect(out, command).toContain(message);
      expect(r.stderr, command).not.toContain("internal error");
      expect(r.stderr, command).not.toMatch(/\n\s+at /);
    }
  });
});

describe("help and the command line", () => {
  const COMMANDS = ["validate", "render", "plan", "doctor", "launch", "status", "stop", "stats", "schema"];

  it.each(COMMANDS)("%s --help has examples and exit codes, and fits 80 columns", async (command) => {
    const r = await qcvm([command, "--help"], { env: { ...process.env, COLUMNS: "80" } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("\nExamples:\n");
    expect(r.stdout).toMatch(/\nExit codes: 0 [^\n]*/);
    expect(r.stdout).toContain("2 usage error");
    expect(r.stdout.split("\n").filter((l) => l.length > 80)).toEqual([]);
  });

  it("status --help documents exit 3 for a dead or interrupted VM", async () => {
    const r = await qcvm(["status", "--help"]);
    expect(r.stdout.replace(/\s+/g, " ")).toContain(
      "3 the named VM is dead, or its launch was interrupted (qcvm stop cleans up)",
    );
  });

  it.each([
    [["stop", "x", "--timeout", "abc"], '--timeout must be a number of seconds >= 0, got "abc"', "qcvm stop --help"],
    [["stop", "x", "--timeout"], "Not enough arguments following: timeout", "qcvm stop --help"],
    [
      ["stats", "x", "--interval", "0"],
      '--interval must be a positive number of seconds, got "0"',
      "qcvm stats --help",
    ],
    // A bare --set overrode nothing, silently.
    [["render", KVM_2NODE, "--set"], "--set needs path=value, e.g. --set memory.size=8G", "qcvm render --help"],
    [["render", KVM_2NODE, "--format", "yaml"], 'Given: "yaml", Choices: "shell", "json"', "qcvm render --help"],
    [["frobnicate"], "Unknown argument: frobnicate", "qcvm --help"],
    [["rendr", KVM_2NODE], "unknown command `rendr`. Did you mean render?", "qcvm --help"],
  ])("%j is a usage error (exit 2) that names the problem and the help to read", async (args, message, help) => {
    const r = await qcvm(args, { env: { ...process.env, QCVM_RUN_DIR: join(runDir, "usage") } });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain(`Run '${help}' for usage.`);
    expect(r.stderr).not.toContain("internal error");
  });
});

describe("--host that is not a host tree", () => {
  // The probe takes whatever is missing as "this host has none": a mistyped --host planned, and
  // rendered, for an empty host with exit 0.
  const notHost = join(runDir, "not-a-host");
  mkdirSync(join(notHost, "proc"), { recursive: true });
  it.each([
    [join(runDir, "no-such-host"), "no such directory"],
    [notHost, "has no sys/ directory, so it is not a host tree"],
    [KVM_2NODE, "not a directory"],
  ])("%s: render, plan, launch --dry-run and doctor refuse it (exit 2)", async (host, problem) => {
    const launch = ["launch", KVM_2NODE, "--dry-run", "--run-dir", join(runDir, "host-run")];
    for (const args of [["render", KVM_2NODE], ["plan", KVM_2NODE], launch, ["doctor"]]) {
      const r = await qcvm([...args, "--host", host]);
      expect(r.code, `${args[0]}: ${r.stderr}`).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toBe(
        `qcvm: --host ${host}: ${problem} (give a tree shaped like /, with sys/ and proc/, as \`qcvm doctor --save-host DIR\` writes; or name one qcvm ships in ${join(REPO, "examples/hosts")}: cgroup2-only, cxl-memonly, epyc-2s4n, gmem-mempolicy, single-node, spr-tdx-2n, tight-memory)\n`,
      );
    }
  });
});

describe("README", () => {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  // The command table: `| \`qcvm name ...\` | what | exit codes |`.
  const rows = [...readme.matchAll(/^\| `qcvm (\w+)[^|]*\|[^|]*(?:\\\|[^|]*)*\| ([^|]+) \|$/gm)].map((m) => ({
    command: m[1]!,
    exits: m[2]!,
  }));

  it("has one command-table row per command in --help, each with exit codes", async () => {
    const help = await qcvm(["--help"], { env: { ...process.env, COLUMNS: "200" } });
    const commands = [...help.stdout.matchAll(/^ {2}qcvm (\w+)/gm)].map((m) => m[1]!).sort();
    expect(rows.map((r) => r.command).sort()).toEqual(commands);
    for (const r of rows) expect(r.exits, r.command).toMatch(/^0\b/);
  });

  it("gives status exit 3 in the table, as status --help and the code do", () => {
    expect(rows.find((r) => r.command === "status")!.exits).toContain("**3** the named VM is dead or interrupted");
  });

  it("its quick-start render works as written, from the repository root", async () => {
    const m = /^npm ci && npm run build && \.\/bin\/qcvm (render .*)$/m.exec(readme);
    expect(m, "the quick start command").not.toBeNull();
    const r = await qcvm(m![1]!.split(" ")); // vitest runs in the repository root
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("qemu-system-x86_64 \\\n");
  });
});

describe("a QEMU that aborts on -cpu host", () => {
  // QEMU 7.2 under KVM asserts with "failed to set MSR 0x10a" on some hosts for host and max; the
  // default cpu.model with KVM is host, so the message must name the field to change.
  it.each([
    [{ signal: "SIGABRT" }, ["qemu-system-x86_64", "-cpu", "host", "-m", "1G"], "set cpu.model: qemu64"],
    [{ signal: "SIGABRT" }, ["qemu-system-x86_64", "-cpu", "max,+pdpe1gb"], "-cpu max"],
    [{ signal: "SIGABRT" }, ["qemu-system-x86_64", "-cpu", "qemu64"], ""],
    [{ exitCode: 1 }, ["qemu-system-x86_64", "-cpu", "host"], ""],
  ])("%j %j", async (exit, argv, hint) => {
    const { cpuAbortHint } = await import("../src/launch/explain.js");
    const text = cpuAbortHint(exit, argv);
    if (hint) expect(text).toContain(hint);
    else expect(text).toBe("");
  });
});

describe("validate never passes over what it could not read", () => {
  // As root, run qcvm as nobody (root reads any directory); as any other user, mode 000 suffices.
  const asUnprivileged =
    process.getuid?.() === 0 ? ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] : [];
  const tree = join(runDir, "tree");
  mkdirSync(join(tree, "ok"), { recursive: true });
  mkdirSync(join(tree, "locked"), { recursive: true });
  writeFileSync(join(tree, "ok", "a.yaml"), readFileSync(KVM_2NODE));
  writeFileSync(join(tree, "locked", "b.yaml"), "apiVersion: qcvm/v2\n");
  for (const d of [runDir, tree, join(tree, "ok")]) chmodSync(d, 0o755);
  chmodSync(join(tree, "ok", "a.yaml"), 0o644);
  chmodSync(join(tree, "locked"), 0o000);
  afterAll(() => chmodSync(join(tree, "locked"), 0o755));

  // An unreadable subdirectory was skipped silently: "1 profile: 1 valid", exit 0, in CI.
  it.each([[tree], [`${tree}/**/*.yaml`], [`${tree}/*/b.yaml`]])(
    "%s: the unreadable directory is an error",
    async (input) => {
      const r = await qcvm(["validate", input], { prefix: asUnprivileged });
      expect(r.code, r.stdout + r.stderr).toBe(1);
      const lines = r.stdout.trimEnd().split("\n");
      expect(lines.filter((l) => l.includes("cannot read directory"))).toEqual([
        `${join(tree, "locked")}: cannot read directory: permission denied (profiles in it were not checked; make it readable to this user)`,
      ]);
      expect(lines.at(-1)).toMatch(/ profiles?: \d+ valid, 1 invalid \(1 error, 0 warnings\)$/);
    },
  );

  it("a glob whose directories are all readable is unaffected by one it never needs", async () => {
    const r = await qcvm(["validate", `${tree}/ok/*.yaml`], { prefix: asUnprivileged });
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toBe("1 profile: 1 valid, 0 invalid (0 errors, 0 warnings)\n");
  });
});

describe("capability files and QEMU binaries named on the command line", () => {
  it("a missing --capabilities file and an unwritable --save say why in words, not errno codes", async () => {
    const missing = join(runDir, "no-such-caps.json");
    const r = await qcvm(["render", KVM_2NODE, "--capabilities", missing]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `qcvm: ${missing}: cannot read capabilities file: no such file or directory (save a fresh one with: qcvm doctor --save ${missing})\n`,
    );
    const save = join(runDir, "no-such-dir", "caps.json");
    const d = await qcvm(["doctor", "--save", save, "--format", "json"]);
    expect(d.code, d.stderr).toBe(1);
    expect(d.stderr).toContain(`qcvm: cannot write capabilities to ${save}: no such file or directory\n`);
    expect(() => JSON.parse(d.stdout)).not.toThrow();
  });

  it("a QEMU path that does not exist is not said to be missing from PATH", async () => {
    const r = await qcvm(["doctor", "--qemu", "/nonexistent/qemu-system-x86_64", "--format", "json"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "qcvm: QEMU binary `/nonexistent/qemu-system-x86_64` not found or not executable (install qemu-system-x86, or name another with qemu.binary or doctor --qemu)\n",
    );
  });
});

/** stderr without the warnings this host itself causes (no KVM: the TCG fallback), checked as exact. */
function withoutHostWarnings(stderr: string): string {
  const warnings = warningLines(stderr);
  takeHostWarnings(warnings, { beforeCgroups: true });
  return stderr
    .split("\n")
    .filter((l) => !warnings.includes(l))
    .join("\n");
}

describe("a run dir that cannot be made", () => {
  // mkdirSync({recursive: true}) loops forever at full CPU where mkdir says ENOENT under an
  // existing parent, as /proc does: `launch --run-dir /proc/x` never returned.
  it.each([["/proc/qcvm-no-such-dir"], ["/proc/self"]])(
    "launch --run-dir %s fails at once with exit 1",
    async (dir) => {
      const r = await qcvm(
        ["launch", KVM_2NODE, "--detach", "--quiet", "--set", `name=${vmName("procdir")}`, "--run-dir", dir],
        { timeoutMs: 20_000 },
      );
      expect(r.code, r.stderr).toBe(1);
      expect(withoutHostWarnings(r.stderr)).toMatch(/^qcvm: cannot (create the run dir|mkdir) \/proc\//);
      expect(r.stderr).not.toContain("internal error");
    },
  );

  it("launch --run-dir naming a file says a file is in the way", async () => {
    const file = join(runDir, "a-file");
    writeFileSync(file, "");
    const r = await qcvm(["launch", KVM_2NODE, "--detach", "--quiet", "--run-dir", file]);
    expect(r.code, r.stderr).toBe(1);
    expect(withoutHostWarnings(r.stderr)).toBe(
      `qcvm: cannot create the run dir ${file}: a file of that name is in the way (pass --run-dir DIR, or set QCVM_RUN_DIR, to a directory you can write)\n`,
    );
  });
});

describe("launch --help and README agree on an interrupted launch", () => {
  it("both name exit 130", async () => {
    const help = (await qcvm(["launch", "--help"])).stdout.replace(/\s+/g, " ");
    expect(help).toContain("130 interrupted (Ctrl-C) before the guest ran, all undone");
    expect(readFileSync(join(REPO, "README.md"), "utf8")).toContain("130 interrupted before the guest ran");
  });
});

describe("doctor --save never overwrites what is not its own", () => {
  it("refuses a profile (exit 2, file unchanged) and replaces a capabilities file", async () => {
    const profile = join(runDir, "save-target.yaml");
    writeFileSync(profile, readFileSync(KVM_2NODE));
    const r = await qcvm(["doctor", "--save", profile]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      `qcvm: --save ${profile}: the file exists and is not a qcvm capabilities file; not overwriting it (remove it, or save to another name)\n`,
    );
    expect(readFileSync(profile, "utf8")).toBe(readFileSync(KVM_2NODE, "utf8"));

    const caps = join(runDir, "caps-target.json");
    const first = await qcvm(["doctor", "--save", caps]);
    expect(first.code, first.stderr).toBe(0);
    const again = await qcvm(["doctor", "--save", caps]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(readFileSync(caps, "utf8")).format).toBe("qcvm-capabilities/v1");
  });
});

describe("reports fit the terminal", () => {
  // A report's prose wraps at the terminal's width (here $COLUMNS, as stdout is a pipe); only
  // tables, which cannot wrap, and single words longer than a line (a /sys path) may exceed it.
  const overflow = (text: string, width: number) =>
    text
      .split("\n")
      .filter(
        (l) => [...l].length > width && l.trim().includes(" ") && !/^\s*(GUEST NODE|\d+ {2,}|node {2}|\d+ {5})/.test(l),
      );
  it.each([
    [["plan", "profiles/snp-hugepages.yaml", "--host", "examples/hosts/tight-memory"]],
    [["plan", "profiles/snp-2node.yaml", "--host", "examples/hosts/epyc-2s4n"]],
    [
      [
        "doctor",
        "--host",
        "examples/hosts/cxl-memonly",
        "--capabilities",
        "test/fixtures/plan-profiles/caps-gmem-snp.json",
      ],
    ],
  ])("%j at 80 columns", async (args) => {
    const r = await qcvm(args, { env: { ...process.env, COLUMNS: "80" } });
    expect(r.stdout.length).toBeGreaterThan(500);
    expect(overflow(r.stdout, 80)).toEqual([]);
  });
});

describe("a reader that stops early", () => {
  // `qcvm schema | head -1`: the closed pipe made Node print an unhandled EPIPE stack trace.
  it.each([
    [["schema"]],
    [["render", KVM_2NODE, "--format", "json"]],
    [["validate", "profiles", "examples", "test/fixtures/profiles"]],
  ])("%j exits like cat would (141, SIGPIPE), with nothing on stderr", async (args) => {
    const child = spawn(process.execPath, [QCVM, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.on("close", (c) => r(c)));
    expect(stderr).toBe("");
    expect(code).toBe(141);
  });
});

describe("stats --watch on a VM that stops", () => {
  it("ends with exit 1 and says the VM stopped; stats and stop on it afterwards say there is no such VM", async () => {
    const name = vmName("watch");
    const up = await qcvm(["launch", KVM_2NODE, "--detach", "--quiet", "--set", `name=${name}`, "--run-dir", runDir]);
    expect(up.code, up.stderr).toBe(0);
    const watch = spawn(process.execPath, [QCVM, "stats", name, "--watch", "--interval", "0.2", "--run-dir", runDir], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    watch.stdout.on("data", (d) => (out += d));
    watch.stderr.on("data", (d) => (err += d));
    const exited = new Promise<number | null>((r) => watch.on("close", (c) => r(c)));
    while (!out.includes("HOST NODE")) await new Promise((r) => setTimeout(r, 20));
    const stop = await qcvm(["stop", name, "--force", "--run-dir", runDir]);
    expect(stop.code, stop.stderr).toBe(0);
    expect(await exited).toBe(1);
    expect(err).toMatch(new RegExp(`qcvm: VM \`${name}\` is not running any more \\(pid \\d+ exited\\)\\n$`));
    const again = await qcvm(["stop", name, "--run-dir", runDir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      `qcvm: no VM named \`${name}\` in ${runDir} (qcvm status lists them; --run-dir picks another run dir)\n`,
    );
    const stats = await qcvm(["stats", name, "--run-dir", runDir]);
    expect(stats.code).toBe(1);
    expect(stats.stderr).toBe(
      `qcvm: no VM named \`${name}\` in ${runDir} (qcvm status lists them; --run-dir picks another run dir)\n`,
    );
  });
});

describe("schema messages speak the user's language", () => {
  // A pattern with no message of its own was shown as the regular expression itself:
  // "cpu.model: must match ^[A-Za-z0-9][A-Za-z0-9._+=,-]*$".
  it("no field reports a regular expression", async () => {
    const bad = join(runDir, "patterns.yaml");
    writeFileSync(
      bad,
      [
        "apiVersion: qcvm/v1",
        "name: Bad_Name",
        'qemu: {version: "seven", binary: ""}',
        'machine: {type: "q 35"}',
        'cpu: {model: "-x", count: 1}',
        "memory: {size: 12Q, hostNodes: a-b}",
        'network: {type: tap, ifname: "way-too-long-interface-name", mac: zz}',
        'serial: "tty"',
        "confidential: {type: sev-snp, cbitpos: 51, reducedPhysBits: 1, policy: 0xZZ, hostData: {base64: '***'}}",
        "",
      ].join("\n"),
    );
    const r = await qcvm(["validate", bad, "--format", "json"]);
    expect(r.code).toBe(1);
    const messages = (JSON.parse(r.stdout) as { files: { errors: { path: string; message: string }[] }[] }).files[0]!
      .errors;
    expect(messages.filter((m) => /must match|\^|\$$/.test(m.message))).toEqual([]);
    expect(messages.map((m) => m.path)).toEqual(expect.arrayContaining(["machine.type", "cpu.model"]));
  });
});

describe("another user's VM", () => {
  // As root, act as nobody on root's VM; as anyone else, a state.json of mode 000 is unreadable too.
  const asOther = process.getuid?.() === 0 ? ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] : [];

  it("status lists it as not yours; stop tries nothing and says whose it is", async () => {
    const run = join(runDir, "shared-run");
    const name = vmName("theirs");
    mkdirSync(join(run, name), { recursive: true });
    mkdirSync(join(run, "locks"), { recursive: true });
    for (const d of [runDir, run, join(run, "locks")]) chmodSync(d, 0o755);
    writeFileSync(join(run, name, "state.json"), "{}");
    chmodSync(join(run, name, "state.json"), 0o000);
    // Their "QEMU": stop must not signal it (as root it was refused with EPERM and reported as
    // "survived SIGKILL"; as its owner it would have been killed on an unreadable state).
    const qemu = spawn("sleep", ["120"], { stdio: "ignore" });
    try {
      const { pidStartTime } = await import("../src/vm/process.js");
      writeFileSync(
        vmLockPath(run, name),
        JSON.stringify({
          vm: name,
          pid: qemu.pid,
          startTime: pidStartTime(qemu.pid!),
          role: "qemu",
          since: "2026-01-01T00:00:00.000Z",
          nonce: "theirs",
        }),
      );
      chmodSync(vmLockPath(run, name), 0o644);
      const list = await qcvm(["status", "--run-dir", run], { prefix: asOther });
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toMatch(new RegExp(`^${name}\\s+not yours\\s+${qemu.pid}\\s`, "m"));
      const message = `qcvm: VM \`${name}\` belongs to another user: ${join(run, name, "state.json")} is not readable by this one (run qcvm as the user who launched it, or as root)\n`;
      const stop = await qcvm(["stop", name, "--force", "--run-dir", run], { prefix: asOther });
      expect(stop.code).toBe(1);
      expect(stop.stderr).toBe(message);
      expect(qemu.exitCode).toBeNull();
      expect(existsSync(join(run, name))).toBe(true);
      expect(existsSync(vmLockPath(run, name))).toBe(true);
    } finally {
      qemu.kill("SIGKILL");
      chmodSync(join(run, name, "state.json"), 0o644);
    }
  });
});

describe("examples/ci", () => {
  const workflow = readFileSync(join(REPO, "examples/ci/.github/workflows/qcvm.yml"), "utf8");

  it("installs qcvm from a pinned checkout, never from the npm registry by name", async () => {
    const { parse } = await import("yaml");
    const steps = (parse(workflow) as { jobs: { validate: { steps: Array<Record<string, unknown>> } } }).jobs.validate
      .steps;
    // `npm install --global qcvm` installed whatever the registry has under that name (today:
    // nothing, a 404), and a global install from git cannot build qcvm (npm/cli#8440).
    expect(steps.filter((s) => /npm (i|install)\b/.test(String((s.run as string | undefined) ?? "")))).toEqual([]);
    const checkout = steps.find((s) => (s.with as { path?: string } | undefined)?.path === ".qcvm")!;
    expect((checkout.with as { ref: string }).ref).toMatch(/^v\d|^[0-9a-f]{40}$/);
    expect(steps.some((s) => s.run === "npm ci --no-audit --no-fund" && s["working-directory"] === ".qcvm")).toBe(true);
  });

  it("validate-profiles.sh counts in words that agree with the number", () => {
    const dir = join(runDir, "ci-one-error");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "typo.yaml"), "apiVersion: qcvm/v1\nname: typo\nmemory: {size: 1G, hugepages: 3M}\n");
    const r = spawnSync("sh", ["examples/ci/validate-profiles.sh", dir], {
      cwd: REPO,
      encoding: "utf8",
      env: { PATH: process.env.PATH, QCVM: `${process.execPath} ${QCVM}` },
    });
    expect(r.status).toBe(1);
    expect(r.stdout.trimEnd().split("\n").at(-1)).toBe("1 profile: 0 valid, 1 invalid (1 error, 0 warnings)");
  });
});

describe("validate globs", () => {
  // examples/ holds profiles and non-YAML files (walkthrough.md, ci/).
  const count = readdirSync(join(REPO, "examples")).filter((f) => /\.ya?ml$/.test(f)).length;
  it.each([
    // A glob's non-YAML matches were read as profiles: examples/walkthrough.md gave 367 YAML errors.
    ["examples/*"],
    // A trailing ** matched nothing once globs were matched a segment at a time.
    ["examples/**"],
  ])("%s: every profile in examples/, all valid", async (glob) => {
    const r = await qcvm(["validate", glob]);
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toBe(`${count} profiles: ${count} valid, 0 invalid (0 errors, 0 warnings)\n`);
  });
});
