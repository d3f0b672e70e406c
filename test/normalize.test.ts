// Normalize: defaults (one table, which the documented template and the schema must agree with),
// sizes, lists, topology, policy flags, paths.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { serialText } from "../src/core/serial.js";
import type { WrittenProfile } from "../src/generated/written-profile.js";
import {
  DEFAULTS,
  DERIVED_DEFAULTS,
  foldAttributes,
  foldPolicy,
  nameFromFile,
  normalizeProfile,
  reconcileTopology,
} from "../src/normalize/normalize.js";
import { formatSize, parseIdList, parseSize } from "../src/core/sizes.js";
import { readProfile } from "../src/pipeline/read-profile.js";
import { guestPolicyOf, snpOf, tdxOf } from "./helpers/profile.js";

type Tree = Record<string, unknown>;

/** Leaf paths -> values; empty maps and lists count as leaves. */
function leaves(tree: unknown, prefix = ""): Record<string, unknown> {
  if (tree === null || typeof tree !== "object" || Array.isArray(tree) || Object.keys(tree).length === 0)
    return { [prefix]: tree };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(tree as Tree)) Object.assign(out, leaves(v, prefix ? `${prefix}.${k}` : k));
  return out;
}

describe("defaults", () => {
  it("examples/reference.yaml shows exactly the built-in defaults (no drift)", () => {
    const reference = parse(readFileSync("examples/reference.yaml", "utf8")) as Tree;
    const { apiVersion: _a, name: _n, ...shown } = reference;
    expect(leaves(shown)).toEqual(leaves(DEFAULTS));
  });

  it("the schema's default annotations agree with the table", () => {
    const schema = JSON.parse(readFileSync("schemas/profile.schema.json", "utf8")) as Tree;
    const defaults = leaves(DEFAULTS);
    const fromSchema: Record<string, unknown> = {};
    const walk = (s: Tree, path: string) => {
      const props = (s.properties ?? {}) as Record<string, Tree>;
      for (const [k, sub] of Object.entries(props)) {
        const p = path ? `${path}.${k}` : k;
        if ("default" in sub) fromSchema[p] = sub.default;
        walk(sub, p);
      }
    };
    walk(schema, "");
    expect(fromSchema).toEqual(defaults);
  });

  it("fills a minimal profile", async () => {
    const r = await readProfile("test/fixtures/profiles/valid-minimal.yaml");
    // serial is a union since normalize parses it once (core/serial.ts); compared in its written form.
    expect({ ...r.profile, serial: serialText(r.profile!.serial) }).toEqual({
      apiVersion: "qcvm/v1",
      name: "minimal",
      file: resolve("test/fixtures/profiles/valid-minimal.yaml"),
      qemu: { binary: "qemu-system-x86_64", version: "7.2" },
      machine: { type: "q35", accel: "kvm" },
      cpu: { model: "host", count: 2, sockets: 1, dies: 1, cores: 2, threads: 1 },
      memory: {
        sizeBytes: 2 ** 30,
        backend: "memfd",
        share: true,
        hugepages: "none",
        prealloc: false,
        hostNodes: [],
        policy: "default",
      },
      numa: { nodes: [], distances: [] },
      confidential: { type: "none" },
      firmware: {},
      boot: {},
      disks: [],
      network: { type: "none", model: "virtio-net-pci" },
      serial: "none",
      placement: { strict: false, pinVcpus: false, private: "auto" },
      extraArgs: [],
    });
  });

  it.each([
    [{ machine: { accel: "tcg" } }, (p: ReturnType<typeof normalizeProfile>) => p.cpu.model, "max"],
    [
      { machine: { accel: "tcg" }, cpu: { model: "host" } },
      (p: ReturnType<typeof normalizeProfile>) => p.cpu.model,
      "host",
    ],
    [{ memory: { backend: "ram" } }, (p: ReturnType<typeof normalizeProfile>) => p.memory.share, false],
    [
      { memory: { backend: "file", path: "/dev/hugepages" } },
      (p: ReturnType<typeof normalizeProfile>) => p.memory.share,
      false,
    ],
    [{ memory: { backend: "memfd" } }, (p: ReturnType<typeof normalizeProfile>) => p.memory.share, true],
    [{ memory: { hostNodes: "0-1" } }, (p: ReturnType<typeof normalizeProfile>) => p.memory.policy, "bind"],
    [{ confidential: { type: "tdx" } }, (p: ReturnType<typeof normalizeProfile>) => p.machine.kernelIrqchip, "split"],
    [{ confidential: { type: "sev" } }, (p: ReturnType<typeof normalizeProfile>) => guestPolicyOf(p), 0x1],
    [{ confidential: { type: "sev-es" } }, (p: ReturnType<typeof normalizeProfile>) => guestPolicyOf(p), 0x5],
    [{ confidential: { type: "sev-snp" } }, (p: ReturnType<typeof normalizeProfile>) => guestPolicyOf(p), 0x30000],
    [{ confidential: { type: "tdx" } }, (p: ReturnType<typeof normalizeProfile>) => guestPolicyOf(p), undefined],
    [
      { disks: [{ path: "d.img", format: "raw" }] },
      (p: ReturnType<typeof normalizeProfile>) => p.disks[0],
      { path: "/vms/d.img", format: "raw", interface: "virtio-blk", readOnly: false },
    ],
  ])("derived default %#", (raw, pick, expected) => {
    expect(
      pick(normalizeProfile({ apiVersion: "qcvm/v1", name: "t", ...raw } as WrittenProfile, "/vms/t.yaml")),
    ).toEqual(expected);
  });
});

