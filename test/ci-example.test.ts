// examples/ci/validate-profiles.sh: the CI job we tell profile repositories to copy.
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { builtinCapabilities } from "../src/probe/capabilities.js";
import { saveCapabilities } from "../src/probe/qemu.js";

const root = join(import.meta.dirname, "..");

function ci(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync("sh", ["examples/ci/validate-profiles.sh", ...args], {
    cwd: root,
    encoding: "utf8",
    env: { PATH: process.env.PATH, QCVM: `${process.execPath} ${join(root, "bin/qcvm.js")}`, ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("examples/ci/validate-profiles.sh", () => {
  const bad = mkdtempSync(join(tmpdir(), "qcvm-ci-"));
  writeFileSync(join(bad, "typo.yaml"), "apiVersion: qcvm/v1\nname: typo\nmemory: {size: 1G, hugepages: 3M}\n");

  it("passes the published profiles and examples", () => {
    const r = ci(["profiles/", "examples/"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^\d+ profiles: (\d+) valid, 0 invalid \(0 errors, 0 warnings\)\n$/);
    expect(r.code).toBe(0);
  });

  it("fails with one GitHub annotation per problem under GitHub Actions", () => {
    const r = ci([bad, "profiles/kvm-1node.yaml"], { GITHUB_ACTIONS: "true" });
    expect(r.code).toBe(1);
    expect(r.stdout.split("\n")[0]).toBe(
      `::error file=${join(bad, "typo.yaml")},line=3,col=31,title=qcvm schema.enum::memory.hugepages: must be one of none, 2M, 1G, got "3M" (did you mean \`2M\`?)`,
    );
  });

  it("prints file:line:col lines elsewhere", () => {
    const r = ci([bad]);
    expect(r.code).toBe(1);
    expect(r.stdout.split("\n")[0]).toBe(
      `${join(bad, "typo.yaml")}:3:31: error: memory.hugepages: must be one of none, 2M, 1G, got "3M" (did you mean \`2M\`?)`,
    );
  });

  it("fails when a valid profile cannot be rendered for the QEMU in QCVM_CAPABILITIES", () => {
    const caps = join(bad, "caps.json");
    saveCapabilities(builtinCapabilities("9.0"), caps);
    const r = ci(["profiles/snp-1node.yaml"], { QCVM_CAPABILITIES: caps });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "sev-snp-guest (SEV-SNP, guest_memfd private memory) needs QEMU >= 9.1; target QEMU is 9.0 (file)",
    );
  });
});
