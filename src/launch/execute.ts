// Carry a LaunchPlan out, step by step (steps 2 to 8 of launch.ts's list), undoing everything done
// so far, in reverse, when a step fails or a signal interrupts. Child processes start through the
// Runner (src/io/exec.ts), so a test's fake runner drives every failure path here.
import { processPolicyArgv } from "../render/process-policy.js";
import { readLogFile } from "../vm/logs.js";
import { closeSync, constants, openSync } from "node:fs";
import { UserError } from "../core/diagnostics.js";
import { run, start } from "../io/exec.js";
import { formatList } from "../core/lists.js";
import { cleanupVm } from "../vm/cleanup.js";
import { createVmCgroup } from "../vm/cgroup.js";
import { acquireDiskLocks, acquireVmLock } from "../vm/lock.js";
import { createVmDir, ensureRunDir } from "../vm/paths.js";
import { pidStartTime, selfIdentity } from "../vm/process.js";
import { QmpClient, QmpError } from "../vm/qmp.js";
import { formatLost, writeState } from "../vm/state.js";
import { inspectVm } from "../vm/inspect.js";
import { KVM_INIT_FAILED, earlyExitError, exitCodeOf, interruptedError, logTail } from "./explain.js";
import { countOf, lostFromCgroupErrors, strictError } from "./losses.js";
import { now, planSummary } from "./reporter.js";
import { placeVcpus } from "./vcpus.js";
import { runPreallocStep } from "./prealloc-step.js";
import { bindQmpSocket, checkMemoryPath, filesToLock, openPassedFiles } from "./open-files.js";
import type { QmpListener, OpenedFiles } from "./open-files.js";
import { QEMU_UMASK } from "./privsep.js";
import { claimVmCgroup } from "../vm/claim.js";
import { checkTrustedDir, writeFileReplacing } from "../vm/trust.js";
import { dirname, join } from "node:path";
import type { Child, ChildExit } from "../io/exec.js";
import type { CgroupError, VmCgroup } from "../vm/cgroup.js";
import type { Lock } from "../vm/lock.js";
import type { VmState } from "../vm/state.js";
import type { LaunchPlan } from "./prepare.js";
import type { Reporter } from "./reporter.js";
import type { CpuInfoFast } from "./vcpus.js";
import type { LostPlacement } from "../core/types.js";

/** QEMU creates its QMP socket early in start-up; poll it this often. */
const QMP_POLL_MS = 2;

/** Knobs a test turns (the defaults are what qcvm uses). */
export interface ExecuteOptions {
  /** How long QEMU gets to open its QMP socket. */
  qmpTimeoutMs?: number;
}

/** A launch that reached step 8: QEMU runs the guest. */
export interface Started {
  child: Child;
  exited: Promise<ChildExit>;
  state: VmState;
}

function cgroupDirs(cg: VmCgroup): string[] {
  return cg.dirs.flatMap((d) => [d.path, ...Object.values(d.children)]);
}

export class Launch {
  readonly lost: LostPlacement[];
  private readonly undo: Array<() => unknown> = [];
  private readonly died = new AbortController();
  private child?: Child;
  private exited?: Promise<ChildExit>;
  private childExit?: ChildExit;
  private cg?: VmCgroup;
  private qmp?: QmpClient;
  private nameLock?: Lock;
  private diskLocks: Lock[] = [];
  private failedChildren = new Map<string, string>();
  private spawnedMs?: number;
  private qmpMs?: number;
  private interrupted?: string;
  /** QEMU's line saying it could not use KVM, when that is why a detached launch failed. */
  kvmInitFailure?: string;
  state?: VmState;

  constructor(
    readonly p: LaunchPlan,
    readonly r: Reporter,
    readonly options: ExecuteOptions = {},
  ) {
    this.lost = [...p.lost];
  }

  private get name(): string {
    return this.p.name;
  }

  /** The delegated v2 base the VM cgroup is under (`--cgroup delegated`), for clean-up. */
  private get delegatedBase(): string | undefined {
    return this.p.layout.delegated ? this.p.layout.base : undefined;
  }

  private addLost(lost: readonly LostPlacement[]): void {
    for (const l of lost) {
      this.lost.push(l);
      this.r.warn(formatLost(l), { lost: l });
    }
  }

