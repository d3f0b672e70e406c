// How a launch failed, in words: QEMU's exit as a shell-style code, its last words from qemu.log,
// the -cpu abort hint, the interruption and QEMU's "could not use KVM" line (which makes the
// launch retry under TCG).
import { readFileSync } from "node:fs";
import { UserError } from "../core/diagnostics.js";
import type { ChildExit } from "../io/exec.js";

/** QEMU's own words when KVM fails in its hands (KVM_CREATE_VM refused, say, by a nested host). */
export const KVM_INIT_FAILED = /failed to initialize kvm|Could not access KVM kernel module/;

/** QEMU's exit as a shell-style code: the exit status, or 128 + signal number. */
export function exitCodeOf(r: { exitCode?: number; signal?: string }): number {
  if (typeof r.exitCode === "number") return r.exitCode;
  const signals: Record<string, number> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGABRT: 6,
    SIGKILL: 9,
    SIGSEGV: 11,
    SIGTERM: 15,
  };
  return 128 + (r.signal ? (signals[r.signal] ?? 0) : 0);
}

export function describeExit(r: ChildExit): string {
  return r.signal ? `killed by ${r.signal}` : `exit code ${exitCodeOf(r)}`;
}

/** The last lines of a log file ("" when there is none). */
export function logTail(path: string, lines = 20): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return "";
  }
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/**
 * QEMU 7.2 under KVM asserts ("failed to set MSR 0x10a", SIGABRT) with -cpu host or max on some
 * hosts, nested AMD ones among them: a profile left at the default model fails with nothing that
 * says which field to change.
 */
export function cpuAbortHint(exit: ChildExit, argv: readonly string[]): string {
  const i = argv.indexOf("-cpu");
  const model = i === -1 ? undefined : argv[i + 1]?.split(",")[0];
  if (exit.signal !== "SIGABRT" || (model !== "host" && model !== "max")) return "";
  return `\n(QEMU aborted with -cpu ${model}, as QEMU 7.2 does on some KVM hosts: set cpu.model: qemu64, or a named model such as EPYC-v4)`;
}

export function interruptedError(sig: string): UserError {
  return new UserError(`launch interrupted by ${sig}; QEMU stopped and everything cleaned up`, "interrupted");
}

/** QEMU exited during start-up: its exit, and its words (detached: from qemu.log). */
export function earlyExitError(exit: ChildExit, said: string, detach: boolean, argv: readonly string[]): UserError {
  return new UserError(
    `QEMU exited during start-up (${describeExit(exit)}); cleaned up` +
      (detach ? (said ? `. QEMU said:\n${said}` : "; it printed nothing") : "; QEMU's messages are above") +
      cpuAbortHint(exit, argv),
  );
}
