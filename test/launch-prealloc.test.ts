// The launch's guest-memfd-prealloc step, through the fake Runner (test/helpers/fake-runner.ts):
// an SEV-SNP plan on a copy of the epyc-2s4n host (Linux 6.11, SNP, two nodes), with a real
// process for QEMU. Where that process holds guest_memfds (test/helpers/gmem-vm.c, KVM here),
// launch finds them by pid after placing the vCPU threads and fills them before `cont`; where it
// holds none, every planned node is named as lost with what it falls back to, and
// placement.strict aborts the launch and undoes it. The kernel's accounting of the pages is
// test/prealloc.test.ts's (a real VM cgroup); here the cgroup tree is a copy.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, useRunner } from "../src/io/exec.js";
import { useCgroupFiles } from "../src/vm/cgroup.js";
import { launchVm } from "../src/launch/launch.js";
import { builtinCapabilities } from "../src/probe/capabilities.js";
import { saveCapabilities } from "../src/probe/qemu.js";
import { probeHost } from "../src/probe/host.js";
import { UserError } from "../src/core/diagnostics.js";
import { FakeRunner, REPO, fakeCgroupFiles, makeHostTree } from "./helpers/fake-runner.js";
import type { QemuScript } from "./helpers/fake-runner.js";
import type { LaunchArgs } from "../src/launch/launch.js";

const MiB = 2 ** 20;
const work = mkdtempSync(join(tmpdir(), "qcvm-launch-prealloc-"));
const caps = join(work, "caps-9.1.json");
const runDir = join(work, "run");
const standIn = join(work, "gmem-vm");
let tree: ReturnType<typeof makeHostTree>;
let seq = 0;

const cc = await run(["cc", "-O2", "-Wall", "-o", standIn, join(REPO, "test/helpers/gmem-vm.c")]);
if (cc.exitCode !== 0) throw new Error(`cc gmem-vm.c: ${cc.stderr}`);
// The stand-in needs KVM_CREATE_GUEST_MEMFD (Linux 6.8 with KVM): say so where it is missing.
const probe = await run([standIn, "4"], { input: "", timeoutMs: 10_000 });
const noGmem = probe.stdout.includes("created") ? false : `no guest_memfd here (${probe.stdout.trim()})`;
// A host node the epyc-2s4n tree has (0-3) and this machine's kernel does not: binding a guest
// node there is what the kernel refuses (set_mempolicy EINVAL).
const realNodes = new Set(probeHost("/").nodes.map((n) => n.id));
const absent = [1, 2, 3].find((n) => !realNodes.has(n));

beforeAll(() => {
  saveCapabilities(builtinCapabilities("9.1"), caps);
  tree = makeHostTree("epyc-2s4n");
});
afterAll(() => {
  tree.remove();
  rmSync(work, { recursive: true, force: true });
});

let restore: Array<() => void> = [];
let fake: FakeRunner | undefined;
afterEach(async () => {
  for (const r of restore.reverse()) r();
  restore = [];
  await fake?.close();
  fake = undefined;
  vi.restoreAllMocks();
});

function install(qemu: QemuScript): FakeRunner {
  fake = new FakeRunner({ qemu });
  restore.push(useRunner(fake));
  restore.push(useCgroupFiles(fakeCgroupFiles(() => undefined)));
  return fake;
}

/** The JSON events launch printed, in order. */
/** Everything written to stdout since events() was called. */
let out: string[] = [];

function events(): () => { event: string; name?: string; message?: string; [k: string]: unknown }[] {
  out = [];
  vi.spyOn(process.stdout, "write").mockImplementation((s) => (out.push(String(s)), true));
  vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  return () =>
    out
      .join("")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { event: string });
}

/** snp-2node with two 64 MiB guest nodes (the stand-in's files are that size) of one vCPU each. */
function args(name: string, set: string[] = []): LaunchArgs {
  return {
    profile: join(REPO, "profiles/snp-2node.yaml"),
    host: tree.root,
    capabilities: caps,
    set: [
      `name=${name}`,
      "memory.size=128M",
      "numa.nodes[0].memory=64M",
      "numa.nodes[1].memory=64M",
      // Two vCPUs, one per guest node: the fake QEMU reports threads for two.
      "cpu.count=2",
      "numa.nodes[0].cpus=0",
      "numa.nodes[1].cpus=1",
      "serial=none",
      ...set,
    ],
    detach: true,
    dryRun: false,
    quiet: false,
    format: "json",
    runDir,
  };
}

const name = () => `prealloc-${process.pid}-${++seq}`;

const skipNote = noGmem ? ` (skipped: ${noGmem})` : "";
const gmem = (sizesMiB: number[], memfd = false): QemuScript => ({
  kind: "gmem",
  standIn,
  sizesMiB,
  tree: tree.root,
  memfd,
});
/** Launch's warnings, without the plan's (the SNP measurement one, which every run has). */
const warnings = (ev: ReturnType<ReturnType<typeof events>>) =>
  ev
    .filter((e) => e.event === "warning")
    .map((e) => e.message!)
    .filter((m) => !m.includes("placement.measurement") && !m.includes("launch measurement"));

