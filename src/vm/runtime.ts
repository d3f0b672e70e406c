// Runtime state of launched VMs: one directory per VM under the run dir, holding QEMU's QMP socket,
// pidfile and log, and state.json, which is what status, stop and stats read. A pid alone does not
// identify a process (pids are reused), so state records the pid's start time from /proc and a VM
// counts as alive only when both still match.
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  statSync,
  writeFileSync,
  chmodSync,
  rmSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { UserError, describeFsError } from "../core/diagnostics.js";
import type { Accel, Plan } from "../core/types.js";
import { VM_NAME } from "../core/vm-name.js";

/** One placement the plan asked for that the launch could not apply (EACCES, EPERM, TCG, ...). */
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

/** Render a lost placement as the one line launch and status print. */
export function formatLost(l: LostPlacement): string {
  const where = l.guestNode === undefined ? "" : `guest node ${l.guestNode} `;
  return `${where}${l.what}: ${l.mechanism} not applied (${l.reason}); ${l.consequence}`;
}

export interface VmState {
  /** Format version of this file. */
  version: 1;
  name: string;
  /** QEMU's pid (numactl execs QEMU, so the pid qcvm spawned is QEMU's). */
  pid: number;
  /** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot): tells pid reuse apart. */
  pidStartTime: string;
  /** Absolute path of the profile file. */
  profile: string;
  plan: Plan;
  /** QEMU's full argv as executed, prefix (numactl ...) included. */
  argv: string[];
  cgroup: {
    /** Absolute cgroup directories created for this VM (every hierarchy, children included). */
    paths: string[];
  };
  /** The VM's runtime directory. */
  dir: string;
  qmp: string;
  pidfile: string;
  log: string;
  startedAt: string;
  accel: Accel;
  /** QEMU's version from the QMP greeting, once connected. */
  qemuVersion?: string;
  /** Root the host was read under (`--host`; "/" normally): where the cgroup mounts are. */
  hostRoot: string;
  /** "starting" until the vCPUs run with placement applied, then "running". */
  phase: "starting" | "running";
  /** True when launched with --detach (no qcvm process supervises QEMU once it runs). */
  detached: boolean;
  /** The qcvm that launched QEMU (and, in the foreground, supervises it). */
  launcher: { pid: number; startTime: string };
  lost: LostPlacement[];
}

/** Where VM state lives: $QCVM_RUN_DIR, else /run/qcvm as root, else $XDG_RUNTIME_DIR/qcvm. */
export function defaultRunDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.QCVM_RUN_DIR) return resolve(env.QCVM_RUN_DIR);
  if (process.getuid?.() === 0) return "/run/qcvm";
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "qcvm");
  throw new UserError(
    "no runtime directory: not root and XDG_RUNTIME_DIR is unset (pass --run-dir DIR or set QCVM_RUN_DIR)",
  );
}

/** The run dir a command uses: --run-dir wins, then the default. */
export function resolveRunDir(arg: unknown): string {
  return typeof arg === "string" && arg !== "" ? resolve(arg) : defaultRunDir();
}

/** Subdirectories of the run dir that qcvm keeps for itself: a VM by one of these names would
 *  replace them (createVmDir empties its directory, stop removes it). */
export const RESERVED_VM_NAMES: readonly string[] = ["locks", "caps"];

/** Why `name` cannot name a VM directory, or undefined when it can. */
export function vmNameProblem(name: string): string | undefined {
  if (RESERVED_VM_NAMES.includes(name))
    return `\`${name}\` cannot be a VM name: the run dir keeps qcvm's ${name} under that name`;
  if (!VM_NAME.test(name)) {
    return `${JSON.stringify(name)} is not a VM name: names are lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters`;
  }
  return undefined;
}

/** A VM name given on the command line (status, stop, stats): checked before any path is built from it. */
export function requireVmName(name: unknown): string {
  const text = typeof name === "string" ? name : "";
  const problem = vmNameProblem(text);
  if (problem) throw new UserError(`${problem} (qcvm status lists the VMs)`, 2);
  return text;
}

export function vmDir(runDir: string, name: string): string {
  // The name becomes a directory that launch empties and stop removes recursively: `..`, `/x` or
  // `locks` would point those at something that is not this VM's.
  const problem = vmNameProblem(name);
  if (problem) throw new UserError(`${problem} (rename the VM: \`name:\` in the profile, or --set name=...)`);
  return join(runDir, name);
}

/** The files of one VM's runtime directory. */
export function vmPaths(runDir: string, name: string) {
  const dir = vmDir(runDir, name);
  return {
    dir,
    qmp: join(dir, "qmp.sock"),
    pidfile: join(dir, "qemu.pid"),
    log: join(dir, "qemu.log"),
    state: join(dir, "state.json"),
  };
}

