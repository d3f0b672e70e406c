// execa with its full options, for tests that start helper processes of their own (sleep, a
// QEMU under test, the built CLI). qcvm's own code starts processes only through src/io/exec.ts's
// Runner, which keeps execa's types inside io/.
import { execa } from "execa";
import type { Options, ResultPromise } from "execa";

/** Start a long-running child. Awaiting the result waits for it to exit (never rejects). */
export function spawn(argv: readonly string[], options: Options = {}): ResultPromise {
  const [file, ...args] = argv;
  if (!file) throw new Error("spawn: empty argv");
  return execa(file, args, { reject: false, ...options });
}
