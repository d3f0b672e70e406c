// Shared data shapes between the phases:
//   load -> validate -> normalize -> probe -> plan -> render -> launch -> observe
// RawProfile is what the user wrote, untyped until the schema passed it; then normalize reads it as
// WrittenProfile (src/generated/written-profile.ts, generated from the schema); Profile is the
// normalized form every later phase reads (defaults filled, sizes in bytes, cpu lists expanded).

import type { Serial } from "./serial.js";

export type { Serial };

// ---------------------------------------------------------------------------------------------
// Diagnostics
// ---------------------------------------------------------------------------------------------

export type Severity = "error" | "warning";

/** One problem found in a profile, plan or command. Rendered as
 *  `file:line:col: path: message, got X (hint)` by formatDiagnostic(). */
export interface Diagnostic {
  severity: Severity;
  /** Stable machine-readable identifier, e.g. "schema.additionalProperties", "numa.cpus-cover". */
  code: string;
  /** Dotted field path as the user wrote it: `numa.nodes[1].cpus`; "" for the whole document. */
  path: string;
  message: string;
  file?: string;
  line?: number;
  col?: number;
  /** The offending value, shown as `got ...`. */
  got?: unknown;
  hint?: string;
}

/** A result that carries every problem instead of throwing on the first one. */
export interface Result<T> {
  value?: T;
  errors: Diagnostic[];
  warnings: Diagnostic[];
}

// ---------------------------------------------------------------------------------------------
// Profiles
// ---------------------------------------------------------------------------------------------

export type ConfidentialType = "none" | "sev" | "sev-es" | "sev-snp" | "tdx";
export type BackendType = "memfd" | "ram" | "file";
export type HugepageSize = "none" | "2M" | "1G";
/** Memory policy of a guest node on the host. `default` = no policy (host-nodes empty). */
export type MemPolicy = "default" | "bind" | "preferred" | "interleave" | "weighted-interleave";
export type Accel = "kvm" | "tcg";
export type OnOff = "on" | "off";

/** As written in YAML: loose on purpose; the JSON Schema is the authority on its shape. */
export type RawProfile = Record<string, unknown>;

export interface FileOrBase64 {
  /** Exactly one of these is set after normalization. */
  base64?: string;
  file?: string;
}

export interface SocketAddress {
  type: "unix" | "vsock";
  path?: string;
  cid?: number;
  port?: number;
}

/**
 * The confidential section, one variant per QEMU confidential-guest-support object (qapi/qom.json;
 * the object for each type is core/confidential.ts's table). normalize builds the variant of the
 * written type, so a property of another type cannot reach plan, render or export.
 */
export type Confidential = NoConfidential | SevGuest | SevSnpGuest | TdxGuest;

/** A plain guest: no confidential-guest-support object. */
export interface NoConfidential {
  type: "none";
}

/** Properties sev-guest and sev-snp-guest share (SevCommonProperties; kernel-hashes there since QEMU 9.1). */
interface SevCommon {
  cbitpos?: number;
  reducedPhysBits?: number;
  /** Numeric guest policy after named flags are folded in (sev-guest uint32, sev-snp-guest uint64). */
  policy?: number;
  kernelHashes?: boolean;
}

/** sev-guest: SEV and SEV-ES (SEV-ES is policy bit 0x4). */
export interface SevGuest extends SevCommon {
  type: "sev" | "sev-es";
  handle?: number;
  dhCertFile?: string;
  sessionFile?: string;
  legacyVmType?: boolean;
}

/** sev-snp-guest (QEMU 9.1). */
export interface SevSnpGuest extends SevCommon {
  type: "sev-snp";
  guestVisibleWorkarounds?: FileOrBase64;
  idBlock?: FileOrBase64;
  idAuth?: FileOrBase64;
  authorKeyEnabled?: boolean;
  hostData?: FileOrBase64;
  vcekDisabled?: boolean;
}

/** tdx-guest (QEMU 10.1). */
export interface TdxGuest {
  type: "tdx";
  /** TD attributes, exact: bit 63 (perfmon) is beyond 2^53, so not a JS number. */
  attributes?: bigint;
  septVeDisable?: boolean;
  mrconfigid?: FileOrBase64;
  mrowner?: FileOrBase64;
  mrownerconfig?: FileOrBase64;
  quoteGenerationSocket?: SocketAddress;
}

