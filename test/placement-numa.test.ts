// Placement on a real two-node kernel (on a one-node host this file skips, saying so; the
// *-numa.test.ts name puts it in the two-node leg): the guest of `scripts/test-hosts.sh vm-numa2` (QEMU -numa:
// node 0 = CPUs 0-1, node 1 = CPUs 2-3, half the memory each; cgroup v2 with cpuset and memory),
// where qcvm launches a VM whose guest node 1 is bound to host node 1 and that is checked in the
// kernel's own words: numa_maps, the vCPU threads' cpusets, memory.numa_stat, `qcvm stats`.
//
// What this host cannot show: its nodes are QEMU's (underneath, both are this machine's one
// node), so where a page is placed is real but how far it is is not; it has no KVM of its own,
// so QEMU runs under TCG there, and there is no guest_memfd (Linux 6.1 guest kernel, no KVM) and no
// SEV/TDX: private memory placement is shown on a memfd standing in for guest_memfd (its pages,
// like guest_memfd's, follow the allocating task's mempolicy and cpuset), and hardware-dependent
// paths stay covered by test/matrix/ and the goldens.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { processPolicyArgv } from "../src/render/process-policy.js";
import { probeHost } from "../src/probe/host.js";
import { openCgroupLayout } from "../src/vm/cgroup.js";
import { loadContext } from "../src/pipeline/context.js";
import { renderArgv } from "../src/render/render.js";
import { builtinCapabilities } from "../src/probe/capabilities.js";
import { parseNumaMaps, parseNumaStat } from "../src/observe/observe.js";
import { QmpClient } from "../src/vm/qmp.js";
import { makeRunDir, qcvm, readStateFile, sweepRunDir, threadPlacement, vmName } from "./helpers/launch.js";
import { startQemu, quitQemu, stopAll } from "./helpers/qemu-run.js";

const host = probeHost("/");
const node1 = host.nodes.find((n) => n.id === 1);
const layout = openCgroupLayout(host);
const skip =
  host.nodes.length < 2 || !node1 || node1.cpus.length === 0
    ? `this host has ${host.nodes.length} NUMA node(s); the two-node guest of scripts/test-hosts.sh vm-numa2 runs it`
    : layout.missing.length > 0
      ? `no ${layout.missing.join(" and ")} controller here`
      : false;

const MiB = 1024 * 1024;
/** Bytes touched in guest node 1 (its first 16 MiB), by QEMU's main thread reading them. */
const TOUCH = 16 * MiB;

const dir = mkdtempSync(join(tmpdir(), "qcvm-numa2-"));
const runDir = makeRunDir("numa2");
afterAll(async () => {
  await sweepRunDir(runDir);
  rmSync(dir, { recursive: true, force: true });
});
afterEach(stopAll);

/** A two-guest-node profile: node 0 on host node 0, node 1 on host node 1. */
function profile(name: string, extra = ""): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `apiVersion: qcvm/v1
name: ${name}
machine: {type: q35, accel: kvm}
cpu: {model: qemu64, count: 4}
memory: {size: 256M, backend: memfd}
numa:
  nodes:
    - {cpus: "0-1", memory: 128M, hostNodes: "0", policy: bind}
    - {cpus: "2-3", memory: 128M, hostNodes: "1", policy: bind}
placement: {pinVcpus: true}
${extra}`,
  );
  return file;
}

/** Read `size` bytes of guest memory at guest-physical `addr` through QEMU: its main thread faults them in. */
async function touch(client: QmpClient, addr: number, size: number): Promise<void> {
  await client.command("pmemsave", { val: addr, size, filename: "/dev/null" });
}

/** numa_maps entries of `pid` with their per-node page counts. */
function numaMaps(pid: number) {
  return parseNumaMaps(readFileSync(`/proc/${pid}/numa_maps`, "utf8"));
}

