// The literal plan behind `qcvm render --literal`: the profile as written, with no host and no
// planning. Each backend gets the hostNodes/policy the profile names (where a backend can say the
// policy), nothing else is placed, and one warning says placement was not checked. Pure.
import { diag } from "../core/diagnostics.js";
import { usesGuestMemfd } from "../core/confidential.js";
import { guestNodesOf } from "./model.js";
import type { MemPolicy, Plan, PlanNode, Profile } from "../core/types.js";

/** Policies a QEMU memory backend knows (HostMemPolicy in qapi). */
const BACKEND_POLICIES: ReadonlySet<MemPolicy> = new Set(["bind", "preferred", "interleave"]);

export function literalPlan(profile: Profile): Plan {
  const guestMemfd = usesGuestMemfd(profile.confidential.type);
  const nodes = guestNodesOf(profile).map((g): PlanNode => {
    const backend = g.hostNodes.length > 0 && BACKEND_POLICIES.has(g.policy);
    return {
      guestNode: g.id,
      hostNodes: g.hostNodes,
      policy: g.policy,
      sizeBytes: g.memoryBytes,
      cpus: g.cpus,
      shared: {
        mechanism: backend ? "backend-policy" : "none",
        reason: backend ? "as written (--literal)" : "no backend policy as written (--literal)",
      },
      private: {
        mechanism: guestMemfd ? "none" : "not-applicable",
        fidelity: guestMemfd ? "none" : "exact",
        reason: "not planned (--literal)",
      },
    };
  });
  const warning = diag(
    "warning",
    "render.literal",
    profile.numa.nodes.length > 0 ? "numa.nodes" : "memory",
    "rendered as written (--literal): placement was not checked against a host, and nothing places private memory, weighted interleave, cgroups or pinning",
    { file: profile.file, hint: "qcvm plan shows what launch would do on this host" },
  );
  return {
    name: profile.name,
    confidential: profile.confidential.type,
    guestMemfd,
    nodes,
    launch: { cgroups: [], pinning: [] },
    capacity: [],
    warnings: [warning],
    errors: [],
  };
}
