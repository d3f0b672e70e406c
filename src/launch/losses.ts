// What a failed cgroup operation or thread placement costs, as LostPlacement records naming the
// guest node, the mechanism, the errno and the file (pure: errors in, records out).
import { formatList } from "../core/lists.js";
import { formatLost } from "../vm/state.js";
import { UserError } from "../core/diagnostics.js";
import type { CgroupError } from "../vm/cgroup.js";
import type { LostPlacement, Plan } from "../core/types.js";

export function describeErrno(e: CgroupError): string {
  const verb = e.op === "write" ? "writing" : e.op === "mkdir" ? "creating" : e.op === "rmdir" ? "removing" : "reading";
  return e.errno === "EMISSING" ? `${e.file} not available` : `${e.errno} ${verb} ${e.file}`;
}

/** Guest nodes whose vCPUs a cgroup child holds. */
export function nodesOfChild(plan: Plan, child: string): number[] {
  const cg = plan.launch.cgroups.find((c) => c.name === child);
  if (!cg || cg.tasks === "process") return [];
  const vcpus = new Set(cg.tasks.vcpus);
  return plan.nodes.filter((n) => n.cpus.some((c) => vcpus.has(c))).map((n) => n.guestNode);
}

export function vmMems(plan: Plan): string {
  const vm = plan.launch.cgroups.find((c) => c.name === "");
  return formatList(vm?.mems ?? []) || "all";
}

/** A lost vCPU cgroup for one guest node: what it costs depends on what the plan used it for. */
export function lostVcpuCgroup(plan: Plan, guestNode: number, reason: string, vmCgroupLost = false): LostPlacement {
  const node = plan.nodes.find((n) => n.guestNode === guestNode);
  const privateViaCpuset = node?.private.mechanism === "vcpu-cpuset";
  return {
    guestNode,
    what: privateViaCpuset ? "private memory" : "vCPU placement",
    mechanism: "vcpu-cpuset",
    reason,
    consequence: privateViaCpuset
      ? `it will follow QEMU's process policy (VM cgroup mems ${vmMems(plan)})`
      : vmCgroupLost
        ? "its vCPU threads run wherever QEMU's process may"
        : "its vCPU threads stay in the VM cgroup, on any of its CPUs",
  };
}

const VM_LEVEL = new Set(["VM cgroup", "qcvm parent cgroup", "cgroup v2 root"]);

function lostVmCgroup(plan: Plan, vmError: CgroupError): LostPlacement {
  // Without a planned VM cpuset the VM cgroup is only the accounting unit.
  const planned = plan.launch.cgroups.some((c) => c.name === "" && (c.cpus.length > 0 || c.mems.length > 0));
  return {
    what: "QEMU process",
    mechanism: "VM cgroup",
    reason: describeErrno(vmError),
    consequence: planned
      ? `QEMU runs in qcvm's own cgroup: its memory is not confined to host nodes ${vmMems(plan)} and not accounted per VM`
      : "QEMU runs in qcvm's own cgroup: its memory is not accounted per VM (qcvm stats cannot attribute it)",
    ...(planned ? {} : { accountingOnly: true }),
  };
}

/**
 * What createVmCgroup's (or addProcess's) errors cost, as lost placements: one for the VM cgroup
 * (QEMU's process) and one per guest node whose vCPU child is missing or failed. A child that was
 * never made because its parent could not be is lost for the parent's reason, not a vaguer one.
 * Returns the reason per failed child too, so thread placement does not report it twice.
 */
export function lostFromCgroupErrors(
  errors: readonly CgroupError[],
  plan: Plan,
  existingChildren?: readonly string[],
): { lost: LostPlacement[]; failedChildren: Map<string, string> } {
  const lost: LostPlacement[] = [];
  const failedChildren = new Map<string, string>();
  const vmError = errors.find((e) => VM_LEVEL.has(e.subject));
  if (vmError) lost.push(lostVmCgroup(plan, vmError));
  const accounting = errors.find((e) => e.subject === "VM memory accounting");
  if (accounting) {
    lost.push({
      what: "memory accounting",
      mechanism: "memory cgroup",
      reason: describeErrno(accounting),
      consequence: "qcvm stats cannot attribute the VM's private memory per host node",
      accountingOnly: true,
    });
  }
  for (const c of plan.launch.cgroups) {
    if (c.name === "") continue;
    const own = errors.find((e) => e.subject === `vCPU cgroup ${c.name}`);
    const missing = existingChildren !== undefined && !existingChildren.includes(c.name);
    const reason = own
      ? describeErrno(own)
      : missing
        ? vmError
          ? describeErrno(vmError)
          : "the cpuset controller is not available"
        : undefined;
    if (!reason) continue;
    failedChildren.set(c.name, reason);
    for (const g of nodesOfChild(plan, c.name)) lost.push(lostVcpuCgroup(plan, g, reason, vmError !== undefined));
  }
  return { lost, failedChildren };
}

export function countOf(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** placement.strict: the losses, and what became of the launch. */
export function strictError(lost: readonly LostPlacement[], what: string): UserError {
  return new UserError(
    `placement.strict: ${countOf(lost.length, "placement")} could not be applied; ${what}:\n` +
      lost.map((l) => `  ${formatLost(l)}`).join("\n"),
  );
}
