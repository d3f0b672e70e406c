// guest-memfd-prealloc on the real kernel: a stand-in for a paused confidential QEMU
// (test/helpers/gmem-vm.c: a KVM VM holding one guest_memfd per backend plus a firmware one) is
// found by pid, its files are mapped to the guest nodes, taken with pidfd_getfd and fallocated
// from worker threads inside a VM cgroup made by qcvm's cgroup layer, under each node's policy;
// memory.numa_stat of that cgroup must then show the pages on the planned host nodes. Refusals are
// real too: two files of one size out of order (ambiguous), pidfd_getfd under a seccomp filter
// (EPERM), a memory limit on the VM cgroup (ENOMEM).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { build } from "esbuild";
import { createVmCgroup, openCgroupLayout } from "../src/vm/cgroup.js";
import type { VmCgroup } from "../src/vm/cgroup.js";
import { run } from "../src/io/exec.js";
import { spawn } from "./helpers/exec.js";
import { parseNumaStat, privateBytesPerNode, readVmMemory } from "../src/observe/observe.js";
import { checkPrealloc } from "../src/launch/prealloc-step.js";
import { probeHost } from "../src/probe/host.js";
import { preallocate } from "../src/launch/prealloc.js";
import type { PlanNode } from "../src/core/types.js";

const MiB = 2 ** 20;
const repo = fileURLToPath(new URL("..", import.meta.url));
const host = probeHost("/");
const layout = openCgroupLayout(host);
const node = host.nodes[0]!.id;
const memory = !layout.missing.includes("memory");
// memcg statistics are per-CPU and flushed lazily (MEMCG_CHARGE_BATCH = 64 pages per CPU).
const lag = 64 * 4096 * cpus().length;
const work = mkdtempSync(join(tmpdir(), "qcvm-prealloc-"));
const standIn = join(work, "gmem-vm");
const denyGetfd = join(work, "deny-pidfd-getfd");
const driver = join(work, "driver.mjs");
// Compiled at collection time: whether the stand-in can run decides which tests can.
for (const [out, src] of [
  [standIn, "gmem-vm.c"],
  [denyGetfd, "deny-pidfd-getfd.c"],
] as const) {
  const cc = await run(["cc", "-O2", "-Wall", "-o", out, join(repo, "test/helpers", src)]);
  if (cc.exitCode !== 0) throw new Error(`cc ${src}: ${cc.stderr}`);
}

