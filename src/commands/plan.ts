// qcvm plan <profile>: where each guest node's shared and private memory will go, by which
// mechanism and how faithfully, and whether it fits. Exit 0 when the plan holds, 1 when it has
// errors (the plan is still printed in full, so the errors can be read in context).
import type { Outcome } from "../core/errors.js";
import { loadContext } from "../pipeline/context.js";
import { formatDiagnostic, outputWidth } from "../core/diagnostics.js";

type Format = "text" | "json" | "dot" | "svg";

export async function run(args: Record<string, unknown>): Promise<Outcome> {
  const format = (args.format as Format | undefined) ?? "text";
  const ctx = await loadContext({
    profile: String(args.profile),
    set: args.set as string[] | undefined,
    root: args.root as string | undefined,
    hostCheck: args.hostCheck as boolean | undefined,
    host: args.host as string | undefined,
    capabilities: args.capabilities as string | undefined,
  });
  const { plan } = ctx;
  // Validation warnings belong to the profile, not the plan: shown on stderr except in text,
  // where they join the plan's own list.
  const profileWarnings = ctx.warnings.filter((w) => !plan.warnings.includes(w));
  const fmt = await import("../plan/format.js");
  let text: string;
  switch (format) {
    case "json":
      text = `${JSON.stringify(plan, null, 2)}\n`;
      break;
    case "dot":
      text = fmt.formatPlanDot(plan);
      break;
    case "svg":
      text = await fmt.formatPlanSvg(plan);
      break;
    default:
      text = fmt.formatPlanText(
        { ...plan, warnings: [...profileWarnings, ...plan.warnings] },
        { host: (args.host as string | undefined) ?? "/", width: outputWidth() },
      );
  }
  process.stdout.write(text);
  if (format !== "text") {
    for (const w of profileWarnings) process.stderr.write(`${formatDiagnostic(w)}\n`);
    if (format !== "json") for (const e of plan.errors) process.stderr.write(`qcvm: ${formatDiagnostic(e)}\n`);
  }
  return plan.errors.length === 0 ? "ok" : "invalid";
}