describe.skipIf(skip)(`placement on a real two-node kernel${skip ? ` (skipped: ${skip})` : ""}`, () => {
  it("launch: node 1's backend is bind:1 with its touched pages on N1, its vCPUs in a cpuset of node 1, and memory.numa_stat and qcvm stats say N1", async () => {
    const name = vmName("numa2");
    const r = await qcvm(["launch", profile(name), "--detach", "--format", "json", "--run-dir", runDir], {
      timeoutMs: 170_000,
    });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const state = readStateFile(runDir, name);
    const client = await QmpClient.connect(state.qmp, { timeoutMs: 30_000 });
    try {
      // Guest node 1 is guest-physical 128 MiB..256 MiB (q35 puts RAM below 4 GiB in node order).
      await touch(client, 128 * MiB, TOUCH);

      // numa_maps: QEMU mbind()s each backend; node 1's is bind:1 and its touched pages are on N1.
      const memfds = numaMaps(state.pid).filter((e) => e.file?.startsWith("/memfd:memory-backend-memfd"));
      const bound1 = memfds.filter((e) => e.policy.mode === "bind" && e.policy.nodes.join(",") === "1");
      expect(bound1, JSON.stringify(memfds)).toHaveLength(1);
      expect((bound1[0]!.pages[1] ?? 0) * 4096).toBeGreaterThanOrEqual(TOUCH);
      expect(bound1[0]!.pages[0] ?? 0).toBe(0);

      // vCPUs 2 and 3 (guest node 1): in a cgroup whose cpuset is node 1's CPUs and mems 1.
      const cpus = await client.command<Array<{ "cpu-index": number; "thread-id": number }>>("query-cpus-fast");
      for (const c of cpus.filter((c) => c["cpu-index"] >= 2)) {
        const cg = readFileSync(`/proc/${state.pid}/task/${c["thread-id"]}/cgroup`, "utf8").trim();
        const path = join("/sys/fs/cgroup", cg.replace(/^0::/, ""));
        expect(readFileSync(join(path, "cpuset.mems"), "utf8").trim(), path).toBe("1");
        expect(readFileSync(join(path, "cpuset.cpus"), "utf8").trim(), path).toBe("2-3");
        expect(threadPlacement(state.pid, c["thread-id"])).toMatchObject({ cpus: "2-3", mems: "1" });
      }

      // memory.numa_stat of the VM's cgroup: the touched shmem pages are charged there, on N1.
      const procCg = readFileSync(`/proc/${state.pid}/cgroup`, "utf8").trim().replace(/^0::/, "");
      const stat = parseNumaStat(readFileSync(join("/sys/fs/cgroup", procCg, "memory.numa_stat"), "utf8"));
      expect(stat.bytes.shmem?.[1] ?? 0, JSON.stringify(stat)).toBeGreaterThanOrEqual(TOUCH);

      // qcvm stats: guest node 1's backend found, bound to 1, its bytes on host node 1.
      const s = await qcvm(["stats", name, "--format", "json", "--run-dir", runDir]);
      expect(s.code, s.stderr).toBe(0);
      const stats = JSON.parse(s.stdout) as {
        backends: Array<{
          guestNode?: number;
          policy: { mode: string; nodes: number[] };
          bytes: Record<string, number>;
        }>;
      };
      const b1 = stats.backends.find((b) => b.guestNode === 1);
      expect(b1?.policy).toMatchObject({ mode: "bind", nodes: [1] });
      expect(b1?.bytes["1"] ?? 0).toBeGreaterThanOrEqual(TOUCH);
    } finally {
      await client.close();
    }
    const stop = await qcvm(["stop", name, "--run-dir", runDir], { timeoutMs: 120_000 });
    expect(stop.code, stop.stderr).toBe(0);
  });

  it("a numactl --membind=1 prefix takes effect: QEMU's own memory and a backend without a policy land on N1", async () => {
    // The plan of a guest_memfd guest places private memory by the QEMU process's mempolicy: an
    // SEV-SNP profile on host node 1 gets `numactl --membind=1 --`. No SNP here, so its argv runs
    // with the confidential object removed and a policy-less ram backend standing in for
    // guest_memfd (whose pages, with no inode policy, follow the allocating task's mempolicy).
    const file = join(dir, "snp-node1.yaml");
    writeFileSync(
      file,
      `apiVersion: qcvm/v1
name: snp-node1
qemu: {version: "9.1"}
cpu: {model: qemu64, count: 2}
memory: {size: 128M, backend: ram, hostNodes: "1", policy: bind}
confidential: {type: sev-snp, cbitpos: 51, reducedPhysBits: 1}
`,
    );
    const ctx = await loadContext({ profile: file });
    expect(processPolicyArgv(ctx.plan.launch.processPolicy)).toEqual(["numactl", "--membind=1", "--"]);
    const sock = join(dir, "snp-node1.sock");
    const stand = { ...ctx.profile, confidential: { type: "none" as const }, qmp: sock, extraArgs: ["-S"] };
    stand.machine = { ...stand.machine, accel: "tcg" };
    stand.memory = { ...stand.memory, hostNodes: [], policy: "default" };
    const r = renderArgv(stand, { ...ctx.plan, nodes: [] }, builtinCapabilities("7.2"));
    expect(r.errors).toEqual([]);
    const s = await startQemu([...processPolicyArgv(ctx.plan.launch.processPolicy), ...r.value!], sock);
    await touch(s.client, 0, TOUCH);
    const pid = (await s.client.command<Array<{ "thread-id": number }>>("query-cpus-fast"))[0]!;
    expect(pid).toBeDefined();
    const qemuPid = Number(readFileSync(`/proc/${pid["thread-id"]}/status`, "utf8").match(/^Tgid:\s+(\d+)/m)![1]);
    const maps = numaMaps(qemuPid);
    // Every mapping without a policy of its own shows the task's: bind:1.
    expect(maps.filter((e) => e.heap).map((e) => `${e.policy.mode}:${e.policy.nodes.join(",")}`)).toEqual(["bind:1"]);
    const guest = maps.filter((e) => (e.pages[1] ?? 0) * 4096 >= TOUCH);
    expect(guest.length, JSON.stringify(maps.slice(0, 5))).toBeGreaterThanOrEqual(1);
    expect(maps.reduce((sum, e) => sum + (e.pages[0] ?? 0), 0)).toBe(0);
    const q = await quitQemu(s);
    expect(q.exitCode, q.stderr).toBe(0);
  });
});
