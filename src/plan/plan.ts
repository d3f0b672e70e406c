// The placement planner: profile + host + QEMU capabilities -> plan. Pure: no I/O, no clock, so
// `qcvm plan`, `render` and `launch` see the same plan and tests can table it.
//
// A guest node's memory has two halves (DOMAIN.md): the shared half lives in the memory backend's
// mapping, which QEMU mbind()s to the backend's host-nodes/policy; the private half of an SEV-SNP
// or TDX guest lives in guest_memfd, which no upstream QEMU gives a policy, so its pages go where
// the allocating thread's mempolicy and cpuset allow. For the private half the planner tries the
// levers of levers.ts (PRIVATE_LEVERS) and keeps the best; shared.ts places the shared half,
// capacity.ts checks it fits, prealloc.ts states what guest-memfd-prealloc does before `cont`,
// checks.ts holds the checks that are not choices. This file puts
// those steps in order and assembles the Plan value.
import { formatList } from "../core/lists.js";
import { diag } from "../core/diagnostics.js";
import { CONFIDENTIAL, usesGuestMemfd } from "../core/confidential.js";
import { choosePrivate, notApplicable } from "./levers.js";
import { planShared, weightedProcessPolicy } from "./shared.js";
import type { SharedOutcome } from "./shared.js";
import { planCapacity } from "./capacity.js";
import type { Concerns } from "./capacity.js";
import { checkHost, checkHostNodes, checkStrict, typeWarnings } from "./checks.js";
import { applyKvmAccess, withoutMempolicy } from "./host-levers.js";
import { preallocPlan } from "./prealloc.js";
import { FIDELITY_RANK, guestNodesOf, hasCpuset, hostCpusFor, union } from "./model.js";
import type { Ctx, Outcome, Strategy } from "./model.js";
import type {
  CgroupPlan,
  Diagnostic,
  Fidelity,
  HostInfo,
  Plan,
  PlanNode,
  Profile,
  QemuCapabilities,
  ThreadPin,
} from "../core/types.js";

export { usesGuestMemfd };
export { formatBytes, guestNodesOf, TIGHT_RATIO } from "./model.js";

/** The context for planning: the profile's guest nodes, cut down to the host nodes that exist. */
function planContext(profile: Profile, host: HostInfo, caps: QemuCapabilities, sink: Sink): Ctx {
  const type = profile.confidential.type;
  const implicit = profile.numa.nodes.length === 0;
  const nodes = guestNodesOf(profile);
  const paths = nodes.map((_, i) => (implicit ? "memory" : `numa.nodes[${i}]`));
  checkHost(profile, host, sink.errors, sink.warnings);
  const hostIds = host.nodes.map((n) => n.id).sort((a, b) => a - b);
  checkHostNodes(nodes, paths, hostIds, sink.errors);
  // Plan what exists; the errors above already say the plan does not hold.
  const planned = nodes.map((g) => ({ ...g, hostNodes: g.hostNodes.filter((n) => hostIds.includes(n)) }));
  for (const g of planned) if (g.hostNodes.length === 0 && g.policy !== "default") g.policy = "default";
  const cpuInfo = planned.map((g) => hostCpusFor(g, host));
  cpuInfo.forEach((c, i) => {
    for (const note of c.notes)
      sink.warnings.push(diag("warning", "placement.memory-only-node", `${paths[i]}.hostNodes`, note));
  });
  return {
    profile,
    host,
    caps,
    nodes: planned,
    paths,
    hostCpus: cpuInfo.map((c) => c.cpus),
    allHostNodes: hostIds,
    populate: (type !== "none" && CONFIDENTIAL[type].populate) || "launch-time populate",
    guestMemfd: usesGuestMemfd(type),
  };
}

interface Sink {
  errors: Diagnostic[];
  warnings: Diagnostic[];
  concerns: Concerns;
}

/** With in-place conversion the guest_memfd is also the shared memory: one file, one policy. */
function sharedInPrivate(ctx: Ctx, outcomes: Outcome[], shared: SharedOutcome[]): void {
  outcomes.forEach((o, i) => {
    if (o.mechanism !== "guest-memfd-mempolicy") return;
    const g = ctx.nodes[i]!;
    shared[i] = {
      mechanism: "backend-policy",
      reason: `the backend's memory is the guest_memfd itself, converted in place: shared pages live in the same file under the same host-nodes=${formatList(g.hostNodes)},policy=${g.policy}`,
      place: o.place,
      inPrivate: true,
    };
  });
}

function planNodesOf(ctx: Ctx, profile: Profile, outcomes: Outcome[], shared: SharedOutcome[]): PlanNode[] {
  const written = guestNodesOf(profile);
  return ctx.nodes.map((g, i) => {
    const o = outcomes[i]!;
    const sh = shared[i]!;
    const node: PlanNode = {
      guestNode: g.id,
      hostNodes: written[i]!.hostNodes,
      policy: written[i]!.policy,
      sizeBytes: g.memoryBytes,
      cpus: g.cpus,
      hostCpus: ctx.hostCpus[i]!,
      shared: { mechanism: sh.mechanism, reason: sh.reason, hostNodes: sh.place.nodes },
      private: { mechanism: o.mechanism, fidelity: o.fidelity, reason: o.reason },
    };
    if (ctx.guestMemfd) node.private.hostNodes = o.place.nodes;
    if (o.backend) node.private.backend = o.backend;
    if (g.weights) node.weights = g.weights;
    return node;
  });
}

