// Creating a VM's cgroups from the plan's cgroup entries (name "" the VM cgroup, any other a vCPU
// child) in every hierarchy that holds cpuset or memory; best effort: every failure comes back as
// a CgroupError naming the file and the placement it costs.
import { join, relative } from "node:path";
import { FsRoot } from "../io/fsroot.js";
import { formatList } from "../core/lists.js";
import { CgroupError, errnoOf, makeCgroupDir, writeValue } from "./cgroup-files.js";
import { LAUNCHER_LEAF, readProcessCgroups } from "./cgroup-layout.js";
import { VmCgroup } from "./vm-cgroup.js";
import type { CgroupController, CgroupHierarchy, CgroupLayout } from "./cgroup-layout.js";
import type { VmCgroupDir } from "./vm-cgroup.js";
import type { CgroupPlan } from "../core/types.js";

interface DirSpec {
  cpus: number[];
  mems: number[];
}

function union(a: readonly number[], b: readonly number[]): number[] {
  return [...new Set([...a, ...b])].sort((x, y) => x - y);
}

/** The writes of one createVmCgroup call, each failure kept as a CgroupError. */
class Builder {
  readonly errors: CgroupError[] = [];
  private readonly fs: FsRoot;

  constructor(readonly layout: CgroupLayout) {
    this.fs = new FsRoot(layout.root);
  }

  mkdir(dir: string, subject: string): boolean {
    try {
      makeCgroupDir(dir);
      return true;
    } catch (e) {
      if (errnoOf(e) === "EEXIST") return true;
      this.errors.push(new CgroupError("mkdir", dir, errnoOf(e), subject));
      return false;
    }
  }

  write(dir: string, file: string, value: string, subject: string): boolean {
    const path = join(dir, file);
    try {
      writeValue(path, value);
      return true;
    } catch (e) {
      this.errors.push(new CgroupError("write", path, errnoOf(e), subject, value));
      return false;
    }
  }

  read(dir: string, file: string): string | undefined {
    return this.fs.read(relative(this.layout.root, join(dir, file)));
  }

  /** v2: enable a controller for a cgroup's children unless it already is (re-enabling is
   *  harmless, but on a root we don't own it is a needless EACCES). */
  enable(dir: string, controller: CgroupController, subject: string): void {
    const current = (this.read(dir, "cgroup.subtree_control") ?? "").split(/\s+/);
    if (!current.includes(controller)) this.write(dir, "cgroup.subtree_control", `+${controller}`, subject);
  }

  setCpuset(dir: string, spec: DirSpec, fallback: { cpus: string; mems: string }, v1: boolean, subject: string): void {
    // v1: a new cpuset starts with empty cpus and mems and refuses tasks (ENOSPC) until both are
    // set; v2: empty means "inherit the parent's", so only planned values are written. mems
    // first: a child's mems are checked against its parent's at write time.
    const mems = spec.mems.length > 0 ? formatList(spec.mems) : v1 ? fallback.mems : "";
    const cpus = spec.cpus.length > 0 ? formatList(spec.cpus) : v1 ? fallback.cpus : "";
    if (mems) this.write(dir, "cpuset.mems", mems, subject);
    if (cpus) this.write(dir, "cpuset.cpus", cpus, subject);
    // v1 only (v2 cpusets always migrate): when a VM cgroup's mems change, or a process that
    // already allocated joins it, its pages move to the new mems, which is what placement wants.
    // Threads joining a vCPU child never migrate (cpuset_attach migrates only for a thread-group
    // leader). Children's mems are written before any thread joins, and must not be rewritten
    // after: that would rebind and migrate the whole process's memory to that child's nodes
    // (cpuset_update_tasks_nodemask walks every task in it, and threads share one mm).
    if (v1) this.write(dir, "cpuset.memory_migrate", "1", subject);
  }

  /** qcvm's parent and the VM cgroup in one hierarchy (not adopted); undefined when not made. */
  makeVmDir(h: CgroupHierarchy, vmName: string, vmSpec: DirSpec, root: { cpus: string; mems: string }) {
    const mountAbs = join(this.layout.root, h.mount);
    const hasCpuset = h.controllers.includes("cpuset");
    const baseAbs = join(mountAbs, this.layout.base);
    const vmAbs = join(baseAbs, vmName);
    if (this.layout.delegated) {
      // The unit's cgroup holds qcvm: move it to a leaf before enabling controllers below.
      const leaf = join(baseAbs, LAUNCHER_LEAF);
      if (!this.mkdir(leaf, "qcvm launcher cgroup")) return undefined;
      if (!this.write(leaf, "cgroup.procs", String(process.pid), "qcvm launcher cgroup")) return undefined;
    } else if (h.version === 2) for (const c of h.controllers) this.enable(mountAbs, c, "cgroup v2 root");
    if (!this.mkdir(baseAbs, "qcvm parent cgroup")) return undefined;
    if (h.version === 2) {
      // The qcvm parent holds no processes, so domain controllers (memory) may be enabled in it.
      for (const c of h.controllers) this.enable(baseAbs, c, "qcvm parent cgroup");
    } else if (hasCpuset) {
      // The parent must cover everything a VM below it may ask for: the root's full sets.
      // Widening never conflicts with existing VMs below it.
      if ((this.read(baseAbs, "cpuset.mems") ?? "") !== root.mems)
        this.write(baseAbs, "cpuset.mems", root.mems, "qcvm parent cgroup");
      if ((this.read(baseAbs, "cpuset.cpus") ?? "") !== root.cpus)
        this.write(baseAbs, "cpuset.cpus", root.cpus, "qcvm parent cgroup");
    }
    if (!this.mkdir(vmAbs, "VM cgroup")) return undefined;
    if (hasCpuset) this.setCpuset(vmAbs, vmSpec, root, h.version === 1, "VM cgroup");
    return vmAbs;
  }

