// The planner over fixture hosts x profiles: each row names a host (a sysfs-shaped tree, probed),
// a profile (YAML, read by readProfile) and the QEMU it targets, and states the mechanism and
// fidelity a NUMA-savvy operator expects for every guest node, plus the launch actions and
// diagnostics that must come with it.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { planPlacement, planFidelity } from "../src/plan/plan.js";
import { loadContext } from "../src/pipeline/context.js";
import { processPolicyArgv } from "../src/render/process-policy.js";
import { builtinCapabilities } from "../src/probe/capabilities.js";
import { loadCapabilities } from "../src/probe/qemu.js";
import type {
  Fidelity,
  HostInfo,
  Plan,
  PrivateMechanism,
  Profile,
  QemuCapabilities,
  SharedMechanism,
} from "../src/core/types.js";
import {
  FIXTURE_HOSTS,
  PLAN_PROFILES_DIR,
  REPO,
  SHIPPED_PROFILES,
  fixtureHost,
  loadProfile,
  withNumactl,
  withoutCpuset,
  withoutKvm,
  withoutNumactl,
} from "./helpers/host.js";

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const fx = (f: string) => `test/fixtures/plan-profiles/${f}`;
const capsFile = (f: string) => loadCapabilities(join(PLAN_PROFILES_DIR, f));

const planSchema = JSON.parse(readFileSync(join(REPO, "schemas/plan.schema.json"), "utf8"));
const validatePlan = new Ajv2020({ allErrors: true, strict: true }).compile(planSchema);

interface Case {
  name: string;
  profile: string;
  set?: string[];
  host: string | (() => HostInfo);
  /** A capabilities file under plan-profiles/; otherwise the built-in table of the profile's version. */
  caps?: string;
}

async function planFor(c: Case): Promise<{ plan: Plan; profile: Profile; host: HostInfo; caps: QemuCapabilities }> {
  // The on-demand levers are this table's subject: cases run with placement.private: on-demand
  // unless they name placement.private (guest-memfd-prealloc has its own cases).
  const set = c.set?.some((x) => x.startsWith("placement.private="))
    ? c.set
    : ["placement.private=on-demand", ...(c.set ?? [])];
  const profile = await loadProfile(c.profile, set);
  const host = typeof c.host === "string" ? fixtureHost(c.host) : c.host();
  const caps = c.caps ? capsFile(c.caps) : builtinCapabilities(profile.qemu.version);
  const plan = planPlacement(profile, host, caps);
  expect(validatePlan(plan), JSON.stringify(validatePlan.errors, null, 2)).toBe(true);
  return { plan, profile, host, caps };
}

const codes = (ds: { code: string }[]) => ds.map((d) => d.code);

// ---------------------------------------------------------------------------------------------
// Every mechanism and fidelity, host by host
// ---------------------------------------------------------------------------------------------

interface MechanismCase extends Case {
  private: [PrivateMechanism, Fidelity][];
  shared: SharedMechanism[];
  argvPrefix: string[];
  /** Reason fragments that must appear in the first node's private reason. */
  reason: string[];
  errors?: string[];
  warnings?: string[];
}

