// `qcvm status [name]`: what runs, for how long, from which profile, and how faithfully its plan
// was applied. A VM is alive only while its pid exists with the start time recorded at launch, so
// a pid the kernel has since given to another process reads as dead, not as "running".
// A launch killed before it wrote state.json still leaves a lock, a runtime directory and cgroups;
// status lists it as interrupted (so `qcvm stop <name>` is not a guess), and a damaged state.json
// as damaged, instead of leaving them out.
// Exit codes: 0 listing, or the named VM runs (or is starting); 3 the named VM is dead or
// interrupted (as LSB `status`); 1 no such VM or a damaged state file; 2 usage.
import { existsSync, readdirSync } from "node:fs";
import { relative } from "node:path";
import { UserError } from "../core/diagnostics.js";
import { formatList } from "../io/fsroot.js";
import { locksDir, readVmLock } from "../vm/lock.js";
import { formatLost, listStates, readState, StateAccessError } from "../vm/state.js";
import { isAlive, isProcessAlive, pidStartTime } from "../vm/process.js";
import { requireVmName, resolveRunDir, vmNameProblem, vmPaths } from "../vm/paths.js";
import type { VmState } from "../vm/state.js";
import type { Fidelity, MemPolicy, PrivateMechanism, SharedMechanism } from "../core/types.js";

export type VmCondition = "running" | "starting" | "interrupted" | "dead" | "damaged" | "not yours";

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

/**
 * A VM with no readable state.json: a launch that died before writing it (its lock, runtime
 * directory or cgroups are left), or a damaged file (`damaged` is readState's message).
 * Undefined when nothing of `name` is in the run dir.
 */
export function describeLeftover(
  runDir: string,
  name: string,
  damaged?: string,
  notYours?: string,
): VmStatus | undefined {
  const paths = vmPaths(runDir, name);
  const holder = readVmLock(runDir, name);
  if (!holder && !damaged && !existsSync(paths.dir)) return undefined;
  const holderAlive = holder !== undefined && isProcessAlive(holder.pid, holder.startTime);
  let state: VmCondition;
  let reason: string;
  if (notYours) {
    state = "not yours";
    reason = notYours;
  } else if (damaged) {
    state = "damaged";
    reason = damaged;
  } else if (holderAlive && holder.role === "qcvm") {
    state = "starting";
    reason = `qcvm pid ${holder.pid} is launching it`;
  } else if (holderAlive) {
    state = "interrupted";
    reason = `QEMU (pid ${holder.pid}) runs, but the launch died before writing ${paths.state}`;
  } else {
    const left = [holder ? "its name lock" : "", existsSync(paths.dir) ? "its runtime directory" : ""].filter(Boolean);
    state = "interrupted";
    reason = `a launch${holder ? ` (qcvm pid ${holder.pid})` : ""} died before writing ${paths.state}; left: ${left.join(", ")}`;
  }
  return {
    name,
    state,
    reason,
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
  const out = new Map<string, VmStatus>();
  for (const s of listStates(runDir)) out.set(s.name, describeVm(s));
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
  for (const name of names) {
    if (out.has(name) || vmNameProblem(name)) continue;
    let damaged: string | undefined;
    let notYours: string | undefined;
    try {
      readState(runDir, name);
    } catch (e) {
      if (e instanceof StateAccessError) notYours = e.message;
      else damaged = (e as Error).message;
    }
    const v = describeLeftover(runDir, name, damaged, notYours);
    if (v) out.set(name, v);
  }
  return [...out.values()].sort((a, b) => a.name.localeCompare(b.name));
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

export async function run(args: Record<string, unknown>): Promise<number> {
  const runDir = resolveRunDir(args.runDir ?? args["run-dir"]);
  const json = args.format === "json";
  const name = args.name as string | undefined;
  if (name !== undefined) {
    requireVmName(name);
    const state = readState(runDir, name);
    const v = state ? describeVm(state) : describeLeftover(runDir, name);
    if (!v)
      throw new UserError(
        `no VM named \`${name}\` in ${runDir} (qcvm status lists them; --run-dir picks another run dir)`,
      );
    process.stdout.write(json ? `${JSON.stringify(v, null, 2)}\n` : formatDetail(v));
    return v.state === "dead" || v.state === "interrupted" ? 3 : 0;
  }
  const all = listVms(runDir);
  if (json) process.stdout.write(`${JSON.stringify({ runDir, vms: all }, null, 2)}\n`);
  else process.stdout.write(all.length ? formatTable(all) : `no VMs in ${runDir}\n`);
  return 0;
}
