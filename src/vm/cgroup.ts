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
// (plain fs calls on the same resolved paths, or a test's fake).
//
// This module is the door: cgroup-layout.ts (where controllers live), cgroup-files.ts (errors
// and the write seam), vm-cgroup.ts (one VM's cgroups), cgroup-create.ts (making them). Nothing throws for a cgroup problem: every failure comes back as a
// CgroupError value naming the file and errno, so the launcher can say which placement was lost
// and decide (strict: abort; otherwise: warn and continue).
export {
  LAUNCHER_LEAF,
  openCgroupLayout,
  readProcessCgroups,
  scopeUnitName,
  selfDelegatedBase,
  systemdScopePrefix,
} from "./cgroup-layout.js";
export type { CgroupController, CgroupHierarchy, CgroupLayout } from "./cgroup-layout.js";
export { CgroupError, useCgroupFiles } from "./cgroup-files.js";
export type { CgroupFiles, CgroupOp } from "./cgroup-files.js";
export { VmCgroup, findVmCgroup, readTaskPlacement } from "./vm-cgroup.js";
export type { VmCgroupDir, VmCgroupPaths } from "./vm-cgroup.js";
export { createVmCgroup } from "./cgroup-create.js";
