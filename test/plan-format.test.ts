// How plans are shown: the text table, the Graphviz digraph and its SVG (Graphviz as WebAssembly).
// Plans come from the real planner on fixture hosts and real profiles.
import { describe, expect, it } from "vitest";
import { planPlacement } from "../src/plan/plan.js";
import { builtinCapabilities } from "../src/probe/capabilities.js";
import { formatPlanDot, formatPlanSvg, formatPlanText, formatTable, planGraph, wrap } from "../src/plan/format.js";
import type { HostInfo, Plan } from "../src/core/types.js";
import { fixtureHost, loadProfile, withoutCpuset, withoutNumactl } from "./helpers/host.js";
import { checkXml } from "./helpers/xml.js";

async function plan(profile: string, host: string | HostInfo, set?: string[]): Promise<Plan> {
  // The on-demand levers' pictures are what most cases show; placement.private in `set` overrides.
  const all = set?.some((x) => x.startsWith("placement.private="))
    ? set
    : ["placement.private=on-demand", ...(set ?? [])];
  const p = await loadProfile(profile, all);
  return planPlacement(p, typeof host === "string" ? fixtureHost(host) : host, builtinCapabilities(p.qemu.version));
}

describe("formatTable and wrap", () => {
  it("pads every column but the last to its widest cell", () => {
    expect(
      formatTable(
        ["A", "LONG"],
        [
          ["xyz", "1"],
          ["q", "22"],
        ],
      ),
    ).toBe("A    LONG\nxyz  1\nq    22");
  });

  it("wraps at the width with a hanging indent and never splits a word", () => {
    const lines = wrap("aaaa bbbb cccc dddd", "  ", "    ", 12);
    expect(lines).toEqual(["  aaaa bbbb", "    cccc", "    dddd"]);
  });
});

describe("formatPlanText", () => {
  it("a table read at a glance, then reasons, launch actions, capacity and warnings", async () => {
    const text = formatPlanText(await plan("snp-2node.yaml", "epyc-2s4n"), { host: "epyc" });
    const lines = text.split("\n");
    expect(lines[0]).toBe("Plan for snp-2node: sev-snp guest, private memory in guest_memfd, on host epyc");
    const header = lines.findIndex((l) => l.startsWith("GUEST NODE"));
    expect(lines[header]!.split(/\s{2,}/)).toEqual([
      "GUEST NODE",
      "VCPUS",
      "HOST CPUS",
      "HOST NODES",
      "POLICY",
      "SIZE",
      "SHARED",
      "PRIVATE",
      "FIDELITY",
    ]);
    expect(lines[header + 1]!.split(/\s{2,}/)).toEqual([
      "0",
      "0-3",
      "0-15,64-79",
      "0",
      "bind",
      "4 GiB",
      "backend-policy",
      "vcpu-cpuset",
      "first-touch",
    ]);
    expect(lines[header + 2]!.split(/\s{2,}/)).toEqual([
      "1",
      "4-7",
      "16-31,80-95",
      "1",
      "bind",
      "4 GiB",
      "backend-policy",
      "vcpu-cpuset",
      "first-touch",
    ]);
    expect(text).toContain("  guest node 1 private: vCPU threads of guest node 1 go to cgroup vcpu-node1");
    expect(text).toContain("  cgroup <vm>/vcpu-node0: cpus 0-15,64-79, mems 0: vCPUs 0-3\n");
    expect(text).toContain("  pin vCPUs 4-7 -> host CPUs 16-31,80-95\n");
    expect(text).toMatch(/\n {2}0 {10}4 GiB {2}\+4 GiB {2}171\.8 GiB {2}- {10}ok\n/);
    expect(text).toContain("warning: numa.nodes: changing this sev-snp guest's NUMA topology");
    expect(text.trimEnd().endsWith("The plan holds. Private memory placement: first-touch.")).toBe(true);
    // Reasons wrap to 100 columns; diagnostics stay one line each, for grep.
    const why = lines.slice(lines.indexOf("Why:") + 1, lines.indexOf("Launch:") - 1);
    for (const l of why) expect(l.length).toBeLessThanOrEqual(100);
  });

  it("a numactl prefix and the lack of cgroups are said plainly", async () => {
    const text = formatPlanText(await plan("snp-1node.yaml", "epyc-2s4n"));
    expect(text).toContain("  before QEMU: numactl --membind=0 --\n");
    expect(text).toContain("  cgroups: none for placement\n");
    expect(text).toContain("  vCPU pinning: off\n");
  });

  it("a plan with errors ends saying it does not hold, each error with its reason", async () => {
    const text = formatPlanText(await plan("test/fixtures/plan-profiles/kvm-tight.yaml", "tight-memory"));
    expect(text).toContain("Errors (1):\n  ");
    expect(text.replace(/\n {6}/g, " ")).toContain(
      "numa.nodes[0].memory: host node 0 needs 2 GiB for this VM but has 1.5 GiB free",
    );
    expect(text).toMatch(/\n {2}0 .* insufficient\n {2}1 .* tight\n/);
    expect(text.trimEnd().endsWith("The plan does not hold: 1 error.")).toBe(true);
  });

  it("hugepage pools show need/free per node", async () => {
    const text = formatPlanText(await plan("snp-hugepages.yaml", "epyc-2s4n"));
    expect(text).toContain("4/12 x 1G");
  });
});

