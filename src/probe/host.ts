// Host probe: what this machine's kernel offers qcvm, read through one FsRoot so the same code
// reads the real /sys and /proc and the sysfs-shaped fixture trees under examples/hosts/.
// Missing files degrade to "absent" (a host without NUMA sysfs is one node holding all memory);
// nothing here throws for a host that lacks a feature.
//
// Conventions a fixture tree (`--host DIR`) relies on:
//   - dev/kvm: in a tree, a file that exists (any kind). On the real host (root "/") existence
//     proves nothing: a container may bind an empty file there, or udev leave the node of an
//     unloaded module; probeKvm() checks it is KVM's own character device.
//   - run/systemd/system: the directory systemd creates when it is the init system.
//   - qcvm/numactl-version: numactl is a program, not a sysfs file. In a tree this file names the
//     version that host has ("none" = not installed). On a real host probeNumactl() asks the binary.
import { FsRoot } from "../io/fsroot.js";
import { formatList, parseList } from "../core/lists.js";
import { compareVersions } from "../core/versions.js";
import { KERNEL, NUMACTL } from "../core/host-support.js";
import type { HostInfo, HostNode } from "../core/types.js";

const NODE_DIR = "sys/devices/system/node";
const NUMACTL_OVERRIDE = "qcvm/numactl-version";
const MEMPOLICY_OVERRIDE = "qcvm/mempolicy";

// Linux 6.19: mbind() on an mmap of a guest_memfd stores the policy on the file, and later
// allocations (private faults included) follow it (virt/kvm/guest_memfd.c, see DOMAIN.md).
export const GUEST_MEMFD_MEMPOLICY_KERNEL = KERNEL.guestMemfdMempolicy;
// numactl 2.0.15 added --preferred-many (kernel 5.15, MPOL_PREFERRED_MANY) and --balancing;
// 2.0.19 added --weighted-interleave (kernel 6.9). The versions live in the host-support table.
export const NUMACTL_PREFERRED_MANY = NUMACTL.preferredMany;
export const NUMACTL_WEIGHTED_INTERLEAVE = NUMACTL.weightedInterleave;

// v1 controllers qcvm cares about get listed; named hierarchies (name=systemd) are not controllers.
const V1_CONTROLLERS = new Set([
  "cpuset",
  "cpu",
  "cpuacct",
  "memory",
  "devices",
  "freezer",
  "net_cls",
  "net_prio",
  "blkio",
  "perf_event",
  "hugetlb",
  "pids",
  "rdma",
  "misc",
]);

// KVM registers /dev/kvm as misc device 10:232 (KVM_MINOR, include/linux/miscdevice.h), a fixed
// number: anything else at that path (an empty file, /dev/null bound over it, a stale node) is not
// KVM, however well it opens.
const KVM_MAJOR = 10n;
const KVM_MINOR = 232n;

/** Whether a path is KVM's device and this process can use it, as QEMU's -accel kvm needs. */
export interface KvmAccess {
  /** Opens read-write and is KVM's character device. QEMU may still fail (KVM_CREATE_VM refused,
   *  say, by nested-virtualization limits): its own -accel kvm is the last word. */
  ok: boolean;
  /** KVM's device node is there with its driver behind it, whether or not this user may open it
   *  (EACCES/EPERM): the host has KVM, this user may lack the kvm group. */
  present: boolean;
  /** Why not ok: ENOENT (no node), EACCES/EPERM (permissions), ENXIO/ENODEV (no driver behind
   *  the node), or ENODEV for a node that opens but is not KVM's. */
  errno?: string;
  /** The same for people: what is at the path and why it does not do. */
  problem?: string;
}

function devNumbers(rdev: bigint): { major: bigint; minor: bigint } {
  // glibc's gnu_dev_major/gnu_dev_minor (sysmacros.h): 12 bits of major and 20 of minor, split.
  return {
    major: ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn),
    minor: (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn),
  };
}

function describeNode(st: {
  isFile(): boolean;
  isCharacterDevice(): boolean;
  isDirectory(): boolean;
  rdev: bigint;
}): string {
  if (st.isCharacterDevice()) {
    const { major, minor } = devNumbers(st.rdev);
    return `character device ${major}:${minor}`;
  }
  return st.isFile() ? "a regular file" : st.isDirectory() ? "a directory" : "not a device";
}

