// guest-memfd-prealloc across host NUMA nodes: runs on a host with two or more NUMA nodes (the
// test matrix's two-node VM leg, scripts/test-hosts.sh); skipped, saying so, on a one-node host.
// A node-1 binding must put every page on host node 1, and a VM cgroup whose cpuset.mems leaves
// node 1 out must make the allocation fail naming the guest node (set_mempolicy EINVAL).
// Where that host has no KVM (nested guests often lack it), the stand-in makes memfds instead of
// guest_memfds: the same pidfd_getfd, set_mempolicy and fallocate path, but the pages are shmem
// ("file" in memory.numa_stat) rather than unevictable, and /proc shows /memfd:..., so the files
// are handed over already mapped (preallocateMapped) instead of found by their kvm-gmem links.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { createVmCgroup, openCgroupLayout } from "../src/vm/cgroup.js";
import { run } from "../src/io/exec.js";
import { spawn } from "./helpers/exec.js";
import { parseNumaStat } from "../src/observe/observe.js";
import { probeHost } from "../src/probe/host.js";
import { preallocate, preallocateMapped } from "../src/launch/prealloc.js";
import type { PlanNode } from "../src/core/types.js";

const MiB = 2 ** 20;
const repo = fileURLToPath(new URL("..", import.meta.url));
const host = probeHost("/");
const layout = openCgroupLayout(host);
const nodes = host.nodes.map((n) => n.id);
const lag = 64 * 4096 * cpus().length;
const work = mkdtempSync(join(tmpdir(), "qcvm-prealloc-numa-"));
const standIn = join(work, "gmem-vm");
const cc = await run(["cc", "-O2", "-Wall", "-o", standIn, join(repo, "test/helpers/gmem-vm.c")]);
if (cc.exitCode !== 0) throw new Error(`cc gmem-vm.c: ${cc.stderr}`);
afterAll(() => rmSync(work, { recursive: true, force: true }));

const skip =
  nodes.length < 2
    ? `this host has ${nodes.length} NUMA node(s); the two-node VM leg of scripts/test-hosts.sh runs it`
    : layout.missing.includes("memory") || layout.missing.includes("cpuset")
      ? `no ${layout.missing.join(" and ")} controller here`
      : false;

async function standInFiles(mib: number) {
  const kvm = await run([standIn, "4"], { input: "" });
  const memfd = !kvm.stdout.startsWith("file ");
  const child = spawn([standIn, ...(memfd ? ["--memfd"] : []), String(mib)], { stdin: "pipe", stdout: "pipe" });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const [, fd, ino, bytes] = ((await lines.next()).value as string).split(" ").map(Number);
  expect((await lines.next()).value).toBe("created");
  return { child, memfd, file: { fd: fd!, ino: ino!, sizeBytes: bytes! } };
}

const planNode = (hostNode: number, mib: number): PlanNode => ({
  guestNode: 0,
  hostNodes: [hostNode],
  policy: "bind",
  sizeBytes: mib * MiB,
  cpus: [0],
  shared: { mechanism: "backend-policy", reason: "" },
  private: { mechanism: "vcpu-cpuset", fidelity: "first-touch", reason: "" },
});

describe.skipIf(skip)(`guest-memfd-prealloc on two host nodes${skip ? ` (skipped: ${skip})` : ""}`, () => {
  const target = nodes[1]!;

  it(`a guest node bound to host node ${target} gets every page there`, async () => {
    const { child, memfd, file } = await standInFiles(128);
    const { cgroup } = createVmCgroup(layout, `prealloc-numa-${process.pid}`, [
      { name: "", cpus: [], mems: nodes, tasks: "process" },
    ]);
    try {
      const node = planNode(target, 128);
      const out = memfd
        ? await preallocateMapped({ pid: child.pid!, nodes: [node], cgroup }, [
            { backend: { guestNode: 0, sizeBytes: file.sizeBytes, policy: "bind", hostNodes: [target] }, file },
          ])
        : await preallocate({ pid: child.pid!, nodes: [node], cgroup });
      expect(out.status).toBe("done");
      const stat = parseNumaStat(readFileSync(cgroup.memoryNumaStatPath()!, "utf8"));
      // guest_memfd pages are unevictable; memfd (shmem) pages are file pages.
      const row = stat.bytes[memfd ? "file" : "unevictable"] ?? {};
      expect(row[target] ?? 0).toBeGreaterThanOrEqual(128 * MiB - lag);
      for (const n of nodes.filter((x) => x !== target)) expect(row[n] ?? 0).toBeLessThanOrEqual(lag);
    } finally {
      child.kill("SIGKILL");
      await child.catch(() => undefined);
      expect(cgroup.remove()).toEqual([]);
    }
  });

  it(`a VM cgroup whose cpuset.mems leaves host node ${target} out fails the node, named`, async () => {
    const { child, memfd, file } = await standInFiles(32);
    const { cgroup } = createVmCgroup(layout, `prealloc-numa-walled-${process.pid}`, [
      { name: "", cpus: [], mems: [nodes[0]!], tasks: "process" },
    ]);
    try {
      const node = planNode(target, 32);
      const out = memfd
        ? await preallocateMapped({ pid: child.pid!, nodes: [node], cgroup }, [
            { backend: { guestNode: 0, sizeBytes: file.sizeBytes, policy: "bind", hostNodes: [target] }, file },
          ])
        : await preallocate({ pid: child.pid!, nodes: [node], cgroup });
      expect(out.status).toBe("partial");
      expect(out.nodes[0]!.errno).toBe("EINVAL");
      expect(out.nodes[0]!.error).toMatch(
        /^set_mempolicy failed: EINVAL \(the host nodes are outside the VM cgroup's cpuset.mems/,
      );
    } finally {
      child.kill("SIGKILL");
      await child.catch(() => undefined);
      expect(cgroup.remove()).toEqual([]);
    }
  });
});
