// How a plan is shown: a table read at a glance (text), a Graphviz digraph (dot), and an SVG
// picture of that digraph, laid out by Graphviz compiled to WebAssembly (@viz-js/viz): no system
// `dot` to install and no layout of our own to keep. Guest nodes with plan errors are marked in
// every form. Pure (the WebAssembly module is loaded on first use).
import { formatList } from "../core/lists.js";
import { formatDiagnostic } from "../core/diagnostics.js";
import { formatBytes, planFidelity } from "./plan.js";
import { processPolicyArgv } from "../render/process-policy.js";
import type { CapacityRow, Fidelity, Plan, PlanNode } from "../core/types.js";

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (c === cells.length - 1 ? cell : cell.padEnd(widths[c]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** Word-wrap a paragraph to `width` columns with a first-line and a hanging indent. */
export function wrap(text: string, first: string, rest: string, width = 100): string[] {
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (!empty && line.length + 1 + word.length > width) {
      lines.push(line);
      line = rest + word;
    } else line += (empty ? "" : " ") + word;
    empty = false;
  }
  lines.push(line);
  return lines;
}

const list = (xs: readonly number[] | undefined) => (xs && xs.length > 0 ? formatList(xs) : "-");

function policyCell(n: PlanNode): string {
  if (!n.weights) return n.policy;
  return `${n.policy} (${Object.entries(n.weights)
    .map(([k, v]) => `${k}:${v}`)
    .join(",")})`;
}

const errorsText = (n: number) => `${n} error${n === 1 ? "" : "s"}`;

/** Fidelity, and for a guest node with plan errors how many: "none (2 errors)". */
function fidelityCell(n: PlanNode): string {
  return n.errors?.length ? `${n.private.fidelity} (${errorsText(n.errors.length)})` : n.private.fidelity;
}

function tasksText(tasks: Plan["launch"]["cgroups"][number]["tasks"]): string {
  return tasks === "process"
    ? "QEMU process (main and helper threads)"
    : `vCPU${tasks.vcpus.length === 1 ? "" : "s"} ${formatList(tasks.vcpus)}`;
}

/** Consecutive vCPUs pinned to the same host CPUs share one line. */
function pinningLines(plan: Plan): string[] {
  const out: string[] = [];
  let run: { vcpus: number[]; cpus: string } | undefined;
  const flush = () => {
    if (run) out.push(`pin vCPU${run.vcpus.length > 1 ? "s" : ""} ${formatList(run.vcpus)} -> host CPUs ${run.cpus}`);
  };
  for (const p of plan.launch.pinning) {
    const cpus = formatList(p.hostCpus);
    if (run && run.cpus === cpus && run.vcpus.at(-1) === p.vcpu - 1) run.vcpus.push(p.vcpu);
    else {
      flush();
      run = { vcpus: [p.vcpu], cpus };
    }
  }
  flush();
  return out;
}

function capacityCells(r: CapacityRow): string[] {
  return [
    String(r.hostNode),
    formatBytes(r.needBytes),
    r.upToBytes ? `+${formatBytes(r.upToBytes)}` : "-",
    formatBytes(r.freeBytes),
    r.hugepages ? `${r.hugepages.need}/${r.hugepages.free} x ${r.hugepages.size}` : "-",
    r.status,
  ];
}

export interface TextOptions {
  /** Host root the plan was made for, shown in the heading. */
  host?: string;
  /** Columns to wrap explanations at (default 100). */
  width?: number;
}

/** The heading, the per-node table and why each half is placed as it is. */
function nodesText(plan: Plan, opts: TextOptions, out: string[]): void {
  const kind =
    plan.confidential === "none"
      ? "plain KVM guest"
      : `${plan.confidential} guest${plan.guestMemfd ? ", private memory in guest_memfd" : ", memory encrypted in place (no guest_memfd)"}`;
  out.push(...wrap(`Plan for ${plan.name}: ${kind}${opts.host ? `, on host ${opts.host}` : ""}`, "", "  ", opts.width));
  out.push("");
  out.push(
    formatTable(
      ["GUEST NODE", "VCPUS", "HOST CPUS", "HOST NODES", "POLICY", "SIZE", "SHARED", "PRIVATE", "FIDELITY"],
      plan.nodes.map((n) => [
        String(n.guestNode),
        list(n.cpus),
        list(n.hostCpus),
        list(n.hostNodes),
        policyCell(n),
        formatBytes(n.sizeBytes),
        n.shared.mechanism,
        n.private.mechanism,
        fidelityCell(n),
      ]),
    ),
  );
  out.push("");
  out.push("Why:");
  for (const n of plan.nodes) {
    out.push(...wrap(`guest node ${n.guestNode} shared: ${n.shared.reason}`, "  ", "      ", opts.width));
    out.push(...wrap(`guest node ${n.guestNode} private: ${n.private.reason}`, "  ", "      ", opts.width));
  }
}

/** What launch does around QEMU: the process policy, cgroups, pinning and pre-allocation. */
function launchText(plan: Plan, opts: TextOptions, out: string[]): void {
  out.push("");
  out.push("Launch:");
  const { processPolicy, cgroups } = plan.launch;
  const prefix = processPolicyArgv(processPolicy);
  out.push(`  before QEMU: ${prefix.length > 0 ? prefix.join(" ") : "nothing (no process-wide memory policy)"}`);
  if (cgroups.length === 0) out.push("  cgroups: none for placement");
  for (const c of cgroups) {
    out.push(
      `  cgroup ${c.name === "" ? "<vm>" : `<vm>/${c.name}`}: cpus ${list(c.cpus)}, mems ${list(c.mems)}: ${tasksText(c.tasks)}`,
    );
  }
  const pins = pinningLines(plan);
  out.push(...(pins.length > 0 ? pins.map((p) => `  ${p}`) : ["  vCPU pinning: off"]));
  const pre = plan.launch.prealloc;
  if (pre) {
    out.push(
      ...wrap(
        `before cont: pre-allocate ${formatBytes(pre.bytes)} of private memory (guest node${pre.guestNodes.length === 1 ? "" : "s"} ${list(pre.guestNodes)}), about ${pre.seconds.toFixed(1)} s at ${formatBytes(pre.bytesPerSecond)}/s (${pre.rateSource}); needs root and pidfd_getfd`,
        "  ",
        "    ",
        opts.width,
      ),
    );
  }
}

/** The per-host-node capacity table and what its columns include. */
function capacityText(plan: Plan, opts: TextOptions, out: string[]): void {
  out.push("");
  out.push("Capacity:");
  if (plan.capacity.length === 0) out.push("  nothing to check (no host node memory is known)");
  else {
    const table = formatTable(
      ["HOST NODE", "NEED", "UP TO", "FREE", "HUGEPAGES", "STATUS"],
      plan.capacity.map(capacityCells),
    );
    out.push(...table.split("\n").map((l) => `  ${l}`));
    const atLaunch = plan.capacity.filter((r) => r.atLaunchBytes);
    if (atLaunch.length > 0) {
      out.push(
        ...wrap(
          `NEED includes private memory committed at launch (pre-allocated before the guest starts): ${atLaunch.map((r) => `${formatBytes(r.atLaunchBytes!)} on host node ${r.hostNode}`).join(", ")}`,
          "  ",
          "    ",
          opts.width,
        ),
      );
    }
    if (plan.capacity.some((r) => r.upToBytes)) {
      out.push(
        ...wrap(
          "UP TO: shared pages the guest may add; QEMU frees a page's private copy when the guest shares it",
          "  ",
          "    ",
          opts.width,
        ),
      );
    }
  }
}

/** Warnings, errors and whether the plan holds. */
function verdictText(plan: Plan, opts: TextOptions, out: string[]): void {
  if (plan.warnings.length > 0) {
    out.push("");
    out.push(`Warnings (${plan.warnings.length}):`);
    for (const w of plan.warnings) out.push(...wrap(formatDiagnostic(w), "  ", "      ", opts.width));
  }
  out.push("");
  if (plan.errors.length > 0) {
    out.push(`Errors (${plan.errors.length}):`);
    for (const e of plan.errors) out.push(...wrap(formatDiagnostic(e), "  ", "      ", opts.width));
    out.push("");
    out.push(`The plan does not hold: ${plan.errors.length} error${plan.errors.length === 1 ? "" : "s"}.`);
  } else {
    out.push(
      `The plan holds. Private memory placement: ${plan.guestMemfd ? planFidelity(plan) : "not applicable (no guest_memfd)"}.`,
    );
  }
}

export function formatPlanText(plan: Plan, opts: TextOptions = {}): string {
  const out: string[] = [];
  for (const part of [nodesText, launchText, capacityText, verdictText]) part(plan, opts, out);
  return `${out.join("\n")}\n`;
}

// ---------------------------------------------------------------------------------------------
// Graph model shared by dot and the built-in SVG
// ---------------------------------------------------------------------------------------------

export interface GraphEdge {
  guestNode: number;
  /** Host node id, or "any" for memory no lever places. */
  to: number | "any";
  half: "shared" | "private";
  bytes: number;
  mechanism: string;
  fidelity?: Fidelity;
}

export interface GraphHost {
  id: number | "any";
  cpus?: number[];
  freeBytes?: number;
}

export interface GraphGuest {
  id: number;
  label: string[];
  /** Messages of the plan errors about this guest node ([] when it is placed as planned). */
  errors: string[];
}

export interface PlanGraph {
  guests: GraphGuest[];
  hosts: GraphHost[];
  edges: GraphEdge[];
}

/** Spread like the planner's capacity estimate: preferred on the first node, the rest evenly. */
function split(bytes: number, targets: number[], policy: string): [number | "any", number][] {
  if (targets.length === 0) return [["any", bytes]];
  if (policy === "preferred") return [[targets[0]!, bytes]];
  const each = Math.floor(bytes / targets.length);
  return targets.map((t, i) => [t, i === targets.length - 1 ? bytes - each * (targets.length - 1) : each]);
}

export function planGraph(plan: Plan): PlanGraph {
  const edges: GraphEdge[] = [];
  const hostCpus = new Map<number, number[]>();
  for (const n of plan.nodes) {
    const sharedTargets = n.shared.hostNodes ?? (n.shared.mechanism === "none" ? [] : n.hostNodes);
    for (const [to, bytes] of split(n.sizeBytes, sharedTargets, n.policy)) {
      edges.push({ guestNode: n.guestNode, to, half: "shared", bytes, mechanism: n.shared.mechanism });
    }
    if (n.private.mechanism !== "not-applicable") {
      const targets = n.private.hostNodes ?? [];
      for (const [to, bytes] of split(n.sizeBytes, targets, n.policy)) {
        edges.push({
          guestNode: n.guestNode,
          to,
          half: "private",
          bytes,
          mechanism: n.private.mechanism,
          fidelity: n.private.fidelity,
        });
      }
    }
    // A node's host CPUs belong to its host nodes; shown on the host box when only one is named.
    if (n.hostNodes.length === 1 && n.hostCpus) hostCpus.set(n.hostNodes[0]!, n.hostCpus);
  }
  const ids = new Set<number>();
  for (const e of edges) if (e.to !== "any") ids.add(e.to);
  for (const r of plan.capacity) ids.add(r.hostNode);
  const free = new Map(plan.capacity.map((r) => [r.hostNode, r.freeBytes]));
  const hosts: GraphHost[] = [...ids]
    .sort((a, b) => a - b)
    .map((id) => {
      const h: GraphHost = { id };
      const cpus = hostCpus.get(id);
      if (cpus) h.cpus = cpus;
      const f = free.get(id);
      if (f !== undefined) h.freeBytes = f;
      return h;
    });
  if (edges.some((e) => e.to === "any")) hosts.push({ id: "any" });
  const guests = plan.nodes.map((n) => ({
    id: n.guestNode,
    label: [
      `guest node ${n.guestNode}`,
      `vCPUs ${list(n.cpus)}, ${formatBytes(n.sizeBytes)}`,
      `${policyCell(n)} ${n.hostNodes.length > 0 ? formatList(n.hostNodes) : ""}`.trim(),
    ],
    errors: (n.errors ?? []).map((d) => d.message),
  }));
  return { guests, hosts, edges };
}

/** A failing guest node's label: its lines, then the errors, each wrapped to a box width. */
export function guestLabel(g: GraphGuest): string[] {
  if (g.errors.length === 0) return g.label;
  return [...g.label, `✗ ${errorsText(g.errors.length)}:`, ...g.errors.flatMap((m) => wrap(m, "", "  ", 44))];
}

function hostLabel(h: GraphHost): string[] {
  if (h.id === "any") return ["any host node", "(where the faulting", "thread runs)"];
  const lines = [`host node ${h.id}`];
  if (h.cpus) lines.push(`CPUs ${formatList(h.cpus)}`);
  if (h.freeBytes !== undefined) lines.push(`${formatBytes(h.freeBytes)} free`);
  return lines;
}

function edgeLabel(e: GraphEdge): string[] {
  return [`${e.half} ${formatBytes(e.bytes)}`, e.fidelity ? `${e.mechanism} (${e.fidelity})` : e.mechanism];
}

/** Colour and dash per edge: shared blue; private by fidelity, from solid green to red. */
export function edgeStyle(e: GraphEdge): { color: string; dot: string; dash?: string; width: number } {
  if (e.half === "shared")
    return e.mechanism === "none"
      ? { color: "#7f8c8d", dot: "dashed", dash: "6,4", width: 1.5 }
      : { color: "#1f6fb2", dot: "solid", width: 1.5 };
  switch (e.fidelity) {
    case "exact":
      return { color: "#1e8449", dot: "bold", width: 2.5 };
    case "exact-at-launch":
      return { color: "#27ae60", dot: "solid", width: 2.5 };
    case "first-touch":
      return { color: "#d35400", dot: "dashed", dash: "8,4", width: 2 };
    case "coarse":
      return { color: "#9a7d0a", dot: "dotted", dash: "2,4", width: 2 };
    default:
      return { color: "#c0392b", dot: "dashed", dash: "4,4", width: 2 };
  }
}

// ---------------------------------------------------------------------------------------------
// dot
// ---------------------------------------------------------------------------------------------

function dotString(s: string): string {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}

const hostId = (id: number | "any") => (id === "any" ? "h_any" : `h${id}`);

export function formatPlanDot(plan: Plan): string {
  const g = planGraph(plan);
  const out: string[] = [];
  out.push(`digraph ${dotString(`qcvm plan ${plan.name}`)} {`);
  out.push("  rankdir=LR;");
  out.push('  graph [fontname="Helvetica", fontsize=11, nodesep=0.4, ranksep=2.2];');
  out.push('  node [shape=box, style="rounded", fontname="Helvetica", fontsize=10];');
  out.push('  edge [fontname="Helvetica", fontsize=9];');
  out.push("  subgraph cluster_guest {");
  out.push(`    label=${dotString(`guest ${plan.name} (${plan.confidential})`)};`);
  for (const n of g.guests) {
    // Failing guest nodes: red and bold, the errors in the box (left-aligned lines: \l).
    const mark = n.errors.length > 0 ? ', color="#c0392b", fontcolor="#c0392b", style="rounded,bold"' : "";
    out.push(`    g${n.id} [label=${dotString(guestLabel(n).join("\n"))}${mark}];`);
  }
  out.push("  }");
  out.push("  subgraph cluster_host {");
  out.push(`    label="host";`);
  for (const h of g.hosts)
    out.push(
      `    ${hostId(h.id)} [label=${dotString(hostLabel(h).join("\n"))}${h.id === "any" ? ', style="rounded,dashed"' : ""}];`,
    );
  out.push("  }");
  for (const e of g.edges) {
    const s = edgeStyle(e);
    out.push(
      `  g${e.guestNode} -> ${hostId(e.to)} [label=${dotString(edgeLabel(e).join("\n"))}, color=${dotString(s.color)}, fontcolor=${dotString(s.color)}, style=${s.dot}];`,
    );
  }
  out.push("}");
  return `${out.join("\n")}\n`;
}

// ---------------------------------------------------------------------------------------------
// SVG: the dot digraph laid out by Graphviz (WebAssembly)
// ---------------------------------------------------------------------------------------------

/** SVG of the plan: formatPlanDot() laid out by Graphviz compiled to WebAssembly (@viz-js/viz). */
export async function formatPlanSvg(plan: Plan): Promise<string> {
  const { instance } = await import("@viz-js/viz");
  const viz = await instance();
  return viz.renderString(formatPlanDot(plan), { format: "svg" });
}