describe("launch: the guest-memfd-prealloc step", () => {
  it.skipIf(noGmem)(
    `fills each guest node's guest_memfd after vCPU placement and before cont; state.json keeps it${skipNote}`,
    async () => {
      // Both guest nodes on host node 0, the one node this machine's kernel has.
      install(gmem([64, 64, 4]));
      const ev = events();
      const vm = name();
      const set = ["numa.nodes[1].hostNodes=0", "placement.private=prealloc"];
      expect(await launchVm(args(vm, set))).toBe("ok");
      const steps = ev().filter((e) => e.event === "step" || e.event === "running");
      const order = steps.map((e) => e.name ?? e.event);
      expect(order.indexOf("vcpus")).toBeGreaterThan(-1);
      expect(order.indexOf("vcpus")).toBeLessThan(order.indexOf("prealloc"));
      expect(order.indexOf("prealloc")).toBeLessThan(order.indexOf("running"));
      expect(steps.find((e) => e.name === "prealloc")!.message).toMatch(
        /^private memory pre-allocated: guest node 0 64 MiB MPOL_BIND 0, guest node 1 64 MiB MPOL_BIND 0 \(\d+ ms, /,
      );
      expect(warnings(ev())).toEqual([]);
      const state = JSON.parse(readFileSync(join(runDir, vm, "state.json"), "utf8")) as {
        prealloc: { status: string; nodes: { guestNode: number; hostNodes: number[]; doneBytes: number }[] };
      };
      expect(state.prealloc.status).toBe("done");
      expect(state.prealloc.nodes.map((n) => [n.guestNode, n.hostNodes, n.doneBytes])).toEqual([
        [0, [0], 64 * MiB],
        [1, [0], 64 * MiB],
      ]);
      // qcvm stats reads that record back: 128 MiB pre-allocated on host node 0. This tree's VM
      // cgroup is a copy, so what is there now is unknown (n/a); test/prealloc.test.ts measures it
      // in a real VM cgroup (>= 99% on plan).
      const { run: stats } = await import("../src/commands/stats.js");
      const mark = out.length;
      expect(await stats({ name: vm, runDir, format: "text", watch: false, interval: 2 })).toBe("ok");
      const printed = out.slice(mark).join("");
      expect(printed).toContain(
        "pre-allocated at launch on host node 0: 128.0 MiB; private there now: n/a (no memory cgroup)",
      );
    },
  );

  const noAbsent = absent === undefined ? " (skipped: this machine has host nodes 0-3, the tree's every node)" : "";
  it.skipIf(noGmem || absent === undefined)(
    `a node the kernel refuses (bound to host node ${absent ?? "?"}, which this kernel lacks): that node is lost, named with the call and errno; the other is filled${skipNote}${noAbsent}`,
    async () => {
      install(gmem([64, 64, 4]));
      const ev = events();
      expect(await launchVm(args(name(), [`numa.nodes[1].hostNodes=${absent}`]))).toBe("ok");
      expect(ev().find((e) => e.name === "prealloc")!.message).toMatch(
        /^private memory pre-allocated: guest node 0 64 MiB MPOL_BIND 0 \(/,
      );
      const w = warnings(ev());
      expect(w).toHaveLength(1);
      expect(w[0]).toMatch(
        /^guest node 1 private memory: guest-memfd-prealloc not applied \(set_mempolicy failed: EINVAL/,
      );
      expect(w[0]).toContain(
        `its private pages are placed on first touch instead (vcpu-cpuset: cgroup vcpu-node1, mems ${absent})`,
      );
    },
  );

  // memfds need no KVM: these run everywhere.
  it("QEMU holds no guest_memfd: each planned node is lost, named, with its fallback; the guest runs", async () => {
    install(gmem([64, 64], true));
    const ev = events();
    expect(await launchVm(args(name()))).toBe("ok");
    const w = warnings(ev());
    for (const node of [0, 1])
      expect(w).toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^guest node ${node} private memory: guest-memfd-prealloc not applied \\(QEMU holds no guest_memfd .*nothing to pre-allocate\\); its private pages are placed on first touch instead \\(vcpu-cpuset: cgroup vcpu-node${node}, mems ${node}\\)`,
          ),
        ),
      );
    expect(w).toHaveLength(2);
  });

  it("QEMU holds no guest_memfd and placement.strict: the launch aborts before cont and is undone", async () => {
    install(gmem([64, 64], true));
    events();
    const vm = name();
    const e = await launchVm(args(vm, ["placement.strict=true"])).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(UserError);
    const message = (e as UserError).message;
    expect(message).toMatch(/^placement\.strict: 2 placements could not be applied; launch aborted and cleaned up:\n/);
    expect(message).toContain("guest node 0 private memory: guest-memfd-prealloc not applied");
    expect(message).toContain("guest node 1 private memory: guest-memfd-prealloc not applied");
    expect(existsSync(join(runDir, vm))).toBe(false);
  });
});
