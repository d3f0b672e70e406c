import { afterAll, describe, expect, it } from "vitest";
import {
  existsSync,
  mkdtempSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import {
  kernelVersion,
  numactlFromVersion,
  probeHost,
  probeHostAsync,
  probeKvm,
  readInterleaveWeights,
} from "../src/probe/host.js";

const fixture = (name: string) => join(import.meta.dirname, "fixtures", "hosts", name);
const GiB = 1024 ** 3;

describe("probeHost on fixture trees", () => {
  it("epyc-2s4n: 4 nodes over 2 sockets, SNP, 2M and 1G pools", () => {
    const h = probeHost(fixture("epyc-2s4n"));
    expect(h.kernel).toBe("6.11.0");
    expect(h.nodes.map((n) => n.id)).toEqual([0, 1, 2, 3]);
    expect(h.nodes[0]!.cpus).toHaveLength(32);
    expect(h.nodes[0]!.cpus.slice(0, 2)).toEqual([0, 1]);
    expect(h.nodes[0]!.cpus).toContain(64);
    expect(h.nodes[3]!.cpus.at(-1)).toBe(127);
    expect(h.nodes.every((n) => !n.memoryOnly)).toBe(true);
    expect(h.nodes[1]!.memTotalBytes).toBe(198_180_864 * 1024);
    expect(h.nodes[1]!.memFreeBytes).toBe(165_803_112 * 1024);
    expect(h.nodes[0]!.distances).toEqual({ 0: 10, 1: 12, 2: 32, 3: 32 });
    expect(h.nodes[3]!.distances).toEqual({ 0: 32, 1: 32, 2: 12, 3: 10 });
    expect(h.nodes[0]!.hugepages).toEqual({ "2M": { total: 1024, free: 1024 }, "1G": { total: 0, free: 0 } });
    expect(h.nodes[1]!.hugepages["1G"]).toEqual({ total: 16, free: 12 });
    expect(h.nodes[2]!.hugepages["2M"]).toEqual({ total: 2048, free: 512 });
    expect([h.kvm, h.sev, h.sevEs, h.sevSnp, h.tdx]).toEqual([true, true, true, true, false]);
    expect(h.cgroup).toEqual({
      version: 2,
      v2Mount: "/sys/fs/cgroup",
      v1Mounts: {},
      controllers: ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"],
      systemd: true,
    });
    expect(h.numactl).toEqual({ version: "2.0.18", preferredMany: true, weightedInterleave: false });
    expect(h.weightedInterleave).toBe(true);
    expect(h.guestMemfdMempolicy).toBe(false);
  });

  it("spr-tdx-2n: TDX on 6.16, no SEV", () => {
    const h = probeHost(fixture("spr-tdx-2n"));
    expect(h.kernel).toBe("6.16.0");
    expect(h.nodes).toHaveLength(2);
    expect(h.nodes[1]!.cpus).toHaveLength(112);
    expect(h.nodes[0]!.distances).toEqual({ 0: 10, 1: 21 });
    expect(h.nodes[1]!.hugepages["1G"]).toEqual({ total: 64, free: 60 });
    expect([h.kvm, h.sev, h.sevEs, h.sevSnp, h.tdx]).toEqual([true, false, false, false, true]);
    expect(h.numactl).toEqual({ version: "2.0.19", preferredMany: true, weightedInterleave: true });
  });

  it("cxl-memonly: node 2 is memory-only, weighted interleave with weights", () => {
    const root = fixture("cxl-memonly");
    const h = probeHost(root);
    expect(h.nodes.map((n) => [n.id, n.memoryOnly, n.cpus.length])).toEqual([
      [0, false, 32],
      [1, false, 32],
      [2, true, 0],
    ]);
    expect(h.nodes[2]!.memTotalBytes).toBe(256 * GiB);
    expect(h.nodes[2]!.distances).toEqual({ 0: 14, 1: 24, 2: 10 });
    expect(h.weightedInterleave).toBe(true);
    expect(readInterleaveWeights(root)).toEqual({ 0: 3, 1: 3, 2: 1 });
    expect(h.sevSnp).toBe(false);
  });

  it("single-node: plain KVM, systemd hybrid cgroups count as v1 with the unified mount noted", () => {
    const h = probeHost(fixture("single-node"));
    expect(h.kernel).toBe("6.1.0");
    expect(h.nodes).toHaveLength(1);
    expect(h.nodes[0]!.cpus).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(h.nodes[0]!.distances).toEqual({ 0: 10 });
    expect([h.kvm, h.sev, h.sevSnp, h.tdx]).toEqual([true, false, false, false]);
    expect(h.cgroup.version).toBe(1);
    expect(h.cgroup.v2Mount).toBe("/sys/fs/cgroup/unified");
    expect(h.cgroup.v1Mounts.cpuset).toBe("/sys/fs/cgroup/cpuset");
    expect(h.cgroup.v1Mounts.memory).toBe("/sys/fs/cgroup/memory");
    expect(h.cgroup.v1Mounts.cpu).toBe("/sys/fs/cgroup/cpu,cpuacct");
    expect(h.cgroup.controllers).not.toContain("name=systemd");
    expect(h.numactl).toEqual({ version: "2.0.16", preferredMany: true, weightedInterleave: false });
    expect(h.weightedInterleave).toBe(false);
  });

  it("cgroup2-only: v2 with only cpuset and memory, no systemd", () => {
    const h = probeHost(fixture("cgroup2-only"));
    expect(h.cgroup).toEqual({
      version: 2,
      v2Mount: "/sys/fs/cgroup",
      v1Mounts: {},
      controllers: ["cpuset", "memory"],
      systemd: false,
    });
    expect(h.tdx).toBe(false);
  });

  it("gmem-mempolicy: Linux 6.19 has guest_memfd mempolicy", () => {
    const h = probeHost(fixture("gmem-mempolicy"));
    expect(h.kernel).toBe("6.19.0");
    expect(h.guestMemfdMempolicy).toBe(true);
    expect(h.sevSnp).toBe(true);
  });

  it("tight-memory: little free memory and drained pools", () => {
    const h = probeHost(fixture("tight-memory"));
    expect(h.nodes.map((n) => n.memFreeBytes)).toEqual([1.5 * GiB, 3 * GiB]);
    expect(h.nodes[0]!.hugepages["2M"]).toEqual({ total: 512, free: 16 });
    expect(h.nodes[1]!.hugepages["1G"]).toEqual({ total: 2, free: 0 });
  });

  it("every fixture host has a kernel, nodes with memory, and self distance 10", () => {
    for (const name of readdirSync(join(import.meta.dirname, "fixtures", "hosts"))) {
      const h = probeHost(fixture(name));
      expect(h.kernel, name).not.toBe("0.0.0");
      expect(h.nodes.length, name).toBeGreaterThan(0);
      for (const n of h.nodes) {
        expect(n.memTotalBytes, name).toBeGreaterThan(n.memFreeBytes);
        expect(n.distances[n.id], name).toBe(10);
      }
    }
  });
});

describe("probeHost degrades on missing files", () => {
  it("a tree without NUMA sysfs is one node holding proc/meminfo's memory", () => {
    const root = mkdtempSync(join(tmpdir(), "qcvm-host-"));
    mkdirSync(join(root, "proc/sys/kernel"), { recursive: true });
    mkdirSync(join(root, "sys/devices/system/cpu"), { recursive: true });
    writeFileSync(join(root, "proc/sys/kernel/osrelease"), "5.15.0-100-generic\n");
    writeFileSync(join(root, "proc/meminfo"), "MemTotal:        8000000 kB\nMemFree:         6000000 kB\n");
    writeFileSync(join(root, "sys/devices/system/cpu/online"), "0-3\n");
    const h = probeHost(root);
    expect(h.nodes).toEqual([
      {
        id: 0,
        cpus: [0, 1, 2, 3],
        memoryOnly: false,
        memTotalBytes: 8_000_000 * 1024,
        memFreeBytes: 6_000_000 * 1024,
        distances: { 0: 10 },
        hugepages: { "2M": { total: 0, free: 0 }, "1G": { total: 0, free: 0 } },
      },
    ]);
    expect(h.kernel).toBe("5.15.0");
    expect([h.kvm, h.sev, h.tdx, h.weightedInterleave, h.guestMemfdMempolicy]).toEqual([
      false,
      false,
      false,
      false,
      false,
    ]);
    expect(h.cgroup).toEqual({ version: "none", v1Mounts: {}, controllers: [], systemd: false });
    expect(h.numactl).toEqual({ preferredMany: false, weightedInterleave: false });
  });

  it("an empty directory still probes, as a host with nothing", () => {
    const h = probeHost(mkdtempSync(join(tmpdir(), "qcvm-empty-")));
    expect(h.kernel).toBe("0.0.0");
    expect(h.nodes).toHaveLength(1);
    expect(h.nodes[0]!.memTotalBytes).toBe(0);
  });

  it("module parameters as 1/0 (older int params) read like Y/N", () => {
    const root = mkdtempSync(join(tmpdir(), "qcvm-sev-"));
    mkdirSync(join(root, "sys/module/kvm_amd/parameters"), { recursive: true });
    writeFileSync(join(root, "sys/module/kvm_amd/parameters/sev"), "1\n");
    writeFileSync(join(root, "sys/module/kvm_amd/parameters/sev_es"), "0\n");
    const h = probeHost(root);
    expect([h.sev, h.sevEs, h.sevSnp]).toEqual([true, false, false]);
  });
});

describe("version helpers", () => {
  it.each([
    ["6.11.0-29-generic", "6.11.0"],
    ["6.19.0-rc5", "6.19.0"],
    ["6.9", "6.9.0"],
    ["garbage", "0.0.0"],
  ])("kernelVersion(%s) = %s", (release, want) => expect(kernelVersion(release)).toBe(want));

  it.each([
    ["2.0.14", false, false],
    ["2.0.15", true, false],
    ["2.0.18", true, false],
    ["2.0.19", true, true],
  ])("numactl %s: preferred-many %s, weighted-interleave %s", (v, pm, wi) =>
    expect(numactlFromVersion(v)).toEqual({ version: v, preferredMany: pm, weightedInterleave: wi }),
  );
});

/** `stat -c '%F %t:%T' /dev/kvm`, or "" when there is none. */
function kvmNode(): string {
  try {
    return execFileSync("stat", ["-c", "%F %t:%T", "/dev/kvm"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  } catch {
    return "";
  }
}

// What a container or a half-configured host may leave at /dev/kvm, with real files and devices.
// (scripts/test-hosts.sh runs the whole suite with each of these at the real /dev/kvm.)
describe("probeKvm", () => {
  const dir = mkdtempSync(join(tmpdir(), "qcvm-kvm-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("a missing node: ENOENT, not present", () => {
    expect(probeKvm(join(dir, "kvm"))).toEqual({
      ok: false,
      present: false,
      errno: "ENOENT",
      problem: `${join(dir, "kvm")} does not exist`,
    });
  });

  it("an empty regular file (bound over /dev/kvm in a container) opens read-write but is no KVM", () => {
    const file = join(dir, "file");
    writeFileSync(file, "");
    expect(probeKvm(file)).toEqual({
      ok: false,
      present: false,
      errno: "ENODEV",
      problem: `${file} is a regular file, not KVM's character device 10:232`,
    });
  });

  it("another character device (/dev/null, 1:3) is no KVM either, even through a symlink", () => {
    const link = join(dir, "null-link");
    symlinkSync("/dev/null", link);
    for (const p of ["/dev/null", link]) {
      expect(probeKvm(p)).toEqual({
        ok: false,
        present: false,
        errno: "ENODEV",
        problem: `${p} is character device 1:3, not KVM's character device 10:232`,
      });
    }
  });

  it("a directory cannot be opened read-write", () => {
    expect(probeKvm(dir)).toMatchObject({ ok: false, present: false, errno: "EISDIR" });
  });

  it("this machine's /dev/kvm: usable exactly when it is 10:232 and opens read-write", () => {
    const k = probeKvm();
    const node = kvmNode();
    if (node === "character special file a:e8") {
      // Root opens any device node; an unprivileged user needs the kvm group (EACCES otherwise).
      expect(k.present).toBe(true);
      expect(k.ok).toBe(k.errno === undefined);
      if (!k.ok) expect(["EACCES", "EPERM"]).toContain(k.errno);
    } else {
      expect(k).toMatchObject({ ok: false, present: false });
      expect(k.errno).toEqual(
        node === ""
          ? "ENOENT"
          : node.startsWith("character special file")
            ? expect.stringMatching(/^(ENXIO|ENODEV)$/)
            : "ENODEV",
      );
    }
  });
});

// Expectations below come from reading the real files directly, not from the probe's code.
describe("probeHost on this machine", () => {
  it("nodes, CPUs, kernel, KVM and cgroups match the real /sys and /proc", async () => {
    const h = await probeHostAsync("/");
    expect(h.root).toBe("/");
    expect(h.nodes.length).toBeGreaterThanOrEqual(1);
    expect(h.kernel).toBe(/^\d+\.\d+\.\d+/.exec(release())![0]);

    const expand = (s: string) =>
      s
        .trim()
        .split(",")
        .flatMap((p) => {
          const [a, b] = p.split("-").map(Number);
          return Array.from({ length: (b ?? a!) - a! + 1 }, (_, i) => a! + i);
        });
    const online = expand(readFileSync("/sys/devices/system/cpu/online", "utf8"));
    expect(h.nodes.flatMap((n) => n.cpus).sort((a, b) => a - b)).toEqual(online);

    if (existsSync("/sys/devices/system/node/node0/meminfo")) {
      const m = /MemTotal:\s+(\d+) kB/.exec(readFileSync("/sys/devices/system/node/node0/meminfo", "utf8"))!;
      expect(h.nodes.find((n) => n.id === 0)!.memTotalBytes).toBe(Number(m[1]) * 1024);
    }
    // coreutils stat, not node's: KVM is misc device 10:232, printed in hex.
    expect(h.kvm).toBe(kvmNode() === "character special file a:e8" && existsSync("/sys/module/kvm"));

    const mounts = readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .map((l) => l.split(" "));
    const v1 = mounts.filter((f) => f[2] === "cgroup" && /(^|,)(cpuset|memory)(,|$)/.test(f[3] ?? ""));
    const v2 = mounts.filter((f) => f[2] === "cgroup2");
    expect(h.cgroup.version).toBe(v1.length > 0 ? 1 : v2.length > 0 ? 2 : "none");
    if (v2.length > 0) expect(v2.map((f) => f[1])).toContain(h.cgroup.v2Mount);
    for (const f of v1) {
      for (const c of ["cpuset", "memory"]) if (f[3]!.split(",").includes(c)) expect(h.cgroup.v1Mounts[c]).toBe(f[1]);
    }
    expect(h.cgroup.systemd).toBe(existsSync("/run/systemd/system"));
    expect(h.weightedInterleave).toBe(existsSync("/sys/kernel/mm/mempolicy/weighted_interleave"));
  });

  it("numactl is asked directly on the real host", async () => {
    const { run, which } = await import("../src/io/exec.js");
    const h = await probeHostAsync("/");
    if (!(await which("numactl"))) {
      expect(h.numactl.version).toBeUndefined();
      return;
    }
    // numactl prints its usage (every option it accepts) for an unknown option.
    const r = await run(["numactl", "--qcvm-no-such-option"]);
    const usage = r.stdout + r.stderr;
    expect(h.numactl.preferredMany).toBe(usage.includes("--preferred-many"));
    expect(h.numactl.weightedInterleave).toBe(usage.includes("--weighted-interleave"));
  });

  it("a fixture tree never consults this machine's numactl", async () => {
    const root = mkdtempSync(join(tmpdir(), "qcvm-nonumactl-"));
    const h = await probeHostAsync(root);
    expect(h.numactl).toEqual({ preferredMany: false, weightedInterleave: false });
  });
});
