// `qcvm status [name]`: what runs, for how long, from which profile, and how faithfully its plan
// was applied. A VM is alive only while its pid exists with the start time recorded at launch, so
// a pid the kernel has since given to another process reads as dead, not as "running".
// A launch killed before it wrote state.json still leaves a lock, a runtime directory and cgroups;
// status lists it as interrupted (so `qcvm stop <name>` is not a guess), and a damaged state.json
// as damaged, instead of leaving them out.
// Exit codes: 0 listing, or the named VM runs (or is starting); 3 the named VM is dead or
// interrupted (as LSB `status`); 1 no such VM or a damaged state file; 2 usage.
import type { Outcome } from "../core/errors.js";
import type { StatusOptions } from "../cli/command-options.js";
import { readdirSync } from "node:fs";
import { relative } from "node:path";
import { UserError } from "../core/diagnostics.js";
import { formatList } from "../core/lists.js";
import { inspectVm } from "../vm/inspect.js";
import { locksDir } from "../vm/lock.js";
import { formatLost } from "../vm/state.js";
import { requireVmName, resolveRunDir, vmNameProblem, vmPaths } from "../vm/paths.js";
import type { VmCondition, VmInspection } from "../vm/inspect.js";
import type { Fidelity, MemPolicy, PrivateMechanism, SharedMechanism } from "../core/types.js";

export type { VmCondition };

export interface NodeStatus {
  guestNode: number;
  hostNodes: number[];
  policy: MemPolicy;
  shared: SharedMechanism;
  private: PrivateMechanism;
  /** The plan's fidelity for the private half. */
  fidelity: Fidelity;
  /** False when a placement for this node was lost at launch (see `lost`). */
  applied: boolean;
  lost: string[];
}

export interface VmStatus {
  name: string;
  state: VmCondition;
  /** Why a VM is dead, interrupted or damaged. */
  reason?: string;
  /** QEMU's pid; 0 when a launch died before QEMU was started or recorded. */
  pid: number;
  startedAt: string;
  uptimeSeconds?: number;
  profile: string;
  accel: string;
  qemuVersion?: string;
  detached: boolean;
  dir: string;
  qmp: string;
  log: string;
  cgroups: string[];
  nodes: NodeStatus[];
  /** Every lost placement, one line each. */
  lost: string[];
}

/** The status line and table of one inspected VM. */
export function describeVm(found: VmInspection, runDir: string, nowMs = Date.now()): VmStatus {
  const s = found.state;
  if (!s) return describeLeftover(found, runDir);
  const state = found.condition;
  const started = Date.parse(s.startedAt);
  const nodes: NodeStatus[] = s.plan.nodes.map((n) => {
    const lost = s.lost.filter((l) => l.guestNode === n.guestNode).map(formatLost);
    return {
      guestNode: n.guestNode,
      hostNodes: n.hostNodes,
      policy: n.policy,
      shared: n.shared.mechanism,
      private: n.private.mechanism,
      fidelity: n.private.fidelity,
      applied: lost.length === 0,
      lost,
    };
  });
  return {
    name: s.name,
    state,
    ...(found.reason ? { reason: found.reason } : {}),
    pid: s.pid,
    startedAt: s.startedAt,
    ...(state === "dead" || Number.isNaN(started)
      ? {}
      : { uptimeSeconds: Math.max(0, Math.round((nowMs - started) / 1000)) }),
    profile: s.profile,
    accel: s.accel,
    ...(s.qemuVersion ? { qemuVersion: s.qemuVersion } : {}),
    detached: s.detached,
    dir: s.dir,
    qmp: s.qmp,
    log: s.log,
    cgroups: s.cgroup.paths,
    nodes,
    lost: s.lost.map(formatLost),
  };
}

/** A VM with no readable state.json: a launch that died before writing it, or a damaged file. */
function describeLeftover(found: VmInspection, runDir: string): VmStatus {
  const paths = vmPaths(runDir, found.name);
  const holder = found.holder;
  return {
    name: found.name,
    state: found.condition,
    reason: found.reason ?? "",
    pid: holder?.role === "qemu" ? holder.pid : 0,
    startedAt: holder?.since ?? "",
    profile: "-",
    accel: "-",
    detached: false,
    dir: paths.dir,
    qmp: paths.qmp,
    log: paths.log,
    cgroups: [],
    nodes: [],
    lost: [],
  };
}

