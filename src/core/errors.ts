// Errors and outcomes: what a command's run came to (an OutcomeKind), and the one error type,
// which carries its kind and the diagnostics behind it. Library code says what happened, never
// which number to exit with: src/cli/exit-codes.ts alone maps kinds to the documented codes.
import type { Diagnostic } from "./types.js";

/**
 * How a command ended:
 *   ok           it did what was asked
 *   invalid      the input is wrong: a profile with errors, a plan that does not hold
 *   failed       it was refused or failed (set-up undone), or clean-up left something
 *   not-found    no such VM (or it is not running, for stats)
 *   usage        the command line is wrong (also a VM name that is not one, --host not a tree)
 *   unavailable  doctor: QEMU could not be probed; --save names a file that is not its own
 *   vm-down      status NAME: the VM is dead, or its launch was interrupted
 *   interrupted  launch: Ctrl-C or SIGTERM before the guest ran, everything undone
 *   internal     a bug in qcvm
 *   pipe-closed  the reader of stdout went away (qcvm schema | head)
 */
export type OutcomeKind =
  | "ok"
  | "invalid"
  | "failed"
  | "not-found"
  | "usage"
  | "unavailable"
  | "vm-down"
  | "interrupted"
  | "internal"
  | "pipe-closed";

/** What a command returns: a kind, or an exit status passed through (a foreground launch mirrors
 *  QEMU's; `help CMD` returns that of `CMD --help`). */
export type Outcome = OutcomeKind | { kind: "exit-status"; code: number };

/**
 * An error the user can act on: its message is printed (no stack), its kind decides the exit
 * code, and its diagnostics (profile, plan or render problems behind it) are printed as JSON by
 * commands run with --format json.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly kind: OutcomeKind = "failed",
    readonly diagnostics: readonly Diagnostic[] = [],
  ) {
    super(message);
    this.name = "UserError";
  }
}

/**
 * A failure of something qcvm drives, not of qcvm: a child process that failed (RunError,
 * io/exec.ts) or QEMU's QMP refusing, timing out or going away (QmpError, vm/qmp.ts). Where no step
 * gave it a better message, it is reported as a failure (asUserError), never as a bug in qcvm.
 */
export class ToolFailure extends Error {}