/**
 * Can this process use KVM through `path`? Opens it read-write (what QEMU does) and checks that what
 * opened is KVM's device, 10:232: existence alone is fooled by a file bound over /dev/kvm, and a
 * permission check by a node with no driver. Sync, no ioctl (node has none): QEMU's own
 * KVM_CREATE_VM stays the final check.
 */
export function probeKvm(path = "/dev/kvm", fs: FsRoot = new FsRoot("/")): KvmAccess {
  const opened = fs.openReadWrite(path);
  if (opened.errno !== undefined) {
    const { errno, stat: st } = opened;
    const isKvm = st !== undefined && st.isCharacterDevice() && sameDev(st.rdev);
    const what = st ? describeNode(st) : "";
    const problem =
      errno === "ENOENT"
        ? `${path} does not exist`
        : errno === "EACCES" || errno === "EPERM"
          ? `${path} is not read-write for this user (${errno})`
          : errno === "ENXIO" || errno === "ENODEV"
            ? `${path} (${what || "a device"}) has no driver behind it (${errno}): the kvm module is not loaded`
            : `${path} cannot be opened read-write (${errno})`;
    return { ok: false, present: isKvm && (errno === "EACCES" || errno === "EPERM"), errno, problem };
  }
  const st = opened.stat;
  if (st.isCharacterDevice() && sameDev(st.rdev)) return { ok: true, present: true };
  return {
    ok: false,
    present: false,
    errno: "ENODEV",
    problem: `${path} is ${describeNode(st)}, not KVM's character device ${KVM_MAJOR}:${KVM_MINOR}`,
  };
}

function sameDev(rdev: bigint): boolean {
  const { major, minor } = devNumbers(rdev);
  return major === KVM_MAJOR && minor === KVM_MINOR;
}

/** "6.11.0-29-generic" -> "6.11.0"; "6.19.0-rc5" -> "6.19.0". */
export function kernelVersion(release: string): string {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release);
  return m ? `${m[1]}.${m[2]}.${m[3] ?? "0"}` : "0.0.0";
}

/** Kernel module parameters print bools as Y/N (bool params) or 1/0 (older int params). */
function readFlag(fs: FsRoot, path: string): boolean {
  const v = fs.read(path);
  return v === "Y" || v === "y" || v === "1";
}

/** `Node 0 MemTotal:  131072000 kB` / `MemTotal:  131072000 kB` -> bytes; undefined when absent. */
function meminfoBytes(text: string | undefined, key: string): number | undefined {
  if (!text) return undefined;
  const m = new RegExp(`^(?:Node \\d+ )?${key}:\\s+(\\d+)\\s*kB`, "m").exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

function readInt(fs: FsRoot, path: string): number {
  const n = Number.parseInt(fs.read(path) ?? "", 10);
  return Number.isFinite(n) ? n : 0;
}

function readHugepages(fs: FsRoot, dir: string): HostNode["hugepages"] {
  const pool = (kb: number) => ({
    total: readInt(fs, `${dir}/hugepages-${kb}kB/nr_hugepages`),
    free: readInt(fs, `${dir}/hugepages-${kb}kB/free_hugepages`),
  });
  return { "2M": pool(2048), "1G": pool(1048576) };
}

function probeNodes(fs: FsRoot): HostNode[] {
  const dirs = fs
    .list(NODE_DIR)
    .map((d) => /^node(\d+)$/.exec(d))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]));
  const online = fs.read(`${NODE_DIR}/online`);
  const ids = (online !== undefined ? parseList(online).filter((id) => dirs.includes(id)) : dirs).sort((a, b) => a - b);
  if (ids.length === 0) return [fallbackNode(fs)];
  return ids.map((id) => {
    const dir = `${NODE_DIR}/node${id}`;
    const cpus = parseList(fs.read(`${dir}/cpulist`));
    const meminfo = fs.read(`${dir}/meminfo`);
    // The distance row lists one value per online node, in node-id order
    // (drivers/base/node.c node_read_distance: for_each_online_node).
    const row = (fs.read(`${dir}/distance`) ?? "").split(/\s+/).filter(Boolean).map(Number);
    const distances: Record<number, number> = {};
    ids.forEach((other, i) => {
      const v = row[i];
      if (v !== undefined && Number.isFinite(v)) distances[other] = v;
    });
    if (distances[id] === undefined) distances[id] = 10;
    return {
      id,
      cpus,
      memoryOnly: cpus.length === 0,
      memTotalBytes: meminfoBytes(meminfo, "MemTotal") ?? 0,
      memFreeBytes: meminfoBytes(meminfo, "MemFree") ?? 0,
      distances,
      hugepages: readHugepages(fs, `${dir}/hugepages`),
    };
  });
}