export interface GuestNumaNode {
  id: number;
  cpus: number[];
  memoryBytes: number;
  /** Host NUMA nodes this guest node's memory goes to; [] with policy default. */
  hostNodes: number[];
  policy: MemPolicy;
  /** Weighted interleave weights per host node (policy weighted-interleave only). */
  weights?: Record<number, number>;
}

export interface NumaDistance {
  from: number;
  to: number;
  value: number;
}

export interface Disk {
  path: string;
  format: "raw" | "qcow2";
  interface: "virtio-blk" | "virtio-scsi";
  readOnly: boolean;
}

export interface Profile {
  apiVersion: "qcvm/v1";
  name: string;
  /** Absolute path of the profile file (for messages and relative paths). */
  file: string;
  qemu: {
    binary: string;
    /** Target QEMU version the command line is rendered for, e.g. "9.1.0". */
    version: string;
    /** extraArgs may add control interfaces (-monitor, -qmp, -gdb...): set only when opted in. */
    allowControlArgs?: true;
    /** Who QEMU runs as under a root qcvm (launch/privsep.ts); unset: qcvm-qemu. */
    user?: string;
  };
  machine: {
    type: string;
    accel: Accel;
    kernelIrqchip?: "on" | "off" | "split";
    smm?: OnOff | "auto";
    pic?: OnOff;
  };
  cpu: {
    model: string;
    count: number;
    sockets: number;
    dies: number;
    cores: number;
    threads: number;
  };
  memory: {
    sizeBytes: number;
    backend: BackendType;
    /** Directory or file for the file backend. */
    path?: string;
    share: boolean;
    hugepages: HugepageSize;
    prealloc: boolean;
    preallocThreads?: number;
    reserve?: boolean;
    /** Placement for a guest without explicit NUMA nodes (becomes the implicit node 0). */
    hostNodes: number[];
    policy: MemPolicy;
    weights?: Record<number, number>;
  };
  numa: {
    /** Empty when the guest has no NUMA topology (rendered with -machine memory-backend=). */
    nodes: GuestNumaNode[];
    distances: NumaDistance[];
  };
  /** One variant per QEMU object, discriminated on `type`: a field exists only where QEMU has it. */
  confidential: Confidential;
  firmware: {
    bios?: string;
    pflash?: { code: string; vars?: string };
    igvm?: string;
  };
  boot: {
    kernel?: string;
    initrd?: string;
    cmdline?: string;
  };
  disks: Disk[];
  network: {
    type: "user" | "tap" | "none";
    ifname?: string;
    mac?: string;
    model: string;
  };
  /** Serial console, parsed once by normalize (core/serial.ts). */
  serial: Serial;
  /** QMP socket path; defaults to the VM's runtime directory at launch. */
  qmp?: string;
  placement: {
    strict: boolean;
    pinVcpus: boolean;
    /** Private memory of SEV-SNP/TDX guests: auto (the planner's best lever), prealloc (require
     *  guest-memfd-prealloc) or on-demand (never pre-allocate: first touch places it). */
    private: "auto" | "prealloc" | "on-demand";
  };
  extraArgs: string[];
}

/** A profile file after load + validate + normalize, with where every field came from. */
export interface LoadedProfile {
  file: string;
  raw: RawProfile;
  profile?: Profile;
  errors: Diagnostic[];
  warnings: Diagnostic[];
  /** Problems beyond the first ones reported (the report ends with one "and N more"). */
  moreErrors?: number;
  moreWarnings?: number;
}

// ---------------------------------------------------------------------------------------------
// Host (probe result)
// ---------------------------------------------------------------------------------------------

export interface HostNode {
  id: number;
  cpus: number[];
  /** True for memory-only nodes (CXL and the like): empty cpulist. */
  memoryOnly: boolean;
  memTotalBytes: number;
  memFreeBytes: number;
  /** distance[i] = distance to node i, as in sysfs order of nodes. */
  distances: Record<number, number>;
  hugepages: Record<"2M" | "1G", { total: number; free: number }>;
}

