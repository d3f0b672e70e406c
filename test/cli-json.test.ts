// --format json on the commands that act on VMs and files (stop, logs, console, export, import,
// init): the built CLI prints one JSON document on stdout, the error document on a failure
// (kind, message, exit code as in text mode) and a description of the result on a success.
import { afterAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { COMMANDS } from "../src/cli.js";
import { keepLog } from "../src/vm/logs.js";
import { KVM_2NODE, QCVM, REPO, events, makeRunDir, qcvm, sweepRunDir, vmName } from "./helpers/launch.js";

const runDir = makeRunDir("cli-json");
const work = mkdtempSync(join(tmpdir(), "qcvm-cli-json-"));
afterAll(async () => {
  await sweepRunDir(runDir);
  rmSync(work, { recursive: true, force: true });
});

const INVALID = join(REPO, "test/fixtures/profiles/invalid-enum.yaml");

/** The error document of a failed command, checked against its stderr line and exit code. */
function expectError(r: { code: number; stdout: string; stderr: string }, kind: string, code: number) {
  expect(r.code, r.stderr).toBe(code);
  const doc = JSON.parse(r.stdout) as { error: { kind: string; message: string }; diagnostics: unknown[] };
  expect(Object.keys(doc)).toEqual(["error", "diagnostics"]);
  expect(doc.error.kind).toBe(kind);
  expect(r.stderr).toBe(`qcvm: ${doc.error.message}\n`);
  return doc;
}

describe("every command that can fail takes --format text|json", () => {
  // help and completion only print text; schema prints the schema, which is JSON already.
  const WITHOUT = ["help", "completion", "schema"];
  it.each(COMMANDS.filter((c) => !WITHOUT.includes(c.name)).map((c) => [c.name]))(
    "%s --help lists --format",
    (name) => {
      const r = spawnSync(process.execPath, [QCVM, name, "--help"], {
        encoding: "utf8",
        env: { ...process.env, COLUMNS: "200" },
      });
      expect(r.status).toBe(0);
      // The first [choices: ...] after --format is its own (yargs ends each option's help with them).
      expect(/--format[\s\S]*?\[choices: ([^\]]*)\]/.exec(r.stdout)?.[1]).toContain('"json"');
    },
  );
});

describe("stop --format json", () => {
  it("no such VM: the error document, kind not-found, exit 1", async () => {
    expectError(await qcvm(["stop", "no-such-vm", "--format", "json", "--run-dir", runDir]), "not-found", 1);
  });

  it("a VM name that is not one: kind usage, exit 2", async () => {
    expectError(await qcvm(["stop", "Bad_Name", "--format", "json", "--run-dir", runDir]), "usage", 2);
  });

  it("a running VM: how it stopped and what was removed, stderr silent", async () => {
    const name = vmName("json-stop");
    const up = await qcvm(["launch", KVM_2NODE, "--detach", "--quiet", "--set", `name=${name}`, "--run-dir", runDir]);
    expect(up.code, up.stderr).toBe(0);
    const r = await qcvm(["stop", name, "--force", "--format", "json", "--run-dir", runDir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ name, runDir, wasRunning: true, how: "quit", graceful: false, force: true });
    expect(doc.removed).toContain(join(runDir, name));
    expect(doc.cleanupErrors).toEqual([]);
    expect(doc).not.toHaveProperty("error");
    expect(existsSync(join(runDir, name))).toBe(false);
    // Again: nothing left to stop, nothing to remove.
    const again = await qcvm(["stop", name, "--format", "json", "--run-dir", runDir]);
    expectError(again, "not-found", 1);
  });
});