/** Cgroups: per-node vCPU cpusets when they place private memory (vcpu-cpuset), or to pin vCPUs. */
function planCgroups(ctx: Ctx, strategy: Strategy): CgroupPlan[] {
  const { profile, host, nodes: planned } = ctx;
  const cpuset = strategy.childMems !== undefined;
  if (!cpuset && !(profile.placement.pinVcpus && hasCpuset(host))) return [];
  const childMems = strategy.childMems ?? planned.map(() => [] as number[]);
  // Only pinning: the VM cgroup must not turn soft policies into a wall, so it spans every
  // host node unless every guest node binds anyway.
  const vmMems = cpuset
    ? union(childMems)
    : planned.every((g) => g.policy === "bind")
      ? union(planned.map((g) => g.hostNodes))
      : ctx.allHostNodes;
  const cgroups: CgroupPlan[] = [{ name: "", cpus: union(ctx.hostCpus), mems: vmMems, tasks: "process" }];
  planned.forEach((g, i) => {
    cgroups.push({
      name: `vcpu-node${g.id}`,
      cpus: ctx.hostCpus[i]!,
      mems: cpuset ? childMems[i]! : vmMems,
      tasks: { vcpus: g.cpus },
    });
  });
  return cgroups;
}

function planPinning(ctx: Ctx): ThreadPin[] {
  if (!ctx.profile.placement.pinVcpus) return [];
  const pins = ctx.nodes.flatMap((g, i) => g.cpus.map((vcpu) => ({ vcpu, hostCpus: ctx.hostCpus[i]! })));
  return pins.sort((a, b) => a.vcpu - b.vcpu);
}

/** Does a diagnostic concern guest node i: its path is under the node's, or capacity says so. */
function concernsNode(d: Diagnostic, i: number, path: string, concerns: Concerns): boolean {
  const under = d.path === path || d.path.startsWith(`${path}.`) || d.path.startsWith(`${path}[`);
  return under || (concerns.get(d)?.includes(i) ?? false);
}

/**
 * A node with errors is not placed as planned: its fidelity is none, and it carries the errors so
 * every view of the plan (text, json, dot, svg) can show them at the node.
 */
function markFailingNodes(planNodes: PlanNode[], ctx: Ctx, sink: Sink): void {
  planNodes.forEach((n, i) => {
    const errors = sink.errors.filter((d) => concernsNode(d, i, ctx.paths[i]!, sink.concerns));
    if (errors.length === 0) return;
    n.errors = errors;
    const what = `not placed as planned: ${errors.length === 1 ? "1 error" : `${errors.length} errors`} (${errors.map((d) => d.message).join("; ")})`;
    // A node whose host nodes do not exist was planned without them: that plan says nothing.
    const missing = errors.some((d) => d.code === "placement.host-node-missing");
    n.private = {
      ...n.private,
      mechanism: missing ? "none" : n.private.mechanism,
      fidelity: "none",
      reason: missing ? what : `${what}; as planned otherwise: ${n.private.reason}`,
    };
    if (missing) n.shared = { ...n.shared, mechanism: "none", reason: what };
  });
}

export interface PlanOptions {
  /** Planning a launch on this host: the levers this process lacks (KVM it cannot use, memory
   *  policies the kernel refuses: HostInfo.kvmAccess, .mempolicy) are dropped (host-levers.ts). */
  launch?: boolean;
}

export function planPlacement(
  profile: Profile,
  host: HostInfo,
  caps: QemuCapabilities,
  options: PlanOptions = {},
): Plan {
  const plan = planFor(profile, host, caps);
  if (!options.launch) return plan;
  const accel = applyKvmAccess(plan, profile, host);
  return host.mempolicy.allowed
    ? accel
    : withoutMempolicy(accel, host.mempolicy.reason ?? "memory policies are refused");
}

function planFor(profile: Profile, host: HostInfo, caps: QemuCapabilities): Plan {
  const sink: Sink = { errors: [], warnings: [], concerns: new Map() };
  const { errors, warnings } = sink;
  const ctx = planContext(profile, host, caps, sink);
  const type = profile.confidential.type;
  const strategy: Strategy = ctx.guestMemfd
    ? choosePrivate(ctx)
    : { outcomes: ctx.nodes.map((g) => notApplicable(type, g)) };
  if (strategy.warnings) warnings.push(...strategy.warnings);
  const process = strategy.process ?? weightedProcessPolicy(ctx, warnings);
  const cpuset = strategy.childMems !== undefined;
  const shared = ctx.nodes.map((_, i) => planShared(ctx, i, process, cpuset, warnings));
  sharedInPrivate(ctx, strategy.outcomes, shared);
  const planNodes = planNodesOf(ctx, profile, strategy.outcomes, shared);
  typeWarnings(ctx, process, warnings);
  if (profile.placement.strict) checkStrict(planNodes, ctx.paths, ctx.guestMemfd, errors);
  const capacity = planCapacity(ctx, ctx.guestMemfd, shared, strategy.outcomes, sink);
  const prealloc = preallocPlan(ctx, planNodes, sink);
  markFailingNodes(planNodes, ctx, sink);

  // Plan diagnostics name the profile they are about, like the validator's.
  for (const d of [...errors, ...warnings]) d.file ??= profile.file;

  const plan: Plan = {
    name: profile.name,
    confidential: type,
    guestMemfd: ctx.guestMemfd,
    nodes: planNodes,
    launch: { cgroups: planCgroups(ctx, strategy), pinning: planPinning(ctx) },
    capacity,
    warnings,
    errors,
  };
  if (process) plan.launch.processPolicy = process.policy;
  if (prealloc) plan.launch.prealloc = prealloc;
  return plan;
}

/** The lowest private fidelity over a plan's nodes (what `status` shows in one word). */
export function planFidelity(plan: Plan): Fidelity {
  let worst: Fidelity = "exact";
  for (const n of plan.nodes) if (FIDELITY_RANK[n.private.fidelity] < FIDELITY_RANK[worst]) worst = n.private.fidelity;
  return worst;
}
