// A launch's steps as a list of actions, part of the LaunchPlan (pure): what --dry-run prints.
import { join } from "node:path";
import { prettyCommand } from "../core/shell-words.js";
import { formatList } from "../core/lists.js";
import type { CgroupLayout } from "../vm/cgroup.js";
import type { vmPaths } from "../vm/paths.js";
import type { Plan, Profile } from "../core/types.js";
import { QMP_FD, fdsetPath } from "../render/passed-fds.js";
import type { PassedFile } from "../render/passed-fds.js";
import { describeIdentity } from "./privsep.js";
import type { QemuIdentity } from "./privsep.js";

const ACCESS: Record<PassedFile["access"], string> = {
  read: "read-only",
  "read-write": "read-write",
  append: "write; created 0600, or reused only when qcvm made it; never through a symlink",
  write: "write-only; an existing FIFO or character device (serial: device:), never through a symlink",
};

export interface Action {
  action: string;
  detail: string;
}

function cgroupActions(layout: CgroupLayout, name: string, plan: Plan): Action[] {
  const out: Action[] = [];
  const vm = plan.launch.cgroups.find((c) => c.name === "");
  const children = plan.launch.cgroups.filter((c) => c.name !== "");
  const cpus = formatList([...(vm?.cpus ?? []), ...children.flatMap((c) => c.cpus)]);
  const mems = formatList([...(vm?.mems ?? []), ...children.flatMap((c) => c.mems)]);
  if (layout.systemd) {
    out.push({
      action: "cgroup",
      detail: `systemd scope machine.slice/qcvm-${name}.scope (Delegate=yes), adopted as the VM cgroup`,
    });
  }
  for (const h of layout.hierarchies) {
    const dir = join(
      layout.root,
      h.mount,
      layout.systemd ? `machine.slice/qcvm-${name}.scope` : join(layout.base, name),
    );
    const has = (c: string) => h.controllers.includes(c as "cpuset" | "memory");
    const what = [
      has("cpuset") ? `cpus ${cpus || "all"}, mems ${mems || "all"}` : "",
      has("memory") ? "memory accounting" : "",
    ]
      .filter(Boolean)
      .join("; ");
    if (!layout.systemd) out.push({ action: "cgroup", detail: `mkdir ${dir}: ${what} (QEMU process)` });
    if (
      has("cpuset") ||
      (h.version === 2 && !layout.hierarchies.some((o) => o !== h && o.controllers.includes("cpuset")))
    ) {
      for (const c of children) {
        const vcpus = c.tasks === "process" ? "" : ` (vCPU ${formatList(c.tasks.vcpus)})`;
        out.push({
          action: "cgroup",
          detail: `mkdir ${join(dir, c.name)}: cpus ${formatList(c.cpus) || "all"}, mems ${formatList(c.mems) || "all"}${vcpus}`,
        });
      }
    }
  }
  for (const c of layout.missing)
    out.push({ action: "cgroup", detail: `no ${c} controller on this host: ${missingControllerCost(c, plan)}` });
  return out;
}

/** What a controller the host lacks costs this plan (the planner already avoided cpusets then). */
function missingControllerCost(c: "cpuset" | "memory", plan: Plan): string {
  if (c === "memory") return "the VM's memory would not be accounted per VM (qcvm stats cannot attribute it)";
  if (plan.launch.cgroups.length > 0) return "the planned cgroup cpus and mems would be lost";
  return `the plan uses no cpuset${plan.launch.pinning.length > 0 ? " (vCPUs are pinned by thread affinity)" : ""}`;
}

export interface ActionInputs {
  name: string;
  disks: Profile["disks"];
  plan: Plan;
  layout: CgroupLayout;
  paths: ReturnType<typeof vmPaths>;
  vmLock: string;
  locksDir: string;
  argv: string[];
  detach: boolean;
  identity: QemuIdentity;
  passed: readonly PassedFile[];
  qmpPath: string;
}

function spawnHow(a: ActionInputs): string {
  const where = a.layout.systemd
    ? "born in its systemd scope"
    : a.layout.hierarchies.length > 0
      ? "spawned from inside the VM cgroup"
      : "no VM cgroup to be born in";
  return `(${where}, in its own session${a.detach ? `, output to ${a.paths.log}` : ""})`;
}

/** Every step of the launch, in order, as a dry run lists it. */
export function dryRunActions(a: ActionInputs): Action[] {
  const { plan, paths } = a;
  const actions: Action[] = [{ action: "lock", detail: `VM name: ${a.vmLock}` }];
  for (const d of a.disks) {
    actions.push({
      action: "lock",
      detail: `disk ${d.path} (${d.readOnly ? "read-only, shareable" : "read-write, exclusive"}) in ${a.locksDir}`,
    });
  }
  actions.push({ action: "mkdir", detail: `${paths.dir} (mode 0700): qmp.sock, qemu.pid, qemu.log, state.json` });
  actions.push(...cgroupActions(a.layout, a.name, plan));
  actions.push({
    action: "user",
    detail: `${describeIdentity(a.identity)}; environment LC_ALL, PATH, HOME only; umask 077`,
  });
  actions.push({ action: "open", detail: `fd ${QMP_FD}: QMP socket ${a.qmpPath}, bound by qcvm, mode 0600` });
  for (const f of a.passed)
    actions.push({
      action: "open",
      detail: `fd ${f.fd}: ${f.field} ${f.path} (${ACCESS[f.access]}), QEMU sees ${fdsetPath(f)}`,
    });
  actions.push({ action: "exec", detail: `${prettyCommand(a.argv)}  ${spawnHow(a)}` });
  actions.push({ action: "qmp", detail: `connect ${paths.qmp}; query-cpus-fast (vCPU thread ids)` });
  for (const c of plan.launch.cgroups) {
    if (c.tasks === "process") continue;
    for (const v of c.tasks.vcpus) actions.push({ action: "vcpu", detail: `vCPU ${v} thread -> cgroup ${c.name}` });
  }
  for (const p of plan.launch.pinning)
    actions.push({ action: "pin", detail: `taskset -pc ${formatList(p.hostCpus)} <vCPU ${p.vcpu} thread>` });
  actions.push({ action: "qmp", detail: "cont (vCPUs start with placement in force)" });
  actions.push({ action: "state", detail: paths.state });
  return actions;
}
