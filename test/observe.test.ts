// Parsers and the per-node summary, on samples captured from a real QEMU and real cgroups on this
// machine (v1) and samples written from the kernel's documented formats (v2, multi-node); see
// test/fixtures/observe/README.md.
import { describe, expect, it } from "vitest";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createVmCgroup, openCgroupLayout } from "../src/vm/cgroup.js";
import { run } from "../src/io/exec.js";
import { spawn } from "./helpers/exec.js";
import { probeHost } from "../src/probe/host.js";
import { pidStartTime } from "../src/vm/process.js";
import { writeState } from "../src/vm/state.js";
import {
  findBackendMappings,
  formatBytes,
  parseMaps,
  parseNumaMaps,
  parseNumaStat,
  parseProcStatus,
  privateBytesPerNode,
  readVmMemory,
  summarizeVmMemory,
} from "../src/observe/observe.js";
import type { Plan, PlanNode } from "../src/core/types.js";

const dir = fileURLToPath(new URL("./fixtures/observe/", import.meta.url));
const read = (p: string) => readFileSync(dir + p, "utf8");
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function node(guestNode: number, sizeBytes: number, hostNodes: number[], extra: Partial<PlanNode> = {}): PlanNode {
  return {
    guestNode,
    hostNodes,
    policy: "bind",
    sizeBytes,
    cpus: [guestNode],
    shared: { mechanism: "backend-policy", reason: "", hostNodes },
    private: { mechanism: "vcpu-cpuset", fidelity: "first-touch", reason: "", hostNodes },
    ...extra,
  };
}

function plan(nodes: PlanNode[], guestMemfd: boolean): Plan {
  return {
    name: "vm",
    confidential: guestMemfd ? "sev-snp" : "none",
    guestMemfd,
    nodes: guestMemfd ? nodes : nodes.map((n) => ({ ...n, private: { ...n.private, mechanism: "not-applicable" } })),
    launch: { cgroups: [], pinning: [] },
    capacity: [],
    warnings: [],
    errors: [],
  };
}

describe("parseNumaMaps", () => {
  it("reads QEMU's backends from a real capture: memfd bound to node 0 and an anonymous ram backend", () => {
    const entries = parseNumaMaps(read("v1/qemu-memfd-ram-bind/numa_maps"));
    expect(entries.length).toBeGreaterThan(300);
    const memfd = entries.find((e) => e.file?.startsWith("/memfd:memory-backend-memfd"));
    expect(memfd).toMatchObject({
      policy: { mode: "bind", flags: [], nodes: [0] },
      file: "/memfd:memory-backend-memfd (deleted)",
      dirty: 65536,
      pages: { 0: 65536 },
      kernelPageSizeKb: 4,
      huge: false,
    });
    const bound = entries.filter((e) => e.policy.mode === "bind");
    expect(bound).toHaveLength(2);
    expect(bound.find((e) => !e.file)).toMatchObject({ anon: 1024, pages: { 0: 1024 } });
    expect(entries.find((e) => e.heap)).toBeDefined();
  });

  it("reads every policy name, flags, hugetlb and escaped paths", () => {
    const e = parseNumaMaps(read("synthetic/policies/numa_maps"));
    expect(e.map((x) => [x.policy.mode, x.policy.flags.join(","), x.policy.nodes])).toEqual([
      ["bind", "static", [0, 1]],
      ["interleave", "", [0, 1, 2, 3]],
      ["prefer", "", [1]],
      ["prefer (many)", "", [0, 2]],
      ["weighted interleave", "", [0, 1]],
      ["local", "", []],
      ["default", "", []],
    ]);
    expect(e[0]).toMatchObject({ huge: true, kernelPageSizeKb: 2048, pages: { 0: 256, 1: 256 } });
    expect(e[4]!.file).toBe("/mnt/guest ram/vm.img");
    expect(e[6]!.pages).toEqual({});
  });
});

