// launch's failure paths through the fake Runner and fake cgroup writes (test/helpers/fake-runner.ts):
// no root, no KVM, no QEMU needed. The launcher runs in this process on a copied host tree, with
// real locks, a real run dir and real processes standing in for QEMU; each test checks what the
// user is told and that nothing is left behind.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useRunner } from "../src/io/exec.js";
import { useCgroupFiles } from "../src/vm/cgroup.js";
import { launchVm } from "../src/launch/launch.js";
import { builtinCapabilities } from "../src/probe/capabilities.js";
import { saveCapabilities } from "../src/probe/qemu.js";
import { UserError } from "../src/core/diagnostics.js";
import { exitCodeFor } from "../src/cli/exit-codes.js";
import { FsRoot } from "../src/io/fsroot.js";
import { probeMempolicy } from "../src/probe/host.js";
import { FAKE_QEMU_USER, FakeRunner, REPO, fakeCgroupFiles, makeHostTree } from "./helpers/fake-runner.js";
import type { QemuScript } from "./helpers/fake-runner.js";
import type { LaunchArgs } from "../src/launch/launch.js";

const KVM_2NODE = join(REPO, "profiles", "kvm-2node.yaml");
const work = mkdtempSync(join(tmpdir(), "qcvm-fake-launch-"));
const caps = join(work, "caps-7.2.json");
const runDir = join(work, "run");
let tree: ReturnType<typeof makeHostTree>;
let seq = 0;

beforeAll(() => {
  saveCapabilities(builtinCapabilities("7.2"), caps);
  tree = makeHostTree();
});
afterAll(() => {
  tree.remove();
  rmSync(work, { recursive: true, force: true });
});

let restore: Array<() => void> = [];
let fake: FakeRunner | undefined;
afterEach(async () => {
  for (const r of restore.reverse()) r();
  restore = [];
  await fake?.close();
  fake = undefined;
  vi.restoreAllMocks();
});

/** What the launcher printed: stdout (JSON events) and stderr. */
function capture(): { out: () => string; err: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(process.stdout, "write").mockImplementation((s) => (out.push(String(s)), true));
  vi.spyOn(process.stderr, "write").mockImplementation((s) => (err.push(String(s)), true));
  return { out: () => out.join(""), err: () => err.join("") };
}

function install(
  qemu: QemuScript,
  opts: { installed?: string[]; run?: ConstructorParameters<typeof FakeRunner>[0]["run"] } = {},
) {
  fake = new FakeRunner({ qemu, ...opts });
  restore.push(useRunner(fake));
  // The tree is not cgroupfs: these writes take its place (a test may install stricter ones).
  restore.push(useCgroupFiles(fakeCgroupFiles(() => undefined)));
  return fake;
}

function args(name: string, extra: Partial<LaunchArgs> = {}, set: string[] = []): LaunchArgs {
  return {
    profile: KVM_2NODE,
    host: tree.root,
    capabilities: caps,
    set: [`name=${name}`, "placement.pinVcpus=true", ...set],
    detach: true,
    dryRun: false,
    quiet: false,
    format: "json",
    runDir,
    ...extra,
  };
}

function warnings(stdout: string): string[] {
  return stdout
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { event: string; message?: string })
    .filter((e) => e.event === "warning")
    .map((e) => e.message!);
}

/** Nothing of VM `name` left: no run-dir directory, no lock, no cgroup in the host tree. */
function expectNothingLeft(name: string): void {
  expect(existsSync(join(runDir, name)), "VM directory").toBe(false);
  const locks = existsSync(join(runDir, "locks")) ? readdirSync(join(runDir, "locks")) : [];
  expect(locks.filter((f) => f.includes(name))).toEqual([]);
  expect(existsSync(join(tree.root, "sys/fs/cgroup/qcvm", name)), "VM cgroup").toBe(false);
}

async function rejection(p: Promise<unknown>): Promise<UserError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(UserError);
  return e as UserError;
}

const name = () => `fake-${process.pid}-${++seq}`;

