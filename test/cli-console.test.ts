// A detached VM as an operator lives with it: QEMU's start-up warnings shown by launch --detach,
// `qcvm console` on a real serial port (a guest that prints and echoes, in a real pty: `script`
// from util-linux), Ctrl-] to detach, and QEMU's log kept by stop and printed by `qcvm logs`,
// also once the VM is gone. The guest is test/fixtures/guest/serial-echo.S, a 64 KiB firmware
// built here with gcc: it says hello on COM1 and echoes what it receives, upper-cased.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KEPT_LOGS, findLog, keepLog, listKeptLogs, readLogFile } from "../src/vm/logs.js";
import { rssNote } from "../src/commands/stats.js";
import { QCVM, REPO, makeRunDir, qcvm, readStateFile, sweepRunDir, vmName } from "./helpers/launch.js";

const runDir = makeRunDir("console");
afterAll(() => sweepRunDir(runDir));

const HAVE_GCC = spawnSync("gcc", ["--version"]).status === 0 && spawnSync("ld", ["--version"]).status === 0;
const HAVE_SCRIPT = spawnSync("script", ["--version"]).status === 0;
/** The TCG warning QEMU prints for a CPU feature it cannot emulate (QEMU 4 to 11): one known line. */
const WARNING = "TCG doesn't support requested feature: CPUID.07H:EBX.avx512f";

const firmware = join(runDir, "serial-echo.bin");
/** The echoing test firmware, built with gcc and ld (the tests that need it skip without gcc). */
function buildFirmware(): void {
  const obj = join(runDir, "serial-echo.o");
  const src = join(REPO, "test/fixtures/guest/serial-echo.S");
  for (const argv of [
    ["gcc", "-c", src, "-o", obj],
    ["ld", "-m", "elf_x86_64", "-Ttext", "0", "--oformat", "binary", "-o", firmware, obj],
  ]) {
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  }
}
beforeAll(() => {
  if (HAVE_GCC) buildFirmware();
});

function profile(name: string, serial: string): string {
  const file = join(runDir, `${name}.yaml`);
  writeFileSync(
    file,
    [
      "apiVersion: qcvm/v1",
      `name: ${name}`,
      // TCG: the same warning on every host, and no KVM needed.
      "machine: {type: q35, accel: tcg}",
      "cpu: {model: qemu64, count: 1}",
      "memory: {size: 64M}",
      `firmware: {bios: ${firmware}}`,
      `serial: ${serial}`,
      "network: {type: none}",
      'extraArgs: ["-cpu", "qemu64,+avx512f"]',
      "",
    ].join("\n"),
  );
  return file;
}

/** `qcvm console NAME` in a real pty, typing `keys` (a function of what was printed so far). */
function consoleInPty(name: string, steps: Array<{ after: RegExp; send: string }>) {
  const child = spawn(
    "script",
    ["-qfec", `${process.execPath} ${QCVM} console ${name} --run-dir ${runDir}`, "/dev/null"],
    {
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  let out = "";
  let next = 0;
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
    while (next < steps.length && steps[next]!.after.test(out)) child.stdin.write(steps[next++]!.send);
  });
  const exit = new Promise<number>((resolve) => child.once("exit", (code) => resolve(code ?? 128)));
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  return exit.then((code) => {
    clearTimeout(timer);
    child.stdin.end();
    return { code, out };
  });
}

