// Writes the sysfs-shaped host trees under examples/hosts/ from the compact shapes below.
// The trees are committed: this script documents how they were made and regenerates them when a
// shape changes (`node scripts/make-host-fixture.mjs`); review the diff like any other fixture.
//
// Each tree holds only the files qcvm's host probe reads, in the exact format the kernel prints:
//   sys/devices/system/node/{online,possible,has_cpu,has_memory,nodeN/{cpulist,meminfo,distance,
//     hugepages/hugepages-{2048,1048576}kB/{nr,free}_hugepages}}
//   sys/devices/system/cpu/online, proc/sys/kernel/osrelease, proc/meminfo, proc/mounts,
//   sys/fs/cgroup/.../cgroup.controllers, sys/module/kvm_{amd,intel}/parameters/*,
//   sys/kernel/mm/mempolicy/weighted_interleave/nodeN
// Two stand-ins, because git cannot hold a character device or an empty directory:
//   dev/kvm is a plain file (the probe only tests that it exists), and run/systemd/system/.keep
//   makes the directory systemd creates on the hosts it manages.
// numactl is a program, not a sysfs file: `qcvm/numactl-version` in a tree says which numactl that
// host has ("none" = not installed); the probe reads it instead of running numactl.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const GiB_KB = 1024 * 1024;
const out = join(dirname(fileURLToPath(import.meta.url)), "..", "examples", "hosts");

