// Levers for private (guest_memfd) memory, as a table: each entry says what it is, what it needs of
// the host and QEMU whatever the profile (blocker: doctor lists these, so doctor and plan agree on
// what a host can do), and what it gives each guest node of a profile (plan). The planner tries
// them in table order and keeps the best; adding a mechanism is one entry here.
//   guest-memfd-mempolicy  the policy stored on the guest_memfd (Linux 6.19 + a QEMU that sets it)
//   process-mempolicy      one numactl policy for the process, exact when every guest node wants the same
//   guest-memfd-prealloc   each node's guest_memfd fallocated under its own policy before the guest
//                          starts (launch/prealloc.ts), exact-at-launch; vCPU cpusets catch re-faults
//   vcpu-cpuset            per-vCPU-thread cpuset cgroups (libvirt's restrictive mode), first-touch
//   process-mempolicy      one numactl policy over the union of the nodes, coarse
// (b) beats (c) at equal fidelity because it also covers what QEMU's main thread populates at launch.
import { formatList } from "../core/lists.js";
import { FEATURES, hasFeature } from "../probe/capabilities.js";
import { diag } from "../core/diagnostics.js";
import { confidentialFacts } from "../core/confidential.js";
import { KERNEL, kernelAtLeast, pidfdGetfdSupport } from "../core/host-support.js";
import { numactlPolicy } from "./numactl.js";
import {
  FIDELITY_RANK,
  SOFT_ANYWHERE,
  defaultOutcome,
  formatBytes,
  hasCpuset,
  isPlaced,
  nodesText,
  numactlInstalled,
  ownPlacement,
  sameList,
  union,
  weightsKey,
} from "./model.js";
import type { Ctx, Outcome, Placement, Strategy, Unavailable } from "./model.js";
import type {
  ConfidentialType,
  Diagnostic,
  Fidelity,
  GuestNumaNode,
  HostInfo,
  MemPolicy,
  PrivateBackend,
  PrivateMechanism,
  QemuCapabilities,
} from "../core/types.js";

export interface PrivateLever {
  mechanism: PrivateMechanism;
  /** How reasons and doctor name it. */
  name: string;
  /** The best it gives, and when: for doctor. */
  best: Fidelity;
  when: string;
  /** Why this host and QEMU cannot use it for a guest of this type at all; undefined = usable. */
  blocker(host: HostInfo, caps: QemuCapabilities, type: ConfidentialType): string | undefined;
  /** What it gives each guest node of this profile, or why it cannot place this profile. */
  plan(ctx: Ctx): Strategy | Unavailable;
}

/** The backend that applies host-nodes/policy to guest_memfd, when this QEMU has one. */
export function guestMemfdBackend(caps: QemuCapabilities, type: ConfidentialType): PrivateBackend | undefined {
  const convertInPlace = type === "sev-snp";
  if (hasFeature(caps, "guest-memfd-backend"))
    return { qomType: FEATURES["guest-memfd-backend"].type, guestMemfdProperty: false, convertInPlace };
  if (hasFeature(caps, "memfd-guest-memfd"))
    return { qomType: "memory-backend-memfd", guestMemfdProperty: true, convertInPlace };
  return undefined;
}

const backendText = (b: PrivateBackend) => (b.guestMemfdProperty ? `${b.qomType},guest-memfd=on` : b.qomType);

function guestMemfdBlocker(host: HostInfo, caps: QemuCapabilities, type: ConfidentialType): string | undefined {
  const missing: string[] = [];
  if (!host.guestMemfdMempolicy)
    missing.push(`Linux ${host.kernel} has no guest_memfd mempolicy (Linux ${KERNEL.guestMemfdMempolicy})`);
  if (!guestMemfdBackend(caps, type)) {
    missing.push(
      `QEMU ${caps.version} has no backend that applies host-nodes/policy to guest_memfd (memory-backend-guest-memfd or memory-backend-memfd guest-memfd=on: in no upstream release)`,
    );
  }
  // Linux 6.19 scopes the guest_memfd policy to VMs without private memory; SNP and TDX pages
  // also need in-place conversion (under review), which QEMU exposes only for SNP, out of tree.
  if (type === "sev-snp" && !hasFeature(caps, "snp-convert-in-place")) {
    missing.push(
      `an SNP guest also needs in-place conversion, and QEMU ${caps.version} has no sev-snp-guest convert-in-place (in no upstream release)`,
    );
  }
  if (type === "tdx") {
    missing.push("a TDX guest also needs in-place conversion, which no QEMU exposes for tdx-guest yet");
  }
  return missing.length > 0 ? missing.join("; ") : undefined;
}

