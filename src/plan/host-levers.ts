// Levers this process may not have when planning a launch: KVM it cannot use (the plan falls
// back to TCG for plain guests) and memory policies the kernel refuses (the plan drops backend
// host-nodes and numactl, and says what each loss costs). Pure: the facts come from the probe
// (HostInfo.kvmAccess, HostInfo.mempolicy); planPlacement applies them.
import { diag } from "../core/diagnostics.js";
import { formatList } from "../core/lists.js";
import type { Diagnostic, HostInfo, LostPlacement, Plan, Profile } from "../core/types.js";

const KVM_HINT =
  "set machine.accel: tcg to say so, or load kvm_amd/kvm_intel and give this user read-write access to /dev/kvm";

/**
 * The one warning that this launch runs under TCG instead of KVM. The planner's generic host.kvm
 * warning gives way to it: the probe knows more (an EACCES, a file where the device should be,
 * QEMU's own words on a retry), so this takes the other's place and position.
 */
export function kvmFallbackWarning(profile: Profile, access: HostInfo["kvmAccess"], planned?: Diagnostic): Diagnostic {
  const problem = access.problem ?? "/dev/kvm is not usable";
  return diag(
    "warning",
    "host.kvm",
    "machine.accel",
    `${problem}: falling back to tcg (software emulation, much slower${profile.cpu.model === "host" ? "; cpu.model host becomes max" : ""})`,
    {
      got: "kvm",
      hint: access.hint ?? KVM_HINT,
      file: planned?.file ?? profile.file,
      ...(planned?.line ? { line: planned.line, col: planned.col } : {}),
    },
  );
}

/**
 * A launch of a plain guest on a host whose KVM this process cannot use runs under TCG: the plan
 * says so (launch.accel, read by the renderer) and its host.kvm warning becomes the precise one.
 * Confidential guests have no fallback (prepare refuses them).
 */
export function applyKvmAccess(plan: Plan, profile: Profile, host: HostInfo): Plan {
  if (host.kvmAccess.usable || profile.machine.accel !== "kvm" || profile.confidential.type !== "none") return plan;
  const planned = plan.warnings.find((w) => w.code === "host.kvm");
  const warnings = plan.warnings.filter((w) => w !== planned);
  warnings.push(kvmFallbackWarning(profile, host.kvmAccess, planned));
  return { ...plan, warnings, launch: { ...plan.launch, accel: "tcg" } };
}

/** Host nodes the plan asks the kernel to bind memory to (backend mbind or numactl). */
function mempolicyNodes(plan: Plan): number[] {
  const nodes = new Set<number>();
  for (const n of plan.nodes) if (n.shared.mechanism === "backend-policy") n.hostNodes.forEach((h) => nodes.add(h));
  if (plan.launch.processPolicy) plan.nodes.forEach((n) => n.hostNodes.forEach((h) => nodes.add(h)));
  return [...nodes];
}

function vmMems(plan: Plan): string {
  const vm = plan.launch.cgroups.find((c) => c.name === "");
  return formatList(vm?.mems ?? []) || "all";
}

/** The plan without kernel memory policies (no backend host-nodes, no numactl), and what that loses. */
export function withoutMempolicy(plan: Plan, reason: string): Plan {
  if (mempolicyNodes(plan).length === 0) return plan;
  const lost: LostPlacement[] = [];
  const nodes = plan.nodes.map((n) => {
    const changes: Partial<typeof n> = {};
    if (n.shared.mechanism === "backend-policy") {
      lost.push({
        guestNode: n.guestNode,
        what: "shared memory",
        mechanism: "backend-policy",
        reason,
        consequence: plan.launch.cgroups.some((c) => c.mems.length > 0)
          ? `only the VM's cpuset mems (${vmMems(plan)}) bound it`
          : "it goes wherever it is first touched",
      });
      changes.shared = { ...n.shared, mechanism: "none", reason: `lost at launch: ${reason}` };
    }
    if (plan.launch.processPolicy && n.private.mechanism === "process-mempolicy") {
      lost.push({
        guestNode: n.guestNode,
        what: "private memory",
        mechanism: "process-mempolicy",
        reason,
        consequence: "it follows the VM cgroup's mems only",
      });
      changes.private = { ...n.private, mechanism: "none", fidelity: "none", reason: `lost at launch: ${reason}` };
    }
    return { ...n, ...changes };
  });
  const { processPolicy: _dropped, ...rest } = plan.launch;
  const launch = {
    ...rest,
    ...(lost.length ? { lost: [...(plan.launch.lost ?? []), ...lost] } : {}),
  };
  return { ...plan, nodes, launch };
}