beforeAll(async () => {
  // The pre-allocation as the shipped bundle runs it: minified (workers run bindNative and
  // workerMain from their source text, which minifying must not break), koffi resolved at run time.
  writeFileSync(
    join(work, "driver-src.ts"),
    `import { preallocate } from ${JSON.stringify(join(repo, "src/launch/prealloc.ts"))};
const o = JSON.parse(process.argv[2]);
process.stdout.write(JSON.stringify(await preallocate(o)));`,
  );
  await build({
    entryPoints: [join(work, "driver-src.ts")],
    outfile: driver,
    bundle: true,
    minify: true,
    platform: "node",
    format: "esm",
    logLevel: "error",
    // As scripts/build.mjs: CommonJS dependencies (execa's) call require().
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

interface StandIn {
  pid: number;
  files: { fd: number; ino: number; bytes: number }[];
  first: string;
  stop(): Promise<void>;
}

async function startStandIn(args: string[]): Promise<StandIn> {
  const child = spawn([standIn, ...args], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const files: StandIn["files"] = [];
  let first: string;
  for (;;) {
    const line = (await lines.next()).value as string | undefined;
    if (line === undefined || !line.startsWith("file ")) {
      first = line ?? "";
      break;
    }
    const [, fd, ino, bytes] = line.split(" ").map(Number);
    files.push({ fd: fd!, ino: ino!, bytes: bytes! });
  }
  return {
    pid: child.pid!,
    files,
    first,
    stop: async () => {
      child.stdin!.end();
      child.kill("SIGKILL");
      await child.catch(() => undefined);
    },
  };
}

const planNode = (guestNode: number, mib: number, policy: PlanNode["policy"], hostNodes: number[]): PlanNode => ({
  guestNode,
  hostNodes,
  policy,
  sizeBytes: mib * MiB,
  cpus: [guestNode],
  shared: { mechanism: "backend-policy", reason: "" },
  private: { mechanism: "vcpu-cpuset", fidelity: "first-touch", reason: "" },
});

function vmCgroup(tag: string): VmCgroup {
  const { cgroup } = createVmCgroup(layout, `prealloc-${tag}-${process.pid}`, [
    { name: "", cpus: [], mems: [node], tasks: "process" },
  ]);
  return cgroup;
}

/** Unevictable (guest_memfd) bytes per host node in the VM cgroup's memory.numa_stat. */
function privatePerNode(cg: VmCgroup): Map<number, number> {
  const perNode = privateBytesPerNode(parseNumaStat(readFileSync(cg.memoryNumaStatPath()!, "utf8")));
  return new Map(Object.entries(perNode).map(([n, b]) => [Number(n), b]));
}

// The stand-in needs KVM_CREATE_GUEST_MEMFD (Linux 6.8 with KVM); say so where it is missing.
const probe = await (async () => {
  const s = await startStandIn(["4"]);
  await s.stop();
  return s.first;
})().catch((e: Error) => e.message);
const noGmem = probe === "created" ? false : `no guest_memfd here (${probe})`;

describe("guest-memfd-prealloc on this kernel", () => {
  it.skipIf(noGmem || !memory)(
    `fills each node's guest_memfd inside the VM cgroup, firmware left alone${noGmem ? ` (skipped: ${noGmem})` : ""}${memory ? "" : " (skipped: no memory controller)"}`,
    async () => {
      const s = await startStandIn(["96", "64", "4"]);
      const cg = vmCgroup("fill");
      try {
        expect(s.first).toBe("created");
        const before = privatePerNode(cg).get(node) ?? 0;
        const out = await preallocate({
          pid: s.pid,
          nodes: [planNode(0, 96, "bind", [node]), planNode(1, 64, "preferred", [node])],
          cgroup: cg,
          maxWorkers: 3,
        });
        expect(out.status).toBe("done");
        expect(out.nodes.map((n) => [n.guestNode, n.mode, n.doneBytes, n.error])).toEqual([
          [0, "MPOL_BIND", 96 * MiB, undefined],
          [1, "MPOL_PREFERRED", 64 * MiB, undefined],
        ]);
        // The 96 MiB node is split over two workers, the 64 MiB one gets one.
        expect(out.nodes.map((n) => n.workers)).toEqual([2, 1]);
        expect(out.notes.join("\n")).toMatch(/1 more guest_memfd file\(s\) after the backends \(4 MiB/);
        // Every page is on the planned node and charged to the VM cgroup; the 4 MiB firmware file
        // was not touched.
        const got = (privatePerNode(cg).get(node) ?? 0) - before;
        expect(got).toBeGreaterThanOrEqual(160 * MiB - lag);
        expect(got).toBeLessThanOrEqual(160 * MiB + lag);
        // qcvm went back to its own cgroup.
        expect(cg.tasks(undefined, "memory")).not.toContain(process.pid);
        // What `qcvm stats` says right after launch: the pages are on plan (>= 99%).
        const m = readVmMemory(s.pid, cg, host)!;
        const rows = checkPrealloc(
          { status: out.status, ms: out.ms, nodes: out.nodes.map((n) => ({ ...n, hostNodes: n.hostNodes })) },
          m.perNode,
        );
        expect(rows.map((r) => [r.hostNode, r.preallocatedBytes, r.ok])).toEqual([[node, 160 * MiB, true]]);
      } finally {
        await s.stop();
        expect(cg.remove()).toEqual([]);
      }
    },
  );

  it.skipIf(noGmem)(
    `refuses two same-size files created out of order${noGmem ? ` (skipped: ${noGmem})` : ""}`,
    async () => {
      const s = await startStandIn(["--reverse-fds", "64", "64"]);
      try {
        const out = await preallocate({
          pid: s.pid,
          nodes: [planNode(0, 64, "bind", [node]), planNode(1, 64, "interleave", [node])],
        });
        expect(out.status).toBe("skipped");
        expect(out.reason).toMatch(
          /^guest nodes 0 and 1 both have 64 MiB backends with different placement.*ambiguous$/,
        );
      } finally {
        await s.stop();
      }
    },
  );

  it.skipIf(noGmem || !memory)(
    `says ENOMEM before allocating when the VM cgroup's memory limit cannot hold it${noGmem ? ` (skipped: ${noGmem})` : ""}`,
    async () => {
      const s = await startStandIn(["128"]);
      const cg = vmCgroup("enomem");
      const limitFile = host.cgroup.v1Mounts.memory ? "memory.limit_in_bytes" : "memory.max";
      try {
        writeFileSync(join(cg.paths.memory!, limitFile), String(64 * MiB));
        const nodes = [planNode(0, 128, "bind", [node])];
        const out = await preallocate({ pid: s.pid, nodes, cgroup: cg });
        expect(out.status).toBe("skipped");
        expect(out.reason).toMatch(/memory limit leaves \d+ MiB, and guest node\(s\) 0 need 128 MiB .*ENOMEM/);
        // Past the check (v1 only: oom_kill_disable turns the over-limit charge into ENOMEM, where
        // v2 would OOM-kill a task in the cgroup), the fallocate itself fails with ENOMEM, named.
        if (host.cgroup.v1Mounts.memory) {
          const late = await preallocate({ pid: s.pid, nodes, cgroup: cg, checkHeadroom: false });
          expect(late.status).toBe("partial");
          expect(late.nodes[0]!.errno).toBe("ENOMEM");
          expect(late.nodes[0]!.error).toMatch(/^fallocate failed: ENOMEM \(.*memory limit/);
          expect(late.nodes[0]!.doneBytes).toBeLessThan(128 * MiB);
          // qcvm itself survived and left the cgroup.
          expect(cg.tasks(undefined, "memory")).not.toContain(process.pid);
        }
      } finally {
        await s.stop();
        expect(cg.remove()).toEqual([]);
      }
    },
  );

  it.skipIf(noGmem)(
    `pidfd_getfd refused by seccomp: EPERM names the node; the minified bundle allocates without it${noGmem ? ` (skipped: ${noGmem})` : ""}`,
    async () => {
      const s = await startStandIn(["32", "32"]);
      try {
        const arg = JSON.stringify({
          pid: s.pid,
          nodes: [planNode(0, 32, "bind", [node]), planNode(1, 32, "bind", [node])],
        });
        const env = { NODE_PATH: join(repo, "node_modules") };
        const denied = await run([denyGetfd, process.execPath, driver, arg], { env });
        const out = JSON.parse(denied.stdout);
        expect(out.status).toBe("partial");
        expect(out.nodes.map((n: { errno?: string }) => n.errno)).toEqual(["EPERM", "EPERM"]);
        expect(out.nodes[0].error).toMatch(/^pidfd_getfd failed: EPERM \(no ptrace-attach rights over QEMU/);
        const allowed = JSON.parse((await run([process.execPath, driver, arg], { env })).stdout);
        expect(allowed.status).toBe("done");
        expect(allowed.nodes.map((n: { doneBytes: number }) => n.doneBytes)).toEqual([32 * MiB, 32 * MiB]);
      } finally {
        await s.stop();
      }
    },
  );

  it("a process without guest_memfd (plain KVM QEMU): nothing to pre-allocate", async () => {
    const out = await preallocate({ pid: process.pid, nodes: [planNode(0, 64, "bind", [node])] });
    expect(out.status).toBe("skipped");
    expect(out.reason).toMatch(/nothing to pre-allocate/);
  });
});
