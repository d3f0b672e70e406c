// Launch progress: numbered steps on stderr (text) or one JSON event per line on stdout (json),
// warnings that --quiet never silences, and the held output of a JSON dry run.
import { formatDiagnostic } from "../core/diagnostics.js";
import { formatList } from "../core/lists.js";
import type { Diagnostic, Plan } from "../core/types.js";

export const STEPS = 8;

/** Milliseconds since this process started (performance.timeOrigin): the benchmark's clock. */
export function now(): number {
  return Math.round(performance.now() * 100) / 100;
}

/**
 * Progress on stderr (text) or one JSON event per line on stdout (json). A JSON dry run prints one
 * document, not events: its warnings and notes are kept (`held`) and go inside that document, so
 * stdout stays a single JSON value for `jq` and JSON.parse.
 */
export class Reporter {
  readonly held?: { warnings: Array<Record<string, unknown>>; notes: string[] };

  constructor(
    readonly format: "text" | "json",
    readonly quiet: boolean,
    options: { hold?: boolean } = {},
  ) {
    if (options.hold && format === "json") this.held = { warnings: [], notes: [] };
  }

  emit(event: Record<string, unknown>): void {
    process.stdout.write(`${JSON.stringify({ ...event, ms: now() })}\n`);
  }

  step(n: number, name: string, message: string, data: Record<string, unknown> = {}): void {
    if (this.quiet) return;
    if (this.format === "json") this.emit({ event: "step", step: n, of: STEPS, name, message, ...data });
    else process.stderr.write(`qcvm: [${n}/${STEPS}] ${message}\n`);
  }

  /** Warnings are not silenced by --quiet: a lost placement must never pass unnoticed. */
  warn(message: string, data: Record<string, unknown> = {}): void {
    if (this.held) this.held.warnings.push({ message, ...data });
    else if (this.format === "json") this.emit({ event: "warning", message, ...data });
    else process.stderr.write(`qcvm: warning: ${message}\n`);
  }

  /** A profile, plan or render diagnostic (already says "warning:"). */
  diagnostic(d: Diagnostic): void {
    if (this.held) this.held.warnings.push({ message: formatDiagnostic(d), diagnostic: d });
    else if (this.format === "json") this.emit({ event: "warning", message: formatDiagnostic(d), diagnostic: d });
    else process.stderr.write(`qcvm: ${formatDiagnostic(d)}\n`);
  }

  /** A dry run that fails prints no document: what it held goes to stderr, before the error. */
  releaseHeld(): void {
    for (const w of this.held?.warnings ?? []) {
      const text = String(w.message);
      process.stderr.write(w.diagnostic ? `qcvm: ${text}\n` : `qcvm: warning: ${text}\n`);
    }
    for (const n of this.held?.notes ?? []) process.stderr.write(`qcvm: note: ${n}\n`);
  }

  note(message: string): void {
    if (this.quiet) return;
    if (this.held) this.held.notes.push(message);
    else if (this.format === "json") this.emit({ event: "note", message });
    else process.stderr.write(`qcvm: note: ${message}\n`);
  }
}

/** One line per plan: each guest node's host nodes, policy and private fidelity. */
export function planSummary(plan: Plan): string {
  if (plan.nodes.length === 0) return "no NUMA placement";
  return plan.nodes
    .map((n) => `node ${n.guestNode} -> host ${formatList(n.hostNodes) || "any"} (${n.policy}, ${n.private.fidelity})`)
    .join(", ");
}
