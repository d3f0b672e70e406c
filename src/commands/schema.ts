// qcvm schema [--plan]: print the profile JSON Schema (bundled), or the plan schema from the package.
import { readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { UserError } from "../diagnostics.js";

/** The package root: the nearest directory above this module with a package.json (dist/ or src/commands/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "schemas"))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new UserError("cannot find qcvm's schemas/ directory next to its package.json", 70);
    dir = up;
  }
}

export async function run(args: Record<string, unknown>): Promise<number> {
  if (args.plan === true) {
    const file = join(packageRoot(), "schemas", "plan.schema.json");
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      throw new UserError(`the plan schema is missing from this installation (${file})`, 1);
    }
    process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
    return 0;
  }
  const schema = (await import("../../schemas/profile.schema.json", { with: { type: "json" } })).default;
  process.stdout.write(`${JSON.stringify(schema, null, 2)}\n`);
  return 0;
}
