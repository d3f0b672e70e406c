// `qcvm stats <name>`: where a running VM's memory is, per host node: private (guest_memfd, from
// the VM cgroup's memory.numa_stat) and shared (QEMU's backend mappings in numa_maps), next to
// the plan's share, with drift flagged. Private memory is invisible in RSS, top and numa_maps;
// the VM cgroup is the only place the kernel accounts it, which is why launch makes one per VM.
// Exit codes: 0 shown (or --watch ended by SIGINT), 1 no such VM or it isn't running, 2 usage.
import type { Outcome } from "../core/errors.js";
import type { StatsOptions } from "../cli/command-options.js";
import { join, relative } from "node:path";
import { UserError } from "../core/diagnostics.js";
import { FsRoot } from "../io/fsroot.js";
import { formatBytes, readVmMemory } from "../observe/observe.js";
import type { VmMemory } from "../observe/observe.js";
import type { HostInfo, Plan } from "../core/types.js";
import { checkPrealloc } from "../launch/prealloc-step.js";
import type { PreallocCheck, PreallocRecord } from "../launch/prealloc-step.js";

/** One sample of a VM: its memory and where it came from. */
export interface VmStats extends VmMemory {
  name: string;
  startedAt: string;
  profile: string;
  /** The memory cgroup directory read for private memory, or null when there is none. */
  cgroup: string | null;
  /** guest-memfd-prealloc: what launch put on each host node against what is there now. */
  prealloc?: PreallocCheck[];
}

interface Target {
  name: string;
  pid: number;
  pidStartTime: string;
  startedAt: string;
  profile: string;
  plan: import("../core/types.js").Plan;
  host: Pick<HostInfo, "root" | "nodes">;
  /** memory.numa_stat of the VM cgroup, absolute. */
  numaStat?: string;
  prealloc?: PreallocRecord;
}

/**
 * The VM cgroup's memory.numa_stat: the state file lists every directory launch created; the one
 * with a memory.numa_stat is the memory hierarchy's. A state without paths (or a cgroup moved
 * since) falls back to looking the VM cgroup up by name.
 */
async function locateNumaStat(hostRoot: string, name: string, paths: unknown): Promise<string | undefined> {
  const fs = new FsRoot(hostRoot);
  const list = Array.isArray(paths) ? paths.filter((p): p is string => typeof p === "string") : [];
  for (const p of list) {
    const file = join(p, "memory.numa_stat");
    if (fs.exists(relative(hostRoot, file))) return file;
  }
  const { probeHost } = await import("../probe/host.js");
  const { openCgroupLayout, findVmCgroup } = await import("../vm/cgroup.js");
  return findVmCgroup(openCgroupLayout(probeHost(hostRoot)), name)?.memoryNumaStatPath();
}

async function findTarget(a: StatsOptions): Promise<Target> {
  const { readState } = await import("../vm/state.js");
  const { resolveRunDir, requireVmName } = await import("../vm/paths.js");
  const { isAlive } = await import("../vm/process.js");
  requireVmName(a.name);
  const runDir = resolveRunDir(a.runDir);
  const state = readState(runDir, a.name);
  if (!state)
    throw new UserError(
      `no VM named \`${a.name}\` in ${runDir} (qcvm status lists them; --run-dir picks another run dir)`,
      "not-found",
    );
  if (!isAlive(state)) {
    throw new UserError(
      `VM \`${a.name}\` is not running (its QEMU, pid ${state.pid}, is gone): nothing to measure (qcvm stop ${a.name} cleans up)`,
    );
  }
  const hostRoot = typeof state.hostRoot === "string" && state.hostRoot ? state.hostRoot : "/";
  const { probeHost } = await import("../probe/host.js");
  const host = probeHost(hostRoot);
  const numaStat = await locateNumaStat(hostRoot, a.name, state.cgroup?.paths);
  return {
    name: state.name,
    pid: state.pid,
    pidStartTime: state.pidStartTime,
    startedAt: state.startedAt,
    profile: state.profile,
    plan: state.plan,
    host,
    ...(numaStat ? { numaStat } : {}),
    ...(state.prealloc ? { prealloc: state.prealloc } : {}),
  };
}

function sample(t: Target): VmStats | undefined {
  const m = readVmMemory(t.pid, t.numaStat, t.host, { plan: t.plan });
  if (!m) return undefined;
  return {
    name: t.name,
    startedAt: t.startedAt,
    profile: t.profile,
    cgroup: t.numaStat ? t.numaStat.replace(/\/memory\.numa_stat$/, "") : null,
    ...m,
    ...(t.prealloc ? { prealloc: checkPrealloc(t.prealloc, m.perNode) } : {}),
  };
}

function pad(cells: string[], widths: number[]): string {
  return cells
    .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
    .join("  ")
    .trimEnd();
}