  /** The vCPU children in one hierarchy's VM cgroup, where cpuset is (or on v2 without it). */
  makeChildren(
    dir: VmCgroupDir,
    children: readonly CgroupPlan[],
    vmSpec: DirSpec,
    root: { cpus: string; mems: string },
  ) {
    const h = dir.hierarchy;
    const hasCpuset = h.controllers.includes("cpuset");
    // On v2 without cpuset the children are still made (threaded), so the structure is the same
    // everywhere and only the cpuset writes are missing.
    const holdsThreads =
      hasCpuset ||
      (h.version === 2 && !this.layout.hierarchies.some((o) => o !== h && o.controllers.includes("cpuset")));
    if (!holdsThreads || children.length === 0) return;
    // v2: only the threaded controller goes in the VM's subtree_control. A domain controller
    // there (memory) would stop the VM cgroup from being a threaded domain (EOPNOTSUPP), and a
    // threaded controller is allowed even while the VM cgroup holds QEMU's process.
    if (h.version === 2 && hasCpuset) this.enable(dir.path, "cpuset", "VM cgroup");
    for (const p of children) {
      const subject = `vCPU cgroup ${p.name}`;
      const childAbs = join(dir.path, p.name);
      if (!this.mkdir(childAbs, subject)) continue;
      if (h.version === 2 && this.read(childAbs, "cgroup.type") !== "threaded") {
        if (!this.write(childAbs, "cgroup.type", "threaded", subject)) continue;
      }
      dir.children[p.name] = childAbs;
      const fallback = {
        cpus: formatList(vmSpec.cpus) || root.cpus,
        mems: formatList(vmSpec.mems) || root.mems,
      };
      if (hasCpuset) this.setCpuset(childAbs, p, fallback, h.version === 1, subject);
    }
  }
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
  const b = new Builder(layout);
  const vmPlan = plans.find((p) => p.name === "");
  const childPlans = plans.filter((p) => p.name !== "");
  // Children's cpus and mems must be subsets of the VM's (v1 refuses otherwise): widen the VM's.
  const vmSpec: DirSpec = {
    cpus: childPlans.reduce((acc, p) => union(acc, p.cpus), vmPlan?.cpus ?? []),
    mems: childPlans.reduce((acc, p) => union(acc, p.mems), vmPlan?.mems ?? []),
  };
  const adopted = options.adoptPid !== undefined ? readProcessCgroups(layout, options.adoptPid) : undefined;
  const dirs: VmCgroupDir[] = [];
  for (const h of layout.hierarchies) {
    const mountAbs = join(layout.root, h.mount);
    const root = {
      cpus: b.read(mountAbs, "cpuset.effective_cpus") ?? b.read(mountAbs, "cpuset.cpus") ?? "",
      mems: b.read(mountAbs, "cpuset.effective_mems") ?? b.read(mountAbs, "cpuset.mems") ?? "",
    };
    let vmAbs: string | undefined;
    if (adopted) {
      vmAbs = adopted.find(([hh]) => hh === h)?.[1];
      if (!vmAbs)
        b.errors.push(new CgroupError("read", `/proc/${options.adoptPid}/cgroup`, "ENOENT", "VM cgroup", h.mount));
    } else {
      vmAbs = b.makeVmDir(h, vmName, vmSpec, root);
    }
    if (!vmAbs) continue;
    const dir: VmCgroupDir = { hierarchy: h, path: vmAbs, children: {} };
    dirs.push(dir);
    b.makeChildren(dir, childPlans, vmSpec, root);
  }
  for (const c of layout.missing) {
    const subject = c === "memory" ? "VM memory accounting" : "VM cpuset placement";
    b.errors.push(new CgroupError("mkdir", `${c} controller`, "EMISSING", subject));
  }
  return { cgroup: new VmCgroup(layout, vmName, dirs, !adopted), errors: b.errors };
}
