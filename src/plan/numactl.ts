// A process-wide policy through numactl: which option expresses a policy over nodes on this host
// (numactl and kernel versions from the host-support table), or why none can. Pure.
import { formatList } from "../core/lists.js";
import { KERNEL, NUMACTL, kernelAtLeast } from "../core/host-support.js";
import { numactlOption } from "../render/process-policy.js";
import { numactlInstalled } from "./model.js";
import type { ProcessChoice, Unavailable } from "./model.js";
import type { HostInfo, MemPolicy, NumactlOption, ProcessPolicy } from "../core/types.js";

function choice(numactl: NumactlOption, policy: ProcessPolicy["policy"], nodes: number[]): ProcessChoice {
  const p: ProcessPolicy = { policy, nodes, numactl };
  return { policy: p, shown: `numactl ${numactlOption(p)}` };
}

/** The numactl option for a policy over nodes on this host, or why numactl cannot express it. */
export function numactlPolicy(
  policy: MemPolicy,
  nodes: number[],
  host: HostInfo,
  weights?: Record<number, number>,
): { process: ProcessChoice; degraded?: string } | Unavailable {
  if (!numactlInstalled(host)) return { unavailable: "numactl is not installed on this host" };
  const list = formatList(nodes);
  switch (policy) {
    case "bind":
      return { process: choice("membind", "bind", nodes) };
    case "interleave":
      return { process: choice("interleave", "interleave", nodes) };
    case "preferred": {
      if (nodes.length === 1) return { process: choice("preferred", "preferred", nodes) };
      // numactl 2.0.15 --preferred-many; the kernel needs MPOL_PREFERRED_MANY (Linux 5.15).
      if (host.numactl.preferredMany && kernelAtLeast(host, KERNEL.preferredMany)) {
        return { process: choice("preferred-many", "preferred", nodes) };
      }
      const first = nodes[0]!;
      const why = !host.numactl.preferredMany
        ? `numactl ${host.numactl.version ?? ""} has no --preferred-many (numactl ${NUMACTL.preferredMany})`.replace(
            "  ",
            " ",
          )
        : `Linux ${host.kernel} has no MPOL_PREFERRED_MANY (Linux ${KERNEL.preferredMany})`;
      return {
        process: choice("preferred", "preferred", [first]),
        degraded: `${why}, so preferred over host nodes ${list} narrows to host node ${first}`,
      };
    }
    case "weighted-interleave": {
      // numactl 2.0.19 --weighted-interleave; the kernel policy is Linux 6.9.
      const missing: string[] = [];
      if (!host.numactl.weightedInterleave)
        missing.push(
          `numactl ${host.numactl.version ?? "here"} has no --weighted-interleave (numactl ${NUMACTL.weightedInterleave})`,
        );
      if (!host.weightedInterleave)
        missing.push(`Linux ${host.kernel} has no weighted interleave (Linux ${KERNEL.weightedInterleave})`);
      if (missing.length > 0) return { unavailable: missing.join(", and ") };
      const process = choice("weighted-interleave", "weighted-interleave", nodes);
      if (weights) process.policy.weights = weights;
      return { process };
    }
    case "default":
      return { unavailable: "policy default has nothing to set" };
  }
}