/** A kernel without NUMA sysfs (CONFIG_NUMA=n, or a stripped container view): one node, all memory. */
function fallbackNode(fs: FsRoot): HostNode {
  const meminfo = fs.read("proc/meminfo");
  return {
    id: 0,
    cpus: parseList(fs.read("sys/devices/system/cpu/online")),
    memoryOnly: false,
    memTotalBytes: meminfoBytes(meminfo, "MemTotal") ?? 0,
    memFreeBytes: meminfoBytes(meminfo, "MemFree") ?? 0,
    distances: { 0: 10 },
    hugepages: readHugepages(fs, "sys/kernel/mm/hugepages"),
  };
}

interface Mount {
  source: string;
  target: string;
  type: string;
  options: string[];
}

// /proc/mounts escapes space, tab, newline and backslash in paths as octal (\040 ...).
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

function readMounts(fs: FsRoot): Mount[] {
  const text = fs.read("proc/mounts") ?? "";
  const out: Mount[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    out.push({ source: f[0]!, target: unescapeMount(f[1]!), type: f[2]!, options: f[3]!.split(",") });
  }
  return out;
}

function probeCgroup(fs: FsRoot): HostInfo["cgroup"] {
  const mounts = readMounts(fs);
  const v1Mounts: Record<string, string> = {};
  for (const m of mounts) {
    if (m.type !== "cgroup") continue;
    for (const opt of m.options) if (V1_CONTROLLERS.has(opt) && !(opt in v1Mounts)) v1Mounts[opt] = m.target;
  }
  // Prefer the canonical /sys/fs/cgroup when cgroup2 is mounted more than once.
  const v2s = mounts.filter((m) => m.type === "cgroup2").map((m) => m.target);
  const v2Mount = v2s.find((t) => t === "/sys/fs/cgroup") ?? v2s[0];
  const v1Controllers = Object.keys(v1Mounts).sort();
  const v2Controllers = v2Mount ? (fs.read(`${v2Mount}/cgroup.controllers`) ?? "").split(/\s+/).filter(Boolean) : [];
  // A controller is bound to one hierarchy at a time: when cpuset or memory sit on v1 (hybrid
  // layout) that is where qcvm must place VMs, even if a unified mount exists beside them.
  const version: 1 | 2 | "none" =
    v1Controllers.length > 0 && (v1Mounts.cpuset || v1Mounts.memory || v2Controllers.length === 0)
      ? 1
      : v2Mount
        ? 2
        : "none";
  const cgroup: HostInfo["cgroup"] = {
    version,
    v1Mounts,
    controllers: version === 1 ? v1Controllers : version === 2 ? v2Controllers : [],
    systemd: fs.exists("run/systemd/system"),
  };
  if (v2Mount) cgroup.v2Mount = v2Mount;
  return cgroup;
}

/** numactl capabilities for a version string; undefined = not installed. */
export function numactlFromVersion(version: string | undefined): HostInfo["numactl"] {
  if (!version) return { preferredMany: false, weightedInterleave: false };
  return {
    version,
    preferredMany: compareVersions(version, NUMACTL_PREFERRED_MANY) >= 0,
    weightedInterleave: compareVersions(version, NUMACTL_WEIGHTED_INTERLEAVE) >= 0,
  };
}