/** The per-node table and what to make of it. */
export function formatStatsText(s: VmStats, plan?: Pick<Plan, "confidential" | "guestMemfd">): string {
  const out: string[] = [];
  out.push(`${s.name}: pid ${s.pid}, memory cgroup ${s.cgroup ?? "none"}`);
  const priv = (v: number | null) => (v === null ? "n/a" : formatBytes(v));
  const rows: string[][] = [["HOST NODE", "PRIVATE (guest_memfd)", "SHARED", "TOTAL", "PLANNED private / shared", ""]];
  for (const n of s.perNode) {
    rows.push([
      String(n.hostNode),
      priv(n.privateBytes),
      formatBytes(n.sharedBytes),
      formatBytes(n.totalBytes),
      n.planned ? `${formatBytes(n.planned.private)} / ${formatBytes(n.planned.shared)}` : "-",
      n.drift ? "DRIFT" : "",
    ]);
  }
  const plannedPrivate = s.perNode.reduce((a, n) => a + (n.planned?.private ?? 0), 0);
  const plannedShared = s.perNode.reduce((a, n) => a + (n.planned?.shared ?? 0), 0);
  rows.push([
    "total",
    priv(s.totals.privateBytes),
    formatBytes(s.totals.sharedBytes),
    formatBytes(s.totals.totalBytes),
    s.perNode.some((n) => n.planned) ? `${formatBytes(plannedPrivate)} / ${formatBytes(plannedShared)}` : "-",
    "",
  ]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  out.push("", ...rows.map((r) => pad(r, widths)), "");
  if (s.vmRssBytes !== undefined) out.push(...rssNote(s, plan));
  for (const p of s.prealloc ?? []) {
    const now = p.privateBytes === null ? "n/a (no memory cgroup)" : formatBytes(p.privateBytes);
    const pct =
      p.ratio === null
        ? ""
        : ` (${(p.ratio * 100).toFixed(1)}%${p.ok ? "" : ", below 99%: pages moved or were released"})`;
    out.push(
      `pre-allocated at launch on host node ${p.hostNode}: ${formatBytes(p.preallocatedBytes)}; private there now: ${now}${pct}`,
    );
  }
  for (const d of s.drift) out.push(`drift: ${d.message}`);
  for (const n of s.notes) out.push(`note: ${n}`);
  return `${out.join("\n")}\n`;
}

/**
 * What VmRSS says next to the table, per guest type. VmRSS is QEMU's whole resident set (its own
 * code and heap too), while the table counts guest RAM only, and only what the guest has touched:
 * without that said, "1.0 MiB total" beside "VmRSS 35.6 MiB" reads as a measuring error.
 */
export function rssNote(s: VmStats, plan?: Pick<Plan, "confidential" | "guestMemfd">): string[] {
  const rss = `VmRSS ${formatBytes(s.vmRssBytes ?? 0)} is QEMU's whole resident memory, its own code and heap included`;
  const touched = `the table counts guest RAM only, as far as the guest has touched it (${formatBytes(s.totals.totalBytes)} so far; pages are allocated on first use unless prealloc is on)`;
  if (plan && !plan.guestMemfd) {
    const type = plan.confidential === "none" ? "plain KVM" : plan.confidential.toUpperCase();
    return [
      `${rss}; ${touched}.`,
      `A ${type} guest has no guest_memfd: all its RAM is the SHARED column (on SEV-SNP and TDX, private memory is invisible in RSS; here there is none).`,
    ];
  }
  return [
    `${rss}; ${touched}.`,
    "private memory is invisible in RSS (no mapping): the PRIVATE column is read from the VM cgroup's memory.numa_stat.",
  ];
}

function emit(s: VmStats, format: "text" | "json", watching: boolean, plan?: Plan): void {
  if (format === "json") {
    // --watch prints one JSON object per line (NDJSON), so a consumer can read samples as they come.
    process.stdout.write(
      watching ? `${JSON.stringify({ at: new Date().toISOString(), ...s })}\n` : `${JSON.stringify(s, null, 2)}\n`,
    );
    return;
  }
  if (watching) {
    // Redraw in place on a terminal; in a pipe or log, separate samples with a timestamp.
    process.stdout.write(process.stdout.isTTY ? "\x1b[H\x1b[2J" : `\n--- ${new Date().toISOString()}\n`);
  }
  process.stdout.write(formatStatsText(s, plan));
}

export async function run(a: StatsOptions): Promise<Outcome> {
  if (!a.name) throw new UserError("name the VM: qcvm stats <name> (qcvm status lists them)", "usage");
  const target = await findTarget(a);
  const { isProcessAlive } = await import("../vm/process.js");
  const gone = () => new UserError(`VM \`${a.name}\` is not running any more (pid ${target.pid} exited)`);
  const first = sample(target);
  if (!first) throw gone();
  emit(first, a.format, a.watch, target.plan);
  if (!a.watch) return "ok";

  let stopped = false;
  let wake: () => void = () => undefined;
  const onSignal = () => {
    stopped = true;
    wake();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    for (;;) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, a.interval * 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (stopped) return "ok";
      const s = isProcessAlive(target.pid, target.pidStartTime) ? sample(target) : undefined;
      if (!s) throw gone();
      emit(s, a.format, true, target.plan);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
