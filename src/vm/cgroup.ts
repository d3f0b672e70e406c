// The VM's cgroups: its accounting unit (memory) and the lever that reaches guest_memfd pages
// (cpuset: a page is allocated on the faulting task's cpuset mems, DOMAIN.md "The core problem").
//
// Layout: `<mount>/qcvm/<vm>` in every hierarchy that holds cpuset or memory, and one child per
// vCPU group (`<vm>/vcpu-node0`, from plan.launch.cgroups) in the hierarchy that holds cpuset.
//   - cgroup v1: cpuset and memory are separate hierarchies (each its own mount, or co-mounted).
//     The whole process goes to `cgroup.procs` in both; a vCPU thread goes to the child's `tasks`
//     in the cpuset hierarchy only (memory is charged to the mm owner anyway).
//   - cgroup v2: one directory. The VM cgroup is a *threaded domain*: its children are
//     `threaded`, only threaded controllers (cpuset) are enabled in its subtree_control, so it may
//     hold QEMU's process itself (the no-internal-process rule exempts threaded controllers), and
//     memory is accounted for the whole subtree in the VM cgroup. A vCPU thread goes to the
//     child's `cgroup.threads`.
//   - systemd hosts (run/systemd/system exists): writing under systemd's tree behind its back is
//     undone or fought over; the right move is a transient scope with delegation, which
//     systemdScopePrefix() returns as an argv prefix. The scope's cgroup is then the VM cgroup
//     (createVmCgroup(..., { adoptPid })), and qcvm only creates the vCPU children inside it.
//   - a delegated cgroup v2 subtree (`qcvm launch --cgroup delegated`, as the unit `qcvm export
//     --to systemd` writes runs it, with Delegate=yes): the unit's own cgroup U (from
//     /proc/self/cgroup) is the base. U holds qcvm itself, and the no-internal-process rule forbids
//     enabling controllers for U's children while it does, so qcvm first moves itself into the
//     leaf U/.qcvm-launcher, then makes the VM cgroup U/<vm> as above. Nothing outside U is
//     written: processes left at clean-up go back to that leaf, not to the hierarchy root.
//
// Reads go through FsRoot (so a fixture tree can stand in for /); writes go through CgroupFiles
// (plain fs calls on the same resolved paths, or a test's fake). Nothing throws for a cgroup problem: every failure comes back as a
// CgroupError value naming the file and errno, so the launcher can say which placement was lost
// and decide (strict: abort; otherwise: warn and continue).
import { closeSync, mkdirSync, openSync, rmdirSync, writeSync } from "node:fs";
import { join, relative } from "node:path";
import { FsRoot, formatList, parseList } from "../io/fsroot.js";
import type { CgroupPlan, HostInfo } from "../core/types.js";

export type CgroupController = "cpuset" | "memory";
const CONTROLLERS: readonly CgroupController[] = ["cpuset", "memory"];

/** One mounted hierarchy qcvm uses, with the controllers of ours it carries. */
export interface CgroupHierarchy {
  version: 1 | 2;
  /** Mount point as the host sees it (`/sys/fs/cgroup/cpuset`), not joined with the FsRoot. */
  mount: string;
  controllers: CgroupController[];
}

export interface CgroupLayout {
  /** FsRoot root the mounts live under ("/" on a real host). */
  root: string;
  systemd: boolean;
  hierarchies: CgroupHierarchy[];
  /** Controllers neither hierarchy offers: their placement cannot be enforced. */
  missing: CgroupController[];
  /** Directory under each mount that holds qcvm's VM cgroups. */
  base: string;
  /** A delegated v2 subtree: `base` is the unit's cgroup, handed to qcvm (see the header). */
  delegated?: boolean;
}

/** The leaf a delegated launcher moves itself into (a dot: no VM name can take it). */
export const LAUNCHER_LEAF = ".qcvm-launcher";

/**
 * The delegated base for `--cgroup delegated`: this process's cgroup v2 path (`0::/...` in
 * /proc/self/cgroup), relative to the mount. Run again from inside its own leaf, or from systemd's
 * control group of the unit (ExecStop runs in U/.control with Delegate=yes), it is still U.
 * Undefined without a v2 mount or a v2 line.
 */
export function selfDelegatedBase(host: HostInfo): string | undefined {
  if (!host.cgroup.v2Mount) return undefined;
  const text = new FsRoot(host.root).read("proc/self/cgroup") ?? "";
  const line = text.split("\n").find((l) => l.startsWith("0::"));
  if (line === undefined) return undefined;
  const parts = line.slice(3).split("/").filter(Boolean);
  if (parts.length > 0 && (parts.at(-1) === LAUNCHER_LEAF || parts.at(-1) === ".control")) parts.pop();
  return parts.join("/");
}