export interface HostInfo {
  /** Filesystem root the probe read (`/` or a fixture tree). */
  root: string;
  kernel: string;
  nodes: HostNode[];
  kvm: boolean;
  sev: boolean;
  sevEs: boolean;
  sevSnp: boolean;
  tdx: boolean;
  cgroup: {
    version: 1 | 2 | "none";
    /** Mount point of the v2 hierarchy when mounted (also on v1 hosts with a unified mount). */
    v2Mount?: string;
    /** v1 mount points per controller (cpuset, memory). */
    v1Mounts: Record<string, string>;
    controllers: string[];
    systemd: boolean;
  };
  numactl: {
    version?: string;
    preferredMany: boolean;
    weightedInterleave: boolean;
  };
  /** Kernel supports weighted interleave (sys/kernel/mm/mempolicy/weighted_interleave). */
  weightedInterleave: boolean;
  /** Kernel supports NUMA mempolicy on guest_memfd (Linux 6.19). */
  guestMemfdMempolicy: boolean;
  /** KVM as QEMU's -accel kvm needs it, for this process: on a real host probeKvm's verdict (KVM's
   *  device 10:232, opened read-write); in a tree, `kvm`. `problem` says why not, `hint` what to do,
   *  `errno` what the open said (ENOENT, EACCES, ...; real host only). */
  kvmAccess: { usable: boolean; problem?: string; hint?: string; errno?: string };
  /** Does the kernel let this process set NUMA memory policies (numactl's set_mempolicy, QEMU's
   *  mbind)? A container's seccomp profile answers EPERM. Tested by the probe only for a launch
   *  (probeHostAsync testMempolicy); otherwise assumed. */
  mempolicy: { allowed: boolean; reason?: string };
  /** Yama's kernel.yama.ptrace_scope (0-3); undefined without Yama. 3 forbids every ptrace
   *  attach, pidfd_getfd included. */
  ptraceScope?: number;
}

// ---------------------------------------------------------------------------------------------
// QEMU capabilities
// ---------------------------------------------------------------------------------------------

export interface QemuCapabilities {
  /** Where this came from: a live probe, a saved file, or the built-in table for a version. */
  source: "probe" | "file" | "builtin";
  binary?: string;
  version: string;
  /** QOM type names (qom-list-types). */
  types: string[];
  /** Property names per QOM type (qom-list-properties). */
  properties: Record<string, string[]>;
}

// ---------------------------------------------------------------------------------------------
// Plan
// ---------------------------------------------------------------------------------------------

/** How faithfully a half is placed. exact-at-launch: every page is where the plan says when the
 *  guest starts (guest-memfd-prealloc); a page the guest converts to shared and back is
 *  allocated again on first touch, by the faulting vCPU thread (its cpuset, when there is one). */
export type Fidelity = "exact" | "exact-at-launch" | "first-touch" | "coarse" | "none";
export type SharedMechanism = "backend-policy" | "process-mempolicy" | "none";
export type PrivateMechanism =
  "guest-memfd-mempolicy" | "guest-memfd-prealloc" | "vcpu-cpuset" | "process-mempolicy" | "none" | "not-applicable";

/** How numactl states a process-wide policy (its option name). */
export type NumactlOption = "membind" | "preferred" | "preferred-many" | "interleave" | "weighted-interleave";

/**
 * A process-wide memory policy, set before exec (numactl) so every QEMU thread inherits it. The plan
 * holds it as data; the renderer turns it into argv (src/render/process-policy.ts).
 */
export interface ProcessPolicy {
  policy: Exclude<MemPolicy, "default">;
  nodes: number[];
  numactl: NumactlOption;
  /** Weighted interleave: the weights the profile wants (host-wide in sysfs, not in argv). */
  weights?: Record<number, number>;
}

/**
 * The memory backend that carries host-nodes/policy to guest_memfd, when the plan places private
 * memory that way (mechanism guest-memfd-mempolicy; in no upstream QEMU release, detected only).
 */
export interface PrivateBackend {
  /** QOM type rendered for the node's memory. */
  qomType: string;
  /** memory-backend-memfd needs guest-memfd=on to carry the policy; the dedicated type does not. */
  guestMemfdProperty: boolean;
  /** SEV-SNP: the guest object needs convert-in-place=on so shared pages live in the same file. */
  convertInPlace: boolean;
}