describe("parseMaps and backend identification", () => {
  it("sizes mappings and finds both backends of the real capture by name and by plan size", () => {
    const maps = parseMaps(read("v1/qemu-memfd-ram-bind/maps"));
    const entries = parseNumaMaps(read("v1/qemu-memfd-ram-bind/numa_maps"));
    const p = plan([node(0, 256 * MiB, [0]), node(1, 128 * MiB, [0])], false);
    const backends = findBackendMappings(entries, maps, p);
    expect(backends.map((b) => [b.kind, b.sizeBytes, b.guestNode, b.bytes[0]])).toEqual([
      ["ram", 128 * MiB, 1, 1024 * 4096],
      ["memfd", 256 * MiB, 0, 256 * MiB],
    ]);
  });

  it("without a plan still finds the memfd backend and the policy-bound anonymous one", () => {
    const backends = findBackendMappings(
      parseNumaMaps(read("v1/qemu-memfd-ram-bind/numa_maps")),
      parseMaps(read("v1/qemu-memfd-ram-bind/maps")),
    );
    expect(backends.map((b) => b.kind).sort()).toEqual(["memfd", "ram"]);
    expect(backends.every((b) => b.guestNode === undefined)).toBe(true);
  });

  it("matches same-size backends to guest nodes by their policy nodes", () => {
    const p = plan([node(0, GiB, [0]), node(1, GiB, [1])], true);
    const backends = findBackendMappings(
      parseNumaMaps(read("synthetic/snp-2node/numa_maps")),
      parseMaps(read("synthetic/snp-2node/maps")),
      p,
    );
    expect(backends.map((b) => [b.guestNode, b.policy.nodes, b.bytes])).toEqual([
      [0, [0], { 0: 64 * MiB }],
      [1, [1], { 1: 32 * MiB }],
    ]);
  });
});

describe("parseNumaStat", () => {
  it("reads v1 (pages) from a real cgroup holding a filled 256 MiB guest_memfd", () => {
    const s = parseNumaStat(read("v1/gmem-256m/memory.numa_stat"));
    expect(s.format).toBe("v1");
    expect(s.bytes.unevictable).toEqual({ 0: 256 * MiB });
    expect(s.bytes.file).toEqual({ 0: 0 });
    expect(privateBytesPerNode(s)).toEqual({ 0: 256 * MiB });
    expect(read("v1/gmem-256m/memory.stat")).toMatch(/^unevictable 268435456$/m);
    expect(parseProcStatus(read("v1/gmem-256m/status")).vmRssBytes!).toBeLessThan(16 * MiB);
  });

  it("scales v1 pages by the given page size", () => {
    expect(parseNumaStat("unevictable=2 N0=1 N1=1\n", 16384).bytes.unevictable).toEqual({ 0: 16384, 1: 16384 });
  });

  it("reads v2 (bytes) in the cgroup-v2.rst format", () => {
    const s = parseNumaStat(read("v2/snp-2node/memory.numa_stat"));
    expect(s.format).toBe("v2");
    expect(s.bytes.unevictable).toEqual({ 0: GiB, 1: GiB });
    expect(s.bytes.anon).toEqual({ 0: 12 * MiB, 1: 4 * MiB });
    expect(privateBytesPerNode(s)).toEqual({ 0: GiB, 1: GiB });
  });

  it("prefers v1's hierarchical row, which counts child cgroups too", () => {
    const s = parseNumaStat("unevictable=1 N0=1\nhierarchical_unevictable=3 N0=3\n");
    expect(privateBytesPerNode(s)).toEqual({ 0: 3 * 4096 });
  });
});

describe("parseProcStatus", () => {
  it("reads RSS and locked memory from a real QEMU", () => {
    const st = parseProcStatus(read("v1/qemu-memfd-ram-bind/status"));
    expect(st.vmLckBytes).toBe(0);
    expect(st.rssShmemBytes).toBe(256 * MiB);
    expect(st.vmRssBytes!).toBeGreaterThan(256 * MiB);
  });
});

