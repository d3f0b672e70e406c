// Normalized Profile and Plan objects built in code, for renderer tests that must not depend on
// the YAML front end or the planner: each test states exactly the inputs it renders.
import type { GuestNumaNode, Plan, PlanNode, Profile, SevSnpGuest, TdxGuest } from "../../src/core/types.js";

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

type DeepPartial<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

/** Deep merge: objects merge, arrays and scalars replace. */
export function merge<T>(base: T, over: DeepPartial<T> | undefined): T {
  if (over === undefined) return base;
  if (!isPlainObject(base) || !isPlainObject(over)) return over as T;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = k in out ? merge(out[k], v as never) : v;
  return out as T;
}

/** A plain KVM guest with no NUMA nodes, 2 vCPUs, 512 MiB of memfd memory; override anything. */
export function makeProfile(overrides?: DeepPartial<Profile>): Profile {
  const base: Profile = {
    apiVersion: "qcvm/v1",
    name: "test",
    file: "/profiles/test.yaml",
    qemu: { binary: "qemu-system-x86_64", version: "7.2" },
    machine: { type: "q35", accel: "kvm" },
    cpu: { model: "max", count: 2, sockets: 1, dies: 1, cores: 2, threads: 1 },
    memory: {
      sizeBytes: 512 * MiB,
      backend: "memfd",
      share: true,
      hugepages: "none",
      prealloc: false,
      hostNodes: [],
      policy: "default",
    },
    numa: { nodes: [], distances: [] },
    confidential: { type: "none" },
    firmware: {},
    boot: {},
    disks: [],
    network: { type: "none", model: "virtio-net-pci" },
    serial: { kind: "none" },
    placement: { strict: false, pinVcpus: false, private: "auto" },
    extraArgs: [],
  };
  return merge<Profile>(base, overrides);
}

/** The confidential section of an SEV-SNP profile (its variant); throws on another type. */
export function snpOf(p: Profile | undefined): SevSnpGuest {
  const c = p?.confidential;
  if (c?.type === "sev-snp") return c;
  throw new Error(`confidential.type is ${c?.type ?? "(no profile)"}, not sev-snp`);
}

/** The confidential section of a TDX profile (its variant); throws on another type. */
export function tdxOf(p: Profile | undefined): TdxGuest {
  const c = p?.confidential;
  if (c?.type === "tdx") return c;
  throw new Error(`confidential.type is ${c?.type ?? "(no profile)"}, not tdx`);
}

/** The guest policy word; undefined for the types without one (none, tdx). */
export function guestPolicyOf(p: Profile): number | undefined {
  const c = p.confidential;
  return c.type === "none" || c.type === "tdx" ? undefined : c.policy;
}

/** Guest NUMA nodes: [cpus, MiB, hostNodes, policy] each. */
export function nodes(...specs: Array<[number[], number, number[], GuestNumaNode["policy"]]>): GuestNumaNode[] {
  return specs.map(([cpus, mib, hostNodes, policy], id) => ({ id, cpus, memoryBytes: mib * MiB, hostNodes, policy }));
}

/**
 * The plan a planner would make on a host where every node has CPUs 8n..8n+7: each guest node's
 * shared memory placed by the backend policy (or `shared` instead).
 */
export function makePlan(
  profile: Profile,
  opts: { shared?: PlanNode["shared"]["mechanism"]; overrides?: DeepPartial<Plan> } = {},
): Plan {
  const guestNodes =
    profile.numa.nodes.length > 0
      ? profile.numa.nodes
      : [
          {
            id: 0,
            cpus: [...Array(profile.cpu.count).keys()],
            memoryBytes: profile.memory.sizeBytes,
            hostNodes: profile.memory.hostNodes,
            policy: profile.memory.policy,
          },
        ];
  const guestMemfd = profile.confidential.type === "sev-snp" || profile.confidential.type === "tdx";
  const planNodes: PlanNode[] = guestNodes.map((n) => ({
    guestNode: n.id,
    hostNodes: n.hostNodes,
    policy: n.policy,
    sizeBytes: n.memoryBytes,
    cpus: n.cpus,
    hostCpus: n.hostNodes.flatMap((h) => [...Array(8).keys()].map((i) => h * 8 + i)),
    shared: { mechanism: n.policy === "default" ? "none" : (opts.shared ?? "backend-policy"), reason: "test" },
    private: guestMemfd
      ? { mechanism: "vcpu-cpuset", fidelity: "first-touch", reason: "test" }
      : { mechanism: "not-applicable", fidelity: "exact", reason: "test" },
  }));
  const plan: Plan = {
    name: profile.name,
    confidential: profile.confidential.type,
    guestMemfd,
    nodes: planNodes,
    launch: { cgroups: [], pinning: [] },
    capacity: [],
    warnings: [],
    errors: [],
  };
  return merge<Plan>(plan, opts.overrides);
}
