// Issue 8 finding 3, on the real QEMU: a root qcvm's QEMU runs as the unprivileged QEMU user,
// sandboxed and with no_new_privs; its QMP socket and log are 0600 in a 0700 directory whatever the
// caller's umask; and the capability probe (which starts a QEMU of its own) never runs it as root
// either. Needs root and the qcvm-qemu user (.ci/run creates it; doctor says how).
import { afterAll, describe, expect, it } from "vitest";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveQemuIdentity } from "../src/launch/privsep.js";
import { which } from "../src/io/exec.js";
import {
  KVM_2NODE,
  makeRunDir,
  qcvm,
  readStateFile,
  sweepRunDir,
  vmName,
  AS_ROOT,
  QEMU_USER_READY,
} from "./helpers/launch.js";

const ROOT = AS_ROOT;
const READY = ROOT && QEMU_USER_READY;
const WHY = !ROOT
  ? "needs root: only a root qcvm drops QEMU to another user"
  : "needs the qcvm-qemu user in the kvm group (qcvm doctor says how; .ci/run creates it)";

const runDir = makeRunDir("privsep");
afterAll(() => sweepRunDir(runDir));

function statusField(pid: number, key: string): string {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return (new RegExp(`^${key}:\\s*(.*)$`, "m").exec(status)?.[1] ?? "").trim();
}

describe.skipIf(!READY)(`QEMU under a root qcvm (${WHY})`, () => {
  it("runs as the QEMU user with Seccomp 2, NoNewPrivs 1 and no capabilities; socket and log 0600 in 0700 under umask 000", async () => {
    const id = resolveQemuIdentity("qcvm-qemu");
    const name = vmName("drop");
    // umask 000 around qcvm (issue 8 finding 2: the QMP socket came out srwxrwxrwx).
    const r = await qcvm(["launch", KVM_2NODE, "--detach", "--set", `name=${name}`, "--run-dir", runDir], {
      prefix: ["sh", "-c", 'umask 000; exec "$@"', "sh"],
    });
    expect(r.code, r.stderr).toBe(0);
    const state = readStateFile(runDir, name);
    try {
      expect(statusField(state.pid, "Uid")).toBe(`${id.uid}\t${id.uid}\t${id.uid}\t${id.uid}`);
      expect(statusField(state.pid, "Gid")).toBe(`${id.gid}\t${id.gid}\t${id.gid}\t${id.gid}`);
      expect(statusField(state.pid, "Groups")).toBe(id.groups.join(" "));
      expect(statusField(state.pid, "Seccomp")).toBe("2");
      expect(statusField(state.pid, "NoNewPrivs")).toBe("1");
      expect(statusField(state.pid, "CapEff")).toMatch(/^0+$/);
      // Its environment is the clean one, nothing of the caller's.
      const env = readFileSync(`/proc/${state.pid}/environ`, "utf8").split("\0").filter(Boolean).sort();
      expect(env).toEqual(["HOME=" + join(runDir, name), "LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
      expect(statSync(state.qmp).mode & 0o777).toBe(0o600);
      expect(statSync(state.log).mode & 0o777).toBe(0o600);
      expect(statSync(join(runDir, name)).mode & 0o777).toBe(0o700);
    } finally {
      expect((await qcvm(["stop", name, "--force", "--run-dir", runDir])).code).toBe(0);
    }
  });

  it("probes the QEMU binary's capabilities (launch and doctor) as the QEMU user, not as root", async () => {
    const qemu = await which("qemu-system-x86_64");
    expect(qemu, "qemu-system-x86_64 on PATH").toBeDefined();
    // A QEMU binary that records who runs it, then execs the real one. The directory and the
    // record are open to the QEMU user (it must reach the wrapper, and write its line).
    const dir = mkdtempSync(join(tmpdir(), "qcvm-probe-as-"));
    chmodSync(dir, 0o755);
    const record = join(dir, "who");
    writeFileSync(record, "");
    chmodSync(record, 0o666);
    const wrapper = join(dir, "qemu-system-x86_64");
    writeFileSync(
      wrapper,
      `#!/bin/sh\necho "$(id -u) $(grep ^NoNewPrivs: /proc/self/status | tr -d '\\t')" >> ${record}\nexec ${qemu} "$@"\n`,
      { mode: 0o755 },
    );
    const name = vmName("probe");
    try {
      // A fresh run dir: no cached probe, so this launch probes (--version, then QMP), then runs.
      const fresh = makeRunDir("privsep-probe");
      const r = await qcvm([
        "launch",
        KVM_2NODE,
        "--detach",
        "--set",
        `name=${name}`,
        "--set",
        `qemu.binary=${wrapper}`,
        "--run-dir",
        fresh,
      ]);
      expect(r.code, r.stderr).toBe(0);
      await qcvm(["stop", name, "--force", "--run-dir", fresh]);
      rmSync(fresh, { recursive: true, force: true });
      const runs = readFileSync(record, "utf8").trim().split("\n");
      const id = resolveQemuIdentity("qcvm-qemu");
      // --version, the probe's QEMU, the VM's QEMU: every one as the QEMU user, no_new_privs set.
      expect(runs.length).toBeGreaterThanOrEqual(3);
      expect(new Set(runs)).toEqual(new Set([`${id.uid} NoNewPrivs:1`]));
      // doctor's probe of the same binary: the same drop.
      writeFileSync(record, "");
      const doctor = await qcvm(["doctor", "--qemu", wrapper, "--format", "json"]);
      expect(doctor.stdout, doctor.stderr).toContain('"qemu"');
      const probed = readFileSync(record, "utf8").trim().split("\n");
      expect(probed.length).toBeGreaterThanOrEqual(2);
      expect(new Set(probed)).toEqual(new Set([`${id.uid} NoNewPrivs:1`]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