function formatList(values) {
  const s = [...new Set(values)].sort((a, b) => a - b);
  const parts = [];
  for (let i = 0; i < s.length;) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j] + 1) j++;
    parts.push(i === j ? `${s[i]}` : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

// drivers/base/node.c node_read_meminfo(): "Node %d %-15s%9lu kB" style, numbers right-aligned.
function nodeMeminfo(id, n) {
  const used = n.totalKb - n.freeKb;
  const hp = n.hugepages ?? {};
  const kb = (k, v) => `Node ${id} ${(k + ":").padEnd(15)} ${String(v).padStart(8)} kB`;
  const cnt = (k, v) => `Node ${id} ${(k + ":").padEnd(15)} ${String(v).padStart(5)}`;
  const active = Math.floor(used * 0.3);
  const inactive = Math.floor(used * 0.2);
  return [
    kb("MemTotal", n.totalKb),
    kb("MemFree", n.freeKb),
    kb("MemUsed", used),
    kb("SwapCached", 0),
    kb("Active", active),
    kb("Inactive", inactive),
    kb("Active(anon)", Math.floor(active / 4)),
    kb("Inactive(anon)", Math.floor(inactive / 4)),
    kb("Active(file)", active - Math.floor(active / 4)),
    kb("Inactive(file)", inactive - Math.floor(inactive / 4)),
    kb("Unevictable", 0),
    kb("Mlocked", 0),
    kb("Dirty", 12),
    kb("Writeback", 0),
    kb("FilePages", Math.floor(used * 0.4)),
    kb("Mapped", Math.floor(used * 0.05)),
    kb("AnonPages", Math.floor(used * 0.1)),
    kb("Shmem", Math.floor(used * 0.01)),
    kb("KernelStack", 14432),
    kb("PageTables", 9120),
    kb("SecPageTables", 0),
    kb("NFS_Unstable", 0),
    kb("Bounce", 0),
    kb("WritebackTmp", 0),
    kb("KReclaimable", Math.floor(used * 0.05)),
    kb("Slab", Math.floor(used * 0.08)),
    kb("SReclaimable", Math.floor(used * 0.05)),
    kb("SUnreclaim", Math.floor(used * 0.03)),
    kb("AnonHugePages", 0),
    kb("ShmemHugePages", 0),
    kb("ShmemPmdMapped", 0),
    kb("FileHugePages", 0),
    kb("FilePmdMapped", 0),
    kb("Unaccepted", 0),
    cnt("HugePages_Total", hp["2M"]?.[0] ?? 0),
    cnt("HugePages_Free", hp["2M"]?.[1] ?? 0),
    cnt("HugePages_Surp", 0),
  ].join("\n");
}

function procMeminfo(nodes) {
  const total = nodes.reduce((s, n) => s + n.totalKb, 0);
  const free = nodes.reduce((s, n) => s + n.freeKb, 0);
  const hp2 = nodes.reduce((s, n) => s + (n.hugepages?.["2M"]?.[0] ?? 0), 0);
  const hp2f = nodes.reduce((s, n) => s + (n.hugepages?.["2M"]?.[1] ?? 0), 0);
  const hp1 = nodes.reduce((s, n) => s + (n.hugepages?.["1G"]?.[0] ?? 0), 0);
  const line = (k, v, unit = " kB") => `${(k + ":").padEnd(16)}${String(v).padStart(8)}${unit}`;
  return [
    line("MemTotal", total),
    line("MemFree", free),
    line("MemAvailable", Math.floor(free + (total - free) * 0.3)),
    line("Buffers", 2048),
    line("Cached", Math.floor((total - free) * 0.4)),
    line("SwapCached", 0),
    line("SwapTotal", 0),
    line("SwapFree", 0),
    line("AnonHugePages", 0),
    line("HugePages_Total", hp2, ""),
    line("HugePages_Free", hp2f, ""),
    line("HugePages_Rsvd", 0, ""),
    line("HugePages_Surp", 0, ""),
    line("Hugepagesize", 2048),
    line("Hugetlb", hp2 * 2048 + hp1 * GiB_KB),
  ].join("\n");
}

const V2_ONLY = (controllers) => ({
  mounts: ["cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0"],
  files: { "sys/fs/cgroup/cgroup.controllers": controllers },
});
// systemd's "hybrid" layout (and this project's CI machine): v1 controllers, plus an empty v2
// hierarchy at /sys/fs/cgroup/unified.
const HYBRID = {
  mounts: [
    "tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0",
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0",
    "cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,name=systemd 0 0",
    "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0",
    "cgroup /sys/fs/cgroup/cpuset cgroup rw,nosuid,nodev,noexec,relatime,cpuset 0 0",
    "cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0",
    "cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0",
    "cgroup /sys/fs/cgroup/hugetlb cgroup rw,nosuid,nodev,noexec,relatime,hugetlb 0 0",
  ],
  files: { "sys/fs/cgroup/unified/cgroup.controllers": "" },
};
const FULL_V2 = "cpuset cpu io memory hugetlb pids rdma misc";

const hosts = {
  // AMD EPYC 9354 x2 in NPS2: 4 nodes, 2 per socket; SNP host (kernel 6.11, Ubuntu 24.04 numactl).
  "epyc-2s4n": {
    kernel: "6.11.0-29-generic",
    ptraceScope: 1,
    nodes: [
      {
        cpus: [...range(0, 15), ...range(64, 79)],
        totalKb: 197_951_200,
        freeKb: 180_112_340,
        hugepages: { "2M": [1024, 1024] },
      },
      {
        cpus: [...range(16, 31), ...range(80, 95)],
        totalKb: 198_180_864,
        freeKb: 165_803_112,
        hugepages: { "1G": [16, 12] },
      },
      {
        cpus: [...range(32, 47), ...range(96, 111)],
        totalKb: 198_180_864,
        freeKb: 190_441_028,
        hugepages: { "2M": [2048, 512] },
      },
      { cpus: [...range(48, 63), ...range(112, 127)], totalKb: 198_164_480, freeKb: 193_870_216 },
    ],
    distance: [
      [10, 12, 32, 32],
      [12, 10, 32, 32],
      [32, 32, 10, 12],
      [32, 32, 12, 10],
    ],
    vendor: "amd",
    params: { sev: "Y", sev_es: "Y", sev_snp: "Y" },
    cgroup: V2_ONLY(FULL_V2),
    systemd: true,
    numactl: "2.0.18",
    weightedInterleave: true,
  },
  // Intel Xeon 8480+ x2 (Sapphire Rapids), TDX host on Linux 6.16; 1G pages reserved for guests.
  "spr-tdx-2n": {
    kernel: "6.16.0-1004-intel",
    ptraceScope: 1,
    nodes: [
      {
        cpus: [...range(0, 55), ...range(112, 167)],
        totalKb: 527_946_752,
        freeKb: 498_112_004,
        hugepages: { "1G": [64, 64] },
      },
      {
        cpus: [...range(56, 111), ...range(168, 223)],
        totalKb: 528_337_920,
        freeKb: 510_220_880,
        hugepages: { "1G": [64, 60] },
      },
    ],
    distance: [
      [10, 21],
      [21, 10],
    ],
    vendor: "intel",
    params: { tdx: "Y" },
    cgroup: V2_ONLY(FULL_V2),
    systemd: true,
    numactl: "2.0.19",
    weightedInterleave: true,
  },
  // Two sockets plus a CXL Type-3 expander exposed as memory-only node 2 (empty cpulist), nearer
  // socket 0; Linux 6.9 brought weighted interleave (weights favour DRAM 3:1 over CXL).
  "cxl-memonly": {
    kernel: "6.9.12-200.fc40.x86_64",
    nodes: [
      { cpus: range(0, 31), totalKb: 131_661_824, freeKb: 120_554_100 },
      { cpus: range(32, 63), totalKb: 132_103_168, freeKb: 126_030_512 },
      { cpus: [], totalKb: 268_435_456, freeKb: 268_001_232 },
    ],
    distance: [
      [10, 21, 14],
      [21, 10, 24],
      [14, 24, 10],
    ],
    vendor: "amd",
    params: { sev: "N", sev_es: "N", sev_snp: "N" },
    cgroup: V2_ONLY(FULL_V2),
    systemd: true,
    numactl: "2.0.19",
    weightedInterleave: true,
    weights: { 0: 3, 1: 3, 2: 1 },
  },
  // A workstation: one node, plain KVM (kernel 6.1, no TDX parameter), systemd hybrid cgroups,
  // Debian 12's numactl.
  "single-node": {
    kernel: "6.1.0-18-amd64",
    nodes: [{ cpus: range(0, 7), totalKb: 32_696_512, freeKb: 27_118_020, hugepages: { "2M": [512, 512] } }],
    distance: [[10]],
    vendor: "intel",
    params: {},
    cgroup: HYBRID,
    systemd: true,
    numactl: "2.0.16",
    weightedInterleave: false,
  },
  // A container-like host: cgroup v2 only, only cpuset and memory delegated, no systemd.
  "cgroup2-only": {
    kernel: "6.8.0-49-generic",
    nodes: [
      { cpus: range(0, 7), totalKb: 65_842_176, freeKb: 60_004_112 },
      { cpus: range(8, 15), totalKb: 66_060_288, freeKb: 61_990_020 },
    ],
    distance: [
      [10, 20],
      [20, 10],
    ],
    vendor: "intel",
    params: { tdx: "N" },
    cgroup: V2_ONLY("cpuset memory"),
    systemd: false,
    numactl: "2.0.18",
    weightedInterleave: false,
  },
  // Linux 6.19: mbind() on a guest_memfd mapping sets the file's NUMA policy.
  "gmem-mempolicy": {
    kernel: "6.19.0-rc5",
    nodes: [
      {
        cpus: [...range(0, 23), ...range(48, 71)],
        totalKb: 263_854_080,
        freeKb: 250_118_776,
        hugepages: { "2M": [4096, 4096] },
      },
      {
        cpus: [...range(24, 47), ...range(72, 95)],
        totalKb: 264_245_248,
        freeKb: 255_600_316,
        hugepages: { "2M": [4096, 4096] },
      },
    ],
    distance: [
      [10, 32],
      [32, 10],
    ],
    vendor: "amd",
    params: { sev: "Y", sev_es: "Y", sev_snp: "Y" },
    cgroup: V2_ONLY(FULL_V2),
    systemd: true,
    numactl: "2.0.19",
    weightedInterleave: true,
  },
  // Two small nodes almost full: for capacity errors and "tight" warnings.
  "tight-memory": {
    kernel: "6.12.9-amd64",
    nodes: [
      { cpus: range(0, 3), totalKb: 16_303_104, freeKb: 1_572_864, hugepages: { "2M": [512, 16] } },
      { cpus: range(4, 7), totalKb: 16_515_072, freeKb: 3_145_728, hugepages: { "1G": [2, 0] } },
    ],
    distance: [
      [10, 21],
      [21, 10],
    ],
    vendor: "amd",
    params: { sev: "N", sev_es: "N", sev_snp: "N" },
    cgroup: V2_ONLY(FULL_V2),
    systemd: true,
    numactl: "2.0.16",
    weightedInterleave: false,
  },
};

/** Write host shape `h` as a sysfs-shaped tree at `dir` (replacing what is there). */
export function writeHostTree(dir, h) {
  rmSync(dir, { recursive: true, force: true });
  const put = (rel, text) => {
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, text === "" ? "\n" : `${text}\n`);
  };
  const ids = h.nodes.map((_, i) => i);
  const node = "sys/devices/system/node";
  put(`${node}/online`, formatList(ids));
  put(`${node}/possible`, formatList(ids));
  put(`${node}/has_memory`, formatList(ids));
  put(`${node}/has_cpu`, formatList(ids.filter((i) => h.nodes[i].cpus.length > 0)));
  const allCpus = [];
  h.nodes.forEach((n, i) => {
    allCpus.push(...n.cpus);
    put(`${node}/node${i}/cpulist`, formatList(n.cpus));
    put(`${node}/node${i}/meminfo`, nodeMeminfo(i, n));
    put(`${node}/node${i}/distance`, h.distance[i].join(" "));
    for (const [size, dirName] of [
      ["2M", "hugepages-2048kB"],
      ["1G", "hugepages-1048576kB"],
    ]) {
      const [total, free] = n.hugepages?.[size] ?? [0, 0];
      put(`${node}/node${i}/hugepages/${dirName}/nr_hugepages`, String(total));
      put(`${node}/node${i}/hugepages/${dirName}/free_hugepages`, String(free));
    }
  });
  put("sys/devices/system/cpu/online", formatList(allCpus));
  put("proc/sys/kernel/osrelease", h.kernel);
  // Yama (Ubuntu and Debian kernels default to 1): 3 would forbid pidfd_getfd (guest-memfd-prealloc).
  if (h.ptraceScope !== undefined) put("proc/sys/kernel/yama/ptrace_scope", String(h.ptraceScope));
  put("proc/meminfo", procMeminfo(h.nodes));
  put(
    "proc/mounts",
    [
      "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0",
      "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0",
      "/dev/nvme0n1p2 / ext4 rw,relatime 0 0",
      ...h.cgroup.mounts,
    ].join("\n"),
  );
  for (const [rel, text] of Object.entries(h.cgroup.files)) put(rel, text);
  put("dev/kvm", "placeholder: a character device on a real host; the probe only checks it exists");
  put("sys/module/kvm/parameters/tdp_mmu", "Y");
  const mod = h.vendor === "amd" ? "kvm_amd" : "kvm_intel";
  put(`sys/module/${mod}/parameters/nested`, h.vendor === "amd" ? "1" : "Y");
  for (const [k, v] of Object.entries(h.params)) put(`sys/module/${mod}/parameters/${k}`, v);
  if (h.systemd) put("run/systemd/system/.keep", "");
  if (h.weightedInterleave) {
    ids.forEach((i) => put(`sys/kernel/mm/mempolicy/weighted_interleave/node${i}`, String(h.weights?.[i] ?? 1)));
  }
  put("qcvm/numactl-version", h.numactl);
}