/** Every VM in the run dir, sorted by name: those with state, and the leftovers of launches that died early. */
export function listVms(runDir: string): VmStatus[] {
  const names = new Set<string>();
  try {
    for (const d of readdirSync(runDir, { withFileTypes: true })) if (d.isDirectory()) names.add(d.name);
  } catch {
    // No run dir yet: no VMs.
  }
  try {
    for (const f of readdirSync(locksDir(runDir))) {
      const m = /^vm-(.+)\.lock$/.exec(f);
      if (m) names.add(m[1]!);
    }
  } catch {
    // No locks dir: no lock-only leftovers.
  }
  const out: VmStatus[] = [];
  for (const name of names) {
    if (vmNameProblem(name)) continue;
    const found = inspectVm(runDir, name);
    if (found) out.push(describeVm(found, runDir));
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export function formatUptime(seconds: number | undefined): string {
  if (seconds === undefined) return "-";
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (d > 0) return `${d}d${h}h`;
  if (h > 0) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

function fidelityCell(v: VmStatus): string {
  if (v.nodes.length === 0) return v.lost.length ? "lost" : "-";
  return v.nodes.map((n) => `${n.guestNode}:${n.applied ? n.fidelity : "lost"}`).join(",");
}

function shortPath(p: string): string {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith("..") ? rel : p;
}

function formatTable(rows: VmStatus[]): string {
  const header = ["NAME", "STATE", "PID", "UPTIME", "ACCEL", "FIDELITY", "PROFILE"];
  const cells = rows.map((v) => [
    v.name,
    v.state,
    v.pid ? String(v.pid) : "-",
    formatUptime(v.uptimeSeconds),
    v.accel,
    fidelityCell(v),
    shortPath(v.profile),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  return (
    [header, ...cells]
      .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  "))
      .join("\n") + "\n"
  );
}

function formatDetail(v: VmStatus): string {
  const lines: string[] = [];
  lines.push(`VM ${v.name}: ${v.state}${v.reason ? ` (${v.reason})` : ""}`);
  if (v.profile === "-") {
    // A leftover: no state.json to say more.
    lines.push(`  run dir   ${v.dir}`);
    if (v.state === "interrupted" || v.state === "damaged") lines.push(`  clean up with: qcvm stop ${v.name}`);
    return `${lines.join("\n")}\n`;
  }
  lines.push(
    `  pid       ${v.pid} (${v.accel}${v.qemuVersion ? `, QEMU ${v.qemuVersion}` : ""}${v.detached ? ", detached" : ", foreground"})`,
  );
  lines.push(`  uptime    ${formatUptime(v.uptimeSeconds)} (started ${v.startedAt})`);
  lines.push(`  profile   ${v.profile}`);
  lines.push(`  run dir   ${v.dir} (QMP ${v.qmp}, log ${v.log})`);
  lines.push(`  cgroups   ${v.cgroups.length ? v.cgroups.join("\n            ") : "none"}`);
  if (v.nodes.length > 0) {
    const header = ["guest node", "host nodes", "policy", "shared", "private", "fidelity"];
    const cells = v.nodes.map((n) => [
      String(n.guestNode),
      formatList(n.hostNodes) || "any",
      n.policy,
      n.shared,
      n.private,
      n.applied ? n.fidelity : `${n.fidelity}, lost at launch`,
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
    for (const r of [header, ...cells])
      lines.push(
        `  ${r
          .map((c, i) => c.padEnd(widths[i]!))
          .join("  ")
          .trimEnd()}`,
      );
  }
  for (const l of v.lost) lines.push(`  lost: ${l}`);
  if (v.state === "dead" || v.state === "interrupted") lines.push(`  clean up with: qcvm stop ${v.name}`);
  return `${lines.join("\n")}\n`;
}

export async function run(o: StatusOptions): Promise<Outcome> {
  const runDir = resolveRunDir(o.runDir);
  const json = o.format === "json";
  const name = o.name;
  if (name !== undefined) {
    requireVmName(name);
    const found = inspectVm(runDir, name);
    // A state file this user may not read, or cannot parse: said as such, exit 1.
    if (found && !found.state && (found.condition === "not yours" || found.condition === "damaged") && found.reason)
      throw new UserError(found.reason);
    const v = found ? describeVm(found, runDir) : undefined;
    if (!v)
      throw new UserError(
        `no VM named \`${name}\` in ${runDir} (qcvm status lists them; --run-dir picks another run dir)`,
        "not-found",
      );
    process.stdout.write(json ? `${JSON.stringify(v, null, 2)}\n` : formatDetail(v));
    return v.state === "dead" || v.state === "interrupted" ? "vm-down" : "ok";
  }
  const all = listVms(runDir);
  if (json) process.stdout.write(`${JSON.stringify({ runDir, vms: all }, null, 2)}\n`);
  else process.stdout.write(all.length ? formatTable(all) : `no VMs in ${runDir}\n`);
  return "ok";
}