describe.skipIf(!HAVE_GCC || !HAVE_SCRIPT)("a detached VM's console and log (needs gcc, ld and script)", () => {
  it("launch --detach shows QEMU's warnings; console echoes through console.sock; Ctrl-] detaches; stop keeps the log", async () => {
    const name = vmName("echo");
    const launch = await qcvm(["launch", profile(name, "stdio"), "--detach", "--run-dir", runDir]);
    expect(launch.code, launch.stderr).toBe(0);
    // The warning went to qemu.log, and launch printed it as the foreground would have.
    expect(launch.stderr).toContain(WARNING);
    const state = readStateFile(runDir, name);
    expect(readFileSync(state.log, "utf8")).toContain(WARNING);
    // serial: stdio detached is a socket in the VM's 0700 directory.
    const sock = join(runDir, name, "console.sock");
    expect(lstatSync(sock).isSocket()).toBe(true);
    expect(lstatSync(join(runDir, name)).mode & 0o777).toBe(0o700);
    // qcvm binds it (0600) and passes it after the firmware blob (fd 4): QEMU, an unprivileged
    // user, could not create it in the caller's 0700 directory (launch/open-files.ts).
    expect(lstatSync(sock).mode & 0o777).toBe(0o600);
    expect(state.argv).toContain("socket,id=serial0,fd=5,server=on,wait=off");
    expect(state.argv).toContain("/proc/self/fd/4");

    const session = await consoleInPty(name, [
      { after: /Escape character is \^\]/, send: "hello" },
      { after: /HELLO/, send: "\x1d" },
    ]);
    expect(session.code, session.out).toBe(0);
    expect(session.out).toContain(`Connected to \`${name}\``);
    expect(session.out).toContain("HELLO");
    expect(session.out).toContain(`qcvm: detached from \`${name}\``);
    // Detaching leaves the guest running, and the console free for the next session.
    expect((await qcvm(["status", name, "--run-dir", runDir])).code).toBe(0);
    const again = await consoleInPty(name, [
      { after: /Escape character/, send: "abc" },
      { after: /ABC/, send: "\x1d" },
    ]);
    expect(again.out).toContain("ABC");

    const live = await qcvm(["logs", name, "--run-dir", runDir]);
    expect(live.code).toBe(0);
    expect(live.stdout).toContain(WARNING);
    expect(live.stderr).toBe(`qcvm: live log ${state.log}\n`);

    const stop = await qcvm(["stop", name, "--force", "--run-dir", runDir]);
    expect(stop.code, stop.stderr).toBe(0);
    const kept = listKeptLogs(runDir, name);
    expect(kept).toHaveLength(1);
    expect(stop.stderr).toContain(`qcvm: QEMU's log is kept in ${kept[0]} (qcvm logs ${name})\n`);
    expect(existsSync(join(runDir, name))).toBe(false);
    expect(lstatSync(join(runDir, "logs", name)).mode & 0o777).toBe(0o700);
    // The VM is gone; its log is not.
    const dead = await qcvm(["logs", name, "--run-dir", runDir]);
    expect(dead.code).toBe(0);
    expect(dead.stdout).toContain(WARNING);
    expect(dead.stderr).toBe(`qcvm: kept log ${kept[0]}\n`);
    expect((await qcvm(["logs", name, "--list", "--run-dir", runDir])).stdout).toBe(`${kept[0]}\n`);
    // status and list do not take the logs directory for a VM.
    expect((await qcvm(["list", "--run-dir", runDir, "--format", "json"])).stdout).not.toContain('"logs"');
  });

  it("a second console is refused while one is attached; a VM without a serial port has no console", async () => {
    const name = vmName("busy");
    const launched = await qcvm([
      "launch",
      profile(name, "stdio"),
      "--detach",
      "--format",
      "json",
      "--run-dir",
      runDir,
    ]);
    expect(launched.code).toBe(0);
    // In JSON, QEMU's start-up output is a field of the last event, "running".
    const running = JSON.parse(launched.stdout.trimEnd().split("\n").at(-1)!) as {
      event: string;
      qemuOutput?: string[];
    };
    expect(running.event).toBe("running");
    expect(running.qemuOutput?.some((l) => l.includes(WARNING))).toBe(true);
    // Hold a session open while a second tries.
    const holder = spawn(
      "script",
      ["-qfec", `${process.execPath} ${QCVM} console ${name} --run-dir ${runDir}`, "/dev/null"],
      { stdio: ["pipe", "pipe", "ignore"] },
    );
    // A holder that cannot attach (no pty: `script` exits 1) fails here, not at the test's timeout.
    await new Promise<void>((resolve, reject) => {
      holder.stdout.on("data", (d: Buffer) => /Escape/.test(String(d)) && resolve());
      holder.once("exit", (code) => reject(new Error(`the holding console exited ${code} before attaching`)));
    });
    const second = await qcvm(["console", name, "--run-dir", runDir]);
    holder.stdin.write("\x1d");
    await new Promise((r) => holder.once("exit", r));
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(
      new RegExp(`^qcvm: \`${name}\`'s console is in use by qcvm pid \\d+ \\(detach it with Ctrl-\\]\\)\\n$`),
    );
    await qcvm(["stop", name, "--force", "--run-dir", runDir]);

    const quiet = vmName("noserial");
    expect((await qcvm(["launch", profile(quiet, "none"), "--detach", "--run-dir", runDir])).code).toBe(0);
    const none = await qcvm(["console", quiet, "--run-dir", runDir]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`\`${quiet}\` has no console: it has no serial port (serial: none)`);
    await qcvm(["stop", quiet, "--force", "--run-dir", runDir]);
    const gone = await qcvm(["console", quiet, "--run-dir", runDir]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(`no VM named \`${quiet}\``);
  });
});

