// One VM's cgroups once made: its directories in each hierarchy, moving processes and vCPU
// threads in, spawning QEMU from inside (spawnInside), reading its tasks, and tearing it down;
// findVmCgroup re-opens an existing VM's for status, stop and stats.
import { join } from "node:path";
import { FsRoot } from "../io/fsroot.js";
import { parseList } from "../core/lists.js";
import { CgroupError, errnoOf, readIds, rmdirRetry, sleepSync, writeValue } from "./cgroup-files.js";
import { LAUNCHER_LEAF, readProcessCgroups, scopeUnitName } from "./cgroup-layout.js";
import type { CgroupController, CgroupHierarchy, CgroupLayout } from "./cgroup-layout.js";

/** One directory of a VM cgroup in one hierarchy. */
export interface VmCgroupDir {
  hierarchy: CgroupHierarchy;
  /** Absolute path (FsRoot root joined). */
  path: string;
  /** vCPU children by name ("vcpu-node0") -> absolute path; only where cpuset is (or on v2). */
  children: Record<string, string>;
}

/** Plain paths for the runtime state file and messages. */
export interface VmCgroupPaths {
  cpuset?: string;
  memory?: string;
  children: Record<string, string>;
}

export class VmCgroup {
  private readonly fs: FsRoot;

  constructor(
    readonly layout: CgroupLayout,
    readonly name: string,
    readonly dirs: VmCgroupDir[],
    /** False for a systemd scope adopted as the VM cgroup: remove() leaves it to systemd. */
    readonly owned = true,
  ) {
    this.fs = new FsRoot(layout.root);
  }

  private dirFor(controller: CgroupController): VmCgroupDir | undefined {
    return this.dirs.find((d) => d.hierarchy.controllers.includes(controller));
  }

  /** The directory that holds the vCPU children: cpuset's, or the v2 one. */
  private threadDir(): VmCgroupDir | undefined {
    return this.dirFor("cpuset") ?? this.dirs.find((d) => d.hierarchy.version === 2);
  }

  get paths(): VmCgroupPaths {
    const out: VmCgroupPaths = { children: { ...(this.threadDir()?.children ?? {}) } };
    const cpuset = this.dirFor("cpuset");
    const memory = this.dirFor("memory");
    if (cpuset) out.cpuset = cpuset.path;
    if (memory) out.memory = memory.path;
    return out;
  }

  /** memory.numa_stat of the VM cgroup (v1 and v2 both have it), or undefined without memory. */
  memoryNumaStatPath(): string | undefined {
    const d = this.dirFor("memory");
    return d ? join(d.path, "memory.numa_stat") : undefined;
  }

  memoryStatPath(): string | undefined {
    const d = this.dirFor("memory");
    return d ? join(d.path, "memory.stat") : undefined;
  }

  /**
   * Move a whole process (all its threads) into the VM cgroup in every hierarchy. Call before
   * addThread: writing cgroup.procs moves every thread, including ones already in a child.
   */
  addProcess(pid: number): CgroupError[] {
    const errors: CgroupError[] = [];
    for (const d of this.dirs) {
      const file = join(d.path, "cgroup.procs");
      try {
        writeValue(file, String(pid));
      } catch (e) {
        errors.push(new CgroupError("write", file, errnoOf(e), "VM cgroup", String(pid)));
      }
    }
    for (const c of this.layout.missing) {
      errors.push(new CgroupError("write", `${c} controller`, "EMISSING", "VM cgroup", String(pid)));
    }
    return errors;
  }

  /** Move one thread into a vCPU child: v1 `tasks` of the cpuset child, v2 `cgroup.threads`. */
  addThread(tid: number, childName: string): CgroupError | undefined {
    const d = this.threadDir();
    const subject = `vCPU cgroup ${childName}`;
    const child = d?.children[childName];
    if (!d || !child) {
      return new CgroupError(
        "write",
        d ? join(d.path, childName) : "cpuset controller",
        d ? "ENOENT" : "EMISSING",
        subject,
        String(tid),
      );
    }
    const file = join(child, d.hierarchy.version === 2 ? "cgroup.threads" : "tasks");
    try {
      writeValue(file, String(tid));
      return undefined;
    } catch (e) {
      return new CgroupError("write", file, errnoOf(e), subject, String(tid));
    }
  }