describe("planGraph", () => {
  it("shared and private edges per guest node, to the host nodes each half is expected on", async () => {
    const g = planGraph(await plan("snp-2node.yaml", "epyc-2s4n"));
    expect(g.guests.map((n) => n.id)).toEqual([0, 1]);
    expect(g.hosts.map((h) => h.id)).toEqual([0, 1]);
    expect(g.edges.map((e) => [e.guestNode, e.to, e.half, e.bytes, e.fidelity])).toEqual([
      [0, 0, "shared", 4 * 2 ** 30, undefined],
      [0, 0, "private", 4 * 2 ** 30, "first-touch"],
      [1, 1, "shared", 4 * 2 ** 30, undefined],
      [1, 1, "private", 4 * 2 ** 30, "first-touch"],
    ]);
  });

  it("private memory no lever places goes to an 'any host node' box", async () => {
    const g = planGraph(await plan("snp-2node.yaml", withoutNumactl(withoutCpuset(fixtureHost("epyc-2s4n")))));
    expect(g.hosts.at(-1)!.id).toBe("any");
    expect(g.edges.filter((e) => e.half === "private").every((e) => e.to === "any" && e.fidelity === "none")).toBe(
      true,
    );
  });

  it("a plain guest has no private edges; interleave splits the size over the nodes", async () => {
    const g = planGraph(
      await plan("kvm-1node.yaml", "cgroup2-only", ["memory.hostNodes=0-1", "memory.policy=interleave"]),
    );
    expect(g.edges.map((e) => [e.to, e.half, e.bytes])).toEqual([
      [0, "shared", 256 * 2 ** 20],
      [1, "shared", 256 * 2 ** 20],
    ]);
  });
});

describe("formatPlanDot", () => {
  it("a digraph of guest nodes to host nodes, edges labelled with size, mechanism and fidelity", async () => {
    const dot = formatPlanDot(await plan("snp-2node.yaml", "epyc-2s4n"));
    expect(dot.startsWith('digraph "qcvm plan snp-2node" {\n')).toBe(true);
    expect(dot.trimEnd().endsWith("}")).toBe(true);
    expect(dot).toContain('g0 [label="guest node 0\\nvCPUs 0-3, 4 GiB\\nbind 0"];');
    expect(dot).toContain(
      'g0 -> h0 [label="shared 4 GiB\\nbackend-policy", color="#1f6fb2", fontcolor="#1f6fb2", style=solid];',
    );
    expect(dot).toContain(
      'g0 -> h0 [label="private 4 GiB\\nvcpu-cpuset (first-touch)", color="#d35400", fontcolor="#d35400", style=dashed];',
    );
    // Braces balance and every statement line ends with ; or a brace.
    expect((dot.match(/{/g) ?? []).length).toBe((dot.match(/}/g) ?? []).length);
  });

  it("styles differ by fidelity: exact bold, none red and dashed", async () => {
    const exact = formatPlanDot(await plan("snp-1node.yaml", "epyc-2s4n"));
    expect(exact).toMatch(
      /g0 -> h0 \[label="private 4 GiB\\nprocess-mempolicy \(exact\)", color="#1e8449", .*style=bold\];/,
    );
    const none = formatPlanDot(await plan("snp-2node.yaml", withoutNumactl(withoutCpuset(fixtureHost("epyc-2s4n")))));
    expect(none).toMatch(/g0 -> h_any \[label="private 4 GiB\\nnone \(none\)", color="#c0392b", .*style=dashed\];/);
    expect(none).toContain('h_any [label="any host node');
  });

  it("quotes and backslashes in labels are escaped", () => {
    const p = {
      name: 'a"b\\c',
      confidential: "none",
      guestMemfd: false,
      nodes: [],
      launch: { cgroups: [], pinning: [] },
      capacity: [],
      warnings: [],
      errors: [],
    } as Plan;
    expect(formatPlanDot(p).split("\n")[0]).toBe('digraph "qcvm plan a\\"b\\\\c" {');
  });
});