/**
 * A large synthetic host for the planner's scale benchmark: `nodes` nodes of `cpusPerNode` CPUs and
 * `gibPerNode` GiB each, an SNP-capable AMD host on Linux 6.18, distances 10 local, 12 within a
 * socket of 8 nodes, 32 across sockets.
 */
export function syntheticHost(nodes, cpusPerNode, gibPerNode) {
  return {
    kernel: "6.18.0-bench",
    nodes: range(0, nodes - 1).map((i) => ({
      cpus: range(i * cpusPerNode, (i + 1) * cpusPerNode - 1),
      totalKb: gibPerNode * GiB_KB,
      freeKb: gibPerNode * GiB_KB - 4 * GiB_KB,
    })),
    distance: range(0, nodes - 1).map((i) =>
      range(0, nodes - 1).map((j) => (i === j ? 10 : Math.floor(i / 8) === Math.floor(j / 8) ? 12 : 32)),
    ),
    vendor: "amd",
    params: { sev: "Y", sev_es: "Y", sev_snp: "Y" },
    cgroup: V2_ONLY(FULL_V2),
    systemd: false,
    numactl: "2.0.19",
    weightedInterleave: true,
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const [name, h] of Object.entries(hosts)) writeHostTree(join(out, name), h);
  console.log(`wrote ${Object.keys(hosts).length} host trees under ${out}`);
}