/**
 * The prefix QEMU starts under (launch/privsep.ts): a root qcvm drops to the host tree's qcvm-qemu
 * (uid 990, groups exactly kvm 993, no capabilities); any other caller keeps its identity and
 * still gets no_new_privs.
 */
const DROP =
  process.getuid?.() === 0
    ? [
        "setpriv",
        `--reuid=${FAKE_QEMU_USER.uid}`,
        `--regid=${FAKE_QEMU_USER.gid}`,
        `--groups=${FAKE_QEMU_USER.kvm}`,
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
      ]
    : ["setpriv", "--no-new-privs", "--"];

describe("launch through the fake runner (no root, no QEMU)", () => {
  it("QEMU missing: one message naming qemu.binary and the fix; nothing started or created", async () => {
    const f = install({ kind: "qmp" }, { installed: [] });
    capture();
    const vm = name();
    const e = await rejection(launchVm(args(vm, { capabilities: undefined })));
    expect(e.message).toMatch(
      /^QEMU binary `qemu-system-x86_64` not found \(qemu\.binary in .*kvm-2node\.yaml\): install it/,
    );
    expect(exitCodeFor(e.kind)).toBe(1);
    expect(f.started).toEqual([]);
    expectNothingLeft(vm);
  });

  it("QEMU cannot be started at all (ENOENT from the spawn): said, and undone", async () => {
    const f = install({ kind: "no-pid", code: "ENOENT" });
    capture();
    const vm = name();
    const e = await rejection(launchVm(args(vm)));
    // The spawn is setpriv's (it drops to the QEMU user and execs QEMU): its ENOENT is said as such.
    expect(f.started[0]!.slice(0, DROP.length)).toEqual(DROP);
    expect(e.message).toMatch(/^cannot start setpriv: ENOENT/);
    expectNothingLeft(vm);
  });

  it("QEMU starts dropped and sandboxed, with QMP and the user's files as descriptors, in a clean environment", async () => {
    const f = install({ kind: "qmp" });
    capture();
    const vm = name();
    const disk = join(work, `${vm}.img`);
    writeFileSync(disk, Buffer.alloc(1 << 20));
    const serial = join(work, `${vm}-serial.log`);
    const set = [`disks[0]={path: ${disk}, format: raw}`, `serial=file:${serial}`];
    expect(await launchVm(args(vm, {}, set))).toBe("ok");
    const argv = f.started[0]!;
    const at = (opt: string, value: string) => argv.some((a, i) => a === opt && argv[i + 1] === value);
    // Privileges dropped by the parent before exec (setpriv), then QEMU's own seccomp sandbox.
    expect(argv.slice(0, DROP.length)).toEqual(DROP);
    expect(argv[DROP.length]).toBe("qemu-system-x86_64");
    expect(at("-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")).toBe(true);
    expect(argv).toContain("-no-user-config");
    // QMP on the socket qcvm bound, passed as fd 3: QEMU never names or creates a socket path.
    expect(at("-chardev", "socket,id=qmp0,fd=3,server=on,wait=off")).toBe(true);
    expect(argv).not.toContain("-qmp");
    // The disk and the serial log are opened by qcvm and handed over as fdsets 4 and 5; their
    // paths never reach QEMU, so it resolves no path (and follows no link) of the user's.
    expect(at("-add-fd", "fd=4,set=4") && at("-add-fd", "fd=5,set=5")).toBe(true);
    expect(argv.some((a) => a.includes("filename=/dev/fdset/4"))).toBe(true);
    expect(argv.some((a) => a.includes("path=/dev/fdset/5"))).toBe(true);
    expect(argv.filter((a) => a.includes(disk) || a.includes(serial))).toEqual([]);
    const o = f.startOptions[0]!;
    expect(o.fds).toHaveLength(3);
    const vmDir = join(runDir, vm);
    expect(o.env).toEqual({ LC_ALL: "C", PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: vmDir });
    expect(o.cwd).toBe(vmDir);
    // The running stand-in holds them: the disk read-write, the serial log write-only append.
    const pid = f.children[0]!.pid!;
    const flags = (fd: number) =>
      parseInt(/^flags:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))![1]!, 8);
    expect(readlinkSync(`/proc/${pid}/fd/4`)).toBe(disk);
    expect(flags(4) & 0o3).toBe(0o2); // O_RDWR
    expect(readlinkSync(`/proc/${pid}/fd/5`)).toBe(serial);
    expect(flags(5) & 0o2003).toBe(0o2001); // O_WRONLY | O_APPEND
    // The socket it served QMP on: 0600 in the VM's 0700 directory.
    expect(statSync(join(vmDir, "qmp.sock")).mode & 0o777).toBe(0o600);
    expect(statSync(vmDir).mode & 0o777).toBe(0o700);
  });

  it("memory.path: two VMs cannot share a backing file with share on; with share off they may", async () => {
    install({ kind: "qmp" });
    capture();
    const file = join(work, `mem-${process.pid}.bin`);
    writeFileSync(file, "");
    chmodSync(work, 0o755);
    chmodSync(file, 0o666);
    const mem = (share: boolean) => [
      "numa.nodes=[]",
      "numa.distances=[]",
      "memory.backend=file",
      `memory.path=${file}`,
      `memory.share=${share}`,
    ];
    const first = name();
    expect(await launchVm(args(first, {}, mem(true)))).toBe("ok");
    const second = name();
    const e = await rejection(launchVm(args(second, {}, mem(true))));
    expect(e.message).toMatch(
      new RegExp(`^memory.path ${file} is in use \\(writable\\) by VM \`${first}\`.*memory.share: false`),
    );
    expectNothingLeft(second);
    await fake!.close();
    // Privately mapped (share off), the file is only read: two VMs may map it.
    install({ kind: "qmp" });
    const a = name();
    const b = name();
    expect(await launchVm(args(a, {}, mem(false)))).toBe("ok");
    expect(await launchVm(args(b, {}, mem(false)))).toBe("ok");
  });

  it.skipIf(process.getuid?.() !== 0)(
    "memory.path the QEMU user may not open: refused before QEMU starts, naming the fix (needs root: only root drops QEMU to another user)",
    async () => {
      const f = install({ kind: "qmp" });
      capture();
      const file = join(work, `mem-private-${process.pid}.bin`);
      writeFileSync(file, "", { mode: 0o600 });
      chmodSync(work, 0o755);
      const vm = name();
      const set = [
        "numa.nodes=[]",
        "numa.distances=[]",
        "memory.backend=file",
        `memory.path=${file}`,
        "memory.share=true",
      ];
      const e = await rejection(launchVm(args(vm, {}, set)));
      expect(e.message).toBe(
        `cannot give QEMU memory.path ${file}: QEMU runs as qcvm-qemu, which may not read and write it (owner uid 0, mode 0600); make it accessible to that user (a group of it, or a directory it owns); qcvm never chowns a user's file`,
      );
      expect(f.started).toEqual([]);
      expectNothingLeft(vm);
    },
  );

  it("QEMU exits during start-up (detached): its own words from qemu.log, and everything undone", async () => {
    const said = "qemu-system-x86_64: -object memory-backend-memfd,id=mem0: cannot bind memory to host NUMA nodes\n";
    install({ kind: "exit", code: 1, stderr: said });
    capture();
    const vm = name();
    const e = await rejection(launchVm(args(vm)));
    expect(e.message).toBe(`QEMU exited during start-up (exit code 1); cleaned up. QEMU said:\n${said.trimEnd()}`);
    expectNothingLeft(vm);
  });

  it("QEMU could not use KVM: the launch is prepared again with that fact and runs under TCG", async () => {
    const f = install({ kind: "exit", code: 1, stderr: "failed to initialize kvm: Operation not permitted\n" });
    const io = capture();
    const vm = name();
    const first = f.start.bind(f);
    let attempts = 0;
    vi.spyOn(f, "start").mockImplementation((argv, o) => {
      if (attempts++ === 1) f.script.qemu = { kind: "qmp" };
      return first(argv, o);
    });
    expect(await launchVm(args(vm))).toBe("ok");
    expect(f.started).toHaveLength(2);
    expect(f.started[0]!.join(" ")).toContain("accel=kvm");
    expect(f.started[1]!.join(" ")).toContain("accel=tcg");
    const w = warnings(io.out());
    expect(w.filter((m) => m.includes("falling back to tcg"))).toEqual([
      expect.stringContaining(
        'warning: machine.accel: QEMU could not use KVM ("failed to initialize kvm: Operation not permitted"): falling back to tcg',
      ),
    ]);
    expect(io.out()).toContain('"message":"retrying the launch once with tcg"');
    expect(io.out()).toMatch(/"event":"running".*"accel":"tcg"/);
  });

  it("QMP never appears: the launch gives up, kills QEMU and undoes everything", async () => {
    const f = install({ kind: "no-qmp" });
    capture();
    const vm = name();
    const p = launchVm(args(vm), { qmpTimeoutMs: 300 });
    // A failure of the launch (exit 1), not "internal error ... a bug in qcvm" (exit 70).
    const e = await rejection(p);
    expect(e).toMatchObject({ kind: "failed" });
    expect(e.message).toMatch(/^QEMU's QMP failed: no QMP greeting on .*qmp\.sock within \d+ ms .*launch undone$/);
    expect(await f.children[0]!.exited).toMatchObject({ signal: "SIGKILL" });
    expectNothingLeft(vm);
  });

  it("EACCES creating the cgroups: the launch goes on and names each lost placement", async () => {
    install({ kind: "qmp" });
    const files = fakeCgroupFiles((p, op) => (op === "mkdir" && p.endsWith("/qcvm") ? "EACCES" : undefined));
    restore.push(useCgroupFiles(files));
    const io = capture();
    const vm = name();
    expect(await launchVm(args(vm))).toBe("ok");
    const parent = join(tree.root, "sys/fs/cgroup/qcvm");
    const w = warnings(io.out());
    expect(w).toContain(
      `QEMU process: VM cgroup not applied (EACCES creating ${parent}); QEMU runs in qcvm's own cgroup: its memory is not confined to host nodes 0 and not accounted per VM`,
    );
    for (const node of [0, 1])
      expect(w).toContain(
        `guest node ${node} vCPU placement: vcpu-cpuset not applied (EACCES creating ${parent}); its vCPU threads run wherever QEMU's process may`,
      );
  });

  it("EACCES on a cgroup write with placement.strict: refused before QEMU starts, and undone", async () => {
    const f = install({ kind: "qmp" });
    const files = fakeCgroupFiles((p, op) => (op === "write" && p.endsWith("cpuset.mems") ? "EACCES" : undefined));
    restore.push(useCgroupFiles(files));
    capture();
    const vm = name();
    const e = await rejection(launchVm(args(vm, {}, ["placement.strict=true"])));
    expect(e.message).toMatch(
      /^placement\.strict: \d+ placements? could not be applied; launch aborted and cleaned up:\n {2}/,
    );
    expect(e.message).toContain("EACCES writing");
    expect(f.started).toEqual([]);
    expectNothingLeft(vm);
  });

  it("pinning fails (taskset refuses): a lost placement per vCPU, and the guest runs", async () => {
    const f = install(
      { kind: "qmp" },
      {
        run: (argv) =>
          argv[0] === "taskset"
            ? {
                command: [...argv],
                exitCode: 1,
                stdout: "",
                stderr: "taskset: failed to set pid's affinity: Invalid argument\n",
              }
            : undefined,
      },
    );
    const io = capture();
    const vm = name();
    expect(await launchVm(args(vm))).toBe("ok");
    const tasksets = f.ran.filter((a) => a[0] === "taskset");
    expect(tasksets).toHaveLength(2);
    const w = warnings(io.out());
    for (const [i, argv] of tasksets.entries())
      expect(w).toContain(
        `vCPU ${i} pinning: thread affinity not applied (taskset -pc ${argv[2]} ${argv[3]} failed: taskset: failed to set pid's affinity: Invalid argument); the thread may run on any CPU its cgroup allows`,
      );
    // The vCPU threads did reach their cgroups (the fake cgroupfs took the writes).
    expect(io.out()).toMatch(/"name":"vcpus".*vCPU 0 \(thread \d+\) -> vcpu-node0/);
  });

  it("interrupted while QEMU starts: QEMU killed, everything undone, exit 130", async () => {
    const f = install({ kind: "no-qmp" });
    const io = capture();
    const vm = name();
    const before = new Set(process.listeners("SIGINT"));
    const p = launchVm(args(vm));
    await vi.waitFor(() => expect(io.out()).toContain('"name":"qemu"'), { timeout: 10_000 });
    const handler = process.listeners("SIGINT").find((l) => !before.has(l));
    expect(handler, "launch's signal handler").toBeDefined();
    (handler as (s: NodeJS.Signals) => void)("SIGINT");
    const e = await rejection(p);
    expect(exitCodeFor(e.kind)).toBe(130);
    expect(e.message).toBe("launch interrupted by SIGINT; QEMU stopped and everything cleaned up");
    expect(await f.children[0]!.exited).toMatchObject({ signal: "SIGKILL" });
    expect(process.listeners("SIGINT").filter((l) => !before.has(l))).toEqual([]);
    expectNothingLeft(vm);
  });
});

