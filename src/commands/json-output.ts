// The one JSON document a command prints on stdout with --format json: indented as status, plan
// and validate print theirs, and, for a command that ends in a failure it reports itself (stop's
// clean-up, import's or init's invalid profile), the `error` member src/cli.ts's error document has.
import type { OutcomeKind } from "../core/errors.js";

/** Print one JSON value on stdout. */
export function writeJson(doc: unknown): void {
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
}

/** `{error: {kind, message}}` when the command did not succeed, else nothing: spread into a document. */
export function errorMember(kind: OutcomeKind, message: string): { error?: { kind: OutcomeKind; message: string } } {
  return kind === "ok" ? {} : { error: { kind, message } };
}