const mechanismCases: MechanismCase[] = [
  {
    name: "plain KVM guest: no private memory, the backend policy covers it all",
    profile: "kvm-1node.yaml",
    host: "single-node",
    private: [["not-applicable", "exact"]],
    shared: ["backend-policy"],
    argvPrefix: [],
    reason: ["no private memory"],
  },
  {
    name: "SEV-ES keeps everything in the shared backend (sev-guest sets no require_guest_memfd)",
    profile: "sev-es.yaml",
    host: "epyc-2s4n",
    private: [["not-applicable", "exact"]],
    shared: ["backend-policy"],
    argvPrefix: [],
    reason: ["SEV-ES", "require_guest_memfd"],
  },
  {
    name: "SNP, one node: numactl --membind is exact for private memory, launch populate included",
    profile: "snp-1node.yaml",
    host: "epyc-2s4n",
    private: [["process-mempolicy", "exact"]],
    shared: ["backend-policy"],
    argvPrefix: ["numactl", "--membind=0", "--"],
    reason: ["numactl --membind=0", "SNP launch update"],
  },
  {
    name: "SNP, two nodes on different host nodes, Linux 6.11: vCPU cpusets, first-touch",
    profile: "snp-2node.yaml",
    host: "epyc-2s4n",
    private: [
      ["vcpu-cpuset", "first-touch"],
      ["vcpu-cpuset", "first-touch"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: [],
    reason: [
      "vcpu-node0",
      "cpuset.mems=0",
      "SNP launch update",
      "Linux 6.11.0 has no guest_memfd mempolicy (Linux 6.19)",
    ],
    warnings: ["placement.measurement"],
  },
  {
    name: "SNP, two nodes, Linux 6.19 and a QEMU with the guest_memfd backend and convert-in-place: exact",
    profile: "snp-2node.yaml",
    host: "gmem-mempolicy",
    caps: "caps-gmem-snp.json",
    private: [
      ["guest-memfd-mempolicy", "exact"],
      ["guest-memfd-mempolicy", "exact"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: [],
    reason: ["memory-backend-guest-memfd host-nodes=0,policy=bind", "Linux 6.19"],
  },
  {
    name: "SNP on Linux 6.19 with the backend but no convert-in-place: 6.19 alone covers non-CoCo VMs only",
    profile: "snp-2node.yaml",
    host: "gmem-mempolicy",
    caps: "caps-gmem-no-convert.json",
    private: [
      ["vcpu-cpuset", "first-touch"],
      ["vcpu-cpuset", "first-touch"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: [],
    reason: ["in-place conversion", "convert-in-place"],
  },
  {
    name: "SNP on Linux 6.19 with upstream QEMU 9.1: no QEMU sets the guest_memfd policy",
    profile: "snp-2node.yaml",
    host: "gmem-mempolicy",
    private: [
      ["vcpu-cpuset", "first-touch"],
      ["vcpu-cpuset", "first-touch"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: [],
    reason: ["QEMU 9.1 has no backend that applies host-nodes/policy to guest_memfd"],
  },
  {
    name: "SNP with the patched QEMU but Linux 6.11: the kernel lacks guest_memfd mempolicy",
    profile: "snp-2node.yaml",
    host: "epyc-2s4n",
    caps: "caps-gmem-snp.json",
    private: [
      ["vcpu-cpuset", "first-touch"],
      ["vcpu-cpuset", "first-touch"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: [],
    reason: ["Linux 6.11.0 has no guest_memfd mempolicy"],
  },
  {
    name: "SNP, two guest nodes wanting the same host nodes: one process policy is exact (beats cpusets)",
    profile: fx("snp-2node-same.yaml"),
    host: "epyc-2s4n",
    private: [
      ["process-mempolicy", "exact"],
      ["process-mempolicy", "exact"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: ["numactl", "--membind=0-1", "--"],
    reason: ["numactl --membind=0-1", "whichever thread allocates"],
  },
  {
    name: "SNP, interleave per guest node: cpuset confines to the nodes but cannot interleave: coarse",
    profile: fx("snp-2node-interleave.yaml"),
    host: "epyc-2s4n",
    private: [
      ["vcpu-cpuset", "coarse"],
      ["vcpu-cpuset", "coarse"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: [],
    reason: ["cannot interleave"],
  },
  {
    name: "SNP, preferred per guest node: the cpuset wall hardens preferred into bind, said in a warning",
    profile: fx("snp-2node-preferred.yaml"),
    host: "epyc-2s4n",
    private: [
      ["vcpu-cpuset", "first-touch"],
      ["vcpu-cpuset", "first-touch"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: [],
    reason: ["hard wall"],
    warnings: ["placement.preferred-hardened", "placement.preferred-hardened"],
  },
  {
    name: "SNP, two nodes, no cpuset controller: numactl over the union, coarse",
    profile: "snp-2node.yaml",
    host: () => withoutCpuset(fixtureHost("epyc-2s4n")),
    private: [
      ["process-mempolicy", "coarse"],
      ["process-mempolicy", "coarse"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: ["numactl", "--membind=0-1", "--"],
    reason: ["within host nodes 0-1", "not within guest node 0's own 0", "no cgroup hierarchy"],
  },
  {
    name: "SNP, two nodes, no cpuset and no numactl: no lever, none",
    profile: "snp-2node.yaml",
    host: () => withoutNumactl(withoutCpuset(fixtureHost("epyc-2s4n"))),
    private: [
      ["none", "none"],
      ["none", "none"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: [],
    reason: ["no lever reaches private memory", "numactl is not installed", "not on host node 0"],
  },
  {
    name: "SNP preferred over two nodes with numactl 2.0.18: --preferred-many is exact",
    profile: "snp-1node.yaml",
    set: ["memory.hostNodes=0-1", "memory.policy=preferred"],
    host: "epyc-2s4n",
    private: [["process-mempolicy", "exact"]],
    shared: ["backend-policy"],
    argvPrefix: ["numactl", "--preferred-many=0-1", "--"],
    reason: ["numactl --preferred-many=0-1"],
  },
  {
    name: "SNP preferred over two nodes, numactl 2.0.14, no cpuset: only --preferred=first, coarse",
    profile: "snp-1node.yaml",
    set: ["memory.hostNodes=0-1", "memory.policy=preferred"],
    host: () =>
      withNumactl(withoutCpuset(fixtureHost("epyc-2s4n")), "2.0.14", {
        preferredMany: false,
        weightedInterleave: false,
      }),
    private: [["process-mempolicy", "coarse"]],
    shared: ["backend-policy"],
    argvPrefix: ["numactl", "--preferred=0", "--"],
    reason: ["no --preferred-many (numactl 2.0.15)", "narrows to host node 0"],
  },
  {
    name: "SNP, one node, no numactl: the VM's cpusets wall every thread in, so exact without numactl",
    profile: "snp-1node.yaml",
    host: () => withoutNumactl(fixtureHost("epyc-2s4n")),
    private: [["vcpu-cpuset", "exact"]],
    shared: ["backend-policy"],
    argvPrefix: [],
    reason: ["every QEMU thread's cpuset", "SNP launch update by the main thread included"],
  },
  {
    name: "SNP preferred over two nodes, numactl 2.0.14 but cpusets: exact, preferred hardened into bind",
    profile: "snp-1node.yaml",
    set: ["memory.hostNodes=0-1", "memory.policy=preferred"],
    host: () => withNumactl(fixtureHost("epyc-2s4n"), "2.0.14", { preferredMany: false, weightedInterleave: false }),
    private: [["vcpu-cpuset", "exact"]],
    shared: ["backend-policy"],
    argvPrefix: [],
    reason: ["hard wall", "preferred acts as bind"],
    warnings: ["placement.preferred-hardened"],
  },
  {
    name: "SNP with no placement asked: nothing to enforce",
    profile: "snp-1node.yaml",
    set: ["memory.hostNodes=null", "memory.policy=default"],
    host: "epyc-2s4n",
    private: [["none", "exact"]],
    shared: ["none"],
    argvPrefix: [],
    reason: ["asks for no placement"],
  },
  {
    name: "TDX, two nodes on Linux 6.16: vCPU cpusets; the launch populate is TDX init-mem-region",
    profile: "tdx-2node.yaml",
    host: "spr-tdx-2n",
    private: [
      ["vcpu-cpuset", "first-touch"],
      ["vcpu-cpuset", "first-touch"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: [],
    reason: ["TDX init-mem-region"],
    warnings: ["placement.measurement"],
  },
  {
    name: "TDX even with Linux 6.19 and the patched QEMU: no in-place conversion for tdx-guest",
    profile: "tdx-2node.yaml",
    host: "gmem-mempolicy",
    caps: "caps-gmem-snp.json",
    private: [
      ["vcpu-cpuset", "first-touch"],
      ["vcpu-cpuset", "first-touch"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: [],
    reason: ["TDX guest also needs in-place conversion"],
    errors: ["host.confidential"],
  },
  {
    name: "TDX on a cgroup-v2-only host: the v2 cpuset controller serves",
    profile: "tdx-2node.yaml",
    host: "cgroup2-only",
    private: [
      ["vcpu-cpuset", "first-touch"],
      ["vcpu-cpuset", "first-touch"],
    ],
    shared: ["backend-policy", "backend-policy"],
    argvPrefix: [],
    reason: ["vcpu-node0"],
    errors: ["host.confidential"],
  },
];

describe("planPlacement: mechanism and fidelity per guest node", () => {
  it.each(mechanismCases)("$name", async (c) => {
    const { plan } = await planFor(c);
    expect(plan.nodes.map((n) => [n.private.mechanism, n.private.fidelity])).toEqual(c.private);
    expect(plan.nodes.map((n) => n.shared.mechanism)).toEqual(c.shared);
    expect(processPolicyArgv(plan.launch.processPolicy)).toEqual(c.argvPrefix);
    for (const fragment of c.reason) expect(plan.nodes[0]!.private.reason).toContain(fragment);
    expect(codes(plan.errors)).toEqual(c.errors ?? []);
    // Each expected warning code as often as listed (one per guest node where it is per node).
    for (const w of new Set(c.warnings ?? [])) {
      expect(codes(plan.warnings).filter((x) => x === w)).toHaveLength(c.warnings!.filter((x) => x === w).length);
    }
    for (const n of plan.nodes) expect(n.private.reason.length).toBeGreaterThan(20);
  });
});

// ---------------------------------------------------------------------------------------------
// Launch actions
// ---------------------------------------------------------------------------------------------

describe("planPlacement: launch actions", () => {
  it("vCPU cpusets: VM cgroup on the union, one child per guest node with its own nodes and CPUs", async () => {
    const { plan, host } = await planFor({ name: "", profile: "snp-2node.yaml", host: "epyc-2s4n" });
    const cpus = (id: number) => host.nodes.find((n) => n.id === id)!.cpus;
    expect(plan.launch.cgroups).toEqual([
      { name: "", cpus: [...cpus(0), ...cpus(1)].sort((a, b) => a - b), mems: [0, 1], tasks: "process" },
      { name: "vcpu-node0", cpus: cpus(0), mems: [0], tasks: { vcpus: [0, 1, 2, 3] } },
      { name: "vcpu-node1", cpus: cpus(1), mems: [1], tasks: { vcpus: [4, 5, 6, 7] } },
    ]);
    // snp-2node pins vCPUs: each to its guest node's host CPUs.
    expect(plan.launch.pinning).toHaveLength(8);
    expect(plan.launch.pinning[0]).toEqual({ vcpu: 0, hostCpus: cpus(0) });
    expect(plan.launch.pinning[7]).toEqual({ vcpu: 7, hostCpus: cpus(1) });
  });

  it("process policy only: no cgroups, no pinning unless asked", async () => {
    const { plan } = await planFor({ name: "", profile: "snp-1node.yaml", host: "epyc-2s4n" });
    expect(plan.launch.cgroups).toEqual([]);
    expect(plan.launch.pinning).toEqual([]);
  });

  it("pinning without any cpuset controller: thread affinity only", async () => {
    const { plan } = await planFor({
      name: "",
      profile: fx("kvm-cxl.yaml"),
      host: () => withoutCpuset(fixtureHost("cxl-memonly")),
    });
    expect(plan.launch.cgroups).toEqual([]);
    expect(plan.launch.pinning.map((p) => p.vcpu)).toEqual([0, 1, 2, 3]);
  });

  it("pinning a soft policy does not turn the VM cgroup into a memory wall", async () => {
    const { plan, host } = await planFor({
      name: "",
      profile: fx("kvm-preferred-many.yaml"),
      set: ["placement.pinVcpus=true", 'qemu.version="8.2"'],
      host: "cgroup2-only",
    });
    expect(plan.launch.cgroups[0]!.mems).toEqual(host.nodes.map((n) => n.id));
  });
});

// ---------------------------------------------------------------------------------------------
// Memory-only (CXL) host nodes
// ---------------------------------------------------------------------------------------------

describe("planPlacement: memory-only host nodes", () => {
  it("vCPUs of a guest node on a CXL node run on the nearest node with CPUs, and the plan says so", async () => {
    const { plan, host } = await planFor({ name: "", profile: fx("kvm-cxl.yaml"), host: "cxl-memonly" });
    const node0Cpus = host.nodes.find((n) => n.id === 0)!.cpus;
    expect(host.nodes.find((n) => n.id === 2)!.memoryOnly).toBe(true);
    // Node 2 is at distance 14 from node 0 and 24 from node 1.
    expect(plan.nodes[1]!.hostCpus).toEqual(node0Cpus);
    expect(plan.launch.pinning.filter((p) => p.vcpu >= 2).every((p) => p.hostCpus.join() === node0Cpus.join())).toBe(
      true,
    );
    const w = plan.warnings.find((d) => d.code === "placement.memory-only-node");
    expect(w?.message).toContain("host node 2 is memory-only");
    expect(w?.message).toContain("distance 14");
    expect(plan.capacity.map((r) => [r.hostNode, r.needBytes])).toEqual([
      [0, GiB],
      [2, GiB],
    ]);
  });

  it("a weighted interleave over DRAM and CXL keeps the DRAM node's CPUs, with no borrowing note", async () => {
    const { plan, host } = await planFor({ name: "", profile: fx("kvm-weighted.yaml"), host: "cxl-memonly" });
    expect(plan.nodes[0]!.hostCpus).toEqual(host.nodes.find((n) => n.id === 0)!.cpus);
    expect(codes(plan.warnings)).not.toContain("placement.memory-only-node");
  });
});

// ---------------------------------------------------------------------------------------------
// Policies that depend on host and QEMU versions
// ---------------------------------------------------------------------------------------------

describe("planPlacement: weighted interleave", () => {
  it("numactl 2.0.19 on Linux 6.9: process-wide --weighted-interleave, split 3:1 by the weights", async () => {
    const { plan } = await planFor({ name: "", profile: fx("kvm-weighted.yaml"), host: "cxl-memonly" });
    expect(processPolicyArgv(plan.launch.processPolicy)).toEqual(["numactl", "--weighted-interleave=0,2", "--"]);
    expect(plan.nodes[0]!.shared.mechanism).toBe("process-mempolicy");
    expect(plan.nodes[0]!.shared.reason).toContain("no weighted-interleave policy");
    expect(plan.capacity.map((r) => [r.hostNode, r.needBytes])).toEqual([
      [0, 1.5 * GiB],
      [2, 0.5 * GiB],
    ]);
    const w = plan.warnings.find((d) => d.code === "placement.interleave-weights");
    expect(w?.hint).toContain("node0=3 node2=1");
  });

  it("numactl 2.0.18 (no --weighted-interleave): no lever for the shared half, a warning says why", async () => {
    const { plan } = await planFor({ name: "", profile: fx("kvm-weighted.yaml"), host: "epyc-2s4n" });
    expect(processPolicyArgv(plan.launch.processPolicy)).toEqual([]);
    expect(plan.nodes[0]!.shared.mechanism).toBe("none");
    const w = plan.warnings.find((d) => d.code === "placement.weighted-interleave-unavailable");
    expect(w?.message).toContain("numactl 2.0.18 has no --weighted-interleave (numactl 2.0.19)");
    expect(w?.message).not.toContain("Linux");
  });

  it("a kernel without weighted interleave (before Linux 6.9): the same, naming the kernel", async () => {
    const { plan } = await planFor({
      name: "",
      profile: fx("kvm-weighted.yaml"),
      host: () => ({ ...fixtureHost("cxl-memonly"), weightedInterleave: false }),
    });
    expect(plan.nodes[0]!.shared.mechanism).toBe("none");
    expect(plan.warnings.find((d) => d.code === "placement.weighted-interleave-unavailable")?.message).toContain(
      "no weighted interleave (Linux 6.9)",
    );
  });

  it("strict mode makes an unplaceable shared half an error", async () => {
    const { plan } = await planFor({
      name: "",
      profile: fx("kvm-weighted.yaml"),
      set: ["placement.strict=true"],
      host: "epyc-2s4n",
    });
    expect(codes(plan.errors)).toEqual(["placement.strict"]);
    expect(plan.errors[0]!.path).toBe("memory.policy");
  });
});

describe("planPlacement: preferred over several nodes by QEMU version", () => {
  it("QEMU 7.2: no MPOL_PREFERRED_MANY, the kernel prefers the first node only", async () => {
    const { plan } = await planFor({ name: "", profile: fx("kvm-preferred-many.yaml"), host: "cgroup2-only" });
    expect(plan.nodes[0]!.shared.reason).toContain("prefers only the first node, host node 0");
    expect(plan.nodes[0]!.shared.hostNodes).toEqual([0]);
    expect(codes(plan.warnings)).toContain("placement.preferred-first-node");
  });

  it("QEMU 8.2: preferred becomes MPOL_PREFERRED_MANY", async () => {
    const { plan } = await planFor({
      name: "",
      profile: fx("kvm-preferred-many.yaml"),
      set: ['qemu.version="8.2"'],
      host: "cgroup2-only",
    });
    expect(plan.nodes[0]!.shared.reason).toContain("MPOL_PREFERRED_MANY (QEMU 8.0)");
    expect(plan.nodes[0]!.shared.hostNodes).toEqual([0, 1]);
    expect(codes(plan.warnings)).not.toContain("placement.preferred-first-node");
  });

  it("QEMU 8.2 on Linux 5.10: QEMU asks numa_has_preferred_many(), gets no, and binds MPOL_PREFERRED to the first node", async () => {
    const host = () => ({ ...fixtureHost("cgroup2-only"), kernel: "5.10.0" });
    const { plan } = await planFor({
      name: "",
      profile: fx("kvm-preferred-many.yaml"),
      set: ['qemu.version="8.2"'],
      host,
    });
    expect(plan.nodes[0]!.shared.reason).toContain("Linux 5.10.0 has no MPOL_PREFERRED_MANY (Linux 5.15)");
    expect(plan.nodes[0]!.shared.hostNodes).toEqual([0]);
    const w = plan.warnings.find((d) => d.code === "placement.preferred-first-node");
    expect(w?.hint).toBe("run on Linux >= 5.15, or name one preferred node");
  });
});

// ---------------------------------------------------------------------------------------------
// Capacity
// ---------------------------------------------------------------------------------------------

describe("planPlacement: capacity", () => {
  it("tight-memory host: a bound node that does not fit is an error, one over 90% a warning", async () => {
    const { plan } = await planFor({ name: "", profile: fx("kvm-tight.yaml"), host: "tight-memory" });
    expect(plan.capacity.map((r) => [r.hostNode, r.needBytes, r.status])).toEqual([
      [0, 2 * GiB, "insufficient"],
      [1, 2816 * MiB, "tight"],
    ]);
    expect(codes(plan.errors)).toEqual(["capacity.insufficient"]);
    expect(plan.errors[0]!.path).toBe("numa.nodes[0].memory");
    expect(plan.errors[0]!.message).toContain("host node 0 needs 2 GiB for this VM but has 1.5 GiB free");
    expect(codes(plan.warnings)).toContain("capacity.tight");
  });

  it("a soft policy that overflows its node spills over: a warning, not an error", async () => {
    const { plan } = await planFor({
      name: "",
      profile: fx("kvm-preferred-many.yaml"),
      set: ['qemu.version="8.2"', "memory.size=2G"],
      host: "tight-memory",
    });
    expect(plan.capacity[0]).toMatchObject({ hostNode: 0, needBytes: 2 * GiB, status: "insufficient" });
    expect(plan.errors).toEqual([]);
    expect(plan.warnings.find((d) => d.code === "capacity.insufficient")?.message).toContain("spills");
  });

  it("the whole host too small is an error whatever the policy", async () => {
    const { plan } = await planFor({
      name: "",
      profile: fx("kvm-preferred-many.yaml"),
      set: ['qemu.version="8.2"', "memory.size=6G"],
      host: "tight-memory",
    });
    expect(codes(plan.errors)).toContain("capacity.insufficient");
  });

  it("hugepage pool shortage: 256 x 2M pages bound to a node with 16 free", async () => {
    const { plan } = await planFor({ name: "", profile: fx("kvm-hugepages-2m.yaml"), host: "tight-memory" });
    expect(plan.capacity[0]).toMatchObject({
      hostNode: 0,
      needBytes: 0,
      hugepages: { size: "2M", need: 256, free: 16 },
      status: "insufficient",
    });
    expect(codes(plan.errors)).toEqual(["capacity.hugepages"]);
    expect(plan.errors[0]!.hint).toContain("node0/hugepages/hugepages-2048kB/nr_hugepages");
  });

  it("the same profile fits the single-node host's 512 free 2M pages", async () => {
    const { plan } = await planFor({ name: "", profile: fx("kvm-hugepages-2m.yaml"), host: "single-node" });
    expect(plan.capacity).toEqual([
      {
        hostNode: 0,
        needBytes: 0,
        freeBytes: expect.any(Number),
        hugepages: { size: "2M", need: 256, free: 512 },
        status: "ok",
      },
    ]);
    expect(plan.errors).toEqual([]);
  });

  it("SNP on 1G hugepages: shared half from node 1's 1G pool, private as regular pages", async () => {
    const { plan } = await planFor({ name: "", profile: "snp-hugepages.yaml", host: "epyc-2s4n" });
    expect(plan.capacity).toEqual([
      {
        hostNode: 1,
        needBytes: 4 * GiB,
        freeBytes: expect.any(Number),
        hugepages: { size: "1G", need: 4, free: 12 },
        status: "ok",
      },
    ]);
    expect(plan.nodes[0]!.shared.reason).toContain("1G hugepage pool of host node 1");
    expect(codes(plan.warnings)).toContain("memory.hugepages-private");
  });

  it("SNP on 1G hugepages on the tight-memory host: the 1G pool of node 1 is empty", async () => {
    const { plan } = await planFor({ name: "", profile: "snp-hugepages.yaml", host: "tight-memory" });
    expect(codes(plan.errors)).toEqual(
      expect.arrayContaining(["host.confidential", "capacity.hugepages", "capacity.insufficient"]),
    );
    expect(plan.errors.find((d) => d.code === "capacity.hugepages")!.message).toContain(
      "needs 4 free 1G hugepages (4 GiB) but its pool has 0",
    );
  });

  it("SNP without prealloc: private counted fully, the shared half only as up-to", async () => {
    const { plan } = await planFor({ name: "", profile: "snp-1node.yaml", host: "epyc-2s4n" });
    expect(plan.capacity).toEqual([
      expect.objectContaining({ hostNode: 0, needBytes: 4 * GiB, upToBytes: 4 * GiB, status: "ok" }),
    ]);
    expect(codes(plan.warnings)).not.toContain("memory.prealloc-double");
  });

  it("SNP with prealloc: both halves, twice the guest size, and one warning (the rule's) for it", async () => {
    const { plan } = await planFor({
      name: "",
      profile: "snp-1node.yaml",
      set: ["memory.prealloc=true"],
      host: "epyc-2s4n",
    });
    expect(plan.capacity).toEqual([expect.objectContaining({ hostNode: 0, needBytes: 8 * GiB, status: "ok" })]);
    expect(plan.capacity[0]!.upToBytes).toBeUndefined();
    // One owner: the rule memory.prealloc-guest-memfd says it; the planner used to say it again
    // (memory.prealloc-double), and render --format json showed both.
    const ctx = await loadContext({
      profile: join(REPO, "profiles/snp-1node.yaml"),
      set: ["memory.prealloc=true"],
      host: join(REPO, "examples/hosts/epyc-2s4n"),
    });
    const prealloc = ctx.warnings.filter((d) => d.path === "memory.prealloc");
    expect(codes(prealloc)).toEqual(["memory.prealloc-guest-memfd"]);
    expect(prealloc[0]!.message).toContain("second, shared copy of all 4G");
  });

  it("SNP with in-place conversion: shared pages are the guest_memfd's own, so no up-to and no doubling", async () => {
    const { plan } = await planFor({
      name: "",
      profile: "snp-2node.yaml",
      set: ["memory.prealloc=true"],
      host: "gmem-mempolicy",
      caps: "caps-gmem-snp.json",
    });
    expect(plan.capacity.map((r) => [r.hostNode, r.needBytes, r.upToBytes])).toEqual([
      [0, 4 * GiB, undefined],
      [1, 4 * GiB, undefined],
    ]);
    expect(plan.nodes[0]!.shared.reason).toContain("converted in place");
    expect(codes(plan.warnings)).not.toContain("memory.prealloc-double");
  });

  it("SEV-ES: the whole guest in the shared backend, no up-to", async () => {
    const { plan } = await planFor({ name: "", profile: "sev-es.yaml", host: "epyc-2s4n" });
    expect(plan.capacity).toEqual([expect.objectContaining({ hostNode: 0, needBytes: 4 * GiB, status: "ok" })]);
    expect(plan.capacity[0]!.upToBytes).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Errors and warnings about the host
// ---------------------------------------------------------------------------------------------

describe("planPlacement: host checks", () => {
  it("a host node the host does not have is an error at the field that names it", async () => {
    const { plan } = await planFor({
      name: "",
      profile: "kvm-2node.yaml",
      set: ["numa.nodes[1].hostNodes=7"],
      host: "cgroup2-only",
    });
    expect(plan.errors).toHaveLength(1);
    expect(plan.errors[0]).toMatchObject({
      code: "placement.host-node-missing",
      path: "numa.nodes[1].hostNodes",
      got: "7",
    });
    expect(plan.errors[0]!.message).toContain("host node 7 does not exist on this host (it has host nodes 0-1)");
    expect(plan.errors[0]!.file).toMatch(/kvm-2node\.yaml$/);
  });

  it("strict mode: first-touch private placement is an error per node", async () => {
    const { plan } = await planFor({
      name: "",
      profile: "snp-2node.yaml",
      set: ["placement.strict=true"],
      host: "epyc-2s4n",
    });
    expect(codes(plan.errors)).toEqual(["placement.strict", "placement.strict"]);
    expect(plan.errors[1]!.path).toBe("numa.nodes[1].hostNodes");
    expect(plan.errors[0]!.message).toContain("first-touch (vcpu-cpuset)");
  });

  it("strict mode is satisfied where the placement is exact", async () => {
    const { plan } = await planFor({
      name: "",
      profile: "snp-2node.yaml",
      set: ["placement.strict=true"],
      host: "gmem-mempolicy",
      caps: "caps-gmem-snp.json",
    });
    expect(plan.errors).toEqual([]);
    expect(planFidelity(plan)).toBe("exact");
  });

  it("SNP on a host without SNP is an error naming the module parameter", async () => {
    const { plan } = await planFor({ name: "", profile: "snp-1node.yaml", host: "single-node" });
    expect(plan.errors[0]).toMatchObject({ code: "host.confidential", path: "confidential.type" });
    expect(plan.errors[0]!.message).toContain("/sys/module/kvm_amd/parameters/sev_snp");
  });

  it("no KVM: a plain guest falls back to TCG with a warning", async () => {
    const { plan } = await planFor({
      name: "",
      profile: "kvm-1node.yaml",
      host: () => withoutKvm(fixtureHost("single-node")),
    });
    expect(plan.errors).toEqual([]);
    expect(plan.warnings.find((d) => d.code === "host.kvm")?.message).toContain("falls back to TCG");
  });

  it("no KVM: a confidential guest cannot run", async () => {
    const { plan } = await planFor({
      name: "",
      profile: "snp-1node.yaml",
      host: () => withoutKvm(fixtureHost("epyc-2s4n")),
    });
    expect(codes(plan.errors)).toEqual(["host.kvm"]);
  });

  it("a NUMA topology on an SNP/TDX guest warns about the launch measurement; a plain guest does not", async () => {
    const snp = await planFor({ name: "", profile: "snp-2node.yaml", host: "epyc-2s4n" });
    expect(snp.plan.warnings.find((d) => d.code === "placement.measurement")?.message).toContain(
      "new reference values",
    );
    const kvm = await planFor({ name: "", profile: "kvm-2node.yaml", host: "cgroup2-only" });
    expect(codes(kvm.plan.warnings)).not.toContain("placement.measurement");
  });
});

// ---------------------------------------------------------------------------------------------
// Every shipped profile on every fixture host: a plan that holds together
// ---------------------------------------------------------------------------------------------

const matrix = FIXTURE_HOSTS.flatMap((host) => SHIPPED_PROFILES.map((profile) => ({ host, profile })));

describe("planPlacement: every shipped profile on every fixture host", () => {
  it("covers the fixture hosts and profiles this table is about", () => {
    expect(FIXTURE_HOSTS).toEqual(
      expect.arrayContaining([
        "epyc-2s4n",
        "spr-tdx-2n",
        "cxl-memonly",
        "single-node",
        "cgroup2-only",
        "gmem-mempolicy",
        "tight-memory",
      ]),
    );
    expect(SHIPPED_PROFILES.length).toBeGreaterThanOrEqual(7);
  });

  it.each(matrix)("$profile on $host", async ({ host, profile }) => {
    const { plan, host: h } = await planFor({ name: "", profile, host });
    const hostIds = new Set(h.nodes.map((n) => n.id));
    const hostCpus = new Set(h.nodes.flatMap((n) => n.cpus));
    expect(plan.nodes.length).toBeGreaterThan(0);
    for (const n of plan.nodes) {
      expect(n.private.mechanism === "not-applicable").toBe(!plan.guestMemfd);
      for (const id of n.private.hostNodes ?? []) expect(hostIds.has(id)).toBe(true);
      for (const cpu of n.hostCpus ?? []) expect(hostCpus.has(cpu)).toBe(true);
      expect(n.hostCpus!.length).toBeGreaterThan(0);
    }
    // Children never reach outside their VM cgroup, so cgroup v1 accepts them and v2 honours them.
    const [vm, ...children] = plan.launch.cgroups;
    for (const c of children) {
      for (const m of c.mems) expect(vm!.mems).toContain(m);
      for (const cpu of c.cpus) expect(vm!.cpus).toContain(cpu);
    }
    // A node that the profile names but the host lacks is always an error, never silently dropped.
    const missing = plan.nodes.some((n) => n.hostNodes.some((id) => !hostIds.has(id)));
    expect(codes(plan.errors).includes("placement.host-node-missing")).toBe(missing);
    for (const r of plan.capacity) {
      const free = h.nodes.find((n) => n.id === r.hostNode)!.memFreeBytes;
      expect(r.freeBytes).toBe(free);
      if (r.status === "insufficient")
        expect([...plan.errors, ...plan.warnings].some((d) => d.code.startsWith("capacity."))).toBe(true);
    }
    // Every diagnostic names the profile file.
    for (const d of [...plan.errors, ...plan.warnings])
      expect(d.file).toMatch(new RegExp(`${profile.replace(".", "\\.")}$`));
  });
});