export type CgroupOp = "mkdir" | "write" | "read" | "rmdir";

/** A cgroup operation that failed, as a value. `subject` says which placement it costs. */
export class CgroupError extends Error {
  constructor(
    readonly op: CgroupOp,
    /** Absolute path of the file or directory (after the FsRoot). */
    readonly file: string,
    /** errno code ("EACCES", "ENOENT", ...), or "EMISSING" for a controller that isn't there. */
    readonly errno: string,
    /** "VM cgroup", "vCPU cgroup vcpu-node0", "qcvm parent cgroup". */
    readonly subject: string,
    readonly value?: string,
  ) {
    const what = op === "write" ? `cannot write ${JSON.stringify(value ?? "")} to ${file}` : `cannot ${op} ${file}`;
    super(`${subject}: ${what}: ${errno}${errnoHint(errno, file) ? ` (${errnoHint(errno, file)})` : ""}`);
    this.name = "CgroupError";
  }
}

function errnoHint(errno: string, file: string): string {
  switch (errno) {
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return "no permission to manage cgroups here, as inside a container or without root: run as root, or in a delegated cgroup (systemd-run --scope -p Delegate=yes)";
    case "ENOENT":
    case "EMISSING":
      return "the controller is not mounted or not enabled for this cgroup";
    case "EINVAL":
    case "ERANGE":
      return file.endsWith(".cpus") || file.endsWith(".mems")
        ? "not a subset of the parent cgroup's, or an offline CPU/node"
        : "the kernel refused the value";
    case "ENOSPC":
      return "cgroup v1 cpuset with empty cpuset.cpus or cpuset.mems cannot take tasks";
    case "EBUSY":
      return file.endsWith("cgroup.subtree_control")
        ? "cgroup v2 no-internal-process rule: this cgroup holds processes, as a container's cgroup root does; move them into a leaf cgroup first, or run qcvm in a delegated cgroup"
        : "the cgroup still holds tasks, or its cpus/mems are in use by a child";
    case "EOPNOTSUPP":
      return "cgroup v2 rules: a threaded subtree cannot have domain controllers, and a domain cgroup with processes cannot have threaded children under domain controllers";
    case "ESRCH":
      return "the process or thread is gone";
    default:
      return "";
  }
}

function errnoOf(e: unknown): string {
  return (e as NodeJS.ErrnoException)?.code ?? "EIO";
}

const DEFAULT_BASE = "qcvm";

/**
 * Where cpuset and memory live on this host. A controller is bound to one hierarchy at a time:
 * on a hybrid host (v1 controllers plus an empty unified mount, like this machine) the v1 mounts
 * win, and a v2 mount is used only for the controllers its root lists in cgroup.controllers.
 */
export function openCgroupLayout(
  host: HostInfo,
  options: { base?: string; delegatedBase?: string } = {},
): CgroupLayout {
  const fs = new FsRoot(host.root);
  if (options.delegatedBase !== undefined && host.cgroup.v2Mount) {
    // Only the v2 subtree is delegated: the controllers are what the unit's cgroup offers.
    const mount = host.cgroup.v2Mount;
    const available = (fs.read(join(mount, options.delegatedBase, "cgroup.controllers")) ?? "").split(/\s+/);
    const controllers = CONTROLLERS.filter((c) => available.includes(c));
    return {
      root: host.root,
      systemd: false,
      hierarchies: [{ version: 2, mount, controllers }],
      missing: CONTROLLERS.filter((c) => !controllers.includes(c)),
      base: options.delegatedBase,
      delegated: true,
    };
  }
  const hierarchies: CgroupHierarchy[] = [];
  const placed = new Set<CgroupController>();
  for (const c of CONTROLLERS) {
    const mount = host.cgroup.v1Mounts[c];
    if (!mount) continue;
    const existing = hierarchies.find((h) => h.version === 1 && h.mount === mount);
    if (existing) existing.controllers.push(c);
    else hierarchies.push({ version: 1, mount, controllers: [c] });
    placed.add(c);
  }
  if (host.cgroup.v2Mount) {
    const available = (fs.read(`${host.cgroup.v2Mount}/cgroup.controllers`) ?? "").split(/\s+/);
    const controllers = CONTROLLERS.filter((c) => !placed.has(c) && available.includes(c));
    if (controllers.length > 0) {
      hierarchies.push({ version: 2, mount: host.cgroup.v2Mount, controllers });
      for (const c of controllers) placed.add(c);
    }
  }
  return {
    root: host.root,
    systemd: host.cgroup.systemd,
    hierarchies,
    missing: CONTROLLERS.filter((c) => !placed.has(c)),
    base: options.base ?? DEFAULT_BASE,
  };
}

