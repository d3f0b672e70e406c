// Placeholder until the command lands.
import { UserError } from "../diagnostics.js";

export async function run(_args: Record<string, unknown>): Promise<number> {
  throw new UserError("'validate' is not implemented yet", 2);
}
