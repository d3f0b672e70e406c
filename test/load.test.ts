// Loading: extends (merge order, relative paths, loops, limits, errors located in the base that
// has them), --set overrides, YAML syntax errors, and the precedence documented in docs/profile.md.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { serialText } from "../src/core/serial.js";
import { scanStructure } from "../src/load/data.js";
import {
  formatPath,
  loadProfileFile,
  mergeDeep,
  parsePath,
  MAX_EXTENDS_DEPTH,
  MAX_EXTENDS_FILES,
  MAX_PROFILE_BYTES,
} from "../src/load/load.js";
import { readProfile } from "../src/pipeline/read-profile.js";
import { formatDiagnostic } from "../src/core/diagnostics.js";
import { snpOf } from "./helpers/profile.js";

const EXT = "test/fixtures/profiles/extends";
const tmp = mkdtempSync(join(tmpdir(), "qcvm-load-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function messages(file: string, set?: string[]): Promise<string[]> {
  const r = await readProfile(file, { set });
  return [...r.errors, ...r.warnings].map(formatDiagnostic);
}

describe("extends", () => {
  it("merges bases in order: maps deeply, lists and scalars replaced, the file wins", async () => {
    const r = await readProfile(`${EXT}/child.yaml`);
    expect(r.errors).toEqual([]);
    const p = r.profile!;
    expect(p.name).toBe("child");
    expect(p.qemu.version).toBe("9.1"); // bases/root.yaml, two levels up the chain
    expect(p.cpu).toMatchObject({ model: "EPYC-v4", count: 4 }); // bases/common.yaml
    expect(p.memory.sizeBytes).toBe(4 * 2 ** 30); // child.yaml over bases/common.yaml's 2G
    expect(p.memory.backend).toBe("memfd");
    expect(serialText(p.serial)).toBe("stdio");
    expect(p.confidential).toMatchObject({ type: "sev-snp", cbitpos: 51, reducedPhysBits: 1, policy: 0x30000 }); // snp.yaml
    // The child's one-node list replaced the base's two nodes; it did not merge item by item.
    expect(p.numa.nodes).toEqual([
      { id: 0, cpus: [0, 1, 2, 3], memoryBytes: 4 * 2 ** 30, hostNodes: [0, 1], policy: "interleave" },
    ]);
  });

  it("resolves extends and paths relative to the file that names them", async () => {
    const r = await readProfile(`${EXT}/child.yaml`);
    // boot.kernel: ./vmlinuz is written in bases/common.yaml
    expect(r.profile!.boot.kernel).toBe(resolve(EXT, "bases/vmlinuz"));
    // A bare bios name is left for QEMU to find in its firmware directory.
    expect(r.profile!.firmware.bios).toBe("OVMF.fd");
  });

  it("reports a loop with the cycle, at the extends entry that closes it", async () => {
    expect(await messages(`${EXT}/loop-a.yaml`)).toEqual([
      `${EXT}/loop-b.yaml:4:5: extends[0]: extends loop: ${EXT}/loop-a.yaml -> ${EXT}/loop-b.yaml -> ${EXT}/loop-a.yaml (a profile cannot be its own base)`,
    ]);
  });

  it("locates an error in a base in the base file", async () => {
    expect(await messages(`${EXT}/uses-bad-base.yaml`)).toEqual([
      `${EXT}/bad-base.yaml:6:14: memory.hugepages: must be one of none, 2M, 1G, got "2m" (did you mean \`2M\`?)`,
    ]);
  });

  it("locates a rule error at the value's origin even when another file caused it", async () => {
    expect(await messages(`${EXT}/rule-in-base.yaml`)).toEqual([
      `${EXT}/bases/common.yaml:15:5: numa.nodes: vCPUs 4-5 are in no node; every vCPU must be in exactly one node, got ["0-1","2-3"] (cpu.count is 6)`,
    ]);
  });

  it("reports a missing base at its extends entry, and still checks the rest", async () => {
    expect(await messages(`${EXT}/missing-base.yaml`)).toEqual([
      `${EXT}/missing-base.yaml:4:21: extends[1]: cannot read base profile ${EXT}/no-such-base.yaml: no such file (paths in extends: are relative to the profile that names them)`,
      `${EXT}/snp.yaml:4:9: confidential.type: SEV-SNP (sev-snp-guest) needs qemu.version >= 9.1, got "7.2" (set qemu.version: "9.1" or newer, and use a QEMU that new)`,
    ]);
  });

  it(`stops at ${MAX_EXTENDS_DEPTH} levels`, async () => {
    for (let i = 0; i <= MAX_EXTENDS_DEPTH + 1; i++) {
      writeFileSync(join(tmp, `d${i}.yaml`), `apiVersion: qcvm/v1\nextends: d${i + 1}.yaml\n`);
    }
    writeFileSync(join(tmp, `d${MAX_EXTENDS_DEPTH + 2}.yaml`), "apiVersion: qcvm/v1\n");
    const r = await readProfile(join(tmp, "d0.yaml"));
    expect(r.errors.map((e) => [e.code, e.path, e.line, e.col, e.message])).toEqual([
      ["load.extends-depth", "extends", 2, 10, `extends chain deeper than ${MAX_EXTENDS_DEPTH} files`],
    ]);
    expect(r.errors[0]!.file).toBe(join(tmp, `d${MAX_EXTENDS_DEPTH - 1}.yaml`));
  });

  it("refuses a file over the size limit without reading it whole", async () => {
    const big = join(tmp, "big.yaml");
    writeFileSync(big, `apiVersion: qcvm/v1\n#${"x".repeat(MAX_PROFILE_BYTES)}\n`);
    const r = await readProfile(big);
    expect(r.errors.map((e) => [e.code, e.message])).toEqual([
      ["load.read", `file is ${MAX_PROFILE_BYTES + 22} bytes; profiles are limited to ${MAX_PROFILE_BYTES}`],
    ]);
  });

  it("rejects an extends that is not a file name", async () => {
    const f = join(tmp, "ext-type.yaml");
    writeFileSync(f, "apiVersion: qcvm/v1\nextends: {file: base.yaml}\n");
    const r = await readProfile(f);
    expect(r.errors.map((e) => [e.code, e.line, e.col, e.message])).toEqual([
      ["load.extends-type", 2, 10, "must be a file name or a list of file names"],
    ]);
  });
});

describe("--set", () => {
  const base = "test/fixtures/profiles/valid-2node.yaml";

  it("overrides scalars, list items and whole sections, parsed as YAML", async () => {
    const r = await readProfile(base, {
      set: [
        "memory.size=4G",
        "numa.nodes[0].memory=3G",
        "numa.nodes[1].hostNodes=2-3",
        "cpu.model=EPYC",
        "numa.distances=[]",
      ],
    });
    expect(r.errors).toEqual([]);
    const p = r.profile!;
    expect(p.memory.sizeBytes).toBe(4 * 2 ** 30);
    expect(p.numa.nodes[0]!.memoryBytes).toBe(3 * 2 ** 30);
    expect(p.numa.nodes[1]!.hostNodes).toEqual([2, 3]);
    expect(p.cpu.model).toBe("EPYC");
    expect(p.numa.distances).toEqual([]);
  });

  it("wins over the file and its bases, and the file wins over bases and defaults", async () => {
    const viaBase = await readProfile(`${EXT}/child.yaml`);
    expect(viaBase.profile!.memory.sizeBytes).toBe(4 * 2 ** 30); // file 4G over base 2G over default 1G
    const r = await readProfile(`${EXT}/child.yaml`, { set: ["memory.size=8G", "numa.nodes[0].memory=8G"] });
    expect(r.profile!.memory.sizeBytes).toBe(8 * 2 ** 30);
    const d = await readProfile("test/fixtures/profiles/valid-minimal.yaml");
    expect(d.profile!.memory.sizeBytes).toBe(2 ** 30);
  });

  it("creates missing sections and removes a field with null", async () => {
    const r = await readProfile("test/fixtures/profiles/valid-minimal.yaml", {
      set: [
        "confidential.type=sev-es",
        "confidential.cbitpos=51",
        "confidential.reducedPhysBits=1",
        "placement.strict=true",
      ],
    });
    expect(r.errors).toEqual([]);
    expect(r.profile!.confidential).toMatchObject({ type: "sev-es", policy: 0x5 });
    expect(r.profile!.placement.strict).toBe(true);
    const removed = await readProfile(base, { set: ["numa.distances=null"] });
    expect(removed.profile!.numa.distances).toEqual([]);
  });

  it("resolves a path given with --set against the working directory", async () => {
    const r = await readProfile(base, { set: ["boot.kernel=vmlinuz"], hostCheck: false });
    expect(r.profile!.boot.kernel).toBe(resolve("vmlinuz"));
  });

  it("reports bad paths, values and fields as --set diagnostics, all at once", async () => {
    expect(
      await messages(base, [
        "memory..size=1G",
        "numa.nodes[5].cpus=0",
        "memory.sizee=2G",
        "cpu.count=two",
        "noequals",
        "memory.size=[1G",
      ]),
    ).toEqual([
      `--set: memory..size: is not a field path, got "memory..size=1G" (e.g. --set memory.size=8G or --set numa.nodes[1].hostNodes=2-3)`,
      `--set: numa.nodes[5].cpus: cannot set: numa.nodes[5] does not exist (the list has 2 items), got "numa.nodes[5].cpus=0"`,
      `--set: noequals: --set needs path=value, got "noequals" (e.g. --set memory.size=8G or --set numa.nodes[1].hostNodes=2-3)`,
      `--set: memory.size: value is not YAML: Flow sequence must end with a ], got "[1G" (quote it, or write a flow list/map: [0, 1], {base64: ...})`,
      `--set: cpu.count: must be a whole number, got "two"`,
      `--set: memory.sizee: unknown field \`sizee\` (did you mean \`size\`?)`,
    ]);
  });
});

describe("YAML", () => {
  it("reports syntax errors with their position", async () => {
    expect(await messages("test/fixtures/profiles/invalid-yaml-syntax.yaml")).toEqual([
      "test/fixtures/profiles/invalid-yaml-syntax.yaml:6:1: bad indentation: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ]);
  });

  it("treats duplicate keys as errors", async () => {
    expect(await messages("test/fixtures/profiles/invalid-duplicate-key.yaml")).toEqual([
      "test/fixtures/profiles/invalid-duplicate-key.yaml:6:3: duplicate key `size` (each key may appear once in a mapping)",
    ]);
  });

  it("reads hex numbers as YAML 1.2 does", async () => {
    const f = join(tmp, "hex.yaml");
    writeFileSync(
      f,
      'apiVersion: qcvm/v1\nname: hex\nqemu: {version: "9.1"}\nconfidential: {type: sev-snp, cbitpos: 51, reducedPhysBits: 1, policy: 0x30000}\nfirmware: {bios: OVMF.fd}\n',
    );
    const r = await readProfile(f);
    expect(r.errors).toEqual([]);
    expect(snpOf(r.profile).policy).toBe(0x30000);
  });
});

describe("paths and merging helpers", () => {
  it.each([
    ["memory.size", ["memory", "size"]],
    ["numa.nodes[1].hostNodes", ["numa", "nodes", 1, "hostNodes"]],
    ["memory.weights.0", ["memory", "weights", "0"]],
  ])("%s", (text, segs) => {
    expect(parsePath(text)).toEqual(segs);
    expect(formatPath(segs)).toBe(text.replace(".0", ".0"));
  });

  it.each(["", "memory.", ".memory", "memory..size", "[1]", "a[x]", "a b"])("rejects %j", (text) => {
    expect(parsePath(text)).toBeUndefined();
  });

  it("merges maps deeply and replaces lists", () => {
    expect(mergeDeep({ a: { b: 1, c: [1, 2] }, d: 1 }, { a: { c: [3] }, e: 2 })).toEqual({
      a: { b: 1, c: [3] },
      d: 1,
      e: 2,
    });
  });

  it("locates the key of a missing field's closest ancestor", async () => {
    const l = await loadProfileFile("test/fixtures/profiles/valid-2node.yaml");
    expect(l.locate(["numa", "nodes", 1, "hostNodes"])).toEqual({
      file: "test/fixtures/profiles/valid-2node.yaml",
      line: 15,
      col: 18,
    });
    expect(l.locate(["numa", "nodes", 1, "weights"])).toEqual({
      file: "test/fixtures/profiles/valid-2node.yaml",
      line: 13,
      col: 7,
    });
    expect(l.locate(["cpu", "count"], true)).toEqual({
      file: "test/fixtures/profiles/valid-2node.yaml",
      line: 5,
      col: 3,
    });
  });
});

describe("hostile input (issue 9): prototypes, extends outside the repository, bombs", () => {
  const repo = join(tmp, "repo");
  mkdirSync(join(repo, ".git"), { recursive: true });
  mkdirSync(join(repo, "sub"), { recursive: true });
  const write = (rel: string, text: string) => {
    writeFileSync(join(repo, rel), `apiVersion: qcvm/v1\n${text}`);
    return join(repo, rel);
  };

  it("keeps profile data prototype-less at every depth", async () => {
    const l = await loadProfileFile("test/fixtures/profiles/valid-2node.yaml");
    expect(Object.getPrototypeOf(l.raw)).toBe(null);
    expect(Object.getPrototypeOf(l.raw!.memory)).toBe(null);
    expect(Object.getPrototypeOf((l.raw!.numa as { nodes: object[] }).nodes[0])).toBe(null);
  });

  it("refuses __proto__, constructor and prototype in --set paths and values, and pollutes nothing", async () => {
    expect(
      await messages("test/fixtures/profiles/valid-minimal.yaml", [
        "__proto__.polluted=1",
        "cpu.constructor=1",
        "cpu={__proto__: {polluted: 1}}",
      ]),
    ).toEqual([
      '--set: __proto__.polluted: cannot set: `__proto__` is not allowed as a key (qcvm refuses __proto__, constructor and prototype at any depth), got "__proto__.polluted=1"',
      '--set: cpu.constructor: cannot set: `constructor` is not allowed as a key (qcvm refuses __proto__, constructor and prototype at any depth), got "cpu.constructor=1"',
      '--set: cpu: value: `__proto__` is not allowed as a key (qcvm refuses __proto__, constructor and prototype at any depth), got "cpu={__proto__: {polluted: 1}}"',
    ]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("never blocks on a FIFO named in extends:", async () => {
    execFileSync("mkfifo", [join(repo, "fifo.yaml")]);
    const f = write("uses-fifo.yaml", "extends: fifo.yaml\n");
    const r = await readProfile(f);
    expect(r.errors.map((e) => [e.code, e.message])).toEqual([
      ["load.extends-read", "cannot read base profile " + join(repo, "fifo.yaml") + ": is a FIFO, not a profile file"],
    ]);
  });

  it("refuses a base outside the repository root without reading it, unless --root widens it", async () => {
    writeFileSync(join(tmp, "outside.yaml"), "apiVersion: qcvm/v1\ncpu: {count: 4}\n");
    const f = write("sub/top.yaml", "extends: ../../outside.yaml\n");
    const r = await readProfile(f);
    expect(r.errors.map((e) => [e.code, e.line, e.col])).toEqual([["load.extends-outside", 2, 10]]);
    expect(r.errors[0]!.message).toBe(
      `base profile ${join(tmp, "outside.yaml")} is outside the repository (root: ${repo})`,
    );
    const widened = await readProfile(f, { root: tmp });
    expect(widened.errors).toEqual([]);
    expect(widened.profile!.cpu.count).toBe(4);
  });

  it("takes the git root as the repository root: bases in parent directories of the repository are fine", async () => {
    write("base.yaml", "cpu: {count: 3}\n");
    const r = await readProfile(write("sub/child.yaml", "extends: ../base.yaml\n"));
    expect(r.errors).toEqual([]);
    expect(r.profile!.cpu.count).toBe(3);
  });

  it("refuses a profile that is a link out of its repository, and never quotes the target", async () => {
    symlinkSync("/etc/passwd", join(repo, "passwd.yaml"));
    const r = await readProfile(join(repo, "passwd.yaml"));
    expect(r.errors.map(formatDiagnostic)).toEqual([
      `${join(repo, "passwd.yaml")}: links to /etc/passwd, outside the repository (root: ${repo}) (profiles and their bases stay in the repository; --root DIR widens it)`,
    ]);
  });

  it("reads a base referenced many times once: an 8-file fan-out (31 references each) is 8 reads", async () => {
    for (let i = 0; i < 7; i++)
      write(
        `fan${i}.yaml`,
        `extends: [${Array(31)
          .fill(`fan${i + 1}.yaml`)
          .join(", ")}]\n`,
      );
    write("fan7.yaml", "cpu: {count: 2}\n");
    const l = await loadProfileFile(join(repo, "fan0.yaml"));
    expect(l.errors).toEqual([]);
    expect(l.files).toBe(8);
  });

  it("merges a base reached twice (a diamond) once, at its first place", async () => {
    write("d.yaml", "cpu: {count: 2}\nmemory: {size: 2G}\n");
    write("b.yaml", "extends: d.yaml\ncpu: {count: 4}\n");
    write("c.yaml", "extends: d.yaml\nmemory: {size: 4G}\n");
    const r = await readProfile(write("a.yaml", "extends: [b.yaml, c.yaml]\n"));
    expect(r.errors).toEqual([]);
    expect([r.profile!.cpu.count, r.profile!.memory.sizeBytes]).toEqual([4, 4 * 2 ** 30]);
  });

  it(`bounds the whole extends graph at ${MAX_EXTENDS_FILES} files`, async () => {
    const names = Array.from({ length: MAX_EXTENDS_FILES + 5 }, (_, i) => write(`many${i}.yaml`, "").split("/").pop());
    const l = await loadProfileFile(write("many.yaml", `extends: [${names.join(", ")}]\n`));
    expect(l.errors.map((e) => e.message)).toEqual(
      Array(6).fill(`extends graph has more than ${MAX_EXTENDS_FILES} files`),
    );
    expect(l.files).toBe(MAX_EXTENDS_FILES);
  });
});

describe("the pre-scan (scanStructure)", () => {
  it("follows [ ] and { } nesting whatever the length, ignoring unbalanced closers", () => {
    expect(scanStructure("a: [1, {b: [2]}]\nc: ]]\nd: [[[x]]]", 1000).flowDepth).toBe(3);
  });

  it("counts items only past the limit: a text no longer than it cannot hold more", () => {
    expect(scanStructure("\n".repeat(20_000), 20_000).items).toBe(0);
    expect(scanStructure("\n".repeat(20_001), 20_000).items).toBe(20_001);
    expect(scanStructure("- a\n- b\nc: [1, 2]\n").items).toBe(7); // 2 "- ", 3 newlines, [ and ,
  });
});