describe("SVG (Graphviz as WebAssembly)", () => {
  it("is well-formed SVG with every guest and host node and the edge labels", async () => {
    const svg = await formatPlanSvg(await plan("snp-2node.yaml", "epyc-2s4n"));
    const x = checkXml(svg);
    expect(x.root).toBe("svg");
    expect(svg).toContain("Generated by graphviz");
    expect(x.texts).toEqual(
      expect.arrayContaining([
        "guest node 0",
        "guest node 1",
        "host node 0",
        "host node 1",
        "vcpu-cpuset (first-touch)",
      ]),
    );
  });

  it("escapes text", async () => {
    const p = {
      name: "a<b&c",
      confidential: "none",
      guestMemfd: false,
      nodes: [],
      launch: { cgroups: [], pinning: [] },
      capacity: [],
      warnings: [],
      errors: [],
    } as Plan;
    const x = checkXml(await formatPlanSvg(p));
    expect(x.texts).toContain("qcvm plan a<b&c");
  });

  it("the XML check rejects what is not well-formed", () => {
    expect(() => checkXml("<svg><g></svg>")).toThrow(/closes <g>/);
    expect(() => checkXml("<svg>a & b</svg>")).toThrow(/bare '&'/);
    expect(() => checkXml('<svg x="1" x="2"/>')).toThrow(/duplicate attribute/);
    expect(() => checkXml("<svg/><svg/>")).toThrow(/root/);
  });
});

// Issue 10 item 2: a guest node asking for a host node that does not exist showed "none none
// exact" and "policy default asks for no placement", and the SVG drew it as a bold green edge.
describe("a guest node with plan errors, in every format", () => {
  const failing = () => plan("snp-2node.yaml", "epyc-2s4n", ["numa.nodes[1].hostNodes=7"]);

  it("has fidelity none and carries its errors (json: PlanNode.errors)", async () => {
    const p = await failing();
    const n = p.nodes[1]!;
    expect(n.private.fidelity).toBe("none");
    expect(n.errors?.map((d) => d.code)).toEqual(["placement.host-node-missing"]);
    expect(n.private.reason).toMatch(/^not placed as planned: 1 error \(host node 7 does not exist/);
    expect(n.shared.reason).not.toContain("policy default");
    expect(p.nodes[0]!.errors).toBeUndefined();
  });

  it("text: the table says none (1 error), Why gives the error", async () => {
    const text = formatPlanText(await failing());
    expect(text).toMatch(/\n1 +4-7 .* none +none +none \(1 error\)\n/);
    expect(text).toContain("guest node 1 private: not placed as planned: 1 error (host node 7 does not exist");
  });

  it("dot and svg: the failing node is red and bold with its errors in the box", async () => {
    const p = await failing();
    const dot = formatPlanDot(p);
    expect(dot).toMatch(
      /g1 \[label="guest node 1\\n.*\\n✗ 1 error:\\nhost node 7 does not exist.*", color="#c0392b", fontcolor="#c0392b", style="rounded,bold"\];/,
    );
    expect(dot).toMatch(/g0 \[label="[^"]*"\];/);
    const x = checkXml(await formatPlanSvg(p));
    expect(x.texts).toContain("✗ 1 error:");
    expect(x.texts.join(" ")).not.toMatch(/none \(exact\)/);
  });
});

describe("guest-memfd-prealloc in text, dot and svg", () => {
  it("names the mechanism and grade, states the launch cost and what capacity commits at launch", async () => {
    const p = await plan("snp-2node.yaml", "epyc-2s4n", ["placement.private=auto"]);
    const text = formatPlanText(p);
    expect(text).toMatch(/^0 +0-3 .* guest-memfd-prealloc +exact-at-launch$/m);
    // Wrapped prose, read as one line.
    const flat = text.replace(/\n {3,}/g, " ");
    expect(flat).toContain(
      "  before cont: pre-allocate 8 GiB of private memory (guest nodes 0-1), about 2.0 s at 4 GiB/s (the rate measured on a 2-CPU Linux 6.18 host; npm run bench measures this one); needs root and pidfd_getfd",
    );
    expect(flat).toContain(
      "NEED includes private memory committed at launch (pre-allocated before the guest starts): 4 GiB on host node 0, 4 GiB on host node 1",
    );
    expect(text).toContain("The plan holds. Private memory placement: exact-at-launch.");
    const dot = formatPlanDot(p);
    expect(dot).toContain('"guest-memfd-prealloc (exact-at-launch)"'.slice(1, -1));
    // exact-at-launch: green like exact, solid rather than bold.
    expect(dot).toContain(
      'label="private 4 GiB\\nguest-memfd-prealloc (exact-at-launch)", color="#27ae60", fontcolor="#27ae60", style=solid',
    );
    const x = checkXml(await formatPlanSvg(p));
    expect(x.texts).toContain("guest-memfd-prealloc (exact-at-launch)");
  });
});