  private addCgroupErrors(errors: readonly CgroupError[]): void {
    const children = this.cg ? Object.keys(this.cg.paths.children) : [];
    const r = lostFromCgroupErrors(errors, this.p.plan, children);
    this.failedChildren = r.failedChildren;
    this.addLost(r.lost);
  }

  private strictCheck(): void {
    const placement = this.lost.filter((l) => !l.accountingOnly);
    if (this.p.profile.placement.strict && placement.length > 0)
      throw strictError(placement, "launch aborted and cleaned up");
  }

  /** A signal during start-up: abandon the launch (QEMU killed, everything undone). */
  interrupt(sig: NodeJS.Signals): void {
    this.interrupted = sig;
    this.killChild();
  }

  get interruptedBy(): string | undefined {
    return this.interrupted;
  }

  /** Run every step; on failure undo what was done, in reverse, and explain. */
  async run(): Promise<Started> {
    try {
      this.r.step(1, "plan", `plan: ${planSummary(this.p.plan)}`, { accel: this.p.accel });
      for (const l of this.p.lost) this.r.warn(formatLost(l), { lost: l });
      const steps: Array<() => void | Promise<void>> = [
        () => this.takeLocks(),
        () => this.makeRunDir(),
        () => this.makeCgroup(),
        () => this.startQemu(),
        () => this.connectQmp(),
        () => this.placeThreads(),
        () => this.runGuest(),
      ];
      for (const step of steps) {
        if (this.interrupted) throw new UserError(`interrupted by ${this.interrupted}`, "interrupted");
        await step();
      }
      return { child: this.child!, exited: this.exited!, state: this.state! };
    } catch (e) {
      throw await this.fail(e);
    } finally {
      // QEMU serves one QMP client at a time: leave it free for `qcvm stop` and stats.
      if (this.qmp && !this.qmp.isClosed) await this.qmp.close().catch(() => undefined);
    }
  }

  private killChild(): void {
    if (!this.child || this.childExit) return;
    this.child.kill("SIGKILL");
  }

