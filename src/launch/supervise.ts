// Foreground supervision: one signal handler from start-up to exit (SIGINT/SIGTERM/SIGHUP abandon
// a launch that is starting, and power a running foreground guest down), then waiting for QEMU to
// exit, mirroring its exit code and cleaning up.
import { cleanupVm } from "../vm/cleanup.js";
import { readVmLock } from "../vm/lock.js";
import { stopQemu } from "../vm/stop.js";
import { exitCodeOf } from "./explain.js";
import type { ChildExit } from "../io/exec.js";
import type { VmState } from "../vm/state.js";
import type { Launch } from "./execute.js";
import type { Reporter } from "./reporter.js";

/** Foreground SIGINT/SIGTERM: how long the guest gets to power down before QEMU is told to quit. */
export const POWERDOWN_TIMEOUT_MS = 10_000;

const SIGNALS: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * A signal to a foreground launcher: the first asks the guest to power down and quits QEMU after
 * POWERDOWN_TIMEOUT_MS; a second quits at once. QMP is connected only for that.
 */
function askQemuToStop(state: VmState, force: boolean, sig: NodeJS.Signals, r: Reporter): void {
  r.note(
    force
      ? `${sig} again: quitting QEMU now`
      : `${sig}: asking the guest to power down (QEMU quits after ${POWERDOWN_TIMEOUT_MS / 1000} s; send it again to quit now)`,
  );
  void stopQemu(state, { force, timeoutMs: POWERDOWN_TIMEOUT_MS }).catch((e: Error) => r.warn(e.message));
}

/**
 * What SIGINT/SIGTERM/SIGHUP mean, with one handler for the whole launch so no signal ever falls
 * between two of them (and Node's default, dying on the spot, never applies while QEMU or the
 * host is half set up): during start-up, abandon the launch (QEMU killed, everything undone);
 * once the guest runs in the foreground, power it down; once it runs detached, nothing (QEMU is
 * not ours to stop then). `current` is the launch in progress (a TCG retry replaces it).
 */
export class SignalGuard {
  private runningSignals = 0;
  private readonly handler = (sig: NodeJS.Signals) => this.onSignal(sig);

  constructor(
    public current: Launch,
    private readonly r: Reporter,
  ) {
    for (const sig of SIGNALS) process.on(sig, this.handler);
  }

  private onSignal(sig: NodeJS.Signals): void {
    const l = this.current;
    if (l.state?.phase !== "running") l.interrupt(sig);
    else if (!l.p.detach) {
      this.runningSignals++;
      askQemuToStop(l.state, this.runningSignals > 1, sig, this.r);
    }
  }

  release(): void {
    for (const sig of SIGNALS) process.off(sig, this.handler);
  }
}

/** Foreground: QEMU's output streams through (inherited stdio); wait for it to exit, mirror its
 *  exit code, clean up. */
export async function superviseForeground(
  exited: Promise<ChildExit>,
  state: VmState,
  runDir: string,
  r: Reporter,
): Promise<number> {
  const res = await exited;
  const code = exitCodeOf(res);
  // Clean up unless the name already belongs to a newer launch (after a `qcvm stop` cleaned up).
  const holder = readVmLock(runDir, state.name);
  if (!holder || holder.pid === state.pid) {
    const report = await cleanupVm(runDir, state.name, state.hostRoot, { delegatedBase: state.cgroup.delegated });
    for (const e of report.errors) r.warn(`cleanup: ${e}`);
  }
  if (r.format === "json") r.emit({ event: "exited", name: state.name, pid: state.pid, exitCode: code });
  else if (!r.quiet)
    process.stderr.write(
      `qcvm: \`${state.name}\` exited (${res.signal ? `killed by ${res.signal}` : `exit code ${code}`}); cleaned up\n`,
    );
  return code;
}
