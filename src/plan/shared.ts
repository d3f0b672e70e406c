// The shared half of each guest node's memory: the backend's own host-nodes/policy (QEMU mbind()s
// the backend's mapping), or the process-wide policy when the backend cannot say it. Pure.
import { formatList } from "../core/lists.js";
import { hasFeature } from "../probe/capabilities.js";
import { diag } from "../core/diagnostics.js";
import { KERNEL, kernelAtLeast } from "../core/host-support.js";
import { numactlPolicy } from "./numactl.js";
import { SOFT_ANYWHERE, nodesText, ownPlacement, sameList } from "./model.js";
import type { Ctx, Placement, ProcessChoice } from "./model.js";
import type { Diagnostic, SharedMechanism } from "../core/types.js";

export interface SharedOutcome {
  mechanism: SharedMechanism;
  reason: string;
  place: Placement;
  /** Shared pages are the private guest_memfd's own (in-place conversion): no second copy. */
  inPrivate?: boolean;
}

export function planShared(
  ctx: Ctx,
  i: number,
  process: ProcessChoice | undefined,
  cpuset: boolean,
  warnings: Diagnostic[],
): SharedOutcome {
  const { profile } = ctx;
  const g = ctx.nodes[i]!;
  const hp = profile.memory.hugepages;
  const pool = (nodes: number[]) => (hp !== "none" ? `, from the ${hp} hugepage pool of ${nodesText(nodes)}` : "");
  const viaProcess = (what: string): SharedOutcome => ({
    mechanism: "process-mempolicy",
    reason: `${what}: the backend gets no mbind(), so its pages follow the process-wide ${process!.shown}${pool(process!.policy.nodes)}`,
    place: {
      policy: process!.policy.policy,
      nodes: process!.policy.nodes,
      hard: process!.policy.policy === "bind",
      ...(process!.policy.weights ? { weights: process!.policy.weights } : {}),
    },
  });
  // Without prealloc a shared page is faulted by whichever thread touches it first; a policy
  // outside that thread's cpuset.mems gives way to the cpuset (the kernel ignores such a bind).
  const cpusetCaveat =
    cpuset && !profile.memory.prealloc
      ? "; a page first faulted by another guest node's vCPU lands in that vCPU's cpuset.mems instead (prealloc would fault all of it from the VM cgroup)"
      : "";
  switch (g.policy) {
    case "default":
      if (process) return viaProcess("policy default");
      return {
        mechanism: "none",
        reason: `policy default: the backend has no host-nodes, so pages go to the node local to the faulting thread${hp !== "none" ? `, from that node's ${hp} hugepage pool` : ""}`,
        place: SOFT_ANYWHERE,
      };
    case "weighted-interleave": {
      if (process && process.policy.policy === "weighted-interleave" && sameList(process.policy.nodes, g.hostNodes)) {
        return viaProcess("QEMU memory backends have no weighted-interleave policy");
      }
      if (process)
        return viaProcess("QEMU memory backends have no weighted-interleave policy, so the weights are lost");
      return {
        mechanism: "none",
        reason:
          "QEMU memory backends have no weighted-interleave policy and no process-wide numactl --weighted-interleave is possible here",
        place: SOFT_ANYWHERE,
      };
    }
    case "preferred":
      if (g.hostNodes.length > 1) {
        return sharedPreferredMany(ctx, i, pool, cpusetCaveat, warnings);
      }
    // falls through: preferred on one node is a plain backend policy
    case "bind":
    case "interleave":
      return {
        mechanism: "backend-policy",
        reason: `QEMU mbind()s the backend's shared mapping: host-nodes=${formatList(g.hostNodes)},policy=${g.policy}${pool(g.hostNodes)}${cpusetCaveat}`,
        place: ownPlacement(g),
      };
  }
}

/** preferred over several host nodes: QEMU's policy=preferred is MPOL_PREFERRED_MANY only where
 *  both QEMU and the kernel have it; otherwise only the first node is preferred (warned). */
