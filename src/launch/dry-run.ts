// `launch --dry-run`: prints the LaunchPlan (text, one action a line, or one JSON document);
// nothing is done.
import { groupOptions } from "../render/argv-lines.js";
import { prettyCommand, shellQuote } from "../core/shell-words.js";
import { planSummary } from "./reporter.js";
import type { Action } from "./actions.js";
import type { LaunchPlan } from "./prepare.js";
import type { Reporter } from "./reporter.js";

/** `launch --dry-run`: the LaunchPlan, printed; nothing is done. */
export function printDryRun(profileArg: string, p: LaunchPlan, r: Reporter): void {
  const { actions } = p;
  if (r.format === "json") {
    const out = {
      dryRun: true,
      name: p.name,
      accel: p.accel,
      plan: planSummary(p.plan),
      argv: p.argv,
      actions,
      warnings: r.held?.warnings ?? [],
      notes: r.held?.notes ?? [],
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  const width = Math.max(4, ...actions.map((x) => x.action.length));
  const text = (x: Action) => {
    if (x.action !== "exec") return `${x.action.padEnd(width)}  ${x.detail}\n`;
    // The command as `render` prints it, one option per line, so it reads on an 80-column
    // terminal and pastes into a shell; how it is started goes on the line after.
    const indent = " ".repeat(width + 2);
    const command = groupOptions(p.argv)
      .map((g) => g.map(shellQuote).join(" "))
      .join(` \\\n${indent}  `);
    const how = x.detail.slice(prettyCommand(p.argv).length).trim();
    return `${x.action.padEnd(width)}  ${command}\n${indent}${how}\n`;
  };
  process.stdout.write(
    `# qcvm launch --dry-run ${profileArg}: nothing below is done\n` +
      `${"plan".padEnd(width)}  ${planSummary(p.plan)} [accel ${p.accel}]\n` +
      actions.map(text).join(""),
  );
}
