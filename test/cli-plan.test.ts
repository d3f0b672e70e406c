// `qcvm plan` as a user runs it: the built bin, real profiles, fixture hosts, saved capability
// files. JSON is validated against schemas/plan.schema.json; SVG is checked well-formed on both
// paths (Graphviz and the built-in layout, forced with QCVM_NO_GRAPHVIZ=1).
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { REPO } from "./helpers/host.js";
import { checkXml } from "./helpers/xml.js";
import type { Plan } from "../src/core/types.js";

const BIN = join(REPO, "bin/qcvm.js");
const hostDir = (h: string) => `examples/hosts/${h}`;
const fx = (f: string) => `test/fixtures/plan-profiles/${f}`;

const validatePlan = new Ajv2020({ allErrors: true, strict: true }).compile(
  JSON.parse(readFileSync(join(REPO, "schemas/plan.schema.json"), "utf8")),
);

function qcvm(args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  return qcvmAs(
    args[0] === "plan" && !args.some((a) => a.startsWith("placement.private="))
      ? [...args, "--set", "placement.private=on-demand"]
      : args,
    env,
  );
}

/** As a user types it. qcvm() above plans with placement.private: on-demand, the levers most cases here
 *  are about; guest-memfd-prealloc (the default, auto) has its own cases. */