describe("launch --format json: a failure is one more event line", () => {
  it("refused before any step (node memory does not add up): one error event, kind invalid, exit 1", async () => {
    const name = vmName("json-refused");
    const args = ["launch", KVM_2NODE, "--set", `name=${name}`, "--set", "memory.size=100T", "--run-dir", runDir];
    const r = await qcvm([...args, "--format", "json"]);
    expect(r.code, r.stderr).toBe(1);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    const ev = JSON.parse(lines[0]!);
    expect(ev).toMatchObject({ event: "error", error: { kind: "invalid" } });
    expect(typeof ev.ms).toBe("number");
    expect(ev.diagnostics).toEqual([expect.objectContaining({ severity: "error", code: "numa.memory-sum" })]);
    expect(r.stderr).toContain(`qcvm: ${ev.error.message}\n`);
    // A dry run prints one document, so its failure is the indented error document.
    const dry = await qcvm([...args, "--dry-run", "--format", "json"]);
    expect(dry.code).toBe(1);
    expect(JSON.parse(dry.stdout)).toEqual({ error: ev.error, diagnostics: ev.diagnostics });
  });

  it("refused after its first steps (the name runs already): the events, then the error event, exit 1", async () => {
    const name = vmName("json-twice");
    const args = ["launch", KVM_2NODE, "--detach", "--set", `name=${name}`, "--run-dir", runDir];
    expect((await qcvm([...args, "--quiet"])).code).toBe(0);
    try {
      const r = await qcvm([...args, "--format", "json"]);
      expect(r.code, r.stderr).toBe(1);
      const ev = events(r.stdout);
      expect(ev.length).toBe(r.stdout.trimEnd().split("\n").length); // every line is an event
      expect(ev[0]).toMatchObject({ event: "step", name: "plan" });
      expect(ev.at(-1)).toMatchObject({ event: "error", error: { kind: "failed" }, diagnostics: [] });
      expect(String((ev.at(-1)!.error as { message: string }).message)).toContain("is already running");
    } finally {
      expect((await qcvm(["stop", name, "--force", "--run-dir", runDir])).code).toBe(0);
    }
  });
});

