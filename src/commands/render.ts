// `qcvm render <profile>`: the QEMU command line a launch would run, without running it.
//
// Render refuses only on what makes the command line itself wrong: profile errors and render
// errors (a value QEMU cannot take, a feature the target QEMU lacks). Plan errors (the guest does
// not fit the host, an unenforceable strict placement) are shown as warnings with a pointer to
// `qcvm plan`: the command line is still well-formed, and render is how you look at it; `launch`
// is where plan errors stop you.
import { formatDiagnostic, sortDiagnostics } from "../core/diagnostics.js";
import { shellQuote } from "../io/exec.js";
import { formatList } from "../io/fsroot.js";
import type { Diagnostic, Plan } from "../core/types.js";

export interface RenderArgs {
  profile: string;
  format?: "shell" | "json";
  host?: string;
  capabilities?: string;
  set?: string[];
  root?: string;
}

/** What `render --format json` prints. The full command is `[...prefix, ...argv]`. */
export interface RenderOutput {
  /** QEMU's argv, starting with the binary. */
  argv: string[];
  /** The plan's launch prefix (numactl ...), [] when none. */
  prefix: string[];
  /** Formatted `file: path: message` lines. */
  warnings: string[];
  /** The same warnings, structured. */
  diagnostics: Diagnostic[];
  /** What `qcvm launch` would also do that a command line cannot express. */
  notExpressed: string[];
}

export async function run(args: Record<string, unknown>): Promise<number> {
  const a = args as unknown as RenderArgs;
  const { loadContext } = await import("../pipeline/context.js");
  const { inlineProfileFiles } = await import("../render/files.js");
  const { renderArgv } = await import("../render/render.js");

  const ctx = await loadContext({
    profile: a.profile,
    set: a.set,
    root: a.root,
    host: a.host,
    capabilities: a.capabilities,
  });
  const inlined = inlineProfileFiles(ctx.profile);
  const rendered = inlined.value
    ? renderArgv(inlined.value, ctx.plan, ctx.caps)
    : { errors: inlined.errors, warnings: [] };
  const errors = sortDiagnostics(rendered.errors);
  if (errors.length > 0 || !rendered.value) {
    process.stderr.write(
      `qcvm: cannot render ${a.profile} (${errors.length} error${errors.length === 1 ? "" : "s"}):\n` +
        errors.map((d) => `${formatDiagnostic(d)}\n`).join(""),
    );
    return 1;
  }

  const warnings = [...ctx.warnings, ...planErrorsAsWarnings(ctx.plan), ...rendered.warnings];
  const out: RenderOutput = {
    argv: rendered.value,
    prefix: ctx.plan.launch.argvPrefix,
    warnings: warnings.map(formatDiagnostic),
    diagnostics: warnings,
    notExpressed: describeLaunchOnly(ctx.plan),
  };
  process.stdout.write(a.format === "json" ? `${JSON.stringify(out, null, 2)}\n` : formatShell(out));
  return 0;
}

function planErrorsAsWarnings(plan: Plan): Diagnostic[] {
  return plan.errors.map((d) => ({
    ...d,
    severity: "warning" as const,
    message: `plan error (launch would refuse): ${d.message}`,
    hint: d.hint ? `${d.hint}; see qcvm plan` : "see qcvm plan",
  }));
}

/** The plan's cgroups and pinning, one line each: a pasted command line does none of this. */
export function describeLaunchOnly(plan: Plan): string[] {
  const lines: string[] = [];
  for (const cg of plan.launch.cgroups) {
    const what = cg.tasks === "process" ? "QEMU process" : `vCPU ${formatList(cg.tasks.vcpus)}`;
    lines.push(
      `cgroup ${cg.name || "(VM)"}: cpus ${formatList(cg.cpus) || "-"}, mems ${formatList(cg.mems) || "-"} for ${what}`,
    );
  }
  // vCPUs pinned to the same CPUs share a line: "pin vCPU 0-3 to host CPUs 0-15,64-79".
  const byCpus = new Map<string, number[]>();
  for (const pin of plan.launch.pinning) {
    const key = formatList(pin.hostCpus);
    byCpus.set(key, [...(byCpus.get(key) ?? []), pin.vcpu]);
  }
  for (const [cpus, vcpus] of byCpus) lines.push(`pin vCPU ${formatList(vcpus)} to host CPUs ${cpus}`);
  return lines;
}

/** Group argv into lines: an option with its value, so the result reads one option per line. */
export function groupOptions(argv: readonly string[]): string[][] {
  const lines: string[][] = [];
  for (const word of argv) {
    const last = lines[lines.length - 1];
    if (last && last.length === 1 && last[0]!.startsWith("-") && !word.startsWith("-")) last.push(word);
    else lines.push([word]);
  }
  return lines;
}

/** A POSIX sh command, one option per line with ` \` continuations, comments first. */
export function formatShell(out: RenderOutput): string {
  const comments = out.warnings.map((w) => `# ${w.replaceAll("\n", "\n# ")}`);
  if (out.notExpressed.length > 0) {
    comments.push("# qcvm launch would also do this, which a shell command cannot:");
    for (const line of out.notExpressed) comments.push(`#   ${line}`);
  }
  const [binary, ...rest] = out.argv;
  const lines: string[] = [];
  if (out.prefix.length > 0) lines.push(out.prefix.map(shellQuote).join(" "));
  lines.push(shellQuote(binary ?? ""));
  for (const group of groupOptions(rest)) lines.push(`  ${group.map(shellQuote).join(" ")}`);
  return [...comments, lines.join(" \\\n"), ""].join("\n");
}