/** (a) The policy stored on the guest_memfd itself: Linux 6.19, and a QEMU that applies it. */
function tryGuestMemfdMempolicy(ctx: Ctx): Strategy | Unavailable {
  const { caps, profile } = ctx;
  const backend = guestMemfdBackend(caps, profile.confidential.type)!;
  if (backend.guestMemfdProperty && profile.memory.backend !== "memfd") {
    return {
      unavailable: `${backendText(backend)} carries the policy, and memory.backend is ${profile.memory.backend}, not memfd`,
    };
  }
  const weighted = ctx.nodes.filter((g) => g.policy === "weighted-interleave").map((g) => g.id);
  if (weighted.length > 0) {
    return {
      unavailable: `QEMU memory backends have no weighted-interleave policy (guest node ${formatList(weighted)})`,
    };
  }
  const preferredMany = hasFeature(caps, "preferred-many");
  const shown = backendText(backend);
  const outcomes = ctx.nodes.map((g): Outcome => {
    if (!isPlaced(g)) return defaultOutcome();
    if (g.policy === "preferred" && g.hostNodes.length > 1 && !preferredMany) {
      return {
        mechanism: "guest-memfd-mempolicy",
        fidelity: "coarse",
        reason: `${shown} host-nodes=${formatList(g.hostNodes)},policy=preferred sets the policy on the guest_memfd, but QEMU ${caps.version} has no MPOL_PREFERRED_MANY (QEMU 8.0): the kernel prefers only host node ${g.hostNodes[0]}`,
        place: { policy: "preferred", nodes: [g.hostNodes[0]!], hard: false },
        backend,
      };
    }
    return {
      mechanism: "guest-memfd-mempolicy",
      fidelity: "exact",
      reason: `${shown} host-nodes=${formatList(g.hostNodes)},policy=${g.policy}: the policy is stored on the guest_memfd (Linux ${KERNEL.guestMemfdMempolicy}) and every private allocation follows it, the launch-time populate included`,
      place: ownPlacement(g),
      backend,
    };
  });
  return { outcomes };
}

/** (b) One numactl policy for the whole process, exact when every guest node wants the same. */
function tryProcessSame(ctx: Ctx): Strategy | Unavailable {
  const first = ctx.nodes[0]!;
  const same = ctx.nodes.every(
    (g) =>
      g.policy === first.policy &&
      sameList(g.hostNodes, first.hostNodes) &&
      weightsKey(g.weights) === weightsKey(first.weights),
  );
  if (!same)
    return {
      unavailable: "guest nodes want different host nodes or policies, so one process-wide policy cannot be exact",
    };
  const r = numactlPolicy(first.policy, first.hostNodes, ctx.host, first.weights);
  if ("unavailable" in r) return r;
  const { process, degraded } = r;
  const outcomes = ctx.nodes.map((g): Outcome => ({
    mechanism: "process-mempolicy",
    fidelity: degraded ? "coarse" : "exact",
    reason: degraded
      ? `${process.shown} before exec: every QEMU thread inherits it, but ${degraded}`
      : `${process.shown} before exec: every QEMU thread inherits it, so private pages follow it whichever thread allocates them (vCPU faults and the ${ctx.populate} by QEMU's main thread alike)`,
    place: degraded ? { policy: "preferred", nodes: process.policy.nodes, hard: false } : ownPlacement(g),
  }));
  return { outcomes, process };
}

const POLICY_TEXT: Record<MemPolicy, string> = {
  bind: "MPOL_BIND",
  preferred: "MPOL_PREFERRED",
  interleave: "MPOL_INTERLEAVE",
  "weighted-interleave": "MPOL_WEIGHTED_INTERLEAVE",
  default: "no policy",
};

/** What guest-memfd-prealloc needs of any host (pidfd_getfd, not forbidden by Yama): the
 *  host-support answer, in one clause; undefined when the host has it. */
function preallocBlocker(host: HostInfo): string | undefined {
  const { ok, missing } = pidfdGetfdSupport(host);
  return ok ? undefined : missing.join("; ");
}

/** What guest-memfd-prealloc needs of this host for this profile's policies, in words; [] when
 *  it has it all. */
