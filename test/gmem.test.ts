// guest_memfd accounting on the real kernel: a tiny C helper (test/helpers/gmem.c, compiled here
// with the machine's cc) creates a KVM VM and a guest_memfd, joins a fresh VM cgroup made by
// qcvm's cgroup layer, fills the guest_memfd, and qcvm's stats reader must report it as private
// memory on the node it landed on, while the helper's VmRSS stays small (private memory has no
// mapping). Where /dev/kvm or KVM_CREATE_GUEST_MEMFD is missing, the helper must say which, and
// the reader must report a cgroup holding no private memory as exactly that.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { createVmCgroup, openCgroupLayout } from "../src/vm/cgroup.js";
import { run } from "../src/io/exec.js";
import { spawn } from "./helpers/exec.js";
import { parseProcStatus, readVmMemory } from "../src/observe/observe.js";
import { probeHost, probeKvm } from "../src/probe/host.js";
import type { Plan } from "../src/core/types.js";

const MiB = 1024 * 1024;
const SIZE_MIB = 128;
const source = fileURLToPath(new URL("./helpers/gmem.c", import.meta.url));
const host = probeHost("/");
const layout = openCgroupLayout(host);
const node = host.nodes[0]!.id;
const memory = !layout.missing.includes("memory");
let work: string;
let binary: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "qcvm-gmem-"));
  binary = join(work, "gmem");
  const cc = await run(["cc", "-O2", "-Wall", "-o", binary, source]);
  expect(cc.stderr).toBe("");
  expect(cc.exitCode).toBe(0);
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

const plan: Plan = {
  name: "gmem",
  confidential: "sev-snp",
  guestMemfd: true,
  nodes: [
    {
      guestNode: 0,
      hostNodes: [node],
      policy: "bind",
      sizeBytes: SIZE_MIB * MiB,
      cpus: [0],
      shared: { mechanism: "backend-policy", reason: "", hostNodes: [node] },
      private: { mechanism: "vcpu-cpuset", fidelity: "first-touch", reason: "", hostNodes: [node] },
    },
  ],
  launch: { cgroups: [{ name: "", cpus: [], mems: [node], tasks: "process" }], pinning: [] },
  capacity: [],
  warnings: [],
  errors: [],
};

describe("guest_memfd private memory accounting", () => {
  it(`reports a filled ${SIZE_MIB} MiB guest_memfd as private memory on its node, invisible in RSS`, async () => {
    const { cgroup, errors } = createVmCgroup(layout, `gmem-${process.pid}-${Date.now()}`, plan.launch.cgroups);
    const child = spawn([binary, String(SIZE_MIB)], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const nextLine = async () => (await lines.next()).value as string | undefined;
    try {
      // A host with no memory controller (scripts/test-hosts.sh cgroup2: a v2 root without it)
      // cannot attribute private memory: the reader must say unknown, never a made-up zero.
      expect(errors.map((e) => [e.file, e.errno])).toEqual(layout.missing.map((c) => [`${c} controller`, "EMISSING"]));
      const first = await nextLine();
      const pid = child.pid!;

      if (first !== "created") {
        // No guest_memfd here: the helper must name the missing piece, and it must be the real one.
        expect(first).toMatch(/^(no-kvm|create-vm|no-guest-memfd|create-guest-memfd) E[A-Z0-9]+$/);
        // The C helper and qcvm's probe must agree on why KVM is unusable (absent, no driver, not
        // KVM's device node, permissions), or on it being usable.
        const kvm = probeKvm();
        if (!kvm.ok) expect(first).toBe(`no-kvm ${kvm.errno}`);
        else expect(first).not.toMatch(/^no-kvm /);
        // The reader on a VM cgroup without guest_memfd pages: zero private, not unknown (unknown
        // only without a memory cgroup).
        const probe = spawn(["sleep", "30"], { stdio: "ignore" });
        try {
          expect(cgroup.addProcess(probe.pid!).map((e) => e.errno)).toEqual(layout.missing.map(() => "EMISSING"));
          const m = readVmMemory(probe.pid!, cgroup, host, { plan })!;
          expect(m.totals.privateBytes).toBe(memory ? 0 : null);
          expect(m.perNode.find((n) => n.hostNode === node)!.privateBytes).toBe(memory ? 0 : null);
        } finally {
          probe.kill("SIGKILL");
          await probe.catch(() => undefined);
        }
        return;
      }

      // Join the VM cgroup before allocating: the pages are charged to the allocating task's cgroup.
      expect(cgroup.addProcess(pid).map((e) => e.errno)).toEqual(layout.missing.map(() => "EMISSING"));
      child.stdin!.write("go\n");
      expect(await nextLine()).toBe(`ready ${SIZE_MIB * MiB}`);

      const m = readVmMemory(pid, cgroup, host, { plan })!;
      const here = m.perNode.find((n) => n.hostNode === node)!;
      if (!memory) {
        // The pages exist (the helper filled them) but no cgroup counts them per node: unknown,
        // said so, and still not in RSS or the shared figures.
        expect(m.sources.numaStat).toBeUndefined();
        expect(here.privateBytes).toBeNull();
        expect(m.totals.privateBytes).toBeNull();
        expect(m.notes).toContain(
          "no memory cgroup for this VM: private (guest_memfd) memory cannot be attributed per node",
        );
        expect(m.totals.sharedBytes).toBe(0);
        expect(m.vmRssBytes!).toBeLessThan((SIZE_MIB * MiB) / 8);
        child.stdin!.end("done\n");
        expect((await child).exitCode).toBe(0);
        return;
      }
      expect(m.sources.numaStat).toBe(cgroup.memoryNumaStatPath());
      // The guest_memfd's pages. memcg statistics are per-CPU and flushed lazily (the kernel skips
      // a flush below MEMCG_CHARGE_BATCH = 64 pages per CPU of pending updates), so a read right
      // after the fallocate may be short by that much.
      const lag = 64 * 4096 * cpus().length;
      expect(here.privateBytes!).toBeGreaterThanOrEqual(SIZE_MIB * MiB - lag);
      expect(here.privateBytes!).toBeLessThan((SIZE_MIB + 2) * MiB);
      expect(m.totals.privateBytes).toBe(here.privateBytes);
      // No mapping: nothing of it shows as shared memory, and RSS stays far below it.
      expect(m.totals.sharedBytes).toBe(0);
      expect(m.vmRssBytes!).toBeLessThan((SIZE_MIB * MiB) / 8);
      expect(parseProcStatus(readFileSync(`/proc/${pid}/status`, "utf8")).vmRssBytes!).toBeLessThan(
        (SIZE_MIB * MiB) / 8,
      );
      expect(m.drift).toEqual([]);
      // memory.stat agrees (v1 and v2 both print `unevictable <bytes>`).
      const stat = readFileSync(join(cgroup.paths.memory!, "memory.stat"), "utf8");
      expect(Math.abs(Number(/^unevictable (\d+)$/m.exec(stat)![1]) - here.privateBytes!)).toBeLessThanOrEqual(lag);
      child.stdin!.end("done\n");
      expect((await child).exitCode).toBe(0);
    } finally {
      child.kill("SIGKILL");
      await child.catch(() => undefined);
      expect(cgroup.remove()).toEqual([]);
    }
  });
});