  /**
   * Run `fn` (which spawns QEMU, synchronously: exec.spawn forks before it returns) with qcvm's
   * own process inside the VM cgroup, so the child is born there: its cpuset mems apply before
   * QEMU mbind()s its backends, and every page it allocates from the start is charged to the VM.
   * Moving QEMU in afterwards instead leaves early charges behind (memory charges don't follow a
   * task) and makes cpuset_attach rebind the process's existing mempolicies to the new mems
   * (mpol_rebind_mm). qcvm moves itself back to where it was, even if `fn` throws. Synchronous on
   * purpose: no other work of qcvm's runs (and gets charged to the VM) in between. The price: as a
   * thread-group leader joining a migrating cpuset, qcvm's own few tens of MiB may be moved to
   * the VM's nodes once; that is harmless and cheaper than any of the alternatives.
   */
  spawnInside<T>(fn: () => T): { value: T; errors: CgroupError[] } {
    const original = readProcessCgroups(this.layout, "self");
    const errors = this.addProcess(process.pid).filter((e) => e.errno !== "EMISSING");
    try {
      return { value: fn(), errors };
    } finally {
      for (const [h, path] of original) {
        const file = join(path, "cgroup.procs");
        try {
          writeValue(file, String(process.pid));
        } catch (e) {
          errors.push(
            new CgroupError("write", file, errnoOf(e), `qcvm's own cgroup (${h.mount})`, String(process.pid)),
          );
        }
      }
    }
  }

  /** Every process in the VM cgroup or its children, in any hierarchy (v1 children list their own). */
  processes(): number[] {
    const ids = new Set<number>();
    for (const d of this.dirs) {
      // v2 threaded children refuse cgroup.procs reads; the threaded domain lists the whole subtree.
      const dirs = d.hierarchy.version === 2 ? [d.path] : [d.path, ...Object.values(d.children)];
      for (const dir of dirs)
        for (const id of readIds(this.fs, join(dir, "cgroup.procs"), this.layout.root)) ids.add(id);
    }
    return [...ids].sort((a, b) => a - b);
  }

  /** Is `pid` a member of this VM cgroup (or a child) in some hierarchy? From /proc/<pid>/cgroup. */
  holds(pid: number): boolean {
    const mine = new Set(this.dirs.flatMap((d) => [d.path, ...Object.values(d.children)]));
    return readProcessCgroups(this.layout, pid).some(([, path]) => mine.has(path));
  }

