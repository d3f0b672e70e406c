// The launch, status and stop commands as a user runs them: dry-run output, refusals (plan
// errors, a second launch of a name, a disk image another VM writes), stale locks from a crashed
// run, and status/stop answers for VMs that do not exist.
import { afterAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { vmLockPath } from "../src/vm/lock.js";
import { createVmCgroup } from "../src/vm/cgroup.js";
import { pidStartTime } from "../src/vm/process.js";
import {
  ACCEL,
  CGROUPS,
  KVM_2NODE,
  KVM_USABLE,
  NO_CPUSET,
  NO_MEMORY_CGROUP,
  REPO,
  events,
  makeRunDir,
  qcvm,
  readStateFile,
  sweepRunDir,
  takeHostWarnings,
  vmName,
  warningLines,
} from "./helpers/launch.js";

const runDir = makeRunDir("cli-launch");

/**
 * The prefix QEMU runs under (launch/privsep.ts): as root, setpriv to qcvm-qemu (its uid from the
 * system, not from qcvm) in exactly the kvm group; as anyone else, the caller with no_new_privs.
 */
const DROP =
  process.getuid?.() === 0
    ? [
        "setpriv",
        `--reuid=${execFileSync("id", ["-u", "qcvm-qemu"], { encoding: "utf8" }).trim()}`,
        `--regid=${execFileSync("id", ["-g", "qcvm-qemu"], { encoding: "utf8" }).trim()}`,
        `--groups=${execFileSync("getent", ["group", "kvm"], { encoding: "utf8" }).split(":")[2]}`,
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
      ]
    : ["setpriv", "--no-new-privs", "--"];
afterAll(() => sweepRunDir(runDir));

/** `qcvm launch kvm-2node --dry-run --format json` as VM `name`, with `extra` options. */
function dryRunJson(name: string, extra: string[] = []) {
  return qcvm([
    "launch",
    KVM_2NODE,
    "--dry-run",
    "--format",
    "json",
    ...extra,
    "--set",
    `name=${name}`,
    "--run-dir",
    runDir,
  ]);
}

describe("launch --dry-run", () => {
  it("prints every action, the full argv and the vCPU placement, and does none of it", async () => {
    const name = vmName("dry");
    const dir = join(runDir, "never-created");
    const r = await qcvm([
      "launch",
      KVM_2NODE,
      "--dry-run",
      "--set",
      `name=${name}`,
      "--set",
      "placement.pinVcpus=true",
      "--run-dir",
      dir,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe(`# qcvm launch --dry-run ${KVM_2NODE}: nothing below is done`);
    expect(lines).toContain(`lock    VM name: ${dir}/locks/vm-${name}.lock`);
    expect(lines).toContain(`mkdir   ${dir}/${name} (mode 0700): qmp.sock, qemu.pid, qemu.log, state.json`);
    expect(takeHostWarnings(warningLines(r.stderr), { beforeCgroups: true })).toEqual([]);
    if (NO_CPUSET) {
      // No cpuset controller (a cgroup-v2 host that did not delegate it): the planner pinned the
      // vCPU threads by affinity instead, and the dry run says what the missing controller costs.
      expect(lines).toContain(
        "cgroup  no cpuset controller on this host: the plan uses no cpuset (vCPUs are pinned by thread affinity)",
      );
      expect(r.stdout).not.toMatch(/cgroup {2}mkdir \S+\/vcpu-node/);
      expect(lines.filter((l) => l.startsWith("vcpu "))).toEqual([]);
    } else {
      // One cgroup line per directory, each with its cpus and mems.
      expect(r.stdout).toMatch(
        new RegExp(`cgroup  mkdir \\S+/qcvm/${name}/vcpu-node0: cpus \\S+, mems 0 \\(vCPU 0\\)`),
      );
      expect(r.stdout).toMatch(
        new RegExp(`cgroup  mkdir \\S+/qcvm/${name}/vcpu-node1: cpus \\S+, mems 0 \\(vCPU 1\\)`),
      );
      expect(lines.filter((l) => l.startsWith("vcpu "))).toEqual([
        "vcpu    vCPU 0 thread -> cgroup vcpu-node0",
        "vcpu    vCPU 1 thread -> cgroup vcpu-node1",
      ]);
    }
    expect(
      lines.includes(
        "cgroup  no memory controller on this host: the VM's memory would not be accounted per VM (qcvm stats cannot attribute it)",
      ),
    ).toBe(NO_MEMORY_CGROUP);
    // The command is printed one option per line with ` \` continuations, as render prints it.
    const execLines = r.stdout
      .slice(r.stdout.indexOf("\nexec ") + 1)
      .split("\nqmp ")[0]!
      .split("\n");
    expect(execLines.slice(0, -2).every((l) => l.endsWith(" \\"))).toBe(true);
    expect(execLines.slice(1, -1).every((l) => /^ {10}-/.test(l))).toBe(true);
    const bornIn = CGROUPS.hierarchies.length > 0 ? "spawned from inside the VM cgroup" : "no VM cgroup to be born in";
    expect(execLines.at(-1)).toBe(`        (${bornIn}, in its own session)`);
    const exec = execLines.join("\n").replace(/ \\\n\s+/g, " ");
    // QEMU runs under the privilege drop (launch/privsep.ts), sandboxed, QMP on the socket qcvm
    // bound (fd 3), no -pidfile (qcvm writes qemu.pid itself, never through a link).
    expect(exec).toContain(`exec    ${DROP.join(" ")} qemu-system-x86_64 -name guest=${name},debug-threads=on`);
    expect(exec).toContain("-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    expect(exec).toContain(`-machine q35,accel=${ACCEL}`);
    expect(exec).toContain("host-nodes=0,policy=bind");
    expect(exec).toContain("-chardev socket,id=qmp0,fd=3,server=on,wait=off -mon chardev=qmp0,mode=control -S");
    expect(exec).not.toContain("-pidfile");
    expect(lines).toContain(`open    fd 3: QMP socket ${dir}/${name}/qmp.sock, bound by qcvm, mode 0600`);
    expect(lines.filter((l) => l.startsWith("user    "))).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith("pin "))).toHaveLength(2);
    expect(lines).toContain("qmp     cont (vCPUs start with placement in force)");
    // Nothing was done: no run dir, no cgroup, no QEMU.
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(`/sys/fs/cgroup/cpuset/qcvm/${name}`)).toBe(false);
    expect(existsSync(`/sys/fs/cgroup/qcvm/${name}`)).toBe(false);
  });

  it("--format json prints one document: the argv as an array, the actions as objects, the warnings inside", async () => {
    const name = vmName("dryjson");
    const r = await dryRunJson(name);
    expect(r.code, r.stderr).toBe(0);
    // stdout is one JSON value, whatever this host lacks; stderr has nothing to say.
    const out = JSON.parse(r.stdout);
    expect(r.stderr).toBe("");
    expect(out).toMatchObject({ dryRun: true, name, accel: ACCEL, notes: [] });
    const warnings = out.warnings as Array<{ message: string; diagnostic?: { code: string } }>;
    expect(
      takeHostWarnings(
        warnings.map((w) => w.message),
        { beforeCgroups: true },
      ),
    ).toEqual([]);
    // The TCG fallback is a diagnostic a program can recognize by its code.
    expect(warnings.filter((w) => w.diagnostic?.code === "host.kvm")).toHaveLength(KVM_USABLE ? 0 : 1);
    expect(out.argv.slice(0, DROP.length + 1)).toEqual([...DROP, "qemu-system-x86_64"]);
    expect(out.argv.at(-1)).toBe("-S");
    expect(out.actions.map((a: { action: string }) => a.action)).toEqual(
      expect.arrayContaining(["lock", "mkdir", "cgroup", "exec", "qmp", "state"]),
    );
  });

  // The handler once built launch's options field by field and left --qemu-user out: the option
  // (and the unit qcvm export --to systemd writes with it) changed nothing.
  it.skipIf(process.getuid?.() !== 0)(
    "--qemu-user names who QEMU runs as (root only: any other qcvm runs QEMU as its own user)",
    async () => {
      const r = await dryRunJson(vmName("dryuser"), ["--qemu-user", "nobody"]);
      expect(r.code, r.stderr).toBe(0);
      const id = (flag: string) => execFileSync("id", [flag, "nobody"], { encoding: "utf8" }).trim();
      expect(JSON.parse(r.stdout).argv.slice(0, 3)).toEqual(["setpriv", `--reuid=${id("-u")}`, `--regid=${id("-g")}`]);
    },
  );

  it("plans for another host with --host, without probing this one's QEMU", async () => {
    const r = await qcvm([
      "launch",
      join(REPO, "profiles", "snp-2node.yaml"),
      "--dry-run",
      "--host",
      join(REPO, "examples/hosts/epyc-2s4n"),
      "--run-dir",
      runDir,
    ]);
    expect(r.code, r.stderr).toBe(0);
    // QEMU 7.2 here has no sev-snp-guest: the argv comes from the profile's target version.
    expect(r.stdout).toContain("-object sev-snp-guest,id=snp0");
    expect(r.stdout).toMatch(/vcpu-node1: cpus [0-9,-]+, mems 1 \(vCPU 4-7\)/);
  });
});

describe("launch refusals", () => {
  it("refuses a plan with errors, listing them, before touching anything", async () => {
    const name = vmName("noplan");
    const r = await qcvm([
      "launch",
      KVM_2NODE,
      "--host",
      join(REPO, "examples/hosts/tight-memory"),
      "--set",
      `name=${name}`,
      "--set",
      "memory.size=64G",
      "--set",
      "numa.nodes[0].memory=32G",
      "--set",
      "numa.nodes[1].memory=32G",
      "--run-dir",
      runDir,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot launch .*the plan does not hold \(1 error\):\n.*host node 0 needs 64 GiB/);
    expect(r.stderr).not.toContain("internal error");
    expect(existsSync(join(runDir, name))).toBe(false);
    expect(existsSync(vmLockPath(runDir, name))).toBe(false);
  });

  it("refuses a second launch of a running VM's name, and the first one runs on", async () => {
    const name = vmName("twice");
    const first = await qcvm([
      "launch",
      KVM_2NODE,
      "--detach",
      "--quiet",
      "--set",
      `name=${name}`,
      "--run-dir",
      runDir,
    ]);
    expect(first.code, first.stderr).toBe(0);
    const state = readStateFile(runDir, name);
    const second = await qcvm(["launch", KVM_2NODE, "--detach", "--set", `name=${name}`, "--run-dir", runDir]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(
      new RegExp(
        `VM \`${name}\` is already running \\(pid ${state.pid}, started .*\\); stop it with \`qcvm stop ${name}\``,
      ),
    );
    expect(readStateFile(runDir, name).pid).toBe(state.pid);
    const st = await qcvm(["status", name, "--run-dir", runDir]);
    expect(st.code).toBe(0);
    expect(st.stdout).toMatch(new RegExp(`^VM ${name}: running`));
    expect((await qcvm(["stop", name, "--force", "--run-dir", runDir])).code).toBe(0);
  });

  it("clears a stale lock left by a crashed run, with a note, and launches", async () => {
    const name = vmName("stale");
    const dead = spawnSync("true").pid;
    mkdirSync(join(runDir, "locks"), { recursive: true });
    writeFileSync(
      vmLockPath(runDir, name),
      JSON.stringify({
        vm: name,
        pid: dead,
        startTime: "1",
        role: "qemu",
        since: "2026-01-01T00:00:00.000Z",
        nonce: "crashed",
      }),
    );
    const r = await qcvm(["launch", KVM_2NODE, "--detach", "--set", `name=${name}`, "--run-dir", runDir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`qcvm: note: cleared stale lock for VM \`${name}\`: QEMU pid ${dead}`);
    expect(JSON.parse(readFileSync(vmLockPath(runDir, name), "utf8")).pid).toBe(readStateFile(runDir, name).pid);
    expect((await qcvm(["stop", name, "--force", "--run-dir", runDir])).code).toBe(0);
  });

  it("refuses a second VM writing the same disk image, lets read-only users share it, and never changes the image", async () => {
    const image = join(runDir, "disk.raw");
    writeFileSync(image, Buffer.alloc(1 << 20, 0x5a));
    const digest = () => createHash("sha256").update(readFileSync(image)).digest("hex");
    const before = { digest: digest(), size: statSync(image).size };
    const disk = (ro: boolean) => `disks=[{path: ${image}, format: raw, readOnly: ${ro}}]`;
    const [a, b, c, d] = [vmName("diska"), vmName("diskb"), vmName("diskc"), vmName("diskd")];
    const launch = (name: string, ro: boolean) =>
      qcvm([
        "launch",
        KVM_2NODE,
        "--detach",
        "--quiet",
        "--set",
        `name=${name}`,
        "--set",
        disk(ro),
        "--run-dir",
        runDir,
      ]);

    const first = await launch(a, false);
    expect(first.code, first.stderr).toBe(0);
    const second = await launch(b, false);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`disk image ${image} is in use (writable) by VM \`${a}\``);
    expect(existsSync(join(runDir, b))).toBe(false);
    expect((await qcvm(["stop", a, "--force", "--run-dir", runDir])).code).toBe(0);

    const ro1 = await launch(c, true);
    const ro2 = await launch(d, true);
    expect([ro1.code, ro2.code], ro1.stderr + ro2.stderr).toEqual([0, 0]);
    const writer = await launch(b, false);
    expect(writer.code).toBe(1);
    expect(writer.stderr).toMatch(new RegExp(`disk image ${image} is in use \\(read-only\\) by VM \`(${c}|${d})\``));
    for (const n of [c, d]) expect((await qcvm(["stop", n, "--force", "--run-dir", runDir])).code).toBe(0);

    expect({ digest: digest(), size: statSync(image).size }).toEqual(before);
    expect(readdirSync(join(runDir, "locks")).filter((f) => f.startsWith("disk-"))).toEqual([]);
  });

  it("names a missing disk image, exit 1, and does not create it", async () => {
    const name = vmName("nodisk");
    const missing = join(runDir, "missing.qcow2");
    const r = await qcvm([
      "launch",
      KVM_2NODE,
      "--detach",
      "--set",
      `name=${name}`,
      "--set",
      `disks=[{path: ${missing}, format: qcow2}]`,
      "--run-dir",
      runDir,
    ]);
    expect(r.code).toBe(1);
    // The profile front end catches it first; launch's lock step would say the same.
    expect(r.stderr).toMatch(/disk image does not exist \(qcvm never creates disks\), got ".*missing\.qcow2"/);
    expect(existsSync(missing)).toBe(false);
    expect(existsSync(join(runDir, name))).toBe(false);
    expect(existsSync(vmLockPath(runDir, name))).toBe(false);
  });
});

describe("status and stop", () => {
  it("list running VMs as a table and as JSON", async () => {
    const name = vmName("list");
    const r = await qcvm([
      "launch",
      KVM_2NODE,
      "--detach",
      "--quiet",
      "--format",
      "json",
      "--set",
      `name=${name}`,
      "--run-dir",
      runDir,
    ]);
    expect(r.code, r.stderr).toBe(0);
    // --quiet: no steps; warnings stay (the TCG fallback, the lost memory accounting, exactly
    // when this host lacks KVM or a memory controller), and the last event says it runs.
    const ev = events(r.stdout);
    expect(ev.at(-1)).toMatchObject({ event: "running", name, accel: ACCEL });
    expect(ev.filter((e) => e.event !== "warning").map((e) => e.event)).toEqual(["running"]);
    expect(takeHostWarnings(ev.filter((e) => e.event === "warning").map((e) => String(e.message)))).toEqual([]);
    const table = await qcvm(["status", "--run-dir", runDir]);
    expect(table.code).toBe(0);
    const [header, ...rows] = table.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^NAME +STATE +PID +UPTIME +ACCEL +FIDELITY +PROFILE$/);
    expect(rows.find((l) => l.startsWith(`${name} `))).toMatch(/ running +\d+ +\d+s +(kvm|tcg) +0:exact,1:exact +/);
    const json = JSON.parse((await qcvm(["status", "--format", "json", "--run-dir", runDir])).stdout);
    expect(json.vms.find((v: { name: string }) => v.name === name)).toMatchObject({ state: "running", detached: true });
    expect((await qcvm(["stop", name, "--force", "--run-dir", runDir])).code).toBe(0);
  });

  it("call a VM whose launcher died before `cont` interrupted (QEMU paused), exit 3", async () => {
    // What a qcvm killed between spawning QEMU and starting its vCPUs leaves: state in phase
    // "starting", a live QEMU (a real process stands in for it), a dead launcher.
    const name = vmName("interrupted");
    const paused = spawn("sleep", ["600"], { stdio: "ignore" });
    await new Promise((r) => paused.once("spawn", r));
    // Where qcvm manages cgroups, QEMU is born in the VM's cgroup, and stop signals only members
    // of it (issue 8: a pid a state file names is not trusted): the stand-in joins one too.
    if (process.getuid?.() === 0 && CGROUPS.hierarchies.length > 0) {
      const { cgroup } = createVmCgroup(CGROUPS, name, []);
      expect(cgroup.addProcess(paused.pid!).filter((e) => e.errno !== "EMISSING")).toEqual([]);
    }
    try {
      const dead = spawnSync("true").pid;
      mkdirSync(join(runDir, name), { recursive: true });
      const state = {
        version: 1,
        name,
        pid: paused.pid!,
        pidStartTime: pidStartTime(paused.pid!)!,
        profile: KVM_2NODE,
        plan: {
          name,
          confidential: "none",
          guestMemfd: false,
          nodes: [],
          launch: { argvPrefix: [], cgroups: [], pinning: [] },
          capacity: [],
          warnings: [],
          errors: [],
        },
        argv: ["qemu-system-x86_64"],
        cgroup: { paths: [] },
        dir: join(runDir, name),
        qmp: join(runDir, name, "qmp.sock"),
        pidfile: join(runDir, name, "qemu.pid"),
        log: join(runDir, name, "qemu.log"),
        startedAt: new Date().toISOString(),
        accel: "kvm",
        hostRoot: "/",
        phase: "starting",
        detached: true,
        launcher: { pid: dead, startTime: "1" },
        lost: [],
      };
      writeFileSync(join(runDir, name, "state.json"), JSON.stringify(state));
      const st = await qcvm(["status", name, "--run-dir", runDir]);
      expect(st.code).toBe(3);
      expect(st.stdout).toMatch(
        new RegExp(
          `^VM ${name}: interrupted \\(the launching qcvm \\(pid ${dead}\\) died before the guest was started: QEMU is paused\\)`,
        ),
      );
      // stop has no QMP to talk to: SIGTERM, then clean-up.
      const sp = await qcvm(["stop", name, "--force", "--run-dir", runDir]);
      expect(sp.code, sp.stderr).toBe(0);
      expect(sp.stderr).toContain(`stopped \`${name}\` (terminated)`);
      expect(existsSync(join(runDir, name))).toBe(false);
    } finally {
      paused.kill("SIGKILL");
    }
  });

  it("answer exit 1 with a clear message for a VM that does not exist", async () => {
    const st = await qcvm(["status", "no-such-vm", "--run-dir", runDir]);
    expect(st.code).toBe(1);
    expect(st.stderr).toBe(
      `qcvm: no VM named \`no-such-vm\` in ${runDir} (qcvm status lists them; --run-dir picks another run dir)\n`,
    );
    const sp = await qcvm(["stop", "no-such-vm", "--run-dir", runDir]);
    expect(sp.code).toBe(1);
    expect(sp.stderr).toContain("no VM named `no-such-vm`");
  });
});