export function preallocMissing(ctx: Ctx): string[] {
  const { host } = ctx;
  const missing: string[] = [];
  const blocked = preallocBlocker(host);
  if (blocked) missing.push(blocked);
  const weighted = ctx.nodes.filter((g) => g.policy === "weighted-interleave").map((g) => g.id);
  if (weighted.length > 0 && !host.weightedInterleave)
    missing.push(
      `Linux ${host.kernel} has no MPOL_WEIGHTED_INTERLEAVE (Linux ${KERNEL.weightedInterleave}) for guest node ${formatList(weighted)}`,
    );
  const many = ctx.nodes.filter((g) => g.policy === "preferred" && g.hostNodes.length > 1).map((g) => g.id);
  if (many.length > 0 && !kernelAtLeast(host, KERNEL.preferredMany))
    missing.push(
      `Linux ${host.kernel} has no MPOL_PREFERRED_MANY (Linux ${KERNEL.preferredMany}) for guest node ${formatList(many)}`,
    );
  return missing;
}

/** (p) guest-memfd-prealloc: exact when the guest starts; vCPU cpusets catch later re-faults. */
function tryGuestMemfdPrealloc(ctx: Ctx): Strategy | Unavailable {
  if (ctx.profile.placement.private === "on-demand")
    return { unavailable: "placement.private is on-demand, so nothing is pre-allocated" };
  const missing = preallocMissing(ctx);
  if (missing.length > 0) return { unavailable: missing.join("; ") };
  const noCpuset = cpusetBlocker(ctx.host);
  const cpusets = noCpuset === undefined ? tryVcpuCpuset(ctx) : undefined;
  const childMems = cpusets?.childMems;
  const outcomes = ctx.nodes.map((g, i): Outcome => {
    if (!isPlaced(g)) return defaultOutcome();
    const policy = g.policy === "preferred" && g.hostNodes.length > 1 ? "MPOL_PREFERRED_MANY" : POLICY_TEXT[g.policy];
    const after = childMems
      ? `by the faulting vCPU thread in cgroup vcpu-node${g.id} (cpuset.mems=${formatList(childMems[i]!)}): first-touch`
      : `by the faulting thread wherever it runs (${noCpuset})`;
    return {
      mechanism: "guest-memfd-prealloc",
      fidelity: "exact-at-launch",
      reason: `before the guest starts, qcvm takes guest node ${g.id}'s guest_memfd (pidfd_getfd, Linux ${KERNEL.pidfdGetfd}) and fallocates all ${formatBytes(g.memoryBytes)} of it from the VM cgroup under ${policy} over ${nodesText(g.hostNodes)}: every private page is there at launch, and the ${ctx.populate} uses those pages; a page the guest converts to shared and back is allocated again ${after}`,
      place: ownPlacement(g),
    };
  });
  return cpusets ? { outcomes, childMems, warnings: cpusets.warnings ?? [] } : { outcomes };
}