/**
 * mkdir -p. Not mkdirSync's `recursive`: on Node 20-24 it loops forever, at full CPU, when mkdir
 * answers ENOENT although the parent exists, as /proc and /proc/self do (`--run-dir /proc/x` hung
 * qcvm). Here an ENOENT with the parent present is that file system's refusal, and is thrown.
 */
export function makeDirs(dir: string, mode: number): void {
  try {
    mkdirSync(dir, { mode });
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST" && statSync(dir).isDirectory()) return;
    if (code !== "ENOENT") throw e;
    const parent = dirname(dir);
    if (parent === dir || existsSync(parent)) throw e;
  }
  makeDirs(dirname(dir), mode);
  try {
    mkdirSync(dir, { mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST" || !statSync(dir).isDirectory()) throw e;
  }
}

/** Create the run dir (0755: other users' qcvm status may list it) if missing. */
export function ensureRunDir(runDir: string): void {
  try {
    makeDirs(runDir, 0o755);
  } catch (e) {
    throw new UserError(
      `cannot create the run dir ${runDir}: ${describeFsError(e)} (pass --run-dir DIR, or set QCVM_RUN_DIR, to a directory you can write)`,
    );
  }
}

/**
 * Create a VM's runtime directory, mode 0700: the QMP socket in it is full control of the VM.
 * The caller holds the VM name lock, so leftovers here are from a dead run and are removed.
 */
export function createVmDir(runDir: string, name: string): string {
  ensureRunDir(runDir);
  const dir = vmDir(runDir, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o700 });
  // mkdir's mode is filtered by the umask; the socket's safety must not depend on it.
  chmodSync(dir, 0o700);
  return dir;
}

export function removeVmDir(runDir: string, name: string): void {
  rmSync(vmDir(runDir, name), { recursive: true, force: true });
}

/** Write state.json atomically (write + rename), so a reader never sees half a file. */
export function writeState(state: VmState): void {
  const file = join(state.dir, "state.json");
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

/** A VM's state, or undefined when there is no such VM (no state file). */
/** A VM's state that this user may not read: the VM is another user's (the run dir is shared). */
export class StateAccessError extends UserError {}

export function readState(runDir: string, name: string): VmState | undefined {
  const file = vmPaths(runDir, name).state;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    if (code === "EACCES" || code === "EPERM") {
      throw new StateAccessError(
        `VM \`${name}\` belongs to another user: ${file} is not readable by this one (run qcvm as the user who launched it, or as root)`,
      );
    }
    throw new UserError(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    const state = JSON.parse(text) as VmState;
    if (state.version !== 1 || typeof state.pid !== "number" || typeof state.name !== "string") {
      throw new Error("not a qcvm state file (version 1)");
    }
    return state;
  } catch (e) {
    throw new UserError(`${file} is damaged: ${(e as Error).message} (remove it, or run \`qcvm stop ${name}\`)`);
  }
}

/** Every VM with a state file in the run dir, sorted by name; damaged files are skipped. */
export function listStates(runDir: string): VmState[] {
  let names: string[];
  try {
    names = readdirSync(runDir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  } catch {
    return [];
  }
  const out: VmState[] = [];
  for (const name of names) {
    try {
      const s = readState(runDir, name);
      if (s) out.push(s);
    } catch {
      // A damaged state file is reported by `status <name>`; the listing shows the rest.
    }
  }
  return out;
}

/** Parsed /proc/<pid>/stat fields we use: start time (field 22) and state (field 3). */
export function readProcStat(pid: number, procRoot = "/proc"): { startTime: string; state: string } | undefined {
  let text: string;
  try {
    text = readFileSync(join(procRoot, String(pid), "stat"), "utf8");
  } catch {
    return undefined;
  }
  // comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = rest[0];
  const startTime = rest[22 - 3];
  if (!state || !startTime) return undefined;
  return { startTime, state };
}

/** Start time of a live process, undefined when there is none (zombies count as gone). */
export function pidStartTime(pid: number): string | undefined {
  const st = readProcStat(pid);
  if (!st || st.state === "Z" || st.state === "X") return undefined;
  return st.startTime;
}

/** The process `pid` still exists and is the same process (start time matches, not a zombie). */
export function isProcessAlive(pid: number, startTime: string): boolean {
  return pid > 0 && pidStartTime(pid) === startTime;
}

/** The VM's QEMU is running: pid exists and was not reused since launch. */
export function isAlive(state: Pick<VmState, "pid" | "pidStartTime">): boolean {
  return isProcessAlive(state.pid, state.pidStartTime);
}

/** This process's own identity, for locks and the supervisor field. */
export function selfIdentity(): { pid: number; startTime: string } {
  const startTime = pidStartTime(process.pid);
  if (!startTime) throw new Error("cannot read /proc/self/stat");
  return { pid: process.pid, startTime };
}

/** What cleanupVm removed and what it could not. */
export interface CleanupReport {
  removed: string[];
  errors: string[];
}

/**
 * Remove everything a VM left on the host once its QEMU is gone: the VM cgroup (every hierarchy,
 * vCPU children included), the runtime directory (socket, pidfile, log, state) and its locks.
 * Idempotent, so the foreground launcher and `qcvm stop` may both run it. `hostRoot` is the root
 * the cgroup mounts were read under at launch ("/" on a real host). `keepNameLock`: a launch
 * clearing an earlier run's leftovers (or its own, on failure) while holding the name.
 */
export async function cleanupVm(
  runDir: string,
  name: string,
  hostRoot = "/",
  options: { keepNameLock?: boolean } = {},
): Promise<CleanupReport> {
  const report: CleanupReport = { removed: [], errors: [] };
  const { probeHost } = await import("../probe/host.js");
  const { openCgroupLayout, findVmCgroup } = await import("./cgroup.js");
  const layout = openCgroupLayout(probeHost(hostRoot));
  const cg = findVmCgroup(layout, name);
  if (cg) {
    const errors = cg.remove();
    if (errors.length === 0) report.removed.push(...cg.dirs.map((d) => d.path));
    report.errors.push(...errors.map((e) => e.message));
  }
  const dir = vmDir(runDir, name);
  try {
    rmSync(dir, { recursive: true, force: true });
    report.removed.push(dir);
  } catch (e) {
    report.errors.push(`cannot remove ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const { releaseVmLocks } = await import("./lock.js");
  report.removed.push(...releaseVmLocks(runDir, name, options));
  return report;
}

// ---------------------------------------------------------------------------------------------
// Stopping QEMU (qcvm stop, and the foreground launcher on SIGINT/SIGTERM)
// ---------------------------------------------------------------------------------------------

/** How long `quit` and SIGTERM get before SIGKILL, and SIGKILL before we give up waiting. */
const QUIT_TIMEOUT_MS = 5_000;
const POLL_MS = 20;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitGone(pid: number, startTime: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!isProcessAlive(pid, startTime)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(POLL_MS);
  }
}

function signal(pid: number, startTime: string, sig: NodeJS.Signals): void {
  if (!isProcessAlive(pid, startTime)) return;
  try {
    process.kill(pid, sig);
  } catch {
    // exited meanwhile
  }
}

/** Run one QMP command on a fresh connection; false when QMP cannot be reached. */
async function qmpOnce(socket: string, command: "system_powerdown" | "quit"): Promise<boolean> {
  if (!existsSync(socket)) return false;
  const { QmpClient, isQmpError } = await import("./qmp.js");
  let client;
  try {
    client = await QmpClient.connect(socket, { timeoutMs: 3000 });
  } catch {
    return false;
  }
  const r =
    command === "quit"
      ? await client.quit(QUIT_TIMEOUT_MS)
      : await client.execute(command, undefined, { timeoutMs: 3000 });
  if (!client.isClosed) await client.close();
  return !isQmpError(r);
}

export type StopOutcome = "powered down" | "quit" | "terminated" | "killed" | "was not running";

/** Bring QEMU down, gentlest first. */
export async function stopQemu(
  s: Pick<VmState, "pid" | "pidStartTime" | "qmp">,
  options: { force: boolean; timeoutMs: number },
  note: (msg: string) => void = () => {},
): Promise<StopOutcome> {
  const { pid, pidStartTime: st } = s;
  if (!isProcessAlive(pid, st)) return "was not running";
  if (!options.force) {
    if (await qmpOnce(s.qmp, "system_powerdown")) {
      note(`asked the guest to power down; waiting up to ${options.timeoutMs / 1000} s`);
      if (await waitGone(pid, st, options.timeoutMs)) return "powered down";
      note("the guest did not power down in time: quitting QEMU");
    }
  }
  if (await qmpOnce(s.qmp, "quit")) {
    if (await waitGone(pid, st, QUIT_TIMEOUT_MS)) return "quit";
  } else {
    // No QMP (socket gone, QEMU hung): QEMU treats SIGTERM as a request to quit.
    signal(pid, st, "SIGTERM");
    if (await waitGone(pid, st, QUIT_TIMEOUT_MS)) return "terminated";
  }
  signal(pid, st, "SIGKILL");
  if (await waitGone(pid, st, QUIT_TIMEOUT_MS)) return "killed";
  throw new UserError(`pid ${pid} survived SIGKILL (stuck in the kernel, state D?); nothing was cleaned up, try again`);
}
