// CLI tests run the built bin (dist/) exactly as a user would; `npm test` builds first, this
// makes a bare `npx vitest` work too. It rebuilds when a source is newer than the build: with a
// stale dist/, `QCVM_UPDATE_GOLDEN=1 npx vitest run test/golden.test.ts` after a renderer change
// wrote the OLD command lines into the goldens, and CLI tests passed or failed on old code.
import { existsSync, readdirSync, statSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/** Newest modification time of a file, or of any file below a directory. */
function newestMtime(path: string): number {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = 0;
  for (const e of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, e)));
  return newest;
}

/** True when `dir`'s dist/cli.js is missing or older than anything it is built from. */
export function isBuildStale(dir = root): boolean {
  const built = join(dir, "dist", "cli.js");
  if (!existsSync(built)) return true;
  const sources = ["src", "schemas", "scripts/build.mjs", "package.json"].map((p) => newestMtime(join(dir, p)));
  return Math.max(...sources) > statSync(built).mtimeMs;
}

export default function setup(): void {
  if (isBuildStale()) execFileSync(process.execPath, ["scripts/build.mjs"], { cwd: root, stdio: "inherit" });
}