/** (c) libvirt's restrictive mode: each guest node's vCPU threads in a cpuset of its own nodes. */
function tryVcpuCpuset(ctx: Ctx): Strategy {
  const childMems = ctx.nodes.map((g) => (isPlaced(g) ? g.hostNodes : ctx.allHostNodes));
  const vmMems = union(childMems);
  const warnings: Diagnostic[] = [];
  // cpuset.mems is a hard wall; leaving mems wide would drop the preference altogether.
  const hardened = (g: GuestNumaNode, i: number) =>
    diag(
      "warning",
      "placement.preferred-hardened",
      `${ctx.paths[i]}.policy`,
      `guest node ${g.id} asks for preferred ${formatList(g.hostNodes)}, but the cpuset that places its private memory is a hard wall: when ${nodesText(g.hostNodes)} fill, private faults fail instead of falling back`,
      {
        got: "preferred",
        hint: `use policy bind to say so, or a host with guest_memfd mempolicy (Linux ${KERNEL.guestMemfdMempolicy}) for a real preference`,
      },
    );
  const outcomes = ctx.nodes.map((g, i): Outcome => {
    if (!isPlaced(g)) return defaultOutcome();
    const where = `vCPU threads of guest node ${g.id} go to cgroup vcpu-node${g.id} (cpuset.mems=${formatList(g.hostNodes)}, cpuset.cpus=${formatList(ctx.hostCpus[i]!)})`;
    const caveat = `pages QEMU's main thread populates at launch (${ctx.populate}) land anywhere in the VM cgroup's mems ${formatList(vmMems)}, and a page first touched by another guest node's vCPU lands on that vCPU's nodes`;
    const place: Placement = { policy: g.hostNodes.length > 1 ? "interleave" : "bind", nodes: g.hostNodes, hard: true };
    // When this node's nodes are the VM cgroup's too, QEMU's main thread is walled in the same
    // place as the vCPUs, so what it populates at launch lands right as well.
    const everyThread = sameList(g.hostNodes, vmMems);
    const allThreads = `every QEMU thread's cpuset (the VM cgroup's and vcpu-node${g.id}'s) has mems ${formatList(g.hostNodes)}, so every private page lands on ${nodesText(g.hostNodes)}, the ${ctx.populate} by the main thread included`;
    if (everyThread && (g.policy === "bind" || g.policy === "preferred")) {
      if (g.policy === "preferred") warnings.push(hardened(g, i));
      return {
        mechanism: "vcpu-cpuset",
        fidelity: "exact",
        reason:
          g.policy === "bind"
            ? allThreads
            : `${allThreads}; cpuset.mems is a hard wall, so preferred acts as bind (no fallback)`,
        place,
      };
    }
    switch (g.policy) {
      case "bind":
        return {
          mechanism: "vcpu-cpuset",
          fidelity: "first-touch",
          reason: `${where}: private pages they fault land on ${nodesText(g.hostNodes)}; ${caveat}`,
          place,
        };
      case "preferred":
        warnings.push(hardened(g, i));
        return {
          mechanism: "vcpu-cpuset",
          fidelity: "first-touch",
          reason: `${where}: private pages they fault land on ${nodesText(g.hostNodes)}, with no fallback since cpuset.mems is a hard wall (preferred acts as bind); ${caveat}`,
          place,
        };
      case "interleave":
      case "weighted-interleave":
        return {
          mechanism: "vcpu-cpuset",
          fidelity: "coarse",
          reason: `${where}: cpuset can confine private pages to ${nodesText(g.hostNodes)} but cannot ${g.policy === "interleave" ? "interleave" : "weight"} them: each fault takes the node local to the CPU the vCPU runs on; ${caveat}`,
          place,
        };
      default:
        return defaultOutcome();
    }
  });
  return { outcomes, childMems, warnings };
}

/** (d) One numactl policy over the union of every guest node's host nodes. */
function tryProcessUnion(ctx: Ctx): Strategy | Unavailable {
  const placed = ctx.nodes.filter(isPlaced);
  const nodes = union(placed.map((g) => g.hostNodes));
  const policies = new Set(placed.map((g) => g.policy));
  // Mixed policies: bind is the one that keeps every node's memory inside the union.
  const policy: MemPolicy = policies.size === 1 ? placed[0]!.policy : "bind";
  if ((policy === "bind" || policy === "preferred") && sameList(nodes, ctx.allHostNodes)) {
    return {
      unavailable: `the guest nodes together span every host node (${formatList(nodes)}), so a process-wide ${policy} would constrain nothing`,
    };
  }
  const r = numactlPolicy(policy, nodes, ctx.host);
  if ("unavailable" in r) return r;
  const { process, degraded } = r;
  const outcomes = ctx.nodes.map((g): Outcome => ({
    mechanism: "process-mempolicy",
    fidelity: "coarse",
    reason: isPlaced(g)
      ? `${process.shown} before exec: private pages stay within ${nodesText(process.policy.nodes)} (every guest node's nodes together), not within guest node ${g.id}'s own ${formatList(g.hostNodes)}${degraded ? `; ${degraded}` : ""}`
      : `policy default asks for no placement, but the process-wide ${process.shown} the other guest nodes need confines this node's private pages to ${nodesText(process.policy.nodes)} too`,
    place: { policy: process.policy.policy, nodes: process.policy.nodes, hard: process.policy.policy === "bind" },
  }));
  return { outcomes, process };
}

function cpusetBlocker(host: HostInfo): string | undefined {
  if (hasCpuset(host)) return undefined;
  return host.cgroup.version === "none"
    ? "no cgroup hierarchy is mounted, so there is no cpuset to put vCPU threads in"
    : `no cpuset controller (cgroup v${host.cgroup.version} controllers: ${host.cgroup.controllers.join(" ") || "none"})`;
}

const numactlBlocker = (host: HostInfo) =>
  numactlInstalled(host) ? undefined : "numactl is not installed on this host";