describe("summarizeVmMemory", () => {
  const snp = plan([node(0, GiB, [0]), node(1, GiB, [1])], true);
  const sample = (stat: string) => ({
    pid: 1,
    numaMaps: read("synthetic/snp-2node/numa_maps"),
    maps: read("synthetic/snp-2node/maps"),
    numaStat: read(stat),
    status: read("synthetic/snp-2node/status"),
    plan: snp,
  });

  it("splits a two-node SNP guest into private and shared per host node, matching the plan", () => {
    const m = summarizeVmMemory(sample("v2/snp-2node/memory.numa_stat"));
    expect(m.perNode).toEqual([
      {
        hostNode: 0,
        privateBytes: GiB,
        sharedBytes: 64 * MiB,
        totalBytes: GiB + 64 * MiB,
        planned: { private: GiB, shared: GiB },
        drift: false,
      },
      {
        hostNode: 1,
        privateBytes: GiB,
        sharedBytes: 32 * MiB,
        totalBytes: GiB + 32 * MiB,
        planned: { private: GiB, shared: GiB },
        drift: false,
      },
    ]);
    expect(m.totals).toEqual({ privateBytes: 2 * GiB, sharedBytes: 96 * MiB, totalBytes: 2 * GiB + 96 * MiB });
    expect(m.vmRssBytes).toBe(128 * MiB);
    expect(m.drift).toEqual([]);
  });

  it("flags private memory that landed on a node the plan did not put it on", () => {
    const m = summarizeVmMemory(sample("v2/snp-2node-drift/memory.numa_stat"));
    expect(m.drift).toEqual([
      {
        hostNode: 0,
        half: "private",
        actualBytes: 1.5 * GiB,
        allowedBytes: GiB,
        excessBytes: 512 * MiB,
        message: "host node 0 holds 512.0 MiB of private memory the plan did not put there (planned on host nodes 0-1)",
      },
    ]);
    expect(m.perNode.map((n) => n.drift)).toEqual([true, false]);
  });

  it("tolerates small excess below the tolerance", () => {
    const m = summarizeVmMemory({ ...sample("v2/snp-2node-drift/memory.numa_stat"), tolerance: 0.3 });
    expect(m.drift).toEqual([]);
  });

  it("lets guest nodes with no planned host nodes land anywhere", () => {
    const anywhere = plan([node(0, GiB, [0]), node(1, GiB, [], { policy: "default" })], true);
    const m = summarizeVmMemory({ ...sample("v2/snp-2node-drift/memory.numa_stat"), plan: anywhere });
    expect(m.drift).toEqual([]);
    expect(m.notes.join("\n")).toContain("policy default");
  });

  it("reads the real v1 capture of a non-confidential VM: shared only, no private memory", () => {
    const p = plan([node(0, 256 * MiB, [0]), node(1, 128 * MiB, [0])], false);
    const m = summarizeVmMemory({
      pid: 1,
      numaMaps: read("v1/qemu-memfd-ram-bind/numa_maps"),
      maps: read("v1/qemu-memfd-ram-bind/maps"),
      numaStat: read("v1/qemu-memfd-ram-bind/memory.numa_stat"),
      status: read("v1/qemu-memfd-ram-bind/status"),
      plan: p,
    });
    expect(m.perNode).toEqual([
      {
        hostNode: 0,
        privateBytes: 0,
        sharedBytes: 260 * MiB,
        totalBytes: 260 * MiB,
        planned: { private: 0, shared: 384 * MiB },
        drift: false,
      },
    ]);
    expect(m.drift).toEqual([]);
  });

  it("says so when there is no memory cgroup to read private memory from", () => {
    const m = summarizeVmMemory({ ...sample("v2/snp-2node/memory.numa_stat"), numaStat: undefined });
    expect(m.totals.privateBytes).toBeNull();
    expect(m.perNode[0]!.privateBytes).toBeNull();
    expect(m.notes[0]).toMatch(/no memory cgroup/);
  });

  it("warns that locked memory is counted as private", () => {
    const status = read("synthetic/snp-2node/status").replace(/VmLck:.*/, "VmLck:\t  4096 kB");
    const m = summarizeVmMemory({ ...sample("v2/snp-2node/memory.numa_stat"), status });
    expect(m.notes.join("\n")).toContain("4.0 MiB locked (VmLck)");
  });
});

describe("readVmMemory on this machine", () => {
  it("reads this process's own numa_maps and returns undefined for a pid that is gone", () => {
    const host = { root: "/", nodes: [{ id: 0 }] } as never;
    const m = readVmMemory(process.pid, undefined, host)!;
    expect(m.sources.numaMaps).toBe(`/proc/${process.pid}/numa_maps`);
    expect(m.vmRssBytes!).toBeGreaterThan(0);
    expect(m.totals.privateBytes).toBeNull();
    expect(readVmMemory(2 ** 22 + 1, undefined, host)).toBeUndefined();
  });

  it("formats sizes in binary units", () => {
    expect([formatBytes(0), formatBytes(1536), formatBytes(256 * MiB), formatBytes(1.5 * GiB)]).toEqual([
      "0 B",
      "1.5 KiB",
      "256.0 MiB",
      "1.5 GiB",
    ]);
  });
});

