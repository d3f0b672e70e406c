// guest-memfd-prealloc in the planner (placement.private: auto, the default, and prealloc): which
// SNP/TDX guests get it, what the plan states of it (cost, capacity committed at launch), what
// strict makes of it, and what rules it out (Yama, kernels without pidfd_getfd). Plans come from
// the real planner on fixture hosts and shipped profiles, and are validated against the plan schema.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { planPlacement, planFidelity } from "../src/plan/plan.js";
import { builtinCapabilities } from "../src/probe/capabilities.js";
import { loadCapabilities } from "../src/probe/qemu.js";
import type { HostInfo, Plan } from "../src/core/types.js";
import { PLAN_PROFILES_DIR, REPO, fixtureHost, loadProfile } from "./helpers/host.js";

const GiB = 2 ** 30;
const validatePlan = new Ajv2020({ allErrors: true, strict: true }).compile(
  JSON.parse(readFileSync(join(REPO, "schemas/plan.schema.json"), "utf8")),
);
const codes = (ds: { code: string }[]) => ds.map((d) => d.code);

interface Case {
  profile: string;
  set?: string[];
  host: string | (() => HostInfo);
  /** A capabilities file under plan-profiles/; otherwise the built-in table of the profile's version. */
  caps?: string;
}

async function planFor(c: Case): Promise<{ plan: Plan }> {
  const profile = await loadProfile(c.profile, c.set);
  const host = typeof c.host === "string" ? fixtureHost(c.host) : c.host();
  const caps = c.caps ? loadCapabilities(join(PLAN_PROFILES_DIR, c.caps)) : builtinCapabilities(profile.qemu.version);
  const plan = planPlacement(profile, host, caps);
  expect(validatePlan(plan), JSON.stringify(validatePlan.errors, null, 2)).toBe(true);
  return { plan };
}

describe("guest-memfd-prealloc in the plan", () => {
  const auto = (c: Case, extra: string[] = []) =>
    planFor({ ...c, set: ["placement.private=auto", ...(c.set ?? []), ...extra] });

  it("SNP, two nodes on different host nodes, Linux 6.11: both nodes exact at launch, vCPU cpusets after", async () => {
    const { plan } = await auto({ profile: "snp-2node.yaml", host: "epyc-2s4n" });
    expect(plan.nodes.map((n) => [n.private.mechanism, n.private.fidelity])).toEqual([
      ["guest-memfd-prealloc", "exact-at-launch"],
      ["guest-memfd-prealloc", "exact-at-launch"],
    ]);
    expect(plan.nodes[1]!.private.reason).toContain(
      "fallocates all 4 GiB of it from the VM cgroup under MPOL_BIND over host node 1",
    );
    expect(plan.nodes[1]!.private.reason).toContain("in cgroup vcpu-node1 (cpuset.mems=1): first-touch");
    expect(plan.nodes.map((n) => n.private.hostNodes)).toEqual([[0], [1]]);
    // The vCPU cpusets stay, for pages re-faulted after a conversion.
    expect(plan.launch.cgroups.map((c) => [c.name, c.mems])).toEqual([
      ["", [0, 1]],
      ["vcpu-node0", [0]],
      ["vcpu-node1", [1]],
    ]);
    expect(plan.launch.processPolicy).toBeUndefined();
    expect(planFidelity(plan)).toBe("exact-at-launch");
    // Cost: 8 GiB at the planned rate; capacity counts it as committed at launch per node.
    expect(plan.launch.prealloc).toMatchObject({ guestNodes: [0, 1], bytes: 8 * GiB, seconds: 2 });
    expect(plan.capacity.map((r) => [r.hostNode, r.needBytes, r.atLaunchBytes])).toEqual([
      [0, 4 * GiB, 4 * GiB],
      [1, 4 * GiB, 4 * GiB],
    ]);
  });

  it("TDX, two nodes on Linux 6.16: the same, with TDX's populate named", async () => {
    const { plan } = await auto({ profile: "tdx-2node.yaml", host: "spr-tdx-2n" });
    expect(plan.nodes.map((n) => n.private.fidelity)).toEqual(["exact-at-launch", "exact-at-launch"]);
    expect(plan.nodes[0]!.private.reason).toMatch(/the TDX .* uses those pages/);
  });

  it("exact levers still win: one process-wide policy for identical nodes, guest_memfd mempolicy on 6.19", async () => {
    const one = await auto({ profile: "snp-1node.yaml", host: "epyc-2s4n" });
    expect(one.plan.nodes[0]!.private.mechanism).toBe("process-mempolicy");
    expect(one.plan.launch.prealloc).toBeUndefined();
    const gm = await auto({ profile: "snp-2node.yaml", host: "gmem-mempolicy", caps: "caps-gmem-snp.json" });
    expect(gm.plan.nodes[0]!.private.mechanism).toBe("guest-memfd-mempolicy");
  });

  it("placement.private: prealloc takes it even where a process-wide policy would be exact", async () => {
    const { plan } = await auto({ profile: "snp-1node.yaml", host: "epyc-2s4n" }, ["placement.private=prealloc"]);
    expect(plan.nodes[0]!.private.mechanism).toBe("guest-memfd-prealloc");
    expect(plan.launch.processPolicy).toBeUndefined();
  });

  it("strict mode accepts exact-at-launch", async () => {
    const { plan } = await auto({ profile: "snp-2node.yaml", host: "epyc-2s4n" }, ["placement.strict=true"]);
    expect(plan.errors).toEqual([]);
  });

  it("Yama ptrace_scope 3 rules it out, said in the reason; prealloc then is an error", async () => {
    const host = () => ({ ...fixtureHost("epyc-2s4n"), ptraceScope: 3 });
    const { plan } = await auto({ profile: "snp-2node.yaml", host });
    expect(plan.nodes[0]!.private.mechanism).toBe("vcpu-cpuset");
    expect(plan.nodes[0]!.private.reason).toContain(
      "guest_memfd pre-allocation: Yama kernel.yama.ptrace_scope is 3, which forbids every ptrace attach",
    );
    const strict = await auto({ profile: "snp-2node.yaml", host }, ["placement.private=prealloc"]);
    expect(codes(strict.plan.errors)).toEqual(["placement.private"]);
    expect(strict.plan.errors[0]!.message).toMatch(/^guest-memfd-prealloc cannot be used: Yama/);
  });

  it("a kernel without pidfd_getfd (Linux 5.6) rules it out", async () => {
    const host = () => ({ ...fixtureHost("epyc-2s4n"), kernel: "5.4.0" });
    const { plan } = await auto({ profile: "snp-2node.yaml", host });
    expect(plan.nodes[0]!.private.mechanism).not.toBe("guest-memfd-prealloc");
    expect(plan.nodes[0]!.private.reason).toContain("has no pidfd_getfd (Linux 5.6)");
  });

  it("placement.private: prealloc on a guest without guest_memfd is a warning, not an error", async () => {
    const { plan } = await auto({ profile: "sev-es.yaml", host: "epyc-2s4n" }, ["placement.private=prealloc"]);
    expect(plan.errors).toEqual([]);
    expect(plan.warnings.find((w) => w.code === "placement.private")?.message).toContain("has no guest_memfd");
  });
});
