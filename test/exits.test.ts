// Errors and exits: the one table of exit codes (src/cli/exit-codes.ts) says what README.md's
// table documents, and with --format json a failing command prints its diagnostics as JSON on
// stdout (plan and render of an invalid profile included), besides the message on stderr.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { EXIT_CODES, exitCodeFor } from "../src/cli/exit-codes.js";
import { asUserError } from "../src/core/diagnostics.js";
import { RunError } from "../src/io/exec.js";
import { QmpError } from "../src/vm/qmp.js";

const REPO = join(import.meta.dirname, "..");
const INVALID = "test/fixtures/profiles/invalid-enum.yaml";

function qcvm(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO, "bin/qcvm.js"), ...args], { cwd: REPO, encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("exit codes", () => {
  it("every code README.md documents has its outcome kind, and no other code exists", () => {
    const readme = readFileSync(join(REPO, "README.md"), "utf8");
    const used = new Set(Object.values(EXIT_CODES));
    expect([...used].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 70, 130, 141]);
    // The table's codes, and the paragraph on usage (2), internal (70) and a closed pipe (141).
    for (const code of [0, 1, 2, 3, 130]) expect(readme).toMatch(new RegExp(`(\\*\\*)?\\b${code}(\\*\\*)? [a-z]`));
    expect(readme).toContain("exits 2 on a usage error");
    expect(readme).toContain("70 on an internal error");
    expect(readme).toContain("with 141");
    expect(exitCodeFor({ kind: "exit-status", code: 137 })).toBe(137);
  });
});

describe("--format json prints a failing command's diagnostics on stdout", () => {
  it.each([["plan"], ["render"]])("%s of an invalid profile: exit 1, the error and its diagnostics", (cmd) => {
    const r = qcvm(cmd, INVALID, "--format", "json");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^qcvm: test\/fixtures\/profiles\/invalid-enum\.yaml is not a valid profile \(1 error\):/);
    const doc = JSON.parse(r.stdout);
    expect(doc.error).toMatchObject({ kind: "invalid" });
    expect(doc.error.message).toBe(r.stderr.slice("qcvm: ".length).trimEnd());
    expect(doc.diagnostics.length).toBeGreaterThan(0);
    expect(doc.diagnostics[0]).toMatchObject({ severity: "error", file: expect.stringContaining("invalid-enum.yaml") });
  });

  it("render errors too (a feature the target QEMU lacks), and text output stays as it was", () => {
    const args = [
      "render",
      "profiles/kvm-1node.yaml",
      "--host",
      "examples/hosts/single-node",
      "--set",
      'qemu.version="4.2"',
    ];
    const json = qcvm(...args, "--format", "json");
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({
      error: { kind: "invalid" },
      diagnostics: [{ severity: "error", path: "memory" }],
    });
    const text = qcvm(...args);
    expect(text.code).toBe(1);
    expect(text.stdout).toBe("");
    expect(text.stderr).toBe(json.stderr);
  });

  it("status of a VM that does not exist: exit 1, kind not-found", () => {
    const r = qcvm("status", "no-such-vm", "--format", "json", "--run-dir", join(REPO, "examples/hosts/single-node"));
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { kind: "not-found" }, diagnostics: [] });
  });
});

describe("what an error is reported as (asUserError, the one mapping)", () => {
  it("a failing tool (QMP, a child process) is a failure, exit 1; an unknown error stays a bug", () => {
    const qmp = asUserError(new QmpError("Timeout", "no reply within 5 ms", "query-status"));
    expect(qmp).toMatchObject({ kind: "failed", message: "query-status: no reply within 5 ms (Timeout)" });
    expect(exitCodeFor(qmp!.kind)).toBe(1);
    const result = { command: ["taskset", "-p", "1"], exitCode: 1, stdout: "", stderr: "taskset: failed\n" };
    expect(asUserError(new RunError(result, "exit code 1"))?.kind).toBe("failed");
    const full = Object.assign(new Error("write"), { code: "ENOSPC", syscall: "write", path: "/run/x" });
    expect(asUserError(full)?.message).toMatch(/^cannot write \/run\/x: .*\(ENOSPC\)/);
    expect(asUserError(new TypeError("x is undefined"))).toBeUndefined();
  });
});
