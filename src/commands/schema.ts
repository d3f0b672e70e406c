// qcvm schema [--plan]: print the profile JSON Schema, or the plan schema. Both are bundled as
// JSON imports: the CLI also runs from a V8 startup snapshot, where no module has a real file path.
import type { Outcome } from "../core/errors.js";
import profileSchema from "../../schemas/profile.schema.json" with { type: "json" };
import planSchema from "../../schemas/plan.schema.json" with { type: "json" };

export async function run(args: Record<string, unknown>): Promise<Outcome> {
  const schema = args.plan === true ? planSchema : profileSchema;
  process.stdout.write(`${JSON.stringify(schema, null, 2)}\n`);
  return "ok";
}
