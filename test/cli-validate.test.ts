// `qcvm validate` and `qcvm schema` as a user runs them: the built bin, exit codes 0/1/2, text and
// JSON output, directories and globs, and never a stack trace. (dist/ comes from the global setup;
// run `node scripts/build.mjs` after changing src/.)
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readProfile } from "../src/pipeline/read-profile.js";
import { formatDiagnostic } from "../src/core/diagnostics.js";

const FIX = "test/fixtures/profiles";

function qcvm(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ["bin/qcvm.js", ...args], { encoding: "utf8" });
  expect(r.stderr, "no stack traces").not.toMatch(/\n\s+at /);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const tmp = mkdtempSync(join(tmpdir(), "qcvm-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("qcvm validate: exit codes", () => {
  it("0 when every profile is valid, with a summary", () => {
    const r = qcvm("validate", `${FIX}/valid-minimal.yaml`, `${FIX}/valid-2node.yaml`);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("2 profiles: 2 valid, 0 invalid (0 errors, 0 warnings)\n");
  });

  it("1 when one is invalid, printing every diagnostic first", () => {
    const r = qcvm(
      "validate",
      `${FIX}/valid-minimal.yaml`,
      `${FIX}/invalid-numa-cpus-overlap.yaml`,
      `${FIX}/invalid-unknown-field.yaml`,
    );
    expect(r.status).toBe(1);
    expect(r.stdout).toBe(
      [
        `${FIX}/invalid-numa-cpus-overlap.yaml:12:13: numa.nodes[1].cpus: vCPU 2 is already in numa.nodes[0], got "2-3" (each vCPU belongs to exactly one node)`,
        `${FIX}/invalid-unknown-field.yaml:5:3: memory.sizee: unknown field \`sizee\` (did you mean \`size\`?)`,
        "3 profiles: 1 valid, 2 invalid (2 errors, 0 warnings)",
        "",
      ].join("\n"),
    );
  });

  it("warnings pass, unless --strict", () => {
    const plain = qcvm("validate", `${FIX}/warning-host-tcg.yaml`);
    expect(plain.status).toBe(0);
    expect(plain.stdout).toMatch(/warning: cpu\.model: host is a KVM-only CPU model/);
    expect(plain.stdout).toMatch(/1 profile: 1 valid, 0 invalid \(0 errors, 1 warning\)\n$/);
    const strict = qcvm("validate", "--strict", `${FIX}/warning-host-tcg.yaml`);
    expect(strict.status).toBe(1);
    expect(strict.stdout).toMatch(/1 profile: 0 valid, 1 invalid \(0 errors, 1 warning\)\n$/);
  });

  it("1 for a file that does not exist (a diagnostic, not a crash)", () => {
    const r = qcvm("validate", `${FIX}/nope.yaml`);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(
      new RegExp(
        `^${FIX}/nope.yaml: cannot read file: no such file \\(check the path: it is relative to the current directory\\)\n`,
      ),
    );
  });

  it("2 when a glob or directory matches nothing", () => {
    const empty = join(tmp, "empty");
    mkdirSync(empty);
    const r = qcvm("validate", `${FIX}/nothing-*.yaml`, empty);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`qcvm: no profiles (*.yaml, *.yml) matched "${FIX}/nothing-*.yaml", "${empty}"\n`);
  });

  it("2 for an unknown option or no files", () => {
    const bad = qcvm("validate", `${FIX}/valid-minimal.yaml`, "--bogus");
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/Unknown argument: bogus/);
    const none = qcvm("validate");
    expect(none.status).toBe(2);
    const fmt = qcvm("validate", "--format", "xml", `${FIX}/valid-minimal.yaml`);
    expect(fmt.status).toBe(2);
  });

  it("bad --set is exit 1 with the --set diagnostic", () => {
    const r = qcvm("validate", `${FIX}/valid-minimal.yaml`, "--set", "memory.sise=2G");
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^--set: memory\.sise: unknown field `sise` \(did you mean `size`\?\)\n/);
    const ok = qcvm("validate", `${FIX}/valid-minimal.yaml`, "--set", "memory.size=2G", "--set", "cpu.count=4");
    expect(ok.status).toBe(0);
  });
});

