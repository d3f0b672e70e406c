// qcvm plan <profile>: where each guest node's shared and private memory will go, by which
// mechanism and how faithfully, and whether it fits. Exit 0 when the plan holds, 1 when it has
// errors (the plan is still printed in full, so the errors can be read in context).
import type { Outcome } from "../core/errors.js";
import type { PlanOptions } from "../cli/command-options.js";
import { loadContext } from "../pipeline/context.js";
import { formatDiagnostic, outputWidth } from "../core/diagnostics.js";

export async function run(o: PlanOptions): Promise<Outcome> {
  const { format } = o;
  const ctx = await loadContext(o);
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
        { host: o.host ?? "/", width: outputWidth() },
      );
  }
  process.stdout.write(text);
  if (format !== "text") {
    for (const w of profileWarnings) process.stderr.write(`${formatDiagnostic(w)}\n`);
    if (format !== "json") for (const e of plan.errors) process.stderr.write(`qcvm: ${formatDiagnostic(e)}\n`);
  }
  return plan.errors.length === 0 ? "ok" : "invalid";
}