  /**
   * SIGKILL every process in the VM cgroup until none is left (or `timeoutMs` passes): the cgroup
   * is the record of what the VM runs, so `stop` ends QEMU and anything it left behind, a paused
   * orphan of a killed launch included. Returns the pids that were signalled.
   */
  killAll(timeoutMs = 5_000): { killed: number[]; left: number[] } {
    const killed = new Set<number>();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // A zombie has ended (it stays listed until reaped): nothing to signal.
      const left = this.processes().filter((p) => p !== process.pid && !isZombie(this.fs, p));
      if (left.length === 0 || Date.now() > deadline) return { killed: [...killed], left };
      for (const pid of left) {
        try {
          process.kill(pid, "SIGKILL");
          killed.add(pid);
        } catch {
          // gone meanwhile
        }
      }
      sleepSync(10);
    }
  }

  /** Thread or process ids in the VM cgroup (no child) or in a child, for the hierarchy holding cpuset. */
  tasks(childName?: string, controller: CgroupController = "cpuset"): number[] {
    const d = childName === undefined ? this.dirFor(controller) : this.threadDir();
    const dir = childName === undefined ? d?.path : d?.children[childName];
    if (!d || !dir) return [];
    // v2 lists threads in cgroup.threads; v1 in tasks.
    return readIds(this.fs, join(dir, d.hierarchy.version === 2 ? "cgroup.threads" : "tasks"), this.layout.root);
  }

  /**
   * Tear down: move every process left in the VM cgroup or its children to the hierarchy root (v2's
   * no-internal-process rule forbids the qcvm parent, which has controllers enabled), then rmdir
   * the children and the VM directory. Idempotent: a directory already gone is not an error.
   * An adopted systemd scope keeps its processes: threads in children go back to the scope, the
   * children are removed, and the scope is systemd's to collect.
   */
  remove(): CgroupError[] {
    const errors: CgroupError[] = [];
    for (const d of this.dirs) {
      const children = Object.values(d.children);
      const subtree = this.owned ? [...children, d.path] : children;
      const v2 = d.hierarchy.version === 2;
      // Owned: whole processes go to the hierarchy root. v2 threaded children refuse reads of
      // cgroup.procs (EOPNOTSUPP), but the threaded domain's cgroup.procs lists every process of
      // the subtree, and moving a process moves all its threads. Adopted scope: the threads in the
      // children go back into the scope, which keeps its processes.
      // A delegated subtree's processes stay in it: they go to the launcher's leaf.
      const parking = this.layout.delegated
        ? join(this.layout.root, d.hierarchy.mount, this.layout.base, LAUNCHER_LEAF)
        : join(this.layout.root, d.hierarchy.mount);
      const moves: Array<[string, string]> = this.owned
        ? (v2 ? [d.path] : subtree).map((dir) => [join(dir, "cgroup.procs"), join(parking, "cgroup.procs")])
        : children.map((dir) => [
            join(dir, v2 ? "cgroup.threads" : "tasks"),
            join(d.path, v2 ? "cgroup.threads" : "tasks"),
          ]);
      for (const [from, to] of moves) {
        for (const id of readIds(this.fs, from, this.layout.root)) {
          try {
            writeValue(to, String(id));
          } catch (e) {
            // A task that exited between the read and the write is gone, which is the goal.
            if (errnoOf(e) !== "ESRCH")
              errors.push(new CgroupError("write", to, errnoOf(e), "VM cgroup cleanup", String(id)));
          }
        }
      }
      for (const dir of subtree) {
        const err = rmdirRetry(dir);
        if (err) errors.push(new CgroupError("rmdir", dir, err, "VM cgroup cleanup"));
      }
    }
    return errors;
  }
}

/**
 * The VM cgroup of an existing VM (for status, stop, stats), or undefined when none exists:
 * qcvm's own `<mount>/qcvm/<vm>`, else a systemd scope `<mount>/machine.slice/qcvm-<vm>.scope`.
 */
export function findVmCgroup(layout: CgroupLayout, vmName: string): VmCgroup | undefined {
  const fs = new FsRoot(layout.root);
  for (const [candidate, owned] of [
    [join(layout.base, vmName), true],
    [join("machine.slice", scopeUnitName(vmName)), false],
  ] as const) {
    const dirs: VmCgroupDir[] = [];
    for (const h of layout.hierarchies) {
      const rel = join(h.mount, candidate);
      if (!fs.exists(join(rel, "cgroup.procs"))) continue;
      const children: Record<string, string> = {};
      for (const entry of fs.list(rel)) {
        // Children are the directories; every cgroupfs file is a regular file without cgroup.procs.
        if (fs.exists(join(rel, entry, "cgroup.procs"))) children[entry] = join(layout.root, rel, entry);
      }
      dirs.push({ hierarchy: h, path: join(layout.root, rel), children });
    }
    if (dirs.length > 0) return new VmCgroup(layout, vmName, dirs, owned);
  }
  return undefined;
}

/** The cpus and mems a task may use, from /proc/<pid>/task/<tid>/status (or /proc/<pid>/status). */
export function readTaskPlacement(
  root: string,
  pid: number,
  tid?: number,
): { cpus: number[]; mems: number[] } | undefined {
  const fs = new FsRoot(root);
  const status = fs.read(tid === undefined ? `proc/${pid}/status` : `proc/${pid}/task/${tid}/status`);
  if (!status) return undefined;
  const field = (key: string) => parseList(new RegExp(`^${key}:\\s*(\\S*)`, "m").exec(status)?.[1]);
  return { cpus: field("Cpus_allowed_list"), mems: field("Mems_allowed_list") };
}

function isZombie(fs: FsRoot, pid: number): boolean {
  const stat = fs.read(`proc/${pid}/stat`);
  if (stat === undefined) return true;
  const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  return state === "Z" || state === "X";
}