export interface PlanNode {
  guestNode: number;
  hostNodes: number[];
  policy: MemPolicy;
  weights?: Record<number, number>;
  sizeBytes: number;
  /** Guest vCPU indexes in this guest node. */
  cpus: number[];
  /** Host CPUs this node's vCPUs belong on: the CPUs of its host nodes (a memory-only node
   *  lends the CPUs of its nearest node with CPUs); every host CPU for policy default. */
  hostCpus?: number[];
  /** hostNodes (on both halves): where that half is expected to land, for pictures and for
   *  comparing with where it is (`stats`); [] = wherever the faulting thread is. */
  shared: { mechanism: SharedMechanism; reason: string; hostNodes?: number[] };
  private: {
    mechanism: PrivateMechanism;
    fidelity: Fidelity;
    reason: string;
    hostNodes?: number[];
    /** Set with mechanism guest-memfd-mempolicy: the backend the renderer must use. */
    backend?: PrivateBackend;
  };
  /** Plan errors about this guest node (its fidelity is then none): also in Plan.errors. */
  errors?: Diagnostic[];
}

export interface CgroupPlan {
  /** Relative to the VM's cgroup: "" for the VM itself, "vcpu-node0" for a node's vCPUs. */
  name: string;
  cpus: number[];
  mems: number[];
  /** What goes in: "process" (QEMU's main and helper threads) or vCPU indexes. */
  tasks: "process" | { vcpus: number[] };
}

export interface ThreadPin {
  vcpu: number;
  hostCpus: number[];
}

export interface CapacityRow {
  hostNode: number;
  /** Regular (non-hugetlb) bytes the VM is sure to take on this node. */
  needBytes: number;
  /** Further regular bytes it may take: shared pages of a guest_memfd guest without prealloc. */
  upToBytes?: number;
  /** Of needBytes, private memory guest-memfd-prealloc commits here before the guest starts. */
  atLaunchBytes?: number;
  freeBytes: number;
  hugepages?: { size: "2M" | "1G"; need: number; free: number };
  status: "ok" | "tight" | "insufficient";
}

/** One placement the plan asked for that the launch cannot or could not apply (EACCES, EPERM, TCG, ...). */
export interface LostPlacement {
  /** Guest NUMA node it belongs to, when it belongs to one. */
  guestNode?: number;
  /** Which memory or thread it concerned: "private memory", "shared memory", "vCPU 1 pinning", ... */
  what: string;
  /** The plan mechanism that was not applied (vcpu-cpuset, backend-policy, process-mempolicy, ...). */
  mechanism: string;
  /** Why: the error and the file it happened on. */
  reason: string;
  /** What happens instead. */
  consequence: string;
  /** Only accounting is lost (no memory controller), not where memory or threads go. */
  accountingOnly?: boolean;
}

export interface PreallocPlan {
  /** Guest nodes whose private memory is pre-allocated. */
  guestNodes: number[];
  bytes: number;
  /** Expected rate (bytes/s), and where the figure comes from. */
  bytesPerSecond: number;
  rateSource: string;
  /** bytes / bytesPerSecond. */
  seconds: number;
}

export interface Plan {
  name: string;
  confidential: ConfidentialType;
  /** True when the guest has private memory in guest_memfd (SNP, TDX). */
  guestMemfd: boolean;
  nodes: PlanNode[];
  launch: {
    /** The process-wide memory policy launch sets before exec; absent for none. */
    processPolicy?: ProcessPolicy;
    cgroups: CgroupPlan[];
    pinning: ThreadPin[];
    /** The accelerator QEMU runs with instead of the profile's machine.accel: tcg when planning a
     *  launch on a host whose KVM this process cannot use (absent: machine.accel stands). */
    accel?: "tcg";
    /** Levers the host rules out before anything starts (the kernel refusing memory policies),
     *  dropped from this plan: what each costs. Absent when none. */
    lost?: LostPlacement[];
    /** guest-memfd-prealloc: what is allocated before `cont`, and the expected cost. */
    prealloc?: PreallocPlan;
  };
  capacity: CapacityRow[];
  warnings: Diagnostic[];
  errors: Diagnostic[];
}