describe("memory policies the kernel refuses (a host fact; the planner drops the levers)", () => {
  const EPERM = "EPERM from set_mempolicy/mbind, as under a container's seccomp profile";

  it("the probe asks numactl only under a seccomp filter, and reads EPERM as refused", async () => {
    const f = install(
      { kind: "qmp" },
      {
        run: (argv) =>
          argv[0] === "numactl"
            ? { command: [...argv], exitCode: 1, stdout: "", stderr: "set_mempolicy: Operation not permitted\n" }
            : undefined,
      },
    );
    const status = (mode: number) =>
      writeFileSync(join(tree.root, "proc/self/status"), `Name:\tqcvm\nSeccomp:\t${mode}\n`);
    status(0);
    expect(await probeMempolicy(new FsRoot(tree.root), [0, 1])).toEqual({ allowed: true });
    expect(f.ran).toEqual([]);
    status(2);
    expect(await probeMempolicy(new FsRoot(tree.root), [0, 1])).toEqual({ allowed: false, reason: EPERM });
    expect(f.ran).toEqual([["numactl", "--membind=0-1", "--", "true"]]);
    rmSync(join(tree.root, "proc/self/status"));
  });

  it("refused: the backends lose host-nodes, each loss is named; strict refuses before anything starts", async () => {
    const denied = makeHostTree();
    mkdirSync(join(denied.root, "qcvm"), { recursive: true });
    writeFileSync(join(denied.root, "qcvm/mempolicy"), `denied: ${EPERM}\n`);
    try {
      const f = install({ kind: "qmp" });
      const io = capture();
      const vm = name();
      expect(await launchVm({ ...args(vm), host: denied.root })).toBe("ok");
      expect(f.started[0]!.join(" ")).not.toContain("host-nodes");
      for (const node of [0, 1])
        expect(warnings(io.out())).toContain(
          `guest node ${node} shared memory: backend-policy not applied (${EPERM}); only the VM's cpuset mems (0) bound it`,
        );
      const strict = name();
      const e = await rejection(launchVm({ ...args(strict, {}, ["placement.strict=true"]), host: denied.root }));
      expect(e.message).toMatch(
        /^placement\.strict: 2 placements could not be applied; nothing was started:\n {2}guest node 0 shared memory/,
      );
      expect(f.started).toHaveLength(1);
      expectNothingLeft(strict);
    } finally {
      denied.remove();
    }
  });
});
