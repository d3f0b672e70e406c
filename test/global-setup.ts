// CLI tests run the built bin (dist/) exactly as a user would; `npm test` builds first, this
// makes a bare `npx vitest` work too.
import { existsSync } from "node:fs";
import { execFileSync } from "node:child_process";

export default function setup(): void {
  if (!existsSync(new URL("../dist/cli.js", import.meta.url))) {
    execFileSync(process.execPath, ["scripts/build.mjs"], { stdio: "inherit" });
  }
}
