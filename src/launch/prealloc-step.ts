// The launch step that runs guest-memfd-prealloc (launch/prealloc.ts): after the vCPU threads are
// placed and before `cont`, with QEMU paused under -S. What the plan asked (plan.launch.prealloc)
// is compared with what happened; every node that did not get its pages becomes a LostPlacement
// naming the node, the call and errno, and what it falls back to (the plan's vCPU cpusets, which
// place pages on first touch), so placement.strict can abort and status can show it.
import { formatList } from "../core/lists.js";
import { formatBytes } from "../plan/plan.js";
import { preallocate } from "./prealloc.js";
import type { PreallocOutcome } from "./prealloc.js";
import type { LostPlacement } from "../core/types.js";
import type { VmCgroup } from "../vm/cgroup.js";
import type { Plan } from "../core/types.js";

/** What state.json keeps of the pre-allocation, for stats to compare with memory.numa_stat. */
export interface PreallocRecord {
  status: PreallocOutcome["status"];
  ms: number;
  nodes: { guestNode: number; hostNodes: number[]; bytes: number; doneBytes: number; error?: string }[];
}

/** The next-best mechanism a node falls back to, in words. */
function fallbackOf(plan: Plan, guestNode: number): string {
  const child = plan.launch.cgroups.find((c) => c.name === `vcpu-node${guestNode}`);
  return child && child.mems.length > 0
    ? `its private pages are placed on first touch instead (vcpu-cpuset: cgroup vcpu-node${guestNode}, mems ${formatList(child.mems)}); pages QEMU populates at launch may land elsewhere`
    : "its private pages land wherever the faulting thread runs (no vCPU cpuset to fall back to)";
}

/** Turn an outcome into a step message and lost placements (pure). */
export function describePrealloc(
  plan: Plan,
  out: PreallocOutcome,
): { message: string; lost: LostPlacement[]; record: PreallocRecord } {
  const wanted = plan.launch.prealloc?.guestNodes ?? [];
  const lost: LostPlacement[] = [];
  const record: PreallocRecord = {
    status: out.status,
    ms: Math.round(out.ms),
    nodes: out.nodes
      .filter((n) => wanted.includes(n.guestNode))
      .map((n) => ({
        guestNode: n.guestNode,
        hostNodes: n.hostNodes,
        bytes: n.bytes,
        doneBytes: n.doneBytes,
        ...(n.error ? { error: n.error } : {}),
      })),
  };
  const lose = (guestNode: number, reason: string, done?: string) =>
    lost.push({
      guestNode,
      what: "private memory",
      mechanism: "guest-memfd-prealloc",
      reason,
      consequence: `${done ? `${done}; ` : ""}${fallbackOf(plan, guestNode)}`,
    });
  if (out.status === "skipped") {
    for (const g of wanted) lose(g, out.reason ?? "not attempted");
    return { message: `private memory: not pre-allocated (${out.reason})`, lost, record };
  }
  for (const n of out.nodes) {
    if (!wanted.includes(n.guestNode) || !n.error) continue;
    const done =
      n.doneBytes > 0 ? `${formatBytes(n.doneBytes)} of ${formatBytes(n.bytes)} was pre-allocated on plan` : undefined;
    lose(n.guestNode, n.error, done);
  }
  const ok = out.nodes.filter((n) => wanted.includes(n.guestNode) && !n.error);
  const bytes = ok.reduce((a, n) => a + n.doneBytes, 0);
  const rate = out.ms > 0 ? `${formatBytes((bytes / out.ms) * 1000)}/s` : "";
  const parts = ok.map(
    (n) => `guest node ${n.guestNode} ${formatBytes(n.doneBytes)} ${n.mode} ${formatList(n.hostNodes)}`,
  );
  const message =
    ok.length > 0
      ? `private memory pre-allocated: ${parts.join(", ")} (${Math.round(out.ms)} ms, ${rate}, ${out.workers} worker${out.workers === 1 ? "" : "s"})`
      : "private memory: nothing pre-allocated";
  return { message, lost, record };
}

/** Run the plan's pre-allocation on QEMU `pid`, when the plan has one. */
export async function runPreallocStep(
  plan: Plan,
  pid: number,
  cgroup: VmCgroup | undefined,
  root: string,
): Promise<ReturnType<typeof describePrealloc> | undefined> {
  const pre = plan.launch.prealloc;
  if (!pre) return undefined;
  const out = await preallocate({ pid, nodes: plan.nodes, only: pre.guestNodes, ...(cgroup ? { cgroup } : {}), root });
  return describePrealloc(plan, out);
}

/** One host node's pre-allocated private memory against what the VM cgroup holds there now. */
export interface PreallocCheck {
  hostNode: number;
  /** Bytes guest-memfd-prealloc put here at launch (interleave: its even share). */
  preallocatedBytes: number;
  /** Private bytes on this node now (memory.numa_stat), null without a memory cgroup. */
  privateBytes: number | null;
  /** privateBytes / preallocatedBytes; the plan holds at >= 0.99. */
  ratio: number | null;
  ok: boolean | null;
}

/** Compare the launch record with per-node private memory now (pure; `stats` prints it). */
export function checkPrealloc(
  record: PreallocRecord | undefined,
  perNode: readonly { hostNode: number; privateBytes: number | null }[],
): PreallocCheck[] {
  if (!record) return [];
  const at = new Map<number, number>();
  for (const n of record.nodes) {
    if (n.hostNodes.length === 0) continue;
    for (const h of n.hostNodes) at.set(h, (at.get(h) ?? 0) + n.doneBytes / n.hostNodes.length);
  }
  return [...at.entries()]
    .sort(([a], [b]) => a - b)
    .map(([hostNode, bytes]) => {
      const now = perNode.find((p) => p.hostNode === hostNode)?.privateBytes ?? null;
      const ratio = now === null || bytes === 0 ? null : now / bytes;
      return {
        hostNode,
        preallocatedBytes: Math.round(bytes),
        privateBytes: now,
        ratio,
        ok: ratio === null ? null : ratio >= 0.99,
      };
    });
}
