// The one table from outcome kinds to exit codes: the codes README.md and each command's --help
// document. Nothing else in qcvm picks an exit code.
import type { Outcome, OutcomeKind } from "../core/errors.js";

export const EXIT_CODES: Readonly<Record<OutcomeKind, number>> = {
  ok: 0,
  invalid: 1,
  failed: 1,
  "not-found": 1,
  usage: 2,
  unavailable: 2,
  "vm-down": 3,
  internal: 70,
  interrupted: 130,
  // A process killed by SIGPIPE exits 128 + 13, as cat or grep would.
  "pipe-closed": 141,
};

/** The exit code for an outcome (a mirrored QEMU exit status passes through). */
export function exitCodeFor(outcome: Outcome): number {
  return typeof outcome === "string" ? EXIT_CODES[outcome] : outcome.code;
}
