// A VM name is unique per host, not per run dir (issue 8, finding 6): two run dirs launching
// `web` shared one cgroup `qcvm/web`, and stopping one moved the other's QEMU out of it. The
// VM cgroup directory is the claim: mkdir is atomic, so the first launch to create it holds the
// name on this host, and a second launch, from any run dir, finds it taken. Who holds it is read
// from the cgroup's processes: QEMU runs with HOME set to its VM directory (qemuEnvironment), so
// /proc/<pid>/environ names the run dir. An empty claim is a launch in progress for a few
// milliseconds, or the leftover of a launch that was killed: older than STALE_MS, it is removed.
import { mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { UserError } from "../core/diagnostics.js";
import { FsRoot } from "../io/fsroot.js";
import { findVmCgroup } from "./cgroup.js";
import type { CgroupLayout, VmCgroup } from "./cgroup.js";

/** An empty VM cgroup younger than this may be another launch between claim and spawn. */
const STALE_MS = 10_000;

/** The run dir a VM process belongs to, from the HOME qcvm gave QEMU (its VM directory). */
export function runDirOfProcess(pid: number, fs: FsRoot = new FsRoot("/")): string | undefined {
  const env = fs.read(`/proc/${pid}/environ`)?.split("\0");
  const home = env?.find((e) => e.startsWith("HOME="))?.slice("HOME=".length);
  return home ? dirname(home) : undefined;
}

/**
 * Which pids qcvm may signal for VM `name`: members of its cgroup. Where qcvm manages cgroups (a
 * root qcvm on a host with cgroup hierarchies) a VM's QEMU is always born in its cgroup; elsewhere
 * (no cgroups, not root) the pid's start time is all there is.
 */
export function cgroupMembership(layout: CgroupLayout, name: string): (pid: number) => boolean {
  if (layout.hierarchies.length === 0 || (process.getuid?.() ?? 0) !== 0) return () => true;
  const cg = findVmCgroup(layout, name);
  return (pid) => cg !== undefined && cg.holds(pid);
}

/** The processes of a VM cgroup that belong to another run dir than `runDir`. */
export function foreignProcesses(cg: VmCgroup, runDir: string): Array<{ pid: number; runDir: string }> {
  const out: Array<{ pid: number; runDir: string }> = [];
  for (const pid of cg.processes()) {
    const theirs = runDirOfProcess(pid);
    if (theirs !== undefined && theirs !== runDir) out.push({ pid, runDir: theirs });
  }
  return out;
}

function takenError(name: string, where: string, holder: string): UserError {
  return new UserError(
    `VM name \`${name}\` is taken on this host: its cgroup ${where} ${holder}. VM names are unique per host, ` +
      "not per run dir: give this VM another name (name: or --set name=...)",
  );
}

/**
 * Claim VM name `name` for `runDir` by creating its cgroup directory in the first hierarchy.
 * Returns false when no claim can be made here (no cgroup, or EACCES: not root; the run dir's
 * name lock is then the only guard). Throws when another run dir holds the name.
 */
export function claimVmCgroup(layout: CgroupLayout, name: string, runDir: string): boolean {
  if (layout.systemd) return false; // the scope's unit name is systemd's claim
  const h = layout.hierarchies[0];
  if (!h) return false;
  const base = join(layout.root, h.mount, layout.base);
  const dir = join(base, name);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      mkdirSync(base);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") return false;
    }
    try {
      mkdirSync(dir);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") return false;
    }
    const cg = findVmCgroup(layout, name);
    if (!cg) continue; // removed meanwhile: try again
    const procs = cg.processes();
    const foreign = foreignProcesses(cg, runDir);
    if (foreign.length > 0) {
      const f = foreign[0]!;
      throw takenError(
        name,
        dir,
        `holds QEMU pid ${f.pid} of run dir ${f.runDir} (stop it there: qcvm stop ${name} --run-dir ${f.runDir})`,
      );
    }
    // Ours (this run dir's name lock is held, so its processes are a dead launch's leftovers,
    // which the caller cleans up), or a claim with no process yet.
    if (procs.length > 0) return true;
    let age: number;
    try {
      age = Date.now() - statSync(dir).ctimeMs;
    } catch {
      continue;
    }
    if (age < STALE_MS) throw takenError(name, dir, "was just created by another launch of that name");
    cg.remove();
  }
  return true;
}