/** A tree's word on memory policies (qcvm/mempolicy: "allowed", or "denied: why"). */
function readMempolicyOverride(fs: FsRoot): HostInfo["mempolicy"] | undefined {
  const v = fs.read(MEMPOLICY_OVERRIDE);
  if (v === undefined) return undefined;
  const m = /^denied:?\s*(.*)$/.exec(v);
  return m ? { allowed: false, reason: m[1] || "the host denies memory policies" } : { allowed: true };
}

/** The fixture-tree override for numactl, or undefined when the tree has none. */
function readNumactlOverride(fs: FsRoot): HostInfo["numactl"] | undefined {
  const v = fs.read(NUMACTL_OVERRIDE);
  if (v === undefined) return undefined;
  return numactlFromVersion(v === "" || v === "none" ? undefined : v);
}

/**
 * Probe the host under `root` (sync, files only). numactl is a program: a fixture tree states its
 * version in qcvm/numactl-version; for a real host this returns "unknown" numactl (no version, no
 * features) and probeHostAsync() fills it in by running numactl through src/io/exec.ts.
 */
export function probeHost(root = "/", fs: FsRoot = new FsRoot(root)): HostInfo {
  const kernel = kernelVersion(fs.read("proc/sys/kernel/osrelease") ?? "");
  const device = fs.isRealHost ? probeKvm(fs.path("dev/kvm")) : undefined;
  const kvm = (device ? device.present : fs.exists("dev/kvm")) && fs.exists("sys/module/kvm");
  return {
    root,
    kernel,
    nodes: probeNodes(fs),
    kvm,
    // A tree answers for its own dev/kvm; here QEMU will open this one.
    kvmAccess: device
      ? {
          usable: device.ok,
          ...(device.problem ? { problem: device.problem } : {}),
          ...(device.errno ? { errno: device.errno } : {}),
        }
      : kvm
        ? { usable: true }
        : { usable: false, problem: "the host tree has no usable dev/kvm" },
    mempolicy: readMempolicyOverride(fs) ?? { allowed: true },
    sev: readFlag(fs, "sys/module/kvm_amd/parameters/sev"),
    sevEs: readFlag(fs, "sys/module/kvm_amd/parameters/sev_es"),
    sevSnp: readFlag(fs, "sys/module/kvm_amd/parameters/sev_snp"),
    tdx: readFlag(fs, "sys/module/kvm_intel/parameters/tdx"),
    cgroup: probeCgroup(fs),
    numactl: readNumactlOverride(fs) ?? numactlFromVersion(undefined),
    // Linux 6.9 added weighted interleave with its weights under this directory.
    weightedInterleave: fs.exists("sys/kernel/mm/mempolicy/weighted_interleave"),
    guestMemfdMempolicy: compareVersions(kernel, GUEST_MEMFD_MEMPOLICY_KERNEL) >= 0,
    ...ptraceScope(fs),
  };
}

/** Yama's ptrace_scope, when the kernel has Yama (security/yama: 0 classic .. 3 no attach). */
function ptraceScope(fs: FsRoot): { ptraceScope?: number } {
  const v = Number(fs.read("proc/sys/kernel/yama/ptrace_scope"));
  return Number.isInteger(v) && fs.exists("proc/sys/kernel/yama/ptrace_scope") ? { ptraceScope: v } : {};
}

/** Weighted-interleave weights per node from sysfs (empty when the kernel has none). */
export function readInterleaveWeights(root = "/", fs: FsRoot = new FsRoot(root)): Record<number, number> {
  const dir = "sys/kernel/mm/mempolicy/weighted_interleave";
  const out: Record<number, number> = {};
  for (const f of fs.list(dir)) {
    const m = /^node(\d+)$/.exec(f);
    if (m) out[Number(m[1])] = readInt(fs, `${dir}/${f}`);
  }
  return out;
}

/**
 * Ask the numactl binary what it supports. numactl 2.0.16 has no --version (2.0.17+ prints
 * "numactl 2.0.x"), so features are read from its usage text, which lists every option it
 * accepts; the version comes from --version when it works, else from dpkg's record.
 */