describe("qcvm validate: inputs", () => {
  it("searches directories recursively, skipping node_modules and dot directories", () => {
    const root = join(tmp, "repo");
    for (const d of ["a/b", "node_modules/x", ".git", "c"]) mkdirSync(join(root, d), { recursive: true });
    for (const f of ["a/one.yaml", "a/b/two.yml", "node_modules/x/bad.yaml", ".git/bad.yaml", "c/notes.txt"]) {
      copyFileSync(`${FIX}/valid-minimal.yaml`, join(root, f));
    }
    writeFileSync(join(root, "node_modules/x/bad.yaml"), "nope: 1\n");
    writeFileSync(join(root, ".git/bad.yaml"), "nope: 1\n");
    const r = qcvm("validate", root, "--format", "json");
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { files: { file: string }[] };
    expect(out.files.map((f) => f.file).sort()).toEqual([join(root, "a/b/two.yml"), join(root, "a/one.yaml")]);
  });

  it("expands globs, including **", () => {
    const r = qcvm("validate", `${FIX}/valid-{minimal,2node}.yaml`, "--format", "json");
    expect((JSON.parse(r.stdout) as { files: { file: string }[] }).files.map((f) => f.file)).toEqual(
      [`${FIX}/valid-2node.yaml`, `${FIX}/valid-minimal.yaml`].map((f) => join(process.cwd(), f)),
    );
    const deep = qcvm("validate", "test/fixtures/**/loop-?.yaml", "--format", "json");
    const files = (JSON.parse(deep.stdout) as { files: { file: string }[] }).files.map((f) => f.file);
    expect(files).toEqual([
      join(process.cwd(), `${FIX}/extends/loop-a.yaml`),
      join(process.cwd(), `${FIX}/extends/loop-b.yaml`),
    ]);
    expect(deep.status).toBe(1);
  });
});

describe("qcvm validate: output formats", () => {
  it("json: files with valid/errors/warnings, and a summary", () => {
    const r = qcvm(
      "validate",
      "--format",
      "json",
      `${FIX}/valid-minimal.yaml`,
      `${FIX}/invalid-tdx-smm.yaml`,
      `${FIX}/warning-prealloc-snp.yaml`,
    );
    expect(r.status).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out.summary).toEqual({ profiles: 3, valid: 2, invalid: 1, errors: 1, warnings: 1 });
    expect(out.files.map((f: { file: string; valid: boolean }) => [f.file, f.valid])).toEqual([
      [`${FIX}/valid-minimal.yaml`, true],
      [`${FIX}/invalid-tdx-smm.yaml`, false],
      [`${FIX}/warning-prealloc-snp.yaml`, true],
    ]);
    expect(out.files[1].errors).toEqual([
      {
        severity: "error",
        code: "tdx.smm",
        path: "machine.smm",
        message: "TDX guests cannot have SMM",
        file: `${FIX}/invalid-tdx-smm.yaml`,
        line: 7,
        col: 8,
        got: "on",
        hint: "use off, or leave it out",
      },
    ]);
    expect(out.files[2].warnings.map((w: { code: string }) => w.code)).toEqual(["memory.prealloc-guest-memfd"]);
  });

  it("--fill prints the normalized profile (YAML in text, `profile` in JSON)", () => {
    const text = qcvm("validate", "--fill", `${FIX}/valid-tdx.yaml`);
    expect(text.status).toBe(0);
    // 64 bits do not fit a YAML number read back exactly: the schema's hex string form.
    expect(text.stdout).toMatch(/\n {2}attributes: "0x8000000010000000"\n/);
    expect(text.stdout).toMatch(/\n {2}kernelIrqchip: split\n/);
    // stdout is the profile alone; the summary is on stderr.
    expect(text.stdout).not.toContain("1 profile:");
    expect(text.stderr).toContain("1 profile: 1 valid");
    const json = qcvm("validate", "--fill", "--format", "json", `${FIX}/valid-2node.yaml`);
    const p = JSON.parse(json.stdout).files[0].profile;
    expect(p.memory.sizeBytes).toBe(2 * 2 ** 30);
    expect(p.numa.nodes[1]).toEqual({ id: 1, cpus: [2, 3], memoryBytes: 2 ** 30, hostNodes: [1], policy: "preferred" });
  });
});

