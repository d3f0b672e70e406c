// Running the real qcvm (the built bin, as a user would) against the real QEMU, cgroup fs and
// /proc, for the launch, status and stop tests. Each test file gets its own run dir and VM names
// that carry the test process's pid, so files running in parallel never share a VM.
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import type { Stats } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { openCgroupLayout } from "../../src/vm/cgroup.js";
import { probeHost, probeKvm } from "../../src/probe/host.js";
import { QmpClient } from "../../src/vm/qmp.js";
import { isAlive } from "../../src/vm/process.js";
import { listStates } from "../../src/vm/state.js";
import { FsRoot } from "../../src/io/fsroot.js";
import { checkQemuUser } from "../../src/launch/privsep.js";
import type { VmState } from "../../src/vm/state.js";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));
// QCVM_TEST_BIN: run these tests against another build of qcvm (dist/ is what `npm test` builds).
export const QCVM = process.env.QCVM_TEST_BIN ?? join(REPO, "bin", "qcvm.js");
export const KVM_2NODE = join(REPO, "profiles", "kvm-2node.yaml");

/**
 * KVM as qcvm judges it (probeKvm: KVM's device 10:232, opened read-write): usable, and QEMU runs
 * under KVM; otherwise qcvm falls back to TCG and warns once. An empty file or a driverless node
 * at /dev/kvm (scripts/test-hosts.sh kvm-file, kvm-dead) opens, or exists, yet is no KVM.
 */
export const KVM = probeKvm("/dev/kvm");
export const KVM_USABLE = KVM.ok;
export const ACCEL = KVM_USABLE ? "kvm" : "tcg";

/** Where qcvm's cgroups can go on this host; `missing` controllers cost placement or accounting
 *  (scripts/test-hosts.sh cgroup2: a v2 root offering neither cpuset nor memory). */
export const CGROUPS = openCgroupLayout(probeHost("/"));
export const NO_CPUSET = CGROUPS.missing.includes("cpuset");
export const NO_MEMORY_CGROUP = CGROUPS.missing.includes("memory");

/** The TCG fallback warning (a diagnostic on machine.accel), in text and JSON alike. */
/** Running as root, and whether a root qcvm can drop QEMU to the qcvm-qemu user here (the user
 *  exists, is in the kvm group, and /dev/kvm lets that group in). */
export const AS_ROOT = process.getuid?.() === 0;
export const QEMU_USER_READY = (() => {
  let kvmDev: Stats | undefined;
  try {
    kvmDev = statSync("/dev/kvm");
  } catch {
    kvmDev = undefined;
  }
  return checkQemuUser(new FsRoot("/"), kvmDev).ok;
})();

export const KVM_FALLBACK = /warning: machine\.accel: (.*): falling back to tcg /;
/** The loss launch reports where no memory controller is: accounting, not placement. */
export const MEMORY_ACCOUNTING_LOST =
  "memory accounting: memory cgroup not applied (memory controller not available); qcvm stats cannot attribute the VM's private memory per host node";

/**
 * The warnings any launch of a plain-KVM profile gives on this host, checked and taken out: the
 * TCG fallback exactly when probeKvm finds KVM unusable (naming its problem), and the lost memory
 * accounting exactly when the host has no memory controller. Returns the other warnings.
 * `messages`: warning events' messages, or stderr's `qcvm: ... warning: ...` lines.
 */
export function takeHostWarnings(messages: readonly string[], options: { beforeCgroups?: boolean } = {}): string[] {
  const kvm = messages.filter((m) => KVM_FALLBACK.test(m));
  expect(kvm, "TCG fallback warnings").toHaveLength(KVM_USABLE ? 0 : 1);
  if (!KVM_USABLE) expect(KVM_FALLBACK.exec(kvm[0]!)![1]).toBe(KVM.problem);
  // Before the cgroup step (a dry run, a refusal) nothing is lost: a dry run lists the missing
  // controller as an action instead.
  const accounting = messages.filter((m) => m.endsWith(MEMORY_ACCOUNTING_LOST));
  expect(accounting, "lost memory accounting warnings").toHaveLength(
    NO_MEMORY_CGROUP && !options.beforeCgroups ? 1 : 0,
  );
  return messages.filter((m) => !kvm.includes(m) && !accounting.includes(m));
}