  private async fail(e: unknown): Promise<unknown> {
    // A lost QMP connection during start-up usually means QEMU is exiting: give it a moment to
    // finish, so the message is its exit status and output, not a socket error.
    if (this.exited && !this.childExit && (e as { class?: string }).class !== undefined) {
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2000).unref())]);
    }
    const exit = this.childExit;
    // Read before the undo removes the run dir.
    const said = exit && this.p.detach ? logTail(this.p.paths.log) : "";
    for (const u of this.undo.reverse()) {
      try {
        await u();
      } catch {
        // keep undoing the rest
      }
    }
    if (this.interrupted) return interruptedError(this.interrupted);
    // A file operation on the run dir that failed (EACCES, ENOSPC, EROFS): say which and where.
    const err = e as NodeJS.ErrnoException;
    if (err && typeof err.code === "string" && typeof err.path === "string") {
      return new UserError(`cannot ${err.syscall ?? "use"} ${err.path}: ${err.code}; launch undone (check --run-dir)`);
    }
    const kvmLine = said.split("\n").find((l) => KVM_INIT_FAILED.test(l));
    if (exit && kvmLine && this.p.accel === "kvm" && this.p.profile.confidential.type === "none") {
      this.kvmInitFailure = kvmLine.trim();
    }
    // Never ran (the spawn itself failed: EACCES, ENOENT): not an exit, whatever execa's status says.
    if (exit?.code !== undefined) return new UserError(`cannot start ${this.p.argv[0]}: ${exit.code}`);
    if (exit && !(e instanceof UserError && e.message.startsWith("placement.strict"))) {
      return earlyExitError(exit, said, this.p.detach, this.p.argv);
    }
    // QEMU ran but its QMP did not answer (or refused a command): a failure of this launch, undone.
    if (e instanceof QmpError) {
      return new UserError(`QEMU's QMP failed: ${e.message}; QEMU was killed and the launch undone`, "failed");
    }
    return e;
  }

  // 2. The name, then the disks. Leftovers of a run that died are cleared under the name lock.
  private async takeLocks(): Promise<void> {
    const { runDir } = this.p;
    ensureRunDir(runDir);
    const notes: string[] = [];
    const nameLock = acquireVmLock(runDir, this.name, notes);
    this.nameLock = nameLock;
    this.undo.push(() => nameLock.release());
    // We hold the name lock: whatever else of the name is here, an earlier run left behind.
    const leftover = inspectVm(runDir, this.name, { ownLock: true });
    if (leftover || notes.length > 0) {
      const report = await cleanupVm(runDir, this.name, leftover?.state?.hostRoot ?? this.p.hostRoot, {
        keepNameLock: true,
        delegatedBase: leftover?.state?.cgroup.delegated ?? this.delegatedBase,
      });
      if (report.removed.length > 0)
        notes.push(`removed what an earlier run of \`${this.name}\` left behind: ${report.removed.join(", ")}`);
    }
    const written = filesToLock(this.p.profile, this.p.passed, (u) => this.undo.push(u));
    this.diskLocks = acquireDiskLocks(runDir, this.name, written, notes);
    this.undo.push(() => this.diskLocks.forEach((l) => l.release()));
    for (const n of notes) this.r.note(n);
    const disks = this.p.profile.disks.length;
    this.r.step(2, "locks", `locks: VM \`${this.name}\`${disks ? `, ${countOf(disks, "disk image")}` : ""}`);
  }

  // 3. The VM directory, then state.json at once (no pid yet): from here on, whatever instant
  // qcvm dies at, status lists the VM and stop removes it (and ends what its cgroup holds).
  private makeRunDir(): void {
    createVmDir(this.p.runDir, this.name);
    // Removes the VM cgroup and run dir whatever stage the launch reached.
    this.undo.push(() =>
      cleanupVm(this.p.runDir, this.name, this.p.hostRoot, { keepNameLock: true, delegatedBase: this.delegatedBase }),
    );
    if (dirname(this.p.qmpPath) !== this.p.paths.dir) checkTrustedDir(dirname(this.p.qmpPath), "QMP socket directory");
    this.state = this.initialState(0, "");
    writeState(this.state);
    this.r.step(3, "runtime-dir", `runtime dir ${this.p.paths.dir} (mode 0700)`);
  }

  // 4. On systemd hosts the scope is created with QEMU (systemd-run in the argv) and adopted after.
  private makeCgroup(): void {
    if (this.p.layout.systemd) {
      this.r.step(4, "cgroup", `cgroup: systemd scope machine.slice/qcvm-${this.name}.scope, created with QEMU`);
      return;
    }
    // The cgroup directory claims the name on this host (vm/claim.ts); refused when another run
    // dir's VM holds it.
    if (this.p.hostRoot === "/") claimVmCgroup(this.p.layout, this.name, this.p.runDir);
    const made = createVmCgroup(this.p.layout, this.name, this.p.plan.launch.cgroups);
    this.cg = made.cgroup;
    this.state!.cgroup.paths = cgroupDirs(made.cgroup);
    writeState(this.state!);
    this.addCgroupErrors(made.errors);
    const paths = made.cgroup.paths;
    const main = paths.cpuset ?? paths.memory;
    const cgs = this.p.plan.launch.cgroups;
    const children = Object.keys(paths.children);
    this.r.step(
      4,
      "cgroup",
      main
        ? `cgroup ${main} created (cpus ${formatList(cgs.flatMap((c) => c.cpus)) || "all"}, mems ${formatList(cgs.flatMap((c) => c.mems)) || "all"})` +
            (children.length ? ` with ${children.join(", ")}` : "")
        : "cgroup: none could be created (see the warnings)",
      { cgroup: paths },
    );
    this.strictCheck();
  }

  /** QEMU, started from inside the VM cgroup when there is one (VmCgroup.spawnInside). */
  private spawnQemu(qmp: QmpListener, files: OpenedFiles, console?: QmpListener): Child {
    const logFd = this.p.detach
      ? openSync(
          this.p.paths.log,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        )
      : undefined;
    // QEMU's files get 0600, its directories 0700, whatever the caller's umask (fork inherits it).
    const umask = process.umask(QEMU_UMASK);
    try {
      // Foreground: QEMU's output streams straight through. Detached: everything goes to qemu.log.
      // Own session: Ctrl-C reaches qcvm (which powers the guest down), and QEMU outlives qcvm.
      // start() forks before it returns, so qcvm spends no more time in the VM cgroup than the
      // fork itself (spawnInside moves it in and back around this call).
      const fds = [qmp.fd, ...this.p.passed.map((f) => files.fds.get(f.fd)!), ...(console ? [console.fd] : [])];
      const spawnNow = () =>
        start(this.p.argv, {
          output: logFd ?? "inherit",
          detached: true,
          fds,
          env: this.p.env,
          cwd: this.p.paths.dir,
        });
      // spawnInside only when there is a cgroup to be born in: with none (EACCES), qcvm must not
      // try to move itself around either.
      if (!this.cg || this.cg.dirs.length === 0) return spawnNow();
      const res = this.cg.spawnInside(spawnNow);
      const own = (x: CgroupError) => x.subject.startsWith("qcvm's own");
      for (const e of res.errors.filter(own)) this.r.warn(e.message);
      this.addLost(
        lostFromCgroupErrors(
          res.errors.filter((x) => !own(x)),
          this.p.plan,
        ).lost,
      );
      return res.value;
    } finally {
      process.umask(umask);
      if (logFd !== undefined) closeSync(logFd);
    }
  }

  // 5.
  private async startQemu(): Promise<void> {
    const memory = this.p.profile.memory;
    if (memory.backend === "file" && memory.path !== undefined && !this.p.identity.symbolic)
      checkMemoryPath(memory.path, this.p.identity);
    const files = openPassedFiles(this.p.passed, this.p.identity);
    let qmp: QmpListener | undefined;
    let console: QmpListener | undefined;
    let child: Child;
    try {
      qmp = await bindQmpSocket(this.p.qmpPath);
      if (this.p.consolePath) console = await bindQmpSocket(this.p.consolePath, "console socket");
      child = this.spawnQemu(qmp, files, console);
    } finally {
      // QEMU holds its own copies now; qcvm's go (closing the listener unlinks only its temp name).
      qmp?.close();
      console?.close();
      files.close();
    }
    this.child = child;
    this.exited = child.exited.then((res) => {
      this.childExit = res;
      this.died.abort(`QEMU exited (exit code ${exitCodeOf(res)})`);
      return res;
    });
    if (child.pid === undefined) {
      const res = await this.exited;
      throw new UserError(`cannot start ${this.p.argv[0]}: ${res.code ?? "spawn failed"}`);
    }
    const pid = child.pid;
    this.undo.push(async () => {
      this.killChild();
      await this.exited;
    });
    const startTime = pidStartTime(pid) ?? "";
    if (startTime) {
      this.nameLock?.retarget(pid, startTime);
      for (const l of this.diskLocks) l.retarget(pid, startTime);
    }
    this.state = { ...this.initialState(pid, startTime), cgroup: this.state!.cgroup };
    // Written now, not at the end: if qcvm dies mid-launch, status and stop still find QEMU.
    writeState(this.state);
    // The pidfile QEMU used to write, for other tools; written by qcvm, never through a link.
    writeFileReplacing(this.p.paths.pidfile, join(this.p.paths.dir, ".qemu.pid.tmp"), `${pid}\n`, 0o644);
    const prefix = processPolicyArgv(this.p.plan.launch.processPolicy);
    this.spawnedMs = now();
    this.r.step(
      5,
      "qemu",
      `QEMU started (pid ${pid}, ${this.p.accel}${prefix.length ? `, under ${prefix.join(" ")}` : ""})`,
      {
        pid,
      },
    );
    if (this.p.layout.systemd) {
      const made = createVmCgroup(this.p.layout, this.name, this.p.plan.launch.cgroups, { adoptPid: pid });
      this.cg = made.cgroup;
      this.addCgroupErrors(made.errors);
      this.state.cgroup.paths = cgroupDirs(made.cgroup);
      this.strictCheck();
    }
  }

  private initialState(pid: number, startTime: string): VmState {
    const { profile, plan, argv, paths } = this.p;
    return {
      version: 1,
      name: this.name,
      pid,
      pidStartTime: startTime,
      profile: profile.file,
      plan,
      argv,
      cgroup: {
        paths: this.cg ? cgroupDirs(this.cg) : [],
        ...(this.delegatedBase !== undefined ? { delegated: this.delegatedBase } : {}),
      },
      dir: paths.dir,
      qmp: this.p.qmpPath,
      pidfile: paths.pidfile,
      log: paths.log,
      startedAt: new Date().toISOString(),
      accel: this.p.accel,
      hostRoot: this.p.hostRoot,
      phase: "starting",
      detached: this.p.detach,
      lost: this.lost,
      launcher: selfIdentity(),
    };
  }

  // 6.
  private async connectQmp(): Promise<void> {
    this.qmp = await QmpClient.connect(this.p.qmpPath, {
      timeoutMs: this.options.qmpTimeoutMs ?? 60_000,
      retryMs: QMP_POLL_MS,
      signal: this.died.signal,
    });
    this.state!.qemuVersion = this.qmp.version;
    this.qmpMs = now();
    this.r.step(6, "qmp", `QMP ready at ${this.p.qmpPath} (QEMU ${this.qmp.version})`);
  }

  // 7.
  private async placeThreads(): Promise<void> {
    const cpus = await this.qmp!.command<CpuInfoFast[]>("query-cpus-fast");
    const placed = await placeVcpus(cpus, this.p.plan, this.cg, this.p.accel, this.failedChildren);
    this.addLost(placed.lost);
    const threads = cpus.map((x) => ({ vcpu: x["cpu-index"], tid: x["thread-id"] }));
    this.r.step(
      7,
      "vcpus",
      placed.placed.length ? `vCPU threads: ${placed.placed.join("; ")}` : "vCPU threads: nothing to place",
      { threads },
    );
    this.strictCheck();
    // guest-memfd-prealloc: QEMU is still paused (-S), so no private page exists yet.
    const pre = await runPreallocStep(this.p.plan, this.state!.pid, this.cg, this.p.hostRoot);
    if (pre) {
      this.state!.prealloc = pre.record;
      writeState(this.state!);
      this.r.step(7, "prealloc", pre.message, { prealloc: pre.record });
      this.addLost(pre.lost);
      this.strictCheck();
    }
  }

  // 8.
  private async runGuest(): Promise<void> {
    const qmp = this.qmp!;
    // cont returns once the vCPUs are resumed (vm_start): no need to ask again.
    await qmp.command("cont");
    const state = this.state!;
    state.phase = "running";
    state.lost = this.lost;
    writeState(state);
    // What a detached QEMU printed while starting (a CPU feature the host lacks, a deprecated
    // option) is on the terminal in the foreground: shown here too, from qemu.log, before
    // "running", which stays the last thing printed (in JSON, a field of it).
    const qemuOutput = this.p.detach ? startupOutput(state.log) : [];
    if (qemuOutput.length > 0 && this.r.format !== "json") process.stderr.write(`${qemuOutput.join("\n")}\n`);
    this.r.step(
      8,
      "running",
      `running: \`${this.name}\` (pid ${state.pid}); see qcvm status ${this.name}, stop with qcvm stop ${this.name}`,
    );
    if (!this.p.detach) await notifySystemd(`running ${this.name} (QEMU pid ${state.pid})`, (m) => this.r.warn(m));
    if (this.r.format === "json") {
      // ms (added by emit) counts from qcvm's own start; the timings say where the time went.
      this.r.emit({
        event: "running",
        name: this.name,
        pid: state.pid,
        accel: state.accel,
        qmp: state.qmp,
        lost: this.lost.map(formatLost),
        ...(qemuOutput.length > 0 ? { qemuOutput } : {}),
        timings: { spawned: this.spawnedMs, qmpReady: this.qmpMs },
      });
    }
  }
}

/**
 * Under systemd Type=notify (NOTIFY_SOCKET set, foreground): READY=1 once the guest runs with its
 * placement. Node cannot send to a unix datagram socket, so systemd-notify does (the exported unit
 * has NotifyAccess=all for it; since systemd 246 it waits until PID 1 has read the message).
 */
async function notifySystemd(status: string, warn: (m: string) => void): Promise<void> {
  if (!process.env.NOTIFY_SOCKET) return;
  try {
    const r = await run(["systemd-notify", "--ready", `--status=${status}`], { timeoutMs: 10_000 });
    if (r.exitCode !== 0) warn(`systemd-notify --ready failed (exit ${r.exitCode}): ${r.stderr.trim()}`);
  } catch (e) {
    warn(`systemd-notify --ready could not run: ${(e as Error).message}; systemd will not see the VM as started`);
  }
}

/** The non-empty lines of a detached QEMU's log so far; none when there is no log qcvm wrote. */
function startupOutput(log: string): string[] {
  let text: string;
  try {
    text = readLogFile(log, 64 * 1024);
  } catch {
    return [];
  }
  return text.split("\n").filter((l) => l.trim() !== "");
}
