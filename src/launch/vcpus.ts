// Step 7 of a launch: each vCPU thread into its guest node's cgroup, then pinned (taskset, through
// the Runner). Pinning comes after the cgroup move, because a cpuset attach resets the affinity.
import { run } from "../io/exec.js";
import { formatList } from "../core/lists.js";
import { describeErrno, lostVcpuCgroup, nodesOfChild } from "./losses.js";
import type { VmCgroup } from "../vm/cgroup.js";
import type { LostPlacement, Plan } from "../core/types.js";

/** One entry of QMP's query-cpus-fast. */
export interface CpuInfoFast {
  "cpu-index": number;
  "thread-id": number;
}

interface Threads {
  tidOf: Map<number, number>;
  /** TCG without MTTCG runs every vCPU on one thread: per-node thread placement is impossible. */
  shared: boolean;
  accel: string;
}

function unplaceable(t: Threads, vcpu: number): string | undefined {
  const tid = t.tidOf.get(vcpu);
  if (tid === undefined) return `QEMU reported no thread for vCPU ${vcpu}`;
  if (t.shared) return `vCPUs share thread ${tid} (${t.accel} without a thread per vCPU)`;
  return undefined;
}

function moveThreads(
  t: Threads,
  plan: Plan,
  cg: VmCgroup | undefined,
  failedChildren: ReadonlyMap<string, string>,
  lost: LostPlacement[],
  placed: string[],
): void {
  const lostNodes = new Set<number>();
  for (const cgp of plan.launch.cgroups) {
    // Already reported as lost when the cgroup was made.
    if (cgp.tasks === "process" || failedChildren.has(cgp.name)) continue;
    for (const vcpu of cgp.tasks.vcpus) {
      const tid = t.tidOf.get(vcpu);
      let reason = unplaceable(t, vcpu);
      if (!reason && !cg) reason = "no VM cgroup";
      if (!reason && cg && tid !== undefined) {
        const err = cg.addThread(tid, cgp.name);
        if (err) reason = describeErrno(err);
      }
      if (!reason) {
        placed.push(`vCPU ${vcpu} (thread ${tid}) -> ${cgp.name}`);
        continue;
      }
      for (const g of nodesOfChild(plan, cgp.name)) {
        if (lostNodes.has(g)) continue;
        lostNodes.add(g);
        lost.push(lostVcpuCgroup(plan, g, reason));
      }
    }
  }
}

async function pinThreads(t: Threads, plan: Plan, lost: LostPlacement[], placed: string[]): Promise<void> {
  for (const pin of plan.launch.pinning) {
    const tid = t.tidOf.get(pin.vcpu);
    const list = formatList(pin.hostCpus);
    let reason = unplaceable(t, pin.vcpu);
    if (!reason) {
      const r = await run(["taskset", "-pc", list, String(tid)]).catch((e: Error) => ({
        exitCode: -1,
        stderr: e.message,
        stdout: "",
      }));
      if (r.exitCode !== 0) reason = `taskset -pc ${list} ${tid} failed: ${r.stderr.trim().split("\n")[0]}`;
    }
    if (reason) {
      lost.push({
        what: `vCPU ${pin.vcpu} pinning`,
        mechanism: "thread affinity",
        reason,
        consequence: "the thread may run on any CPU its cgroup allows",
      });
    } else {
      placed.push(`vCPU ${pin.vcpu} pinned to CPUs ${list}`);
    }
  }
}

/** Move each vCPU thread into its node's cgroup, then pin it; every failure is a lost placement. */
export async function placeVcpus(
  cpus: readonly CpuInfoFast[],
  plan: Plan,
  cg: VmCgroup | undefined,
  accel: string,
  failedChildren: ReadonlyMap<string, string> = new Map(),
): Promise<{ lost: LostPlacement[]; placed: string[] }> {
  const lost: LostPlacement[] = [];
  const placed: string[] = [];
  const threads: Threads = {
    tidOf: new Map(cpus.map((c) => [c["cpu-index"], c["thread-id"]])),
    shared: new Set(cpus.map((c) => c["thread-id"])).size < cpus.length,
    accel,
  };
  moveThreads(threads, plan, cg, failedChildren, lost, placed);
  await pinThreads(threads, plan, lost, placed);
  return { lost, placed };
}