/** The warning lines of qcvm's text output (stderr). */
export function warningLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => /^qcvm: (\S+: )?warning: /.test(l));
}

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run qcvm to completion. */
export function qcvm(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; prefix?: string[]; timeoutMs?: number } = {},
): Promise<Ran> {
  const argv = [...(options.prefix ?? []), process.execPath, QCVM, ...args];
  return new Promise((resolve) => {
    execFile(
      argv[0]!,
      argv.slice(1),
      { env: options.env ?? process.env, timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 128) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** Start qcvm without waiting (foreground launches); stdout and stderr are collected. */
export function startQcvm(args: string[]): {
  child: ChildProcess;
  out: { stdout: string; stderr: string };
  exit: Promise<number | null>;
} {
  const child = spawn(process.execPath, [QCVM, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const out = { stdout: "", stderr: "" };
  child.stdout.on("data", (d) => (out.stdout += d));
  child.stderr.on("data", (d) => (out.stderr += d));
  // "exit", not "close": after qcvm dies, QEMU may still hold the pipes.
  const exit = new Promise<number | null>((r) => child.once("exit", (code, sig) => r(code ?? (sig ? 128 : null))));
  return { child, out, exit };
}

/** Resolve when `check()` is true; polls the way a person re-runs a command. */
export async function until(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let counter = 0;
/**
 * This test process's part of a VM name: its pid, and a random tag because a pid is unique only
 * within its PID namespace. .ci/run runs the host legs of scripts/test-hosts.sh (each in a PID
 * namespace of its own, where pids start at 1) beside other legs on the same kernel, whose cgroup
 * trees (/sys/fs/cgroup/.../qcvm/NAME) they all share.
 */
export const PROCESS_TAG = `${process.pid}${randomBytes(3).toString("hex")}`;
/** A VM name unique to this test process, on this host: [a-z0-9-]. */
export function vmName(label: string): string {
  return `${label}-${PROCESS_TAG}-${counter++}`;
}

export function makeRunDir(label: string): string {
  return mkdtempSync(join(tmpdir(), `qcvm-${label}-`));
}

/** Stop every VM left in a run dir (a failed test must not leak QEMUs), then remove the dir. */
export async function sweepRunDir(runDir: string): Promise<void> {
  for (const s of listStates(runDir)) {
    await qcvm(["stop", s.name, "--force", "--run-dir", runDir]);
    if (isAlive(s)) process.kill(s.pid, "SIGKILL");
  }
  rmSync(runDir, { recursive: true, force: true });
}

export function readStateFile(runDir: string, name: string): VmState {
  return JSON.parse(readFileSync(join(runDir, name, "state.json"), "utf8")) as VmState;
}

/** Cpus_allowed_list and Mems_allowed_list of one thread, as the kernel reports them. */
export function threadPlacement(pid: number, tid: number): { cpus: string; mems: string; name: string } {
  const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
  const field = (k: string) => (new RegExp(`^${k}:[ \\t]*(.*)$`, "m").exec(status)?.[1] ?? "").trim();
  return { cpus: field("Cpus_allowed_list"), mems: field("Mems_allowed_list"), name: field("Name") };
}

export function readIds(file: string): number[] {
  return readFileSync(file, "utf8").split(/\s+/).filter(Boolean).map(Number);
}

export function threadsOf(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map(Number);
}

/** One QMP command on a fresh connection. */
export async function qmpCommand<T>(socket: string, command: string): Promise<T> {
  const c = await QmpClient.connect(socket, { timeoutMs: 5000 });
  try {
    return await c.command<T>(command);
  } finally {
    await c.close();
  }
}

/** Lines of `--format json` output, parsed. */
export function events(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