/** The levers, in order of preference at equal fidelity. */
export const PRIVATE_LEVERS: readonly PrivateLever[] = [
  {
    mechanism: "guest-memfd-mempolicy",
    name: "guest_memfd mempolicy",
    best: "exact",
    when: "for every guest node, on its own host nodes and policy",
    blocker: guestMemfdBlocker,
    plan: tryGuestMemfdMempolicy,
  },
  {
    mechanism: "process-mempolicy",
    name: "process-wide policy",
    best: "exact",
    when: "when every guest node wants the same host nodes and policy",
    blocker: numactlBlocker,
    plan: tryProcessSame,
  },
  {
    mechanism: "guest-memfd-prealloc",
    name: "guest_memfd pre-allocation",
    best: "exact-at-launch",
    when: "for every guest node, on its own host nodes and policy, when the guest starts (re-faults after a conversion: first-touch)",
    blocker: preallocBlocker,
    plan: tryGuestMemfdPrealloc,
  },
  {
    mechanism: "vcpu-cpuset",
    name: "vCPU cpusets",
    best: "first-touch",
    when: "per guest node (exact where one node's nodes are every node's)",
    blocker: cpusetBlocker,
    plan: tryVcpuCpuset,
  },
  {
    mechanism: "process-mempolicy",
    name: "process-wide policy over the union",
    best: "coarse",
    when: "for guest nodes that want different host nodes",
    blocker: numactlBlocker,
    plan: tryProcessUnion,
  },
];

function noLever(ctx: Ctx, why: string[]): Strategy {
  const outcomes = ctx.nodes.map((g): Outcome =>
    isPlaced(g)
      ? {
          mechanism: "none",
          fidelity: "none",
          reason: `no lever reaches private memory here (${why.join("; ")}): guest node ${g.id}'s private pages land on whichever node is local to the thread that faults them, not on ${nodesText(g.hostNodes)}`,
          place: SOFT_ANYWHERE,
        }
      : defaultOutcome(),
  );
  return { outcomes };
}

function score(s: Strategy, nodes: GuestNumaNode[]): [number, number] {
  const ranks = s.outcomes.filter((_, i) => isPlaced(nodes[i]!)).map((o) => FIDELITY_RANK[o.fidelity]);
  if (ranks.length === 0) return [FIDELITY_RANK.exact, 0];
  return [Math.min(...ranks), ranks.reduce((a, b) => a + b, 0)];
}

/** The best lever for this guest: the highest worst-node fidelity, then the highest sum; ties go
 *  to the earlier entry of PRIVATE_LEVERS. */
export function choosePrivate(ctx: Ctx): Strategy {
  if (!ctx.nodes.some(isPlaced)) return { outcomes: ctx.nodes.map(defaultOutcome) };
  const why: string[] = [];
  let best: { s: Strategy; sc: [number, number]; whyBefore: string[] } | undefined;
  // placement.private: prealloc asks for that lever alone (plan/prealloc.ts errors when it is out).
  const levers =
    ctx.profile.placement.private === "prealloc"
      ? PRIVATE_LEVERS.filter((l) => l.mechanism === "guest-memfd-prealloc")
      : PRIVATE_LEVERS;
  for (const lever of levers) {
    const blocked = lever.blocker(ctx.host, ctx.caps, ctx.profile.confidential.type);
    const r = blocked !== undefined ? { unavailable: blocked } : lever.plan(ctx);
    if ("unavailable" in r) {
      why.push(`${lever.name}: ${r.unavailable}`);
      continue;
    }
    const sc = score(r, ctx.nodes);
    if (!best || sc[0] > best.sc[0] || (sc[0] === best.sc[0] && sc[1] > best.sc[1]))
      best = { s: r, sc, whyBefore: [...why] };
  }
  if (!best) return noLever(ctx, why);
  // A placement short of exact says what exact would have taken.
  for (const o of best.s.outcomes) {
    if (o.fidelity !== "exact" && o.fidelity !== "exact-at-launch" && best.whyBefore.length > 0)
      o.reason += `. Not exact because ${best.whyBefore.join("; ")}`;
  }
  return best.s;
}

export function notApplicable(type: ConfidentialType, g: GuestNumaNode): Outcome {
  const place = g.policy === "default" ? SOFT_ANYWHERE : ownPlacement(g);
  const reason =
    type === "none"
      ? "a plain KVM guest has no private memory: all of it is the shared backend, which the shared policy covers"
      : `${confidentialFacts(type)!.label} encrypts guest memory in place in the backend (${confidentialFacts(type)!.qomType} does not set require_guest_memfd), so the shared policy covers all of it`;
  return { mechanism: "not-applicable", fidelity: "exact", reason, place };
}
