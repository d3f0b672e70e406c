// bin/qcvm starts from a V8 startup snapshot (dist/qcvm.blob) when the blob was built by this node;
// it must behave exactly like the ESM entry (bin/qcvm.js) it stands in for.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function runBoth(args: string[]) {
  const env = { ...process.env, QCVM_SHOW_STARTUP: "1" };
  const snap = spawnSync("bin/qcvm", args, { encoding: "utf8", env });
  const esm = spawnSync(process.execPath, ["bin/qcvm.js", ...args], { encoding: "utf8", env });
  return { snap, esm };
}

describe("startup snapshot", () => {
  it("is built by npm run build with a stamp naming this node", () => {
    expect(existsSync("dist/qcvm.blob")).toBe(true);
    expect(existsSync("dist/qcvm.blob.stamp")).toBe(true);
  });

  it("is what bin/qcvm runs", () => {
    const { snap, esm } = runBoth(["--version"]);
    expect(snap.stderr).toContain("qcvm: started from snapshot");
    expect(esm.stderr).not.toContain("started from snapshot");
    expect(snap.stdout).toBe(esm.stdout);
  });

  it.each([
    ["schema"],
    ["schema", "--plan"],
    ["validate", "profiles", "--format", "json"],
    ["validate", "test/fixtures/profiles/invalid-unknown-field.yaml"],
    ["render", "profiles/snp-2node.yaml", "--host", "examples/hosts/epyc-2s4n"],
    ["render", "profiles/kvm-2node.yaml", "--format", "json", "--host", "examples/hosts/single-node"],
    ["plan", "profiles/snp-2node.yaml", "--host", "examples/hosts/epyc-2s4n", "--format", "json"],
    ["doctor", "--host", "examples/hosts/cxl-memonly", "--capabilities", "test/fixtures/does-not-exist.json"],
    ["bogus-command"],
  ])("qcvm %s ... gives the same output and exit code from the snapshot", (...args) => {
    const { snap, esm } = runBoth(args);
    expect(snap.status).toBe(esm.status);
    expect(snap.stdout).toBe(esm.stdout);
    expect(snap.stderr.replace("qcvm: started from snapshot\n", "")).toBe(esm.stderr);
  });

  it("falls back to the ESM entry when the stamp does not match this node", () => {
    // A copy of the installed layout whose blob claims another node binary built it.
    const dir = mkdtempSync(join(tmpdir(), "qcvm-startup-"));
    try {
      cpSync("bin", join(dir, "bin"), { recursive: true });
      cpSync("dist", join(dir, "dist"), { recursive: true });
      writeFileSync(join(dir, "dist", "qcvm.blob.stamp"), "1 1\n");
      const r = spawnSync(join(dir, "bin", "qcvm"), ["--version"], {
        encoding: "utf8",
        env: { ...process.env, QCVM_SHOW_STARTUP: "1" },
      });
      expect(r.status).toBe(0);
      expect(r.stderr).not.toContain("started from snapshot");
      expect(r.stdout.trim()).toBe(JSON.parse(readFileSync("package.json", "utf8")).version);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