describe("kept logs", () => {
  const base = makeRunDir("logs");
  afterAll(() => sweepRunDir(base));

  function fakeRun(name: string, text: string): void {
    mkdirSync(join(base, name), { recursive: true, mode: 0o700 });
    writeFileSync(join(base, name, "qemu.log"), text, { mode: 0o600 });
  }

  it(`keeps the ${KEPT_LOGS} newest per VM, oldest dropped, none overwritten`, () => {
    const t0 = Date.parse("2026-12-01T08:00:00.000Z");
    for (let i = 0; i < KEPT_LOGS + 2; i++) {
      fakeRun("vm-a", `run ${i}\n`);
      // Two in the same millisecond must not overwrite each other.
      expect(keepLog(base, "vm-a", new Date(t0 + Math.floor(i / 2) * 1000))).toBeDefined();
    }
    const kept = listKeptLogs(base, "vm-a");
    expect(kept).toHaveLength(KEPT_LOGS);
    expect(kept.map((f) => readFileSync(f, "utf8"))).toEqual(
      Array.from({ length: KEPT_LOGS }, (_, i) => `run ${i + 2}\n`),
    );
    expect(findLog(base, "vm-a")).toEqual({ path: kept.at(-1), live: false });
  });

  it("keeps nothing for an empty or missing log", () => {
    fakeRun("vm-empty", "");
    expect(keepLog(base, "vm-empty")).toBeUndefined();
    expect(keepLog(base, "vm-none")).toBeUndefined();
    expect(listKeptLogs(base, "vm-empty")).toEqual([]);
  });

  it("follows no symlink: a qemu.log that is one is not kept, a logs dir that is one is refused", () => {
    mkdirSync(join(base, "vm-link"), { recursive: true, mode: 0o700 });
    writeFileSync(join(base, "secret"), "not a log\n");
    symlinkSync(join(base, "secret"), join(base, "vm-link", "qemu.log"));
    expect(keepLog(base, "vm-link")).toBeUndefined();
    expect(() => readLogFile(join(base, "vm-link", "qemu.log"))).toThrow(/ELOOP|symbolic link/);
    const other = makeRunDir("logs-link");
    mkdirSync(join(other, "elsewhere"));
    symlinkSync(join(other, "elsewhere"), join(other, "logs"));
    mkdirSync(join(other, "vm-b"), { mode: 0o700 });
    writeFileSync(join(other, "vm-b", "qemu.log"), "x\n");
    expect(() => keepLog(other, "vm-b")).toThrow(/is a symbolic link/);
    expect(readdirSync(join(other, "elsewhere"))).toEqual([]);
    void sweepRunDir(other);
  });

  it("logs for a name with no log says why, exit 1", async () => {
    const r = await qcvm(["logs", "never-ran", "--run-dir", base]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no log of `never-ran`");
    expect((await qcvm(["logs", "logs", "--run-dir", base])).code).toBe(2);
  });
});

describe("stats wording per guest type", () => {
  const s = {
    vmRssBytes: 35.6 * 1024 * 1024,
    totals: { privateBytes: null, sharedBytes: 1024 * 1024, totalBytes: 1024 * 1024 },
  } as unknown as Parameters<typeof rssNote>[0];
  it("a plain KVM guest: no private memory, and why the total is small next to VmRSS", () => {
    const text = rssNote(s, { confidential: "none", guestMemfd: false }).join("\n");
    expect(text).toContain("VmRSS 35.6 MiB is QEMU's whole resident memory");
    expect(text).toContain("as far as the guest has touched it (1.0 MiB so far");
    expect(text).toContain("A plain KVM guest has no guest_memfd: all its RAM is the SHARED column");
    expect(text).not.toContain("the PRIVATE column is read from");
  });
  it("SEV-ES likewise; SNP and TDX: private memory is read from the cgroup", () => {
    expect(rssNote(s, { confidential: "sev-es", guestMemfd: false }).join("\n")).toContain(
      "A SEV-ES guest has no guest_memfd",
    );
    const snp = rssNote(s, { confidential: "sev-snp", guestMemfd: true }).join("\n");
    expect(snp).toContain(
      "private memory is invisible in RSS (no mapping): the PRIVATE column is read from the VM cgroup's memory.numa_stat",
    );
  });
});