export async function probeNumactl(binary = "numactl"): Promise<HostInfo["numactl"]> {
  const { run, which } = await import("../io/exec.js");
  if (!(await which(binary))) return numactlFromVersion(undefined);
  let version: string | undefined;
  let usage = "";
  try {
    const r = await run([binary, "--version"], { timeoutMs: 5000 });
    const m = /numactl\s+(\d+\.\d+\.\d+)/.exec(`${r.stdout}\n${r.stderr}`);
    if (r.exitCode === 0 && m) version = m[1];
    else usage = `${r.stdout}\n${r.stderr}`;
    if (!usage) {
      const h = await run([binary, "--help"], { timeoutMs: 5000 });
      usage = `${h.stdout}\n${h.stderr}`;
    }
  } catch {
    return numactlFromVersion(undefined);
  }
  if (!version && (await which("dpkg-query"))) {
    try {
      const d = await run(["dpkg-query", "-W", "-f=${Version}", "numactl"], { timeoutMs: 5000 });
      const m = /^(\d+\.\d+\.\d+)/.exec(d.stdout.trim());
      if (d.exitCode === 0 && m) version = m[1];
    } catch {
      // No package record: features from the usage text still hold.
    }
  }
  const byVersion = numactlFromVersion(version ?? "0");
  const hasUsage = /usage:\s*numactl/i.test(usage);
  return {
    ...(version ? { version } : {}),
    preferredMany: hasUsage ? usage.includes("--preferred-many") : byVersion.preferredMany,
    weightedInterleave: hasUsage ? usage.includes("--weighted-interleave") : byVersion.weightedInterleave,
  };
}

/** Seccomp: field of /proc/self/status: 0 none, 1 strict, 2 filter; undefined when unknown. */
function seccompMode(fs: FsRoot): number | undefined {
  const m = /^Seccomp:\s*(\d+)/m.exec(fs.read("proc/self/status") ?? "");
  return m ? Number(m[1]) : undefined;
}

/**
 * Does the kernel let this process set a NUMA memory policy? Inside containers a seccomp profile
 * typically answers EPERM to set_mempolicy and mbind alike (Docker's default profile allows them
 * only with CAP_SYS_NICE), and QEMU then dies at start-up with "cannot bind memory to host NUMA
 * nodes". numactl calls set_mempolicy, the same family of syscalls as QEMU's mbind.
 */
export async function probeMempolicy(fs: FsRoot, nodes: readonly number[]): Promise<HostInfo["mempolicy"]> {
  // Without a seccomp filter nothing answers EPERM to them (QEMU's MPOL_MF_MOVE needs no
  // capability; a cpuset conflict is EINVAL, which QEMU reports itself): skip the test run.
  if (seccompMode(fs) === 0) return { allowed: true };
  const { run, which } = await import("../io/exec.js");
  if (!(await which("numactl"))) return { allowed: true }; // nothing to test with; QEMU's own error will tell
  const r = await run(["numactl", `--membind=${formatList(nodes.length ? nodes : [0])}`, "--", "true"]).catch(
    () => undefined,
  );
  if (!r || r.exitCode === 0) return { allowed: true };
  // numactl says "set_mempolicy: Operation not permitted".
  if (/not permitted|EPERM/i.test((r.stderr || r.stdout).trim()))
    return { allowed: false, reason: "EPERM from set_mempolicy/mbind, as under a container's seccomp profile" };
  return { allowed: true }; // another failure (an offline node): QEMU reports it precisely
}

/**
 * probeHost plus what takes running a program: numactl's features (`numactl`, default on: from the
 * tree's override file, else by running numactl) and, for a launch here, whether memory policies
 * are allowed (`testMempolicy`; a tree answers with qcvm/mempolicy instead).
 */
export async function probeHostAsync(
  root = "/",
  options: { numactl?: boolean; testMempolicy?: boolean } = {},
): Promise<HostInfo> {
  const host = probeHost(root);
  const fs = new FsRoot(root);
  // A fixture tree says what it has in its override files: never ask this machine's programs.
  if (!fs.isRealHost) return host;
  const numactl = options.numactl === false || fs.exists(NUMACTL_OVERRIDE) ? host.numactl : await probeNumactl();
  const mempolicy =
    options.testMempolicy && !fs.exists(MEMPOLICY_OVERRIDE)
      ? await probeMempolicy(
          fs,
          host.nodes.map((n) => n.id),
        )
      : host.mempolicy;
  return { ...host, numactl, mempolicy };
}