function qcvmAs(args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: REPO,
    encoding: "utf8",
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function planJson(args: string[]): { code: number; plan: Plan; stderr: string } {
  const r = qcvm(["plan", ...args, "--format", "json"]);
  const plan = JSON.parse(r.stdout) as Plan;
  expect(validatePlan(plan), JSON.stringify(validatePlan.errors, null, 2)).toBe(true);
  return { code: r.code, plan, stderr: r.stderr };
}

describe("qcvm plan --format json", () => {
  it.each([
    ["profiles/kvm-1node.yaml", "single-node", "not-applicable", "exact"],
    ["profiles/snp-1node.yaml", "epyc-2s4n", "process-mempolicy", "exact"],
    ["profiles/snp-2node.yaml", "epyc-2s4n", "vcpu-cpuset", "first-touch"],
    ["profiles/tdx-2node.yaml", "spr-tdx-2n", "vcpu-cpuset", "first-touch"],
    [fx("snp-2node-interleave.yaml"), "epyc-2s4n", "vcpu-cpuset", "coarse"],
  ])("%s on %s: exit 0, valid plan, private %s %s", (profile, host, mechanism, fidelity) => {
    const { code, plan } = planJson([profile, "--host", hostDir(host)]);
    expect(code).toBe(0);
    expect(plan.errors).toEqual([]);
    expect(plan.nodes.every((n) => n.private.mechanism === mechanism && n.private.fidelity === fidelity)).toBe(true);
  });

  it("--capabilities of a QEMU with the guest_memfd backend: exact on Linux 6.19", () => {
    const { code, plan } = planJson([
      "profiles/snp-2node.yaml",
      "--host",
      hostDir("gmem-mempolicy"),
      "--capabilities",
      fx("caps-gmem-snp.json"),
    ]);
    expect(code).toBe(0);
    expect(plan.nodes.map((n) => n.private.mechanism)).toEqual(["guest-memfd-mempolicy", "guest-memfd-mempolicy"]);
  });

  it("a plan that does not hold: exit 1, and the JSON is still printed with the errors", () => {
    const { code, plan } = planJson([fx("kvm-tight.yaml"), "--host", hostDir("tight-memory")]);
    expect(code).toBe(1);
    expect(plan.errors.map((e) => e.code)).toEqual(["capacity.insufficient"]);
    expect(plan.capacity.map((r) => r.status)).toEqual(["insufficient", "tight"]);
  });

  it("--set reaches the planner: strict mode turns first-touch into errors", () => {
    const { code, plan } = planJson([
      "profiles/snp-2node.yaml",
      "--host",
      hostDir("epyc-2s4n"),
      "--set",
      "placement.strict=true",
    ]);
    expect(code).toBe(1);
    expect(plan.errors.map((e) => [e.code, e.path])).toEqual([
      ["placement.strict", "numa.nodes[0].hostNodes"],
      ["placement.strict", "numa.nodes[1].hostNodes"],
    ]);
  });

  it("a host node the host lacks: exit 1 naming the field and the nodes the host has", () => {
    const { code, plan } = planJson(["profiles/snp-hugepages.yaml", "--host", hostDir("single-node")]);
    expect(code).toBe(1);
    const e = plan.errors.find((d) => d.code === "placement.host-node-missing");
    expect(e).toMatchObject({ path: "memory.hostNodes", got: "1" });
    expect(e!.message).toContain("it has host node 0");
  });
});

describe("qcvm plan (text)", () => {
  it("prints the table, the launch actions and the capacity", () => {
    const r = qcvm(["plan", "profiles/snp-2node.yaml", "--host", hostDir("epyc-2s4n")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^GUEST NODE {2}VCPUS {2}HOST CPUS {4}HOST NODES {2}POLICY {2}SIZE {3}SHARED {10}PRIVATE {6}FIDELITY$/m,
    );
    expect(r.stdout).toMatch(
      /^0 {11}0-3 {4}0-15,64-79 {3}0 {11}bind {4}4 GiB {2}backend-policy {2}vcpu-cpuset {2}first-touch$/m,
    );
    expect(r.stdout).toContain("cgroup <vm>/vcpu-node1: cpus 16-31,80-95, mems 1: vCPUs 4-7");
    expect(r.stdout).toContain("Capacity:\n  HOST NODE  NEED");
    expect(r.stdout).toContain("The plan holds.");
    expect(r.stderr).toBe("");
  });

  it("a failing plan prints its errors with the profile file and exits 1", () => {
    const r = qcvm(["plan", "profiles/snp-1node.yaml", "--host", hostDir("single-node")]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/snp-1node\.yaml: confidential\.type: sev-snp is not enabled on this host/);
    expect(r.stdout).toContain("The plan does not hold");
  });

  it("a profile that does not exist: a message, exit 1, no stack trace", () => {
    const r = qcvm(["plan", "profiles/nope.yaml"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("nope.yaml");
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toBe("");
  });

  it("a capabilities file that is not one: a message naming the file, exit 1", () => {
    const r = qcvm([
      "plan",
      "profiles/kvm-1node.yaml",
      "--host",
      hostDir("single-node"),
      "--capabilities",
      "profiles/kvm-1node.yaml",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("profiles/kvm-1node.yaml: not a capabilities file");
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe("qcvm plan --format dot and svg", () => {
  it("dot: a digraph with guest and host clusters", () => {
    const r = qcvm(["plan", "profiles/snp-2node.yaml", "--host", hostDir("epyc-2s4n"), "--format", "dot"]);
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith('digraph "qcvm plan snp-2node" {')).toBe(true);
    expect(r.stdout).toContain("subgraph cluster_guest {");
    expect(r.stdout).toContain('g1 -> h1 [label="private 4 GiB\\nvcpu-cpuset (first-touch)"');
  });

  it("svg is well-formed, laid out by Graphviz (WebAssembly, no system dot needed)", () => {
    const r = qcvm(["plan", fx("kvm-cxl.yaml"), "--host", hostDir("cxl-memonly"), "--format", "svg"]);
    expect(r.code).toBe(0);
    const x = checkXml(r.stdout);
    expect(x.root).toBe("svg");
    const texts = x.texts.join("\n");
    expect(texts).toContain("guest node 1");
    expect(texts).toContain("host node 2");
    expect(r.stdout).toContain("Generated by graphviz");
  });

  it("svg of a failing plan still draws, and the errors go to stderr with exit 1", () => {
    const r = qcvm(["plan", fx("kvm-tight.yaml"), "--host", hostDir("tight-memory"), "--format", "svg"]);
    expect(r.code).toBe(1);
    expect(checkXml(r.stdout).root).toBe("svg");
    expect(r.stderr).toContain("host node 0 needs 2 GiB for this VM but has 1.5 GiB free");
  });
});

describe("qcvm plan with the defaults: guest-memfd-prealloc", () => {
  it("qcvm plan profiles/snp-2node.yaml --host test/fixtures/hosts/epyc-2s4n grades both nodes with it", () => {
    const r = qcvmAs(["plan", "profiles/snp-2node.yaml", "--host", hostDir("epyc-2s4n")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^0 .* guest-memfd-prealloc +exact-at-launch$/m);
    expect(r.stdout).toMatch(/^1 .* guest-memfd-prealloc +exact-at-launch$/m);
    expect(r.stdout).toContain("The plan holds. Private memory placement: exact-at-launch.");
    const j = qcvmAs(["plan", "profiles/snp-2node.yaml", "--host", hostDir("epyc-2s4n"), "--format", "json"]);
    const plan = JSON.parse(j.stdout) as Plan;
    expect(validatePlan(plan), JSON.stringify(validatePlan.errors, null, 2)).toBe(true);
    expect(plan.nodes.map((n) => [n.private.mechanism, n.private.fidelity])).toEqual([
      ["guest-memfd-prealloc", "exact-at-launch"],
      ["guest-memfd-prealloc", "exact-at-launch"],
    ]);
    expect(plan.launch.prealloc?.bytes).toBe(8 * 2 ** 30);
  });

  it("TDX on spr-tdx-2n too, and strict mode accepts it", () => {
    const { plan } = {
      plan: JSON.parse(
        qcvmAs([
          "plan",
          "profiles/tdx-2node.yaml",
          "--host",
          hostDir("spr-tdx-2n"),
          "--set",
          "placement.strict=true",
          "--format",
          "json",
        ]).stdout,
      ) as Plan,
    };
    expect(plan.errors).toEqual([]);
    expect(plan.nodes.map((n) => n.private.fidelity)).toEqual(["exact-at-launch", "exact-at-launch"]);
  });

  it("dot shows the grade on the private edges", () => {
    const r = qcvmAs(["plan", "profiles/snp-2node.yaml", "--host", hostDir("epyc-2s4n"), "--format", "dot"]);
    expect(r.stdout).toContain("guest-memfd-prealloc (exact-at-launch)");
  });
});