/** systemd unit names allow [A-Za-z0-9:_.-]; everything else becomes \xNN (systemd-escape). */
export function scopeUnitName(vmName: string): string {
  const escaped = [...Buffer.from(vmName, "utf8")]
    .map((b) => {
      const ch = String.fromCharCode(b);
      return /[A-Za-z0-9:_.-]/.test(ch) ? ch : `\\x${b.toString(16).padStart(2, "0")}`;
    })
    .join("");
  return `qcvm-${escaped}.scope`;
}

/**
 * argv prefix that starts QEMU in a transient systemd scope with delegation, for hosts where
 * systemd owns the cgroup tree (HostInfo.cgroup.systemd). systemd-run --scope execs the command
 * itself, so the pid the launcher sees is QEMU's, born inside the scope. Delegate=yes hands the
 * scope's subtree to qcvm, which then creates the vCPU children in it with
 * createVmCgroup(layout, name, plans, { adoptPid: pid }). machine.slice is where libvirt and
 * systemd-machined put VMs; --collect removes the scope even if QEMU fails. The VM cgroup's own
 * cpus and mems are systemd's to write (AllowedCPUs=, AllowedMemoryNodes=: systemd 244), so the
 * plan's VM-level cpuset is passed as properties here.
 */
export function systemdScopePrefix(
  vmName: string,
  vm?: { cpus: readonly number[]; mems: readonly number[] },
): string[] {
  const props: string[] = ["-p", "Delegate=yes"];
  if (vm && vm.cpus.length > 0) props.push("-p", `AllowedCPUs=${formatList(vm.cpus)}`);
  if (vm && vm.mems.length > 0) props.push("-p", `AllowedMemoryNodes=${formatList(vm.mems)}`);
  return [
    "systemd-run",
    "--scope",
    "--quiet",
    "--collect",
    "--slice=machine.slice",
    ...props,
    `--unit=${scopeUnitName(vmName)}`,
    "--",
  ];
}

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

/**
 * The writes qcvm makes to cgroup filesystems, as a seam: the real one below, or a test's fake
 * (useCgroupFiles) that answers EACCES where a container would. Paths are absolute (after the root).
 */
export interface CgroupFiles {
  mkdir(dir: string): void;
  write(file: string, value: string): void;
  rmdir(dir: string): void;
}

const realCgroupFiles: CgroupFiles = {
  mkdir: (dir) => mkdirSync(dir),
  write: (path, value) => {
    // O_WRONLY without O_CREAT: a missing cgroup file is ENOENT (as on cgroupfs), even in fixture trees.
    const fd = openSync(path, "r+");
    try {
      writeSync(fd, value);
    } finally {
      closeSync(fd);
    }
  },
  rmdir: (dir) => rmdirSync(dir),
};

let cgroupFiles = realCgroupFiles;

/** Install other cgroup writes (a test's fake); returns the function that puts the previous back. */
export function useCgroupFiles(files: CgroupFiles): () => void {
  const previous = cgroupFiles;
  cgroupFiles = files;
  return () => {
    cgroupFiles = previous;
  };
}

