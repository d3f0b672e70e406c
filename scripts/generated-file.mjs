// The one way the generators (gen-types.mjs, gen-validator.mjs) write their file into
// src/generated/: write it, or with --check exit 1 when the file on disk differs from what the
// schema gives now (npm test and CI run the check; a stale file names the command that fixes it).
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { relative } from "node:path";

/** Write `fresh` to `outFile` (a file URL), or, with --check on the command line, compare. */
export function writeOrCheck(outFile, fresh, command) {
  if (!process.argv.includes("--check")) {
    writeFileSync(outFile, fresh);
    return;
  }
  let current = "";
  try {
    current = readFileSync(outFile, "utf8");
  } catch {
    // no file yet: stale by definition
  }
  if (current !== fresh) {
    const shown = relative(process.cwd(), fileURLToPath(outFile));
    process.stderr.write(`${shown} is stale: run ${command}\n`);
    process.exit(1);
  }
}
