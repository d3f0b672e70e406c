// The package as users get it (issue 10 item 9, "done when"): `npm pack`, the tarball installed
// into a clean directory (dependencies from npm's cache, as `npm ci` left it), and qcvm run from
// another clean directory through the installed bin. Installing prints no warning about qcvm; every
// command's --help works; the README's installed-package block and its other `$ qcvm` lines run
// as written; and every --help example (read from the source, where they are written) runs as
// written, or is listed below with why it cannot run in a test.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";

const REPO = join(import.meta.dirname, "..");
const work = mkdtempSync(join(tmpdir(), "qcvm-pack-"));
const prefix = join(work, "install");
const bin = join(prefix, "node_modules", ".bin");
let install = { stdout: "", stderr: "", status: -1 as number | null };

function sh(cwd: string, line: string, timeout = 120_000) {
  const r = spawnSync("sh", ["-c", line], {
    cwd,
    encoding: "utf8",
    timeout,
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, COLUMNS: "110" },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A clean directory holding the user's own files the examples name, made with the installed qcvm. */
function userDir(): string {
  const dir = mkdtempSync(join(work, "user-"));
  for (const p of ["kvm-1node", "kvm-2node", "snp-2node"])
    expect(sh(dir, `qcvm init profiles/${p}.yaml --from ${p}`).code).toBe(0);
  expect(sh(dir, "qcvm init vms/web1.yaml --from kvm-2node").code).toBe(0);
  writeFileSync(join(dir, "base.yaml"), readFileSync(join(REPO, "examples/base-epyc.yaml")));
  return dir;
}

beforeAll(() => {
  // --ignore-scripts: dist/ is what `npm test` built; a build here would race the other tests.
  const pack = spawnSync("npm", ["pack", "--ignore-scripts", "--pack-destination", work], {
    cwd: REPO,
    encoding: "utf8",
  });
  expect(pack.status, pack.stderr).toBe(0);
  const tarball = join(
    work,
    readdirSync(work).find((f) => f.endsWith(".tgz"))!,
  );
  mkdirSync(prefix);
  writeFileSync(join(prefix, "package.json"), '{"name": "user", "version": "1.0.0", "private": true}\n');
  const r = spawnSync("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball], {
    cwd: prefix,
    encoding: "utf8",
    timeout: 240_000,
  });
  install = { stdout: r.stdout, stderr: r.stderr, status: r.status };
}, 300_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("npm pack, installed into a clean directory", () => {
  it("installs without a warning about qcvm (no install-time script of its own)", () => {
    expect(install.status, install.stderr).toBe(0);
    // npm 11 lists every package whose install-time script it did not run: qcvm has none now
    // (its `prepare` build script needed scripts/, which is not in the package).
    expect(install.stderr).not.toMatch(/qcvm@/);
    // koffi's own install script only checks its prebuilt binaries, which load without it:
    const native = sh(prefix, `node -e 'require("koffi").load("libc.so.6"); console.log("ok")'`);
    expect(native.stdout.trim(), native.stderr).toBe("ok");
  });

  it("ships the examples, host trees, schemas and LICENSE, and no tests or sources", () => {
    const pkg = join(prefix, "node_modules", "qcvm");
    const top = readdirSync(pkg).sort();
    expect(top).toEqual(expect.arrayContaining(["LICENSE", "README.md", "bin", "dist", "examples", "schemas"]));
    for (const absent of ["test", "src", "scripts"]) expect(top).not.toContain(absent);
    expect(readdirSync(join(pkg, "examples", "hosts"))).toContain("epyc-2s4n");
    // The snapshot's build input (2.4 MB) is not needed to run it.
    expect(readdirSync(join(pkg, "dist"))).not.toContain("snapshot-entry.js");
  });

  it("every command's --help works", () => {
    const top = sh(work, "qcvm --help");
    expect(top.code, top.stderr).toBe(0);
    const commands = [...top.stdout.matchAll(/^ {2}qcvm (\w+)/gm)].map((m) => m[1]!);
    expect(commands.length).toBeGreaterThan(15);
    for (const c of commands) {
      const r = sh(work, `qcvm ${c} --help`);
      expect(r.code, `${c}: ${r.stderr}`).toBe(0);
      // yargs reads `help --help` as --help: the command list, which is what `qcvm help` prints.
      expect(r.stdout, c).toContain(c === "help" ? "Usage: qcvm <command>" : "Exit codes:");
    }
  });

  it("the README's installed-package block runs as written, line by line", () => {
    const readme = readFileSync(join(REPO, "README.md"), "utf8");
    const block = /<!-- test\/pack\.test\.ts [^\n]*\n```sh\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const lines = block!.split("\n").filter((l) => l.startsWith("qcvm "));
    expect(lines.length).toBeGreaterThan(3);
    const dir = mkdtempSync(join(work, "readme-"));
    for (const line of lines) {
      const r = sh(dir, line);
      expect(r.code, `${line}\n${r.stderr}`).toBe(0);
    }
  });

  it("the README's other `$ qcvm` lines run as written", () => {
    const readme = readFileSync(join(REPO, "README.md"), "utf8");
    const lines = [...readme.matchAll(/^\$ (qcvm .*)$/gm)].map((m) => m[1]!);
    expect(lines.length).toBeGreaterThan(1);
    const dir = userDir();
    for (const line of lines) {
      const r = sh(dir, line);
      expect(r.code, `${line}\n${r.stderr}`).toBe(0);
    }
  });
});

/**
 * --help examples that cannot run in a test, each with why. Everything else runs as written, in a
 * directory holding the user's files the examples name (userDir), with the exit code given here
 * when it is not 0.
 */
const CANNOT_RUN: Record<string, string> = {
  "qcvm launch profiles/kvm-2node.yaml --detach": "starts a VM (test/cli-launch.test.ts does)",
  "qcvm launch profiles/kvm-1node.yaml": "runs a VM in the foreground until it stops",
  "qcvm status kvm-2node --format json": "needs the VM launched above",
  "qcvm status kvm-2node || qcvm stop kvm-2node": "needs a VM",
  "qcvm stop kvm-2node": "needs a VM",
  "qcvm stop kvm-2node --force": "needs a VM",
  "qcvm stop kvm-2node --format json": "needs a VM (test/cli-json.test.ts stops one)",
  "qcvm stats snp-2node": "needs a running SEV-SNP VM",
  "qcvm stats snp-2node --watch": "needs a running SEV-SNP VM, and runs until Ctrl-C",
  "qcvm logs kvm-2node": "needs a VM that ran",
  "qcvm logs kvm-2node --list": "needs a VM that ran",
  "qcvm console kvm-1node": "needs a running VM and a terminal (test/cli-console.test.ts)",
  "qcvm completion bash >> ~/.bashrc": "changes the user's ~/.bashrc",
  "qcvm completion zsh > ~/.zfunc/_qcvm": "changes the user's home",
  "qcvm completion fish > ~/.config/fish/completions/qcvm.fish": "changes the user's home",
  "qcvm export profiles/kvm-2node.yaml --to systemd > /etc/systemd/system/qcvm-kvm-2node.service":
    "installs a systemd unit (test/export-systemd.test.ts runs one)",
  "virsh dumpxml web1 | qcvm import - > web1.yaml": "needs libvirt's domain web1 (test/libvirtd.test.ts)",
  "qcvm doctor --qemu /opt/qemu-9.2/bin/qemu-system-x86_64": "names a QEMU build this machine may not have",
};
/** Examples whose exit may be other than 0, and why that is right. */
const EXIT: Record<string, number[]> = {
  // 1 where this machine is no SEV-SNP host (launch would refuse, so render and plan do too).
  "qcvm render profiles/snp-2node.yaml": [0, 1],
  "qcvm plan profiles/snp-2node.yaml": [0, 1],
  "qcvm launch profiles/snp-2node.yaml --dry-run": [0, 1],
};

/** Every `.example("$0 ...")` in the CLI's sources, as a user types it. */
function helpExamples(): string[] {
  const out: string[] = [];
  for (const f of ["src/cli.ts", ...readdirSync(join(REPO, "src/cli")).map((f) => `src/cli/${f}`)]) {
    const text = readFileSync(join(REPO, f), "utf8");
    for (const m of text.matchAll(/\.example\(\s*"((?:[^"\\]|\\.)*)"/g))
      out.push(JSON.parse(`"${m[1]!}"`).replace(/\$0/g, "qcvm"));
  }
  return out;
}

describe("every --help example", () => {
  const examples = helpExamples();

  it("is in the installed package's help", () => {
    expect(examples.length).toBeGreaterThan(30);
    const help = sh(
      work,
      "for c in $(qcvm --help | sed -n 's/^  qcvm \\([a-z]*\\).*/\\1/p'); do qcvm $c --help; done",
    ).stdout;
    // A long example wraps, with its description between its parts: its words, in order.
    const shows = (e: string) => {
      let at = help.indexOf(e.split(/\s+/).slice(0, 2).join(" ")); // its first two words, unwrapped
      for (const word of e.split(/\s+/)) {
        at = at === -1 ? -1 : help.indexOf(word, at);
        if (at === -1) return false;
        at += word.length;
      }
      return true;
    };
    // `qcvm help --help` prints the command list (yargs), so the help command's example is not shown.
    for (const e of examples.filter((x) => !x.startsWith("qcvm help "))) expect(shows(e), e).toBe(true);
    for (const e of Object.keys({ ...CANNOT_RUN, ...EXIT })) expect(examples, `stale entry: ${e}`).toContain(e);
  });

  it("runs as written from the installed package (or is listed with why it cannot)", () => {
    const dir = userDir();
    for (const e of examples.filter((x) => !(x in CANNOT_RUN))) {
      const r = sh(dir, e);
      expect(EXIT[e] ?? [0], `${e}\n${r.stderr}`).toContain(r.code);
      expect(r.stderr, e).not.toMatch(/internal error|Error: |\n\s+at /);
    }
  }, 300_000);
});