// Issue 10 item 14: hugepage pools and prealloc. libvirt preallocates hugepage-backed memory, so a
// short pool fails at start; qcvm rendered prealloc=off and the guest met the shortfall running.
describe("memory.prealloc default per guest type with hugepages", () => {
  const norm = (raw: Tree) => normalizeProfile({ apiVersion: "qcvm/v1", name: "t", ...raw }, "/vms/t.yaml");
  const snp = { type: "sev-snp", cbitpos: 51, reducedPhysBits: 1 };
  it.each([
    ["plain KVM, no hugepages", {}, false],
    ["plain KVM, 2M hugepages", { memory: { hugepages: "2M" } }, true],
    [
      "SEV-ES, 1G hugepages",
      { memory: { hugepages: "1G" }, confidential: { type: "sev-es", cbitpos: 51, reducedPhysBits: 1 } },
      true,
    ],
    ["SEV-SNP, 1G hugepages (a second, shared copy)", { memory: { hugepages: "1G" }, confidential: snp }, false],
    ["TDX, 2M hugepages", { memory: { hugepages: "2M" }, confidential: { type: "tdx" } }, false],
    ["plain KVM, 2M hugepages, prealloc written false", { memory: { hugepages: "2M", prealloc: false } }, false],
  ] as const)("%s: prealloc %s", (_name, raw, expected) => {
    expect(norm(raw as unknown as Tree).memory.prealloc).toBe(expected);
  });

  it("renders prealloc=on for a plain hugepage guest", async () => {
    const { renderArgv } = await import("../src/render/render.js");
    const { planPlacement } = await import("../src/plan/plan.js");
    const { builtinCapabilities } = await import("../src/probe/capabilities.js");
    const { fixtureHost } = await import("./helpers/host.js");
    const p = norm({ memory: { size: "2G", hugepages: "2M" } });
    const plan = planPlacement(p, fixtureHost("epyc-2s4n"), builtinCapabilities(p.qemu.version));
    const r = renderArgv(p, plan, builtinCapabilities(p.qemu.version));
    expect(r.value).toContain(
      "memory-backend-memfd,id=mem0,size=2147483648,share=on,hugetlb=on,hugetlbsize=2M,prealloc=on",
    );
  });
});