// `qcvm stats` end to end: a real QEMU born inside a VM cgroup made by qcvm's cgroup layer, with a
// memfd backend bound to the first host node and preallocated, described by a state file as
// launch writes it; the built CLI must find it and report the backend's pages on that node.
describe("qcvm stats on a real QEMU", () => {
  const repo = fileURLToPath(new URL("..", import.meta.url));
  const qcvm = (args: string[]) => run([process.execPath, join(repo, "bin/qcvm.js"), "stats", ...args]);

  it("reports the shared backend per node, the RSS contrast and drift-free placement; refuses dead and unknown VMs", async () => {
    const host = probeHost("/");
    const first = host.nodes[0]!.id;
    const name = `stats-${process.pid}-${Date.now()}`;
    const runDir = mkdtempSync(join(tmpdir(), "qcvm-stats-"));
    const size = 64 * MiB;
    const p = plan([node(0, size, [first])], false);
    p.name = name;
    p.launch.cgroups = [{ name: "", cpus: [], mems: [first], tasks: "process" }];
    const { cgroup } = createVmCgroup(openCgroupLayout(host), name, p.launch.cgroups);
    const argv = [
      "qemu-system-x86_64",
      ...[
        "-machine",
        `pc,accel=${existsSync("/dev/kvm") ? "kvm:tcg" : "tcg"}`,
        "-m",
        "64M",
        "-S",
        "-display",
        "none",
        "-nodefaults",
      ],
      ...["-object", `memory-backend-memfd,id=mem0,size=64M,host-nodes=${first},policy=bind,prealloc=on`],
      ...["-numa", "node,nodeid=0,memdev=mem0"],
    ];
    const { value: qemu } = cgroup.spawnInside(() => spawn(argv, { stdio: "ignore" }));
    try {
      const pid = qemu.pid!;
      // prealloc touches every page before QEMU's main loop; wait until all are resident.
      while (!/memory-backend-memfd.* N\d+=16384 /.test(readFileSync(`/proc/${pid}/numa_maps`, "utf8"))) {
        expect(qemu.exitCode).toBeNull();
        await new Promise((r) => setTimeout(r, 50));
      }
      const dir = join(runDir, name);
      mkdirSync(dir, { mode: 0o700 });
      writeState({
        version: 1,
        name,
        pid,
        pidStartTime: pidStartTime(pid)!,
        profile: "/profiles/test.yaml",
        plan: p,
        argv,
        cgroup: { paths: cgroup.dirs.map((d) => d.path) },
        dir,
        qmp: join(dir, "qmp.sock"),
        pidfile: join(dir, "qemu.pid"),
        log: join(dir, "qemu.log"),
        startedAt: new Date().toISOString(),
        accel: "kvm",
        hostRoot: "/",
        phase: "running",
        detached: true,
        launcher: { pid: process.pid, startTime: pidStartTime(process.pid)! },
        lost: [],
      });

      const json = await qcvm([name, "--run-dir", runDir, "--format", "json"]);
      expect(json.stderr).toBe("");
      expect(json.exitCode).toBe(0);
      const s = JSON.parse(json.stdout);
      expect(s.name).toBe(name);
      // Without a memory controller (scripts/test-hosts.sh cgroup2) there is no cgroup to read
      // private memory from: null and "n/a", never a zero that looks measured.
      const memory = cgroup.paths.memory;
      expect(s.cgroup).toBe(memory ?? null);
      const here = s.perNode.find((n: { hostNode: number }) => n.hostNode === first);
      expect(here).toMatchObject({
        privateBytes: memory ? 0 : null,
        sharedBytes: size,
        planned: { private: 0, shared: size },
        drift: false,
      });
      expect(s.backends).toMatchObject([
        { kind: "memfd", sizeBytes: size, guestNode: 0, policy: { mode: "bind", nodes: [first] } },
      ]);
      expect(s.drift).toEqual([]);

      const text = await qcvm([name, "--run-dir", runDir]);
      expect(text.exitCode).toBe(0);
      expect(text.stdout).toMatch(
        new RegExp(`^${first} +${memory ? "0 B" : "n/a"} +64\\.0 MiB +64\\.0 MiB +0 B / 64\\.0 MiB$`, "m"),
      );
      if (!memory)
        expect(text.stdout).toContain(
          "note: no memory cgroup for this VM: private (guest_memfd) memory cannot be attributed per node",
        );
      expect(text.stdout).toContain("private memory is invisible in RSS");

      // --watch: samples until SIGINT, then exit 0.
      const watch = spawn(
        [
          process.execPath,
          join(repo, "bin/qcvm.js"),
          "stats",
          name,
          "--run-dir",
          runDir,
          "--watch",
          "--interval",
          "0.1",
          "--format",
          "json",
        ],
        {
          stdout: "pipe",
          stderr: "pipe",
        },
      );
      const lines = createInterface({ input: watch.stdout! })[Symbol.asyncIterator]();
      for (let i = 0; i < 2; i++) expect(JSON.parse((await lines.next()).value as string).perNode).toBeDefined();
      watch.kill("SIGINT");
      expect((await watch).exitCode).toBe(0);

      qemu.kill("SIGKILL");
      await qemu.catch(() => undefined);
      const dead = await qcvm([name, "--run-dir", runDir]);
      expect(dead.exitCode).toBe(1);
      expect(dead.stderr).toMatch(
        new RegExp(`^qcvm: VM \`${name}\` is not running \\(its QEMU, pid ${pid}, is gone\\)`),
      );
    } finally {
      qemu.kill("SIGKILL");
      await qemu.catch(() => undefined);
      cgroup.remove();
      rmSync(runDir, { recursive: true, force: true });
    }

    const unknown = await qcvm(["no-such-vm", "--run-dir", runDir]);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toMatch(/^qcvm: no VM named `no-such-vm` in /);
    const bad = await qcvm(["x", "--interval", "0", "--run-dir", runDir]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("--interval must be a positive number of seconds");
  });
});
