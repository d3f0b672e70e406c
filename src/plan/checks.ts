// Plan checks that are not placement choices: can this host run the guest at all, do the host
// nodes it names exist, does a strict profile get the exactness it demands, and the warnings that
// follow from the guest type (hugepages, measurement, host-wide interleave weights). Pure.
import { formatList } from "../core/lists.js";
import { diag } from "../core/diagnostics.js";
import { confidentialHostSupport, KERNEL } from "../core/host-support.js";
import { nodesText } from "./model.js";
import type { Ctx, ProcessChoice } from "./model.js";
import type { Diagnostic, GuestNumaNode, HostInfo, PlanNode, Profile } from "../core/types.js";

export function checkHost(profile: Profile, host: HostInfo, errors: Diagnostic[], warnings: Diagnostic[]): void {
  const type = profile.confidential.type;
  if (!host.kvm) {
    if (type !== "none") {
      errors.push(
        diag(
          "error",
          "host.kvm",
          "confidential.type",
          `a ${type} guest needs KVM, and this host has no usable /dev/kvm`,
          {
            got: type,
            hint: "load kvm_amd or kvm_intel, or plan for another host with --host",
          },
        ),
      );
    } else if (profile.machine.accel === "kvm") {
      warnings.push(
        diag(
          "warning",
          "host.kvm",
          "machine.accel",
          "this host has no usable /dev/kvm: launch falls back to TCG (emulation, much slower; -cpu host becomes max)",
          {
            got: "kvm",
            hint: "set machine.accel: tcg to say so, or load kvm_amd/kvm_intel",
          },
        ),
      );
    }
    return;
  }
  if (type === "none") return;
  const support = confidentialHostSupport(type, host);
  if (!support.ok) {
    errors.push(
      diag(
        "error",
        "host.confidential",
        "confidential.type",
        `${type} is not enabled on this host (${support.missing.join("; ")})`,
        { got: type, hint: `needs ${support.hint}` },
      ),
    );
  }
}

/** One error per guest node that names host nodes this host does not have. */
export function checkHostNodes(nodes: GuestNumaNode[], paths: string[], hostIds: number[], errors: Diagnostic[]): void {
  nodes.forEach((g, i) => {
    const missing = g.hostNodes.filter((n) => !hostIds.includes(n));
    if (missing.length === 0) return;
    errors.push(
      diag(
        "error",
        "placement.host-node-missing",
        `${paths[i]}.hostNodes`,
        `${missing.length === 1 ? `host node ${missing[0]} does` : `host nodes ${formatList(missing)} do`} not exist on this host (it has ${nodesText(hostIds)})`,
        {
          got: formatList(g.hostNodes),
          hint: "name nodes this host has, or plan for the intended host with --host DIR",
        },
      ),
    );
  });
}

/** Strict: a placement that cannot be enforced exactly is an error, not a footnote. */
export function checkStrict(planNodes: PlanNode[], paths: string[], guestMemfd: boolean, errors: Diagnostic[]): void {
  planNodes.forEach((n, i) => {
    // exact-at-launch is what strict asks of released kernels: every page on plan when the guest
    // starts; only pages re-faulted after a conversion follow first touch.
    if (guestMemfd && n.private.fidelity !== "exact" && n.private.fidelity !== "exact-at-launch") {
      errors.push(
        diag(
          "error",
          "placement.strict",
          `${paths[i]}.hostNodes`,
          `private memory of guest node ${n.guestNode} can only be placed ${n.private.fidelity} (${n.private.mechanism}) on this host, and placement.strict is true`,
          {
            got: formatList(n.hostNodes),
            hint: `set placement.strict: false to accept it, or run qcvm as root on a host where pidfd_getfd works (Linux >= ${KERNEL.pidfdGetfd}, guest-memfd-prealloc), or give every guest node the same hostNodes and policy`,
          },
        ),
      );
    }
    if (n.policy !== "default" && n.shared.mechanism === "none") {
      errors.push(
        diag(
          "error",
          "placement.strict",
          `${paths[i]}.policy`,
          `shared memory of guest node ${n.guestNode} cannot be placed (${n.policy}) on this host, and placement.strict is true`,
          { got: n.policy },
        ),
      );
    }
  });
}

/** Warnings that follow from the guest type and the chosen process policy. */
export function typeWarnings(ctx: Ctx, process: ProcessChoice | undefined, warnings: Diagnostic[]): void {
  const { profile, nodes: planned, paths } = ctx;
  const type = profile.confidential.type;
  const guestMemfd = ctx.guestMemfd;
  const implicit = profile.numa.nodes.length === 0;
  // Weights of weighted interleave are host-wide sysfs knobs, not part of the process policy.
  if (process?.policy.policy === "weighted-interleave") {
    const w = planned.find((g) => g.policy === "weighted-interleave" && g.weights)?.weights;
    if (w) {
      warnings.push(
        diag(
          "warning",
          "placement.interleave-weights",
          `${paths[planned.findIndex((g) => g.weights === w)]}.weights`,
          `weighted-interleave weights are host-wide (/sys/kernel/mm/mempolicy/weighted_interleave/nodeN), not per process: numactl uses whatever they are when QEMU starts`,
          {
            got: w,
            hint: `set ${Object.entries(w)
              .map(([n, v]) => `node${n}=${v}`)
              .join(" ")} there before launch`,
          },
        ),
      );
    }
  }
  // prealloc beside guest_memfd (a second, shared copy) is the rules' warning
  // (memory.prealloc-guest-memfd); the capacity rows below count the copy.
  if (guestMemfd && profile.memory.hugepages !== "none") {
    warnings.push(
      diag(
        "warning",
        "memory.hugepages-private",
        "memory.hugepages",
        `only the shared half comes from the ${profile.memory.hugepages} hugepage pool: private guest_memfd memory is regular pages (guest_memfd has no hugetlb support in Linux 6.18)`,
        { got: profile.memory.hugepages },
      ),
    );
  }
  if (guestMemfd && !implicit) {
    warnings.push(
      diag(
        "warning",
        "placement.measurement",
        "numa.nodes",
        `changing this ${type} guest's NUMA topology (nodes, their vCPUs or sizes) changes its launch measurement: attestation needs new reference values`,
      ),
    );
  }
}
