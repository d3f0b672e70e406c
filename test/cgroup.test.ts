// The cgroup layer against this machine's real cgroup filesystem: whichever hierarchy holds
// cpuset and memory here (v1 on the development machine, v2 on a unified-only host) is the one
// exercised. Every test cleans up in finally, with names unique to the run.
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  CgroupError,
  createVmCgroup,
  findVmCgroup,
  openCgroupLayout,
  readProcessCgroups,
  readTaskPlacement,
  scopeUnitName,
  systemdScopePrefix,
} from "../src/vm/cgroup.js";
import type { CgroupLayout, VmCgroup } from "../src/vm/cgroup.js";
import { probeHost } from "../src/probe/host.js";
import { spawn } from "./helpers/exec.js";
import { parseList } from "../src/core/lists.js";
import type { CgroupPlan } from "../src/core/types.js";

const fixtures = fileURLToPath(new URL("./fixtures/hosts/", import.meta.url));
const host = probeHost("/");
const layout = openCgroupLayout(host);
const uniq = () => `t${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const onlineCpus = parseList(readFileSync("/sys/devices/system/cpu/online", "utf8"));
const lastCpu = onlineCpus[onlineCpus.length - 1]!;
const firstNode = host.nodes[0]!.id;

/** Controllers per v1 mount as /proc/mounts lists them, independent of the probe. */
function v1MountsFromProcMounts(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
    const f = line.split(" ");
    if (f[2] !== "cgroup") continue;
    for (const opt of f[3]!.split(",")) if (opt === "cpuset" || opt === "memory") out[opt] = f[1]!;
  }
  return out;
}

/** The cgroup2 mount (the canonical /sys/fs/cgroup first) and the controllers its root offers. */
function v2FromProcMounts(): { mount: string; controllers: string[] } | undefined {
  const mounts = readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" "))
    .filter((f) => f[2] === "cgroup2")
    .map((f) => f[1]!);
  const mount = mounts.find((m) => m === "/sys/fs/cgroup") ?? mounts[0];
  if (!mount) return undefined;
  return { mount, controllers: readFileSync(join(mount, "cgroup.controllers"), "utf8").split(/\s+/).filter(Boolean) };
}

const SUBJECT = { cpuset: "VM cpuset placement", memory: "VM memory accounting" } as const;

/**
 * Where a controller is on no hierarchy (scripts/test-hosts.sh cgroup2: a v2 root without cpuset
 * and memory), creating the VM cgroup reports exactly one EMISSING error per missing controller,
 * naming the placement it costs, and nothing else fails.
 */
function expectOnlyMissing(errors: CgroupError[]): void {
  expect(errors.map((e) => [e.op, e.file, e.errno, e.subject])).toEqual(
    layout.missing.map((c) => ["mkdir", `${c} controller`, "EMISSING", SUBJECT[c]]),
  );
}

/** A process with several threads (node's worker pool) that idles until killed. */
async function startThreaded() {
  const child = spawn([process.execPath, "-e", "setInterval(() => {}, 1000); require('fs').stat('/', () => {})"], {
    stdio: "ignore",
  });
  const pid = child.pid!;
  // node starts its V8 platform and libuv threads before running the script.
  for (let i = 0; i < 200 && readdirSync(`/proc/${pid}/task`).length < 3; i++)
    await new Promise((r) => setTimeout(r, 10));
  return { child, pid, tids: readdirSync(`/proc/${pid}/task`).map(Number) };
}

function plans(): CgroupPlan[] {
  return [
    { name: "", cpus: onlineCpus, mems: [firstNode], tasks: "process" },
    { name: "vcpu-node0", cpus: [onlineCpus[0]!], mems: [firstNode], tasks: { vcpus: [0] } },
    { name: "vcpu-node1", cpus: [lastCpu], mems: [firstNode], tasks: { vcpus: [1] } },
  ];
}

describe("openCgroupLayout", () => {
  it("puts cpuset and memory on the hierarchy that really holds them on this machine", () => {
    const v1 = v1MountsFromProcMounts();
    const v2 = v2FromProcMounts();
    for (const c of ["cpuset", "memory"] as const) {
      const h = layout.hierarchies.find((x) => x.controllers.includes(c));
      if (v1[c]) expect(h).toMatchObject({ version: 1, mount: v1[c] });
      // A v2 root offers only what its cgroup.controllers lists: on a v2-only host that has not
      // delegated cpuset/memory (or whose kernel keeps them bound to v1 elsewhere) they are missing.
      else if (v2 && v2.controllers.includes(c)) expect(h).toMatchObject({ version: 2, mount: v2.mount });
      else {
        expect(h).toBeUndefined();
        expect(layout.missing).toContain(c);
      }
    }
    expect(layout.base).toBe("qcvm");
  });

  it("reads a cgroup2-only host as one unified hierarchy with both controllers", () => {
    const l = openCgroupLayout(probeHost(join(fixtures, "cgroup2-only")));
    expect(l.hierarchies).toEqual([{ version: 2, mount: "/sys/fs/cgroup", controllers: ["cpuset", "memory"] }]);
    expect(l.missing).toEqual([]);
  });

  it("reports controllers that no hierarchy offers as missing", () => {
    const l = openCgroupLayout({
      ...host,
      root: "/nonexistent-root",
      cgroup: { version: "none", v1Mounts: {}, controllers: [], systemd: false },
    });
    expect(l.hierarchies).toEqual([]);
    expect(l.missing).toEqual(["cpuset", "memory"]);
    const { errors } = createVmCgroup(l, "x", plans());
    expect(errors.map((e) => e.errno)).toEqual(["EMISSING", "EMISSING"]);
    expect(errors[0]!.message).toContain("cpuset");
  });
});

describe("systemd scope", () => {
  it("builds a delegated transient scope prefix with the VM's cpus and mems", () => {
    expect(systemdScopePrefix("snp 2node", { cpus: [0, 1, 2, 3], mems: [0, 1] })).toEqual([
      "systemd-run",
      "--scope",
      "--quiet",
      "--collect",
      "--slice=machine.slice",
      "-p",
      "Delegate=yes",
      "-p",
      "AllowedCPUs=0-3",
      "-p",
      "AllowedMemoryNodes=0-1",
      "--unit=qcvm-snp\\x202node.scope",
      "--",
    ]);
    expect(scopeUnitName("kvm-2node")).toBe("qcvm-kvm-2node.scope");
  });
});

/**
 * The same steps on a host missing cpuset or memory (or both): each missing controller costs its
 * placement as an error value, the hierarchies that exist still get the VM cgroup, and nothing
 * throws or is left behind.
 */
async function expectDegraded(
  name: string,
  cgroup: VmCgroup,
  errors: CgroupError[],
  proc: Awaited<ReturnType<typeof startThreaded>>,
) {
  expectOnlyMissing(errors);
  expect(cgroup.dirs.map((d) => d.path)).toEqual(layout.hierarchies.map((h) => join(h.mount, "qcvm", name)));
  for (const d of cgroup.dirs) expect(existsSync(d.path)).toBe(true);
  const before = readTaskPlacement("/", proc.pid)!;
  expect(cgroup.addProcess(proc.pid).map((e) => [e.file, e.errno])).toEqual(
    layout.missing.map((c) => [`${c} controller`, "EMISSING"]),
  );
  expect(readProcessCgroups(layout, proc.pid).map(([, d]) => d)).toEqual(cgroup.dirs.map((d) => d.path));
  const worker = proc.tids.find((t) => t !== proc.pid)!;
  const moved = cgroup.addThread(worker, "vcpu-node1");
  if (layout.missing.includes("cpuset") && !layout.hierarchies.some((h) => h.version === 2)) {
    expect(moved).toMatchObject({ errno: "EMISSING", file: "cpuset controller", subject: "vCPU cgroup vcpu-node1" });
    // No cpuset anywhere: the process keeps the CPUs and nodes it had.
    expect(readTaskPlacement("/", proc.pid, worker)).toEqual(before);
  } else {
    expect(moved).toBeUndefined();
    expect(cgroup.tasks("vcpu-node1")).toEqual([worker]);
  }
  expect(cgroup.memoryNumaStatPath() === undefined).toBe(layout.missing.includes("memory"));
  expect(cgroup.remove()).toEqual([]);
  for (const d of cgroup.dirs) expect(existsSync(d.path)).toBe(false);
  expect(findVmCgroup(layout, name)).toBeUndefined();
}

describe("VM cgroup on the real hierarchy", () => {
  it("creates, places a process and a thread, finds and removes the VM cgroup", async () => {
    const name = uniq();
    const { cgroup, errors } = createVmCgroup(layout, name, plans());
    const proc = await startThreaded();
    try {
      if (layout.missing.length > 0) {
        await expectDegraded(name, cgroup, errors, proc);
        return;
      }
      expect(errors).toEqual([]);
      const cpusetDir = layout.hierarchies.find((h) => h.controllers.includes("cpuset"))!;
      expect(cgroup.paths.cpuset).toBe(join(cpusetDir.mount, "qcvm", name));
      expect(Object.keys(cgroup.paths.children).sort()).toEqual(["vcpu-node0", "vcpu-node1"]);
      expect(readFileSync(join(cgroup.paths.children["vcpu-node1"]!, "cpuset.cpus"), "utf8").trim()).toBe(
        String(lastCpu),
      );
      if (cpusetDir.version === 2) {
        expect(readFileSync(join(cgroup.paths.children["vcpu-node1"]!, "cgroup.type"), "utf8").trim()).toBe("threaded");
        expect(readFileSync(join(cgroup.paths.cpuset!, "cgroup.type"), "utf8").trim()).toBe("domain threaded");
      } else {
        expect(readFileSync(join(cgroup.paths.cpuset!, "cpuset.memory_migrate"), "utf8").trim()).toBe("1");
      }

      expect(cgroup.addProcess(proc.pid)).toEqual([]);
      for (const [h, dir] of readProcessCgroups(layout, proc.pid)) {
        const mine = cgroup.dirs.find((d) => d.hierarchy === h)!;
        expect(dir).toBe(mine.path);
      }
      expect(readFileSync(join(cgroup.paths.memory!, "cgroup.procs"), "utf8").split("\n")).toContain(String(proc.pid));

      const worker = proc.tids.find((t) => t !== proc.pid)!;
      expect(cgroup.addThread(worker, "vcpu-node1")).toBeUndefined();
      expect(cgroup.tasks("vcpu-node1")).toEqual([worker]);
      expect(cgroup.tasks()).toContain(proc.pid);
      expect(cgroup.tasks()).not.toContain(worker);
      expect(readTaskPlacement("/", proc.pid, worker)).toEqual({ cpus: [lastCpu], mems: [firstNode] });
      expect(readTaskPlacement("/", proc.pid)).toEqual({ cpus: onlineCpus, mems: [firstNode] });

      const found = findVmCgroup(layout, name);
      expect(found?.paths).toEqual(cgroup.paths);
      expect(found?.memoryNumaStatPath()).toBe(join(cgroup.paths.memory!, "memory.numa_stat"));
      expect(existsSync(found!.memoryNumaStatPath()!)).toBe(true);

      const missing = cgroup.addThread(worker, "vcpu-node7");
      expect(missing).toBeInstanceOf(CgroupError);
      expect(missing!.message).toContain("vcpu-node7");

      // Removal with the process still inside: it goes back to the root, directories go away.
      expect(cgroup.remove()).toEqual([]);
      expect(existsSync(cgroup.paths.cpuset!)).toBe(false);
      expect(existsSync(cgroup.paths.memory!)).toBe(false);
      for (const [h, dir] of readProcessCgroups(layout, proc.pid)) expect(dir).toBe(h.mount);
      expect(readTaskPlacement("/", proc.pid, worker)!.cpus).toEqual(onlineCpus);
      expect(cgroup.remove()).toEqual([]);
      expect(findVmCgroup(layout, name)).toBeUndefined();
    } finally {
      proc.child.kill("SIGKILL");
      await proc.child.catch(() => undefined);
      cgroup.remove();
    }
  });

  it("returns an error value naming the file and errno for a cpuset the kernel refuses", () => {
    const name = uniq();
    const bad: CgroupPlan[] = [{ name: "vcpu-node0", cpus: [4095], mems: [firstNode], tasks: { vcpus: [0] } }];
    const { cgroup, errors } = createVmCgroup(layout, name, bad);
    try {
      if (layout.missing.includes("cpuset")) {
        // No cpuset to refuse the value: the one error is that cpuset is missing.
        expectOnlyMissing(errors);
        return;
      }
      const e = errors.find((x) => x.file.endsWith("cpuset.cpus"));
      expect(e).toBeInstanceOf(CgroupError);
      expect(e!.op).toBe("write");
      expect(["EINVAL", "ERANGE"]).toContain(e!.errno);
      expect(e!.value).toBe("4095");
      expect(e!.message).toMatch(
        /^VM cgroup: cannot write "4095" to \/.*\/cpuset\.cpus: E(INVAL|RANGE) \(not a subset/,
      );
    } finally {
      expect(cgroup.remove()).toEqual([]);
    }
  });

  it("fails cleanly when the hierarchy isn't there (ENOENT), without throwing", () => {
    // This machine's hierarchies under a root that does not exist; a host with none gets the
    // cgroup2-only layout, so there is always a mkdir to fail.
    const hierarchies: CgroupLayout["hierarchies"] =
      layout.hierarchies.length > 0
        ? layout.hierarchies
        : [{ version: 2, mount: "/sys/fs/cgroup", controllers: ["cpuset", "memory"] }];
    const ghost: CgroupLayout = { ...layout, hierarchies, missing: [], root: "/nonexistent-qcvm-root" };
    const { cgroup, errors } = createVmCgroup(ghost, uniq(), plans());
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.every((e) => e.errno === "ENOENT" || e.errno === "EMISSING")).toBe(true);
    expect(errors[0]!.file.startsWith("/nonexistent-qcvm-root/")).toBe(true);
    expect(cgroup.dirs).toEqual([]);
    expect(cgroup.addProcess(1).every((e) => e instanceof CgroupError)).toBe(true);
  });

  it("runs a spawn inside the VM cgroup and moves qcvm back afterwards", async () => {
    const name = uniq();
    const before = readProcessCgroups(layout, "self");
    const { cgroup, errors } = createVmCgroup(layout, name, [
      { name: "", cpus: [onlineCpus[0]!], mems: [firstNode], tasks: "process" },
    ]);
    try {
      expectOnlyMissing(errors);
      const { value: child, errors: moveErrors } = cgroup.spawnInside(() =>
        spawn(["sleep", "30"], { stdio: "ignore" }),
      );
      try {
        // A missing controller is already reported above: spawning inside what exists goes on.
        expect(moveErrors).toEqual([]);
        expect(readProcessCgroups(layout, child.pid!).map(([, d]) => d)).toEqual(cgroup.dirs.map((d) => d.path));
        const cpus = layout.missing.includes("cpuset") ? readTaskPlacement("/", process.pid)!.cpus : [onlineCpus[0]];
        expect(readTaskPlacement("/", child.pid!)!.cpus).toEqual(cpus);
        expect(readProcessCgroups(layout, "self")).toEqual(before);
      } finally {
        child.kill("SIGKILL");
        await child.catch(() => undefined);
      }
    } finally {
      expect(cgroup.remove()).toEqual([]);
    }
  });
});

// The unified hierarchy's rules (threaded domain, threaded children, cgroup.threads) hold with
// or without controllers. On this hybrid machine the unified mount has none (they are bound to
// v1), so it still checks the v2 structure against the real kernel; on a v2-only host the test
// above already ran it with cpuset and memory.
describe("cgroup v2 structure on the real unified mount", () => {
  it("makes the VM cgroup a threaded domain and moves a thread into a threaded child", async () => {
    const v2 = host.cgroup.v2Mount;
    if (!v2) {
      expect(readFileSync("/proc/mounts", "utf8")).not.toMatch(/ cgroup2 /);
      return;
    }
    const available = readFileSync(join(v2, "cgroup.controllers"), "utf8").split(/\s+/);
    const controllers = (["cpuset", "memory"] as const).filter(
      (c) => available.includes(c) && !host.cgroup.v1Mounts[c],
    );
    const l: CgroupLayout = {
      root: "/",
      systemd: false,
      hierarchies: [{ version: 2, mount: v2, controllers: [...controllers] }],
      missing: [],
      base: `qcvm-${uniq()}`,
    };
    const name = "vm";
    const { cgroup, errors } = createVmCgroup(l, name, plans());
    const proc = await startThreaded();
    try {
      expect(errors).toEqual([]);
      const vmDir = join(v2, l.base, name);
      expect(cgroup.paths.children["vcpu-node1"]).toBe(join(vmDir, "vcpu-node1"));
      expect(readFileSync(join(vmDir, "vcpu-node1", "cgroup.type"), "utf8").trim()).toBe("threaded");
      expect(readFileSync(join(vmDir, "cgroup.type"), "utf8").trim()).toBe("domain threaded");
      expect(cgroup.addProcess(proc.pid)).toEqual([]);
      const worker = proc.tids.find((t) => t !== proc.pid)!;
      expect(cgroup.addThread(worker, "vcpu-node1")).toBeUndefined();
      expect(readFileSync(`/proc/${proc.pid}/task/${worker}/cgroup`, "utf8")).toContain(
        `0::/${l.base}/${name}/vcpu-node1`,
      );
      expect(readFileSync(`/proc/${proc.pid}/cgroup`, "utf8")).toContain(`0::/${l.base}/${name}\n`);
      expect(cgroup.tasks("vcpu-node1")).toEqual([worker]);
      expect(cgroup.remove()).toEqual([]);
      expect(existsSync(vmDir)).toBe(false);
      expect(readFileSync(`/proc/${proc.pid}/task/${worker}/cgroup`, "utf8")).toContain("0::/\n");
    } finally {
      proc.child.kill("SIGKILL");
      await proc.child.catch(() => undefined);
      cgroup.remove();
      try {
        (await import("node:fs")).rmdirSync(join(v2, l.base));
      } catch {
        // already gone
      }
    }
  });
});
