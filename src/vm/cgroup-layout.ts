// Where a host's cgroup controllers live (cgroup v1 mounts, the v2 mount, systemd) and the names
// and argv prefix of a VM's systemd scope: read through FsRoot, nothing written.
import { join } from "node:path";
import { FsRoot } from "../io/fsroot.js";
import { formatList } from "../core/lists.js";
import type { HostInfo } from "../core/types.js";

export type CgroupController = "cpuset" | "memory";
export const CONTROLLERS: readonly CgroupController[] = ["cpuset", "memory"];

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
  /** A delegated v2 subtree: `base` is the unit's cgroup, handed to qcvm (see cgroup.ts). */
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
