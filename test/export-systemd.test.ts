// `qcvm export --to systemd`, for real: systemd's own checker (`systemd-analyze verify`, Debian's
// systemd package) accepts the unit of every shipped profile and example, and the unit's
// ExecStart and ExecStop run by hand the way systemd runs them: ExecStart as the main process
// inside the unit's own cgroup in a cgroup v2 subtree made for the test (a delegated subtree, as
// Delegate=yes hands it over), with NOTIFY_SOCKET pointing at a datagram socket the test reads
// (test/helpers/notify-recv.c, the receiving end PID 1 has); ExecStop in the unit's .control
// subgroup, where systemd puts control processes of a delegated unit.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  rmdirSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO } from "./helpers/host.js";
import { KVM_USABLE, qcvm, readStateFile, until, vmName } from "./helpers/launch.js";
import { splitExecLine } from "../src/export/systemd.js";
import { probeHost } from "../src/probe/host.js";
import { openCgroupLayout, selfDelegatedBase } from "../src/vm/cgroup.js";
import { cpSync } from "node:fs";

const FILES = [
  ...readdirSync(join(REPO, "profiles")).map((f) => join(REPO, "profiles", f)),
  ...readdirSync(join(REPO, "examples"))
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => join(REPO, "examples", f)),
].filter((f) => f.endsWith(".yaml"));
const QCVM_BIN = join(REPO, "bin", "qcvm");
const HAVE_ANALYZE = spawnSync("systemd-analyze", ["--version"]).status === 0;
const tmp = mkdtempSync(join(tmpdir(), "qcvm-export-systemd-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function verify(unitFile: string): { code: number; out: string } {
  const r = spawnSync("systemd-analyze", ["verify", unitFile], { encoding: "utf8" });
  return { code: r.status ?? 128, out: `${r.stdout}${r.stderr}` };
}

function execLine(unit: string, key: "ExecStart" | "ExecStop"): string[] {
  const line = new RegExp(`^${key}=(.*)$`, "m").exec(unit);
  expect(line, key).not.toBeNull();
  return splitExecLine(line![1]!);
}

describe.skipIf(!HAVE_ANALYZE)(
  "systemd-analyze verify (systemd's own unit checker) accepts every exported unit",
  () => {
    it.each(FILES)("%s", async (file) => {
      const r = await qcvm(["export", file, "--to", "systemd", "--qcvm", QCVM_BIN, "--run-dir", "/run/qcvm"]);
      expect(r.code, r.stderr).toBe(0);
      const unitName = /^qcvm: unit (\S+):/m.exec(r.stderr)![1]!;
      const unitFile = join(tmp, unitName);
      writeFileSync(unitFile, r.stdout);
      const v = verify(unitFile);
      expect(v.out).toBe("");
      expect(v.code).toBe(0);
      for (const directive of [
        "Type=notify",
        "NotifyAccess=all",
        "Delegate=yes",
        "KillMode=mixed",
        "Restart=on-failure",
      ])
        expect(r.stdout).toContain(`\n${directive}\n`);
      expect(execLine(r.stdout, "ExecStart")).toEqual([
        QCVM_BIN,
        "launch",
        file,
        "--run-dir",
        "/run/qcvm",
        "--cgroup",
        "delegated",
      ]);
    });

    it("and refuses a broken one (the check is not vacuous)", () => {
      const unitFile = join(tmp, "qcvm-broken.service");
      writeFileSync(unitFile, "[Service]\nType=notify\nExecStart=relative/qcvm launch x\nKillMode=sometimes\n");
      const v = verify(unitFile);
      expect(v.code).not.toBe(0);
      expect(v.out).toMatch(/KillMode|relative|absolute/i);
    });

    it("quotes what systemd would expand or split: %, $, spaces, quotes and --set values", async () => {
      const odd = join(tmp, 'a dir with 100% $HOME "quotes"');
      mkdirSync(odd, { recursive: true });
      const profile = join(odd, "kvm-1node.yaml");
      writeFileSync(profile, readFileSync(join(REPO, "profiles/kvm-1node.yaml")));
      const r = await qcvm([
        "export",
        profile,
        "--to",
        "systemd",
        "--qcvm",
        QCVM_BIN,
        "--run-dir",
        "/run/qcvm",
        "--qemu-user",
        "qcvm-qemu",
        "--set",
        "serial=file:/var/log/q v;$x%d.log",
      ]);
      expect(r.code, r.stderr).toBe(0);
      const unitFile = join(tmp, "qcvm-odd.service");
      writeFileSync(unitFile, r.stdout);
      expect(verify(unitFile).code).toBe(0);
      expect(execLine(r.stdout, "ExecStart")).toEqual([
        QCVM_BIN,
        "launch",
        profile,
        "--run-dir",
        "/run/qcvm",
        "--cgroup",
        "delegated",
        "--qemu-user",
        "qcvm-qemu",
        "--set",
        "serial=file:/var/log/q v;$x%d.log",
      ]);
    });
  },
);

// ---------------------------------------------------------------------------------------------
// ExecStart and ExecStop by hand, in a delegated cgroup v2 subtree
// ---------------------------------------------------------------------------------------------

const host = probeHost("/");
const V2 = host.cgroup.v2Mount;
const NO_V2 = V2 === undefined ? "no cgroup2 mount on this host" : process.getuid?.() !== 0 ? "needs root" : undefined;
const V2_CONTROLLERS = V2
  ? readFileSync(join(V2, "cgroup.controllers"), "utf8").trim().split(/\s+/).filter(Boolean)
  : [];

/** Run argv with the process first moved into `cgroup` (as systemd forks, attaches, then execs). */
function spawnIn(cgroup: string, argv: string[], env: NodeJS.ProcessEnv) {
  // A fixed script: the cgroup and argv are positional parameters, never script text.
  return spawn("sh", ["-c", 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', "sh", cgroup, ...argv], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function procsOf(dir: string): number[] {
  return readFileSync(join(dir, "cgroup.procs"), "utf8").split(/\s+/).filter(Boolean).map(Number);
}

describe.skipIf(NO_V2 !== undefined)(`the unit's commands in a delegated cgroup v2 subtree ${NO_V2 ?? ""}`, () => {
  it(`ExecStart launches with the VM cgroup under the unit's cgroup and sends READY=1; ExecStop powers it down and cleans up (v2 controllers here: ${V2_CONTROLLERS.join(" ") || "none"})`, async () => {
    const name = vmName("unit");
    const runDir = join(tmp, "run");
    const accel = KVM_USABLE ? [] : ["--set", "machine.accel=tcg"];
    const exp = await qcvm([
      "export",
      join(REPO, "profiles/kvm-1node.yaml"),
      "--to",
      "systemd",
      "--qcvm",
      QCVM_BIN,
      "--run-dir",
      runDir,
      "--stop-timeout",
      "1",
      "--set",
      `name=${name}`,
      ...accel,
    ]);
    expect(exp.code, exp.stderr).toBe(0);
    const unitName = /^qcvm: unit (\S+):/m.exec(exp.stderr)![1]!;

    // What systemd makes for a unit in a slice: <v2>/<slice>/<unit>, the unit's cgroup handed over.
    const slice = join(V2!, `qcvm-test-${process.pid}.slice`);
    const unit = join(slice, unitName);
    mkdirSync(unit, { recursive: true });
    // As systemd does for a delegated unit: the controllers the root offers (of cpuset and memory)
    // enabled down to the unit, so its cgroup.controllers lists them.
    const wanted = V2_CONTROLLERS.filter((c) => c === "cpuset" || c === "memory");
    for (const dir of [V2!, slice]) {
      const enabled = readFileSync(join(dir, "cgroup.subtree_control"), "utf8");
      for (const c of wanted) if (!enabled.includes(c)) writeFileSync(join(dir, "cgroup.subtree_control"), `+${c}`);
    }
    const notifyBin = join(tmp, "notify-recv");
    execFileSync("cc", ["-O2", "-Wall", "-o", notifyBin, join(REPO, "test/helpers/notify-recv.c")]);
    const socket = join(tmp, "notify.sock");
    const recv = spawn(notifyBin, [socket], { stdio: ["ignore", "pipe", "inherit"] });
    let notified = "";
    recv.stdout.on("data", (d) => (notified += String(d)));
    let main: ReturnType<typeof spawnIn> | undefined;
    try {
      await until(() => notified.includes("listening"), "the notify socket");
      const env = { ...process.env, NOTIFY_SOCKET: socket, INVOCATION_ID: "0123456789abcdef0123456789abcdef" };
      main = spawnIn(unit, execLine(exp.stdout, "ExecStart"), env);
      let mainErr = "";
      main.stderr.on("data", (d) => (mainErr += String(d)));
      const mainExit = new Promise<number | null>((r) => main!.once("exit", (c) => r(c)));
      await until(() => notified.includes("READY=1") || main!.exitCode !== null, "READY=1", 60_000);
      expect(mainErr).not.toMatch(/internal error/);
      expect(notified).toMatch(/READY=1/);
      expect(notified).toMatch(new RegExp(`STATUS=running ${name}`));

      const state = readStateFile(runDir, name);
      const base = unit.slice(V2!.length + 1);
      expect(state.cgroup.delegated).toBe(base);
      // QEMU is in the VM cgroup under the unit's cgroup; qcvm in its leaf; the unit's cgroup itself
      // holds no process (the no-internal-process rule lets it give controllers to its children).
      const vmCgroup = join(unit, name);
      expect(procsOf(vmCgroup)).toEqual([state.pid]);
      expect(procsOf(join(unit, ".qcvm-launcher"))).toContain(main.pid);
      expect(procsOf(unit)).toEqual([]);
      expect(state.cgroup.paths).toContain(vmCgroup);

      // ExecStop, as systemd runs a delegated unit's control processes: in <unit>/.control.
      const control = join(unit, ".control");
      mkdirSync(control);
      const stop = spawnIn(control, execLine(exp.stdout, "ExecStop"), { ...process.env });
      let stopErr = "";
      stop.stderr.on("data", (d) => (stopErr += String(d)));
      const stopCode = await new Promise<number | null>((r) => stop.once("exit", (c) => r(c)));
      expect(stopErr).toMatch(new RegExp(`stopped \`${name}\` \\((powered down|quit)\\)`));
      expect(stopCode).toBe(0);
      // The main process (qcvm launch) ends with its QEMU, as systemd then expects.
      expect(await mainExit).toBe(0);
      expect(existsSync(`/proc/${state.pid}`)).toBe(false);
      expect(existsSync(vmCgroup)).toBe(false);
      expect(existsSync(join(runDir, name))).toBe(false);
    } finally {
      if (main && main.exitCode === null) main.kill("SIGKILL");
      recv.kill("SIGTERM");
      // systemd removes the unit's cgroup when the unit stops; here the test does.
      for (const d of [join(unit, ".control"), join(unit, ".qcvm-launcher"), unit, slice]) {
        await until(() => {
          try {
            if (existsSync(d)) rmdirSync(d);
            return true;
          } catch {
            return false;
          }
        }, `rmdir ${d}`);
      }
    }
  });
});

describe("the delegated base, read from /proc/self/cgroup (a host tree)", () => {
  const tree = join(tmp, "host");
  cpSync(join(REPO, "examples/hosts/cgroup2-only"), tree, { recursive: true });
  const unit = join(tree, "sys/fs/cgroup/system.slice/qcvm-web.service");
  mkdirSync(unit, { recursive: true });
  // The unit was handed memory only (cpuset not delegated).
  writeFileSync(join(unit, "cgroup.controllers"), "cpu memory pids\n");
  mkdirSync(join(tree, "proc/self"), { recursive: true });

  it.each([
    ["0::/system.slice/qcvm-web.service", "the main process, in the unit's cgroup"],
    ["0::/system.slice/qcvm-web.service/.qcvm-launcher", "launch again, from its own leaf"],
    ["0::/system.slice/qcvm-web.service/.control", "ExecStop, in systemd's control group of the unit"],
  ])("%s (%s) is the unit's cgroup", (line) => {
    writeFileSync(join(tree, "proc/self/cgroup"), `1:name=systemd:/\n${line}\n`);
    const h = probeHost(tree);
    const base = selfDelegatedBase(h);
    expect(base).toBe("system.slice/qcvm-web.service");
    const layout = openCgroupLayout(h, { delegatedBase: base });
    expect(layout).toMatchObject({
      delegated: true,
      systemd: false,
      base: "system.slice/qcvm-web.service",
      hierarchies: [{ version: 2, mount: "/sys/fs/cgroup", controllers: ["memory"] }],
      missing: ["cpuset"],
    });
  });

  it("no v2 line: no delegated base (launch --cgroup delegated refuses)", () => {
    writeFileSync(join(tree, "proc/self/cgroup"), "4:memory:/x\n");
    expect(selfDelegatedBase(probeHost(tree))).toBeUndefined();
  });
});
