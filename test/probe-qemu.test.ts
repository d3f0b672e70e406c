// The QEMU probe against the real QEMU 7.2 on this machine, and capability files.
import { describe, expect, it } from "vitest";
import { chmodSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hasFeature } from "../src/probe/capabilities.js";
import { UserError } from "../src/core/diagnostics.js";
import { run } from "../src/io/exec.js";
import { loadCapabilities, parseQemuVersion, probeQemu, saveCapabilities } from "../src/probe/qemu.js";

const tmp = () => mkdtempSync(join(tmpdir(), "qcvm-caps-"));

describe("probeQemu with the real qemu-system-x86_64", async () => {
  const workDir = tmp();
  const caps = await probeQemu("qemu-system-x86_64", { workDir });
  // Independent of the probe: what the binary itself prints.
  const printed = parseQemuVersion((await run(["qemu-system-x86_64", "--version"])).stdout);

  it("reports the binary's version and path", () => {
    expect(caps.source).toBe("probe");
    expect(caps.version).toBe(printed);
    expect(caps.version).toMatch(/^7\.2\.\d+$/);
    expect(caps.binary).toMatch(/\/qemu-system-x86_64$/);
  });

  it("lists QOM types from qom-list-types", () => {
    expect(caps.types).toContain("memory-backend-memfd");
    expect(caps.types).toContain("thread-context");
    expect(caps.types).toContain("sev-guest");
    // QEMU 7.2 predates SEV-SNP (9.1), TDX (10.1), IGVM (10.1) and memory-backend-shm (9.1).
    for (const t of ["sev-snp-guest", "tdx-guest", "igvm-cfg", "memory-backend-shm"])
      expect(caps.types).not.toContain(t);
    expect(caps.types).toEqual([...caps.types].sort());
  });

  it("lists properties of the probed types that exist", () => {
    expect(caps.properties["memory-backend-memfd"]).toEqual(
      expect.arrayContaining([
        "host-nodes",
        "policy",
        "prealloc",
        "prealloc-context",
        "prealloc-threads",
        "reserve",
        "share",
        "hugetlb",
      ]),
    );
    expect(caps.properties["thread-context"]).toEqual(expect.arrayContaining(["cpu-affinity", "node-affinity"]));
    expect(caps.properties["sev-guest"]).toEqual(
      expect.arrayContaining(["cbitpos", "reduced-phys-bits", "kernel-hashes"]),
    );
    expect(caps.properties["sev-guest"]).not.toContain("legacy-vm-type");
    expect(caps.properties["sev-snp-guest"]).toBeUndefined();
  });

  it("feeds detection: features by what the binary has", () => {
    expect(hasFeature(caps, "prealloc-context")).toBe(true);
    expect(hasFeature(caps, "thread-context")).toBe(true);
    expect(hasFeature(caps, "sev-kernel-hashes")).toBe(true);
    expect(hasFeature(caps, "sev-legacy-vm-type")).toBe(false);
    expect(hasFeature(caps, "sev-snp-guest")).toBe(false);
    expect(hasFeature(caps, "guest-memfd-backend")).toBe(false);
  });

  it("leaves no QEMU process or probe directory behind", () => {
    expect(readdirSync(workDir)).toEqual([]);
    const ours = readdirSync("/proc")
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(workDir);
        } catch {
          return false;
        }
      });
    expect(ours).toEqual([]);
  });

  it("round-trips through a saved file", () => {
    const file = join(tmp(), "caps.json");
    saveCapabilities(caps, file);
    const loaded = loadCapabilities(file);
    expect(loaded).toEqual({ ...caps, source: "file" });
  });
});

describe("probeQemu failures", () => {
  it("a missing binary is a UserError that says how to fix it", async () => {
    const err = await probeQemu("qcvm-no-such-qemu").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toBe(
      "QEMU binary `qcvm-no-such-qemu` not found on PATH (install qemu-system-x86, or name another with qemu.binary or doctor --qemu)",
    );
  });

  it("a binary that is not QEMU is named", async () => {
    const err = await probeQemu("true").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/^`true --version` did not print a QEMU version/);
  });

  it("QEMU dying at start-up shows its stderr", async () => {
    const dir = tmp();
    // The probe runs QEMU as the QEMU user (or nobody), never as root: it must reach the binary.
    chmodSync(dir, 0o755);
    const fake = join(dir, "qemu-broken");
    writeFileSync(
      fake,
      '#!/bin/sh\nif [ "$1" = --version ]; then echo "QEMU emulator version 9.2.0"; exit 0; fi\necho "qemu-broken: cannot set up guest memory" >&2\nexit 1\n',
    );
    chmodSync(fake, 0o755);
    const err = await probeQemu(fake).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toContain("QEMU exited with status 1: qemu-broken: cannot set up guest memory");
  });
});

describe("loadCapabilities", () => {
  const write = (content: string) => {
    const file = join(tmp(), "caps.json");
    writeFileSync(file, content);
    return file;
  };

  it("loads a hand-written file for a QEMU we are not on", () => {
    const file = write(
      JSON.stringify({
        version: "9.1.0",
        types: ["sev-snp-guest", "memory-backend-memfd"],
        properties: { "sev-snp-guest": ["policy"] },
      }),
    );
    const caps = loadCapabilities(file);
    expect(caps).toEqual({
      source: "file",
      version: "9.1.0",
      types: ["sev-snp-guest", "memory-backend-memfd"],
      properties: { "sev-snp-guest": ["policy"] },
    });
    expect(hasFeature(caps, "sev-snp-guest")).toBe(true);
  });

  it.each([
    [
      "missing file",
      null,
      /caps\.json: cannot read capabilities file: no such file or directory \(save a fresh one with: qcvm doctor --save .*caps\.json\)$/,
    ],
    ["invalid JSON", "{ version: 9", /caps\.json: not a capabilities file: invalid JSON: /],
    ["an array", "[]", /caps\.json: \(document\): must be a JSON object, got \[\]/],
    [
      "bad version",
      '{"version": "latest", "types": [], "properties": {}}',
      /caps\.json: version: must be a QEMU version such as "9\.1\.0", got "latest"/,
    ],
    [
      "types not strings",
      '{"version": "9.1", "types": [1], "properties": {}}',
      /caps\.json: types: must be an array of QOM type names, got \[1\]/,
    ],
    [
      "no properties",
      '{"version": "9.1", "types": []}',
      /caps\.json: properties: must be an object of QOM type -> property names, got nothing/,
    ],
    [
      "bad property list",
      '{"version": "9.1", "types": [], "properties": {"sev-guest": "policy"}}',
      /caps\.json: properties\.sev-guest: must be an array of property names, got "policy"/,
    ],
    [
      "wrong format tag",
      '{"format": "other/v9", "version": "9.1", "types": [], "properties": {}}',
      /caps\.json: format: must be "qcvm-capabilities\/v1"/,
    ],
  ])("%s is a UserError naming the file and the problem", (_name, content, message) => {
    const file = content === null ? join(tmp(), "caps.json") : write(content);
    const err = (() => {
      try {
        loadCapabilities(file);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message.startsWith(file)).toBe(true);
  });
});