function writeValue(path: string, value: string): void {
  cgroupFiles.write(path, value);
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
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

// A process that just exited may still count as a member for a moment (it is unlinked from its
// css_set when reaped), so rmdir can see EBUSY briefly.
function rmdirRetry(dir: string): string | undefined {
  for (let attempt = 0; ; attempt++) {
    try {
      cgroupFiles.rmdir(dir);
      return undefined;
    } catch (e) {
      const code = errnoOf(e);
      if (code === "ENOENT") return undefined;
      if (code !== "EBUSY" || attempt >= 20) return code;
      sleepSync(25);
    }
  }
}

function readIds(fs: FsRoot, absolute: string, root: string): number[] {
  return (fs.read(relative(root, absolute)) ?? "")
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

/**
 * Directory of `pid`'s cgroup in each hierarchy of the layout, from /proc/<pid>/cgroup:
 * v1 lines are `N:cpuset:/path` (or `N:cpuset,memory:/path` when co-mounted), v2 is `0::/path`.
 */
export function readProcessCgroups(layout: CgroupLayout, pid: number | "self"): Array<[CgroupHierarchy, string]> {
  const fs = new FsRoot(layout.root);
  const text = fs.read(`proc/${pid}/cgroup`) ?? "";
  const out: Array<[CgroupHierarchy, string]> = [];
  for (const h of layout.hierarchies) {
    for (const line of text.split("\n")) {
      const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
      if (!m) continue;
      const matches =
        h.version === 2
          ? m[1] === "0" && m[2] === ""
          : m[2]!.split(",").some((c) => h.controllers.includes(c as CgroupController));
      if (matches) {
        out.push([h, join(layout.root, h.mount, m[3]!).replace(/(.)\/$/, "$1")]);
        break;
      }
    }
  }
  return out;
}

interface DirSpec {
  cpus: number[];
  mems: number[];
}

function union(a: readonly number[], b: readonly number[]): number[] {
  return [...new Set([...a, ...b])].sort((x, y) => x - y);
}

/**
 * Create (or re-open) the VM's cgroups from the plan's cgroup entries: name "" is the VM cgroup,
 * any other name a vCPU child. Best effort: everything that can be set up is, and every failure
 * is returned, so the caller can refuse (strict) or report exactly what was lost.
 *
 * `adoptPid`: on systemd hosts QEMU already runs in its delegated scope (systemdScopePrefix); the
 * scope is then the VM cgroup as it is (its cpus and mems are systemd's, set through the
 * prefix's AllowedCPUs/AllowedMemoryNodes), only the vCPU children are created inside it, and
 * remove() leaves the scope itself to systemd.
 */
export function createVmCgroup(
  layout: CgroupLayout,
  vmName: string,
  plans: readonly CgroupPlan[],
  options: { adoptPid?: number } = {},
): { cgroup: VmCgroup; errors: CgroupError[] } {
  const errors: CgroupError[] = [];
  const fs = new FsRoot(layout.root);
  const vmPlan = plans.find((p) => p.name === "");
  const childPlans = plans.filter((p) => p.name !== "");
  // Children's cpus and mems must be subsets of the VM's (v1 refuses otherwise): widen the VM's.
  const vmSpec: DirSpec = {
    cpus: childPlans.reduce((acc, p) => union(acc, p.cpus), vmPlan?.cpus ?? []),
    mems: childPlans.reduce((acc, p) => union(acc, p.mems), vmPlan?.mems ?? []),
  };

  const mkdir = (dir: string, subject: string): boolean => {
    try {
      cgroupFiles.mkdir(dir);
      return true;
    } catch (e) {
      if (errnoOf(e) === "EEXIST") return true;
      errors.push(new CgroupError("mkdir", dir, errnoOf(e), subject));
      return false;
    }
  };
  const write = (dir: string, file: string, value: string, subject: string): boolean => {
    const path = join(dir, file);
    try {
      writeValue(path, value);
      return true;
    } catch (e) {
      errors.push(new CgroupError("write", path, errnoOf(e), subject, value));
      return false;
    }
  };
  const read = (dir: string, file: string): string | undefined => fs.read(relative(layout.root, join(dir, file)));
  // v2: enable a controller for a cgroup's children unless it already is (re-enabling is
  // harmless, but on a root we don't own it is a needless EACCES).
  const enable = (dir: string, controller: CgroupController, subject: string): void => {
    const current = (read(dir, "cgroup.subtree_control") ?? "").split(/\s+/);
    if (!current.includes(controller)) write(dir, "cgroup.subtree_control", `+${controller}`, subject);
  };
  const setCpuset = (
    dir: string,
    spec: DirSpec,
    fallback: { cpus: string; mems: string },
    v1: boolean,
    subject: string,
  ) => {
    // v1: a new cpuset starts with empty cpus and mems and refuses tasks (ENOSPC) until both are
    // set; v2: empty means "inherit the parent's", so only planned values are written. mems
    // first: a child's mems are checked against its parent's at write time.
    const mems = spec.mems.length > 0 ? formatList(spec.mems) : v1 ? fallback.mems : "";
    const cpus = spec.cpus.length > 0 ? formatList(spec.cpus) : v1 ? fallback.cpus : "";
    if (mems) write(dir, "cpuset.mems", mems, subject);
    if (cpus) write(dir, "cpuset.cpus", cpus, subject);
    // v1 only (v2 cpusets always migrate): when a VM cgroup's mems change, or a process that
    // already allocated joins it, its pages move to the new mems, which is what placement wants.
    // Threads joining a vCPU child never migrate (cpuset_attach migrates only for a thread-group
    // leader). Children's mems are written before any thread joins, and must not be rewritten
    // after: that would rebind and migrate the whole process's memory to that child's nodes
    // (cpuset_update_tasks_nodemask walks every task in it, and threads share one mm).
    if (v1) write(dir, "cpuset.memory_migrate", "1", subject);
  };

  const adopted = options.adoptPid !== undefined ? readProcessCgroups(layout, options.adoptPid) : undefined;
  const dirs: VmCgroupDir[] = [];
  for (const h of layout.hierarchies) {
    const mountAbs = join(layout.root, h.mount);
    const hasCpuset = h.controllers.includes("cpuset");
    const rootFallback = {
      cpus: read(mountAbs, "cpuset.effective_cpus") ?? read(mountAbs, "cpuset.cpus") ?? "",
      mems: read(mountAbs, "cpuset.effective_mems") ?? read(mountAbs, "cpuset.mems") ?? "",
    };
    let vmAbs: string;
    if (adopted) {
      const found = adopted.find(([hh]) => hh === h);
      if (!found) {
        errors.push(new CgroupError("read", `/proc/${options.adoptPid}/cgroup`, "ENOENT", "VM cgroup", h.mount));
        continue;
      }
      vmAbs = found[1];
    } else {
      const baseAbs = join(mountAbs, layout.base);
      vmAbs = join(baseAbs, vmName);
      if (layout.delegated) {
        // The unit's cgroup holds qcvm: move it to a leaf before enabling controllers below.
        const leaf = join(baseAbs, LAUNCHER_LEAF);
        if (!mkdir(leaf, "qcvm launcher cgroup")) continue;
        if (!write(leaf, "cgroup.procs", String(process.pid), "qcvm launcher cgroup")) continue;
      } else if (h.version === 2) for (const c of h.controllers) enable(mountAbs, c, "cgroup v2 root");
      if (!mkdir(baseAbs, "qcvm parent cgroup")) continue;
      if (h.version === 2) {
        // The qcvm parent holds no processes, so domain controllers (memory) may be enabled in it.
        for (const c of h.controllers) enable(baseAbs, c, "qcvm parent cgroup");
      } else if (hasCpuset) {
        // The parent must cover everything a VM below it may ask for: the root's full sets.
        // Widening never conflicts with existing VMs below it.
        if ((read(baseAbs, "cpuset.mems") ?? "") !== rootFallback.mems)
          write(baseAbs, "cpuset.mems", rootFallback.mems, "qcvm parent cgroup");
        if ((read(baseAbs, "cpuset.cpus") ?? "") !== rootFallback.cpus)
          write(baseAbs, "cpuset.cpus", rootFallback.cpus, "qcvm parent cgroup");
      }
      if (!mkdir(vmAbs, "VM cgroup")) continue;
      if (hasCpuset) setCpuset(vmAbs, vmSpec, rootFallback, h.version === 1, "VM cgroup");
    }
    const dir: VmCgroupDir = { hierarchy: h, path: vmAbs, children: {} };
    dirs.push(dir);

    // vCPU children go where cpuset is; on v2 without cpuset they are still made (threaded), so
    // the structure is the same everywhere and only the cpuset writes are missing.
    const holdsThreads =
      hasCpuset || (h.version === 2 && !layout.hierarchies.some((o) => o !== h && o.controllers.includes("cpuset")));
    if (!holdsThreads || childPlans.length === 0) continue;
    // v2: only the threaded controller goes in the VM's subtree_control. A domain controller
    // there (memory) would stop the VM cgroup from being a threaded domain (EOPNOTSUPP), and a
    // threaded controller is allowed even while the VM cgroup holds QEMU's process.
    if (h.version === 2 && hasCpuset) enable(vmAbs, "cpuset", "VM cgroup");
    for (const p of childPlans) {
      const subject = `vCPU cgroup ${p.name}`;
      const childAbs = join(vmAbs, p.name);
      if (!mkdir(childAbs, subject)) continue;
      if (h.version === 2 && read(childAbs, "cgroup.type") !== "threaded") {
        if (!write(childAbs, "cgroup.type", "threaded", subject)) continue;
      }
      dir.children[p.name] = childAbs;
      const fallback = {
        cpus: formatList(vmSpec.cpus) || rootFallback.cpus,
        mems: formatList(vmSpec.mems) || rootFallback.mems,
      };
      if (hasCpuset) setCpuset(childAbs, p, fallback, h.version === 1, subject);
    }
  }
  for (const c of layout.missing) {
    errors.push(
      new CgroupError(
        "mkdir",
        `${c} controller`,
        "EMISSING",
        c === "memory" ? "VM memory accounting" : "VM cpuset placement",
      ),
    );
  }
  return { cgroup: new VmCgroup(layout, vmName, dirs, !adopted), errors };
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
