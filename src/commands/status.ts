// `qcvm status [name]`: what runs, for how long, from which profile, and how faithfully its plan
// was applied. A VM is alive only while its pid exists with the start time recorded at launch, so
// a pid the kernel has since given to another process reads as dead, not as "running".
// Exit codes: 0 listing, or the named VM runs; 3 the named VM is dead (as LSB `status`); 1 no such VM.
import { relative } from "node:path";
import { UserError } from "../diagnostics.js";
import { formatList } from "../fsroot.js";
import { formatLost, isAlive, isProcessAlive, listStates, pidStartTime, readState, requireVmName, resolveRunDir } from "../runtime.js";
import type { VmState } from "../runtime.js";
import type { Fidelity, MemPolicy, PrivateMechanism, SharedMechanism } from "../types.js";

export type VmCondition = "running" | "starting" | "interrupted" | "dead";

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
  /** Why a VM is dead or interrupted. */
  reason?: string;
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

export function describeVm(s: VmState, nowMs = Date.now()): VmStatus {
  let state: VmCondition;
  let reason: string | undefined;
  if (!isAlive(s)) {
    state = "dead";
    reason = pidStartTime(s.pid) === undefined ? `pid ${s.pid} is gone` : `pid ${s.pid} now belongs to another process`;
  } else if (s.phase === "running") {
    state = "running";
  } else if (isProcessAlive(s.launcher.pid, s.launcher.startTime)) {
    state = "starting";
  } else {
    state = "interrupted";
    reason = `the launching qcvm (pid ${s.launcher.pid}) died before the guest was started: QEMU is paused`;
  }
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
    ...(reason ? { reason } : {}),
    pid: s.pid,
    startedAt: s.startedAt,
    ...(state === "dead" || Number.isNaN(started) ? {} : { uptimeSeconds: Math.max(0, Math.round((nowMs - started) / 1000)) }),
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
  const cells = rows.map((v) => [v.name, v.state, String(v.pid), formatUptime(v.uptimeSeconds), v.accel, fidelityCell(v), shortPath(v.profile)]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  return [header, ...cells].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n") + "\n";
}

function formatDetail(v: VmStatus): string {
  const lines: string[] = [];
  lines.push(`VM ${v.name}: ${v.state}${v.reason ? ` (${v.reason})` : ""}`);
  lines.push(`  pid       ${v.pid} (${v.accel}${v.qemuVersion ? `, QEMU ${v.qemuVersion}` : ""}${v.detached ? ", detached" : ", foreground"})`);
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
    for (const r of [header, ...cells]) lines.push(`  ${r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()}`);
  }
  for (const l of v.lost) lines.push(`  lost: ${l}`);
  if (v.state === "dead" || v.state === "interrupted") lines.push(`  clean up with: qcvm stop ${v.name}`);
  return `${lines.join("\n")}\n`;
}

export async function run(args: Record<string, unknown>): Promise<number> {
  const runDir = resolveRunDir(args.runDir ?? args["run-dir"]);
  const json = args.format === "json";
  const name = args.name as string | undefined;
  if (name !== undefined) {
    requireVmName(name);
    const state = readState(runDir, name);
    if (!state) throw new UserError(`no VM named \`${name}\` in ${runDir} (qcvm status lists them; --run-dir picks another run dir)`);
    const v = describeVm(state);
    process.stdout.write(json ? `${JSON.stringify(v, null, 2)}\n` : formatDetail(v));
    return v.state === "dead" || v.state === "interrupted" ? 3 : 0;
  }
  const all = listStates(runDir).map((s) => describeVm(s));
  if (json) process.stdout.write(`${JSON.stringify({ runDir, vms: all }, null, 2)}\n`);
  else process.stdout.write(all.length ? formatTable(all) : `no VMs in ${runDir}\n`);
  return 0;
}
