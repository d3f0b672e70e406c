// qcvm schema [--plan]: print the profile JSON Schema, or the plan schema, byte for byte as shipped
// in schemas/ (a JSON import re-printed would round 18446744073709551615 and reflow the file).
// Bundled as text: the CLI also runs from a V8 startup snapshot, where no module has a real path.
import type { Outcome } from "../core/errors.js";
import type { SchemaOptions } from "../cli/command-options.js";
import profileSchema from "../../schemas/profile.schema.json?raw";
import planSchema from "../../schemas/plan.schema.json?raw";

export async function run(o: SchemaOptions): Promise<Outcome> {
  process.stdout.write(o.plan ? planSchema : profileSchema);
  return "ok";
}