describe("docs/profile.md", () => {
  const doc = readFileSync("docs/profile.md", "utf8");

  it("lists every derived default exactly as the code has it", () => {
    for (const d of DERIVED_DEFAULTS) expect(doc).toContain(`| \`${d.field}\` | ${d.value} | ${d.when} |`);
  });

  it("lists every schema field", () => {
    const schema = JSON.parse(readFileSync("schemas/profile.schema.json", "utf8")) as Tree;
    const defs = schema.$defs as Record<string, Tree>;
    const fields: string[] = [];
    const walk = (s: Tree, path: string) => {
      for (const [k, sub] of Object.entries((s.properties ?? {}) as Record<string, Tree>)) {
        const p = path ? `${path}.${k}` : k;
        fields.push(p);
        const items = sub.items as Tree | undefined;
        const ref = (items?.$ref as string | undefined)?.split("/").pop();
        if (ref) walk(defs[ref]!, `${p}[]`);
        else if (items) walk(items, `${p}[]`);
        walk(sub, p);
      }
    };
    walk(schema, "");
    expect(fields.length).toBeGreaterThan(80);
    expect(fields.filter((f) => !doc.includes(`| \`${f}\` |`))).toEqual([]);
  });

  it("is where load.ts says the precedence is documented", () => {
    expect(readFileSync("src/load/load.ts", "utf8")).toContain("docs/profile.md#precedence");
    expect(doc).toMatch(/\n## Precedence\n/);
  });
});

describe("sizes and lists", () => {
  it.each([
    ["512M", 512 * 2 ** 20],
    ["64G", 64 * 2 ** 30],
    ["1T", 2 ** 40],
    ["1024", 1024],
    [1024, 1024],
    ["2GiB", 2 * 2 ** 30],
    ["4 KiB", 4096],
    ["100B", 100],
  ])("%j is %d bytes", (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(["8GB", "1.5G", "-1", "G", "", "1e9"])("%j is not a size", (text) => {
    expect(parseSize(text)).toBeUndefined();
  });

  it("formats sizes in the largest exact unit", () => {
    expect([2 ** 30, 1536 * 2 ** 20, 2 ** 40, 1000].map(formatSize)).toEqual(["1G", "1536M", "1T", "1000"]);
  });

  it.each([
    ["0-3,6", [0, 1, 2, 3, 6]],
    [" 1 , 3-4 ", [1, 3, 4]],
    ["", []],
    [2, [2]],
    [
      [0, 1],
      [0, 1],
    ],
  ])("%j expands to %j", (text, list) => {
    expect(parseIdList(text)).toEqual(list);
  });

  it.each(["3-1", "a", "0..3", "1,,2"])("%j is not a list", (text) => {
    expect(parseIdList(text)).toBeUndefined();
  });
});

describe("cpu topology", () => {
  it.each([
    [{ count: 8 }, { count: 8, sockets: 1, dies: 1, cores: 8, threads: 1 }],
    [
      { sockets: 2, cores: 4, threads: 2 },
      { count: 16, sockets: 2, dies: 1, cores: 4, threads: 2 },
    ],
    [
      { count: 8, sockets: 2 },
      { count: 8, sockets: 2, dies: 1, cores: 4, threads: 1 },
    ],
    [{}, { count: 2, sockets: 1, dies: 1, cores: 2, threads: 1 }],
    // Inconsistent: kept as written, for the topology rule to report.
    [
      { count: 6, sockets: 2, cores: 2 },
      { count: 6, sockets: 2, dies: 1, cores: 2, threads: 1 },
    ],
  ])("%j", (cpu, expected) => {
    expect(reconcileTopology(cpu)).toMatchObject(expected);
  });
});

describe("policy flags", () => {
  it.each([
    [["nodbg"], "sev", 0x1],
    [["nodbg", "es"], "sev-es", 0x5],
    [["nodbg", "noks", "es", "nosend", "domain", "sev"], "sev-es", 0x3f],
    [[], "sev-snp", 0x20000],
    [["smt"], "sev-snp", 0x30000],
    [["smt", "debug", "single-socket"], "sev-snp", 0x1b0000],
    [
      ["page-swap-disable", "ciphertext-hiding", "rapl-dis", "mem-aes-256-xts", "cxl-allow", "migrate-ma"],
      "sev-snp",
      0x3e60000,
    ],
    ["0x30000", "sev-snp", 0x30000],
    [0x5, "sev-es", 0x5],
  ] as const)("%j for %s is %i", (flags, type, value) => {
    expect(foldPolicy(flags, type)).toBe(value);
  });

  it("keeps TDX attributes exact beyond 2^53", () => {
    expect(foldAttributes(["sept-ve-disable"])).toBe(0x10000000n);
    expect(foldAttributes(["debug", "pks"])).toBe(0x40000001n);
    expect(foldAttributes(["perfmon", "sept-ve-disable"])).toBe(0x8000000010000000n);
    expect(foldAttributes("0x8000000010000001")).toBe(0x8000000010000001n);
    expect(foldAttributes(2 ** 60)).toBeUndefined(); // not exact as a number: the attributes rule reports it
  });

  it("normalizes the TDX fixture with exact attributes", async () => {
    const r = await readProfile("test/fixtures/profiles/valid-tdx.yaml");
    expect(tdxOf(r.profile).attributes).toBe(0x8000000010000000n);
    expect(r.profile!.machine.kernelIrqchip).toBe("split");
  });
});

describe("paths and names", () => {
  it("resolves relative paths against the profile's directory", () => {
    const p = normalizeProfile(
      {
        apiVersion: "qcvm/v1",
        memory: { backend: "file", path: "huge" },
        firmware: { bios: "fw/OVMF.fd", igvm: "/abs.igvm" },
        boot: { kernel: "vmlinuz", initrd: "../initrd.img" },
        confidential: { type: "sev-snp", idBlock: { file: "id.bin" }, hostData: { base64: "AA AA" } },
        serial: "file:console.log",
        qmp: "qmp.sock",
      },
      "/vms/sub/guest.yaml",
    );
    expect(p.name).toBe("guest");
    expect(p.memory.path).toBe("/vms/sub/huge");
    expect(p.firmware).toEqual({ bios: "/vms/sub/fw/OVMF.fd", igvm: "/abs.igvm" });
    expect(p.boot).toEqual({ kernel: "/vms/sub/vmlinuz", initrd: "/vms/initrd.img" });
    expect(snpOf(p).idBlock).toEqual({ file: "/vms/sub/id.bin" });
    expect(snpOf(p).hostData).toEqual({ base64: "AAAA" });
    expect(serialText(p.serial)).toBe("file:/vms/sub/console.log");
    expect(p.qmp).toBe("/vms/sub/qmp.sock");
  });

  it.each([
    ["/x/snp-2node.yaml", "snp-2node"],
    ["a/b/vm.yml", "vm"],
    ["Bad_Name.yaml", undefined],
  ])("name from %s", (file, name) => {
    expect(nameFromFile(file)).toBe(name);
  });

  it("expands one-way distances symmetrically and keeps two-way ones", () => {
    const p = normalizeProfile(
      {
        apiVersion: "qcvm/v1",
        numa: {
          nodes: [
            { cpus: "0", memory: "1G" },
            { cpus: "1", memory: "1G" },
            { cpus: "", memory: "0" },
          ],
          distances: [
            { from: 0, to: 1, value: 20 },
            { from: 0, to: 2, value: 30 },
            { from: 2, to: 0, value: 31 },
          ],
        },
      },
      "/vms/t.yaml",
    );
    expect(p.numa.distances).toEqual([
      { from: 0, to: 1, value: 20 },
      { from: 0, to: 2, value: 30 },
      { from: 2, to: 0, value: 31 },
      { from: 1, to: 0, value: 20 },
    ]);
  });
});