function sharedPreferredMany(
  ctx: Ctx,
  i: number,
  pool: (nodes: number[]) => string,
  cpusetCaveat: string,
  warnings: Diagnostic[],
): SharedOutcome {
  const { caps } = ctx;
  const g = ctx.nodes[i]!;
  // QEMU (8.0) switches to MPOL_PREFERRED_MANY only when numa_has_preferred_many() says the
  // running kernel has it (Linux 5.15, backends/hostmem.c); otherwise mbind() gets
  // MPOL_PREFERRED, which keeps only the first node of the mask.
  const kernelMany = kernelAtLeast(ctx.host, KERNEL.preferredMany);
  if (hasFeature(caps, "preferred-many") && kernelMany) {
    return {
      mechanism: "backend-policy",
      reason: `QEMU mbind()s the backend's shared mapping to host-nodes=${formatList(g.hostNodes)},policy=preferred, which QEMU ${caps.version} makes MPOL_PREFERRED_MANY (QEMU 8.0)${pool(g.hostNodes)}${cpusetCaveat}`,
      place: ownPlacement(g),
    };
  }
  const first = g.hostNodes[0]!;
  const lacks = hasFeature(caps, "preferred-many")
    ? `Linux ${ctx.host.kernel} has no MPOL_PREFERRED_MANY (Linux 5.15)`
    : `QEMU ${caps.version} has no MPOL_PREFERRED_MANY (QEMU 8.0)`;
  warnings.push(
    diag(
      "warning",
      "placement.preferred-first-node",
      `${ctx.paths[i]}.hostNodes`,
      `${lacks}: preferred over ${nodesText(g.hostNodes)} prefers only host node ${first}`,
      {
        got: formatList(g.hostNodes),
        hint: hasFeature(caps, "preferred-many")
          ? "run on Linux >= 5.15, or name one preferred node"
          : "target QEMU >= 8.0, or name one preferred node",
      },
    ),
  );
  return {
    mechanism: "backend-policy",
    reason: `QEMU mbind()s the backend's shared mapping with policy=preferred, but ${lacks}, so the kernel prefers only the first node, host node ${first}${pool([first])}${cpusetCaveat}`,
    place: { policy: "preferred", nodes: [first], hard: false },
  };
}

/** A process policy only the shared half needs: weighted interleave, which backends cannot do. */
export function weightedProcessPolicy(ctx: Ctx, warnings: Diagnostic[]): ProcessChoice | undefined {
  const weighted = ctx.nodes.map((g, i) => ({ g, i })).filter(({ g }) => g.policy === "weighted-interleave");
  if (weighted.length === 0) return undefined;
  const first = weighted[0]!.g;
  const ids = formatList(weighted.map(({ g }) => g.id));
  if (!weighted.every(({ g }) => sameList(g.hostNodes, first.hostNodes))) {
    warnings.push(
      diag(
        "warning",
        "placement.weighted-interleave-unavailable",
        `${ctx.paths[weighted[0]!.i]}.policy`,
        `guest nodes ${ids} weighted-interleave over different host nodes; QEMU backends have no weighted-interleave policy and one process can have only one, so their shared memory gets no policy`,
        {
          got: "weighted-interleave",
          hint: "give them the same hostNodes, or use policy interleave (a backend policy)",
        },
      ),
    );
    return undefined;
  }
  const r = numactlPolicy("weighted-interleave", first.hostNodes, ctx.host, first.weights);
  if ("unavailable" in r) {
    warnings.push(
      diag(
        "warning",
        "placement.weighted-interleave-unavailable",
        `${ctx.paths[weighted[0]!.i]}.policy`,
        `weighted-interleave for guest node ${ids} needs a process-wide numactl --weighted-interleave (QEMU backends have no such policy), but ${r.unavailable}: its shared memory gets no policy`,
        { got: "weighted-interleave", hint: "install numactl >= 2.0.19 on Linux >= 6.9, or use policy interleave" },
      ),
    );
    return undefined;
  }
  return r.process;
}