describe("qcvm validate --fill round trip", () => {
  const shipped = [
    ...readdirSync("profiles").map((f) => `profiles/${f}`),
    ...readdirSync("examples").map((f) => `examples/${f}`),
  ].filter((f) => f.endsWith(".yaml"));

  it.each(shipped)("%s: the filled profile validates as written, with no warnings, to the same profile", (file) => {
    const filled = qcvm("validate", "--fill", "--strict", file);
    expect(filled.status).toBe(0);
    const back = spawnSync(process.execPath, ["bin/qcvm.js", "validate", "--strict", "--fill", "-"], {
      input: filled.stdout,
      encoding: "utf8",
    });
    expect(back.stderr).toContain("1 profile: 1 valid, 0 invalid (0 errors, 0 warnings)");
    expect(back.status).toBe(0);
    // Filling a filled profile changes nothing but the file named in its first line.
    expect(back.stdout.split("\n").slice(1)).toEqual(filled.stdout.split("\n").slice(1));
  });

  it("several profiles are one YAML stream, a document each", () => {
    const r = qcvm("validate", "--fill", "profiles/kvm-1node.yaml", "profiles/sev-es.yaml");
    expect(r.stdout.split(/^---$/m)).toHaveLength(2);
    expect(r.stdout).toMatch(/^# profiles\/kvm-1node.yaml: every default filled in/);
  });
});

describe("qcvm schema", () => {
  it("prints the profile schema", () => {
    const r = qcvm("schema");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(JSON.parse(readFileSync("schemas/profile.schema.json", "utf8")));
  });

  it("--plan prints the plan schema", () => {
    const r = qcvm("schema", "--plan");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(JSON.parse(readFileSync("schemas/plan.schema.json", "utf8")));
  });

  it("prints the shipped files byte for byte (no drift: an editor given either sees the same schema)", () => {
    for (const [args, file] of [
      [["schema"], "schemas/profile.schema.json"],
      [["schema", "--plan"], "schemas/plan.schema.json"],
    ] as const) {
      const r = qcvm(...args);
      expect(r.status).toBe(0);
      expect(r.stdout, `qcvm ${args.join(" ")} differs from ${file}`).toBe(readFileSync(file, "utf8"));
    }
    // The integer a JSON re-print would round (to 18446744073709552000) is printed as written.
    expect(qcvm("schema").stdout).toContain("18446744073709551615");
  });

  it("has one $id per schema, under the one base both schemas share", () => {
    for (const file of ["schemas/profile.schema.json", "schemas/plan.schema.json"]) {
      const text = readFileSync(file, "utf8");
      expect(text.match(/"\$id"/g), file).toHaveLength(1);
      expect((JSON.parse(text) as { $id: string }).$id).toBe(`https://qcvm.dev/${file}`);
    }
  });
});

describe("published profiles", () => {
  const published = ["profiles", "examples"].flatMap((d) =>
    readdirSync(d)
      .filter((f) => /\.ya?ml$/.test(f))
      .map((f) => join(d, f))
      // examples/ may hold other YAML (a CI job); a profile says what it is.
      .filter((f) => /^apiVersion:/m.test(readFileSync(f, "utf8"))),
  );

  it("exist", () => {
    expect(published.length).toBeGreaterThan(0);
  });

  it.each(published)("%s validates", async (file) => {
    const r = await readProfile(file);
    expect(r.errors.map(formatDiagnostic)).toEqual([]);
  });

  it("all validate through the CLI too", () => {
    expect(() =>
      execFileSync(process.execPath, ["bin/qcvm.js", "validate", ...published], { encoding: "utf8" }),
    ).not.toThrow();
  });
});