describe("logs --format json", () => {
  const base = makeRunDir("cli-json-logs");
  afterAll(() => sweepRunDir(base));

  it("no log for that name: kind not-found, exit 1 (with --list too)", async () => {
    expectError(await qcvm(["logs", "never-ran", "--format", "json", "--run-dir", base]), "not-found", 1);
    expectError(await qcvm(["logs", "never-ran", "--list", "--format", "json", "--run-dir", base]), "not-found", 1);
  });

  it("the log as {name, file, live, text}, and --list as the files, oldest first, the live one last", async () => {
    const name = "vm-json";
    mkdirSync(join(base, name), { recursive: true, mode: 0o700 });
    writeFileSync(join(base, name, "qemu.log"), "first run\n", { mode: 0o600 });
    const kept = keepLog(base, name)!;
    expect(kept).toBeDefined();
    mkdirSync(join(base, name), { recursive: true, mode: 0o700 });
    writeFileSync(join(base, name, "qemu.log"), "second run, live", { mode: 0o600 });
    const live = join(base, name, "qemu.log");
    const r = await qcvm(["logs", name, "--format", "json", "--run-dir", base]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual({ name, runDir: base, file: live, live: true, text: "second run, live" });
    const list = await qcvm(["logs", name, "--list", "--format", "json", "--run-dir", base]);
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual({
      name,
      runDir: base,
      logs: [
        { file: kept, live: false },
        { file: live, live: true },
      ],
    });
    // Text mode as it was: the same files, the live one marked.
    expect((await qcvm(["logs", name, "--list", "--run-dir", base])).stdout).toBe(`${kept}\n${live} (live)\n`);
  });
});

describe("console --format json", () => {
  it("no such VM: kind not-found, exit 1 (a success is the terminal attached: no JSON, by design)", async () => {
    expectError(await qcvm(["console", "no-such-vm", "--format", "json", "--run-dir", runDir]), "not-found", 1);
  });
});

describe("export --format json", () => {
  it("an invalid profile: kind invalid, exit 1, its diagnostics", async () => {
    const doc = expectError(await qcvm(["export", INVALID, "--to", "libvirt", "--format", "json"]), "invalid", 1);
    expect(doc.diagnostics[0]).toMatchObject({ severity: "error", file: expect.stringMatching(/invalid-enum\.yaml$/) });
  });

  it("libvirt: the XML text mode prints, as `text`, with the losses", async () => {
    const args = ["export", KVM_2NODE, "--to", "libvirt", "--host", "epyc-2s4n"];
    const text = await qcvm(args);
    const r = await qcvm([...args, "--format", "json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ to: "libvirt", name: "kvm-2node", text: text.stdout, warnings: [], diagnostics: [] });
    expect(doc.text).toMatch(/^<domain type="kvm">/);
    expect(doc.minVersion.version).toMatch(/^\d+\.\d+\.\d+$/);
    // Every loss text mode lists on stderr is in the document.
    for (const loss of doc.losses as string[]) expect(text.stderr).toContain(`qcvm:   - ${loss}\n`);
  });

  it("systemd: the unit as `text`, its file name and where to install it", async () => {
    const args = ["export", KVM_2NODE, "--to", "systemd", "--qcvm", process.execPath, "--run-dir", runDir];
    const text = await qcvm(args);
    const r = await qcvm([...args, "--format", "json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      to: "systemd",
      name: "kvm-2node",
      file: "qcvm-kvm-2node.service",
      install: "/etc/systemd/system/qcvm-kvm-2node.service",
      text: text.stdout,
      losses: [],
    });
  });

  it("a --qcvm that is not executable: kind usage, exit 2", async () => {
    const r = await qcvm(["export", KVM_2NODE, "--to", "systemd", "--qcvm", join(work, "none"), "--format", "json"]);
    expectError(r, "usage", 2);
  });
});

describe("import --format json", () => {
  it("not a domain: kind failed, exit 1", async () => {
    const file = join(work, "not-domain.xml");
    writeFileSync(file, "<network/>\n");
    expectError(await qcvm(["import", file, "--format", "json"]), "failed", 1);
  });

  it("a domain: the profile YAML text mode prints, as `text`, and what was not imported", async () => {
    const xml = join(work, "kvm-2node.xml");
    writeFileSync(xml, (await qcvm(["export", KVM_2NODE, "--to", "libvirt", "--host", "epyc-2s4n"])).stdout);
    const text = await qcvm(["import", xml]);
    const r = await qcvm(["import", xml, "--format", "json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ domain: xml, text: text.stdout, valid: true, notImported: [], diagnostics: [] });
    expect(doc.text).toContain("name: kvm-2node\n");
    expect(doc).not.toHaveProperty("error");
  });
});

describe("init --format json", () => {
  it("the file written and what from; then again: it exists, kind usage, exit 2, untouched", async () => {
    const file = join(work, "web1.yaml");
    const r = await qcvm(["init", file, "--from", "kvm-1node", "--format", "json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual({
      file,
      name: "web1",
      from: join(REPO, "profiles", "kvm-1node.yaml"),
      valid: true,
      diagnostics: [],
    });
    const written = readFileSync(file, "utf8");
    expect(written).toContain("name: web1");
    expectError(await qcvm(["init", file, "--format", "json"]), "usage", 2);
    expect(readFileSync(file, "utf8")).toBe(written);
  });

  it("from an invalid profile: written, valid false, the error member and diagnostics, exit 1", async () => {
    const file = join(work, "bad1.yaml");
    const r = await qcvm(["init", file, "--from", INVALID, "--format", "json"]);
    expect(r.code, r.stderr).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ file, name: "bad1", from: INVALID, valid: false, error: { kind: "invalid" } });
    expect(doc.diagnostics[0]).toMatchObject({ severity: "error", file });
    expect(existsSync(file)).toBe(true);
  });
});
