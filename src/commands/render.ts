// `qcvm render <profile>`: the QEMU command line a launch would run, without running it.
//
// Render refuses (exit 1) whenever launch would: profile errors, plan errors (the guest does not
// fit the host, a host node that does not exist, an unenforceable strict placement) and render
// errors (a value QEMU cannot take, a feature the target QEMU lacks). A command line printed for a
// plan that does not hold would drop or misstate the placement without saying so. `--literal`
// renders the profile as written, with no host and no plan, and says placement was not checked.
import type { Outcome } from "../core/errors.js";
import type { RenderOptions } from "../cli/command-options.js";
import { UserError, formatDiagnostic, sortDiagnostics } from "../core/diagnostics.js";
import { shellQuote } from "../core/shell-words.js";
import { formatList } from "../core/lists.js";
import { groupOptions } from "../render/argv-lines.js";
import { launchCommand } from "../render/process-policy.js";
import type { Diagnostic, Plan, Profile, QemuCapabilities } from "../core/types.js";
import { QMP_FD, passedFiles } from "../render/passed-fds.js";
import { chooseQemuUser, symbolicPrefix } from "../launch/privsep.js";

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

/** The front half for render: planned for a host, or (--literal) the profile as written. */
async function renderContext(
  a: RenderOptions,
): Promise<{ profile: Profile; plan: Plan; caps: QemuCapabilities; warnings: Diagnostic[] }> {
  const { loadContext, loadValidProfile, resolveCapabilities } = await import("../pipeline/context.js");
  if (!a.literal)
    return loadContext({
      profile: a.profile,
      set: a.set,
      root: a.root,
      hostCheck: a.hostCheck,
      host: a.host,
      capabilities: a.capabilities,
    });
  const { profile, warnings } = await loadValidProfile(a.profile, { set: a.set, root: a.root, hostCheck: a.hostCheck });
  const caps = await resolveCapabilities(profile, { profile: a.profile, capabilities: a.capabilities });
  const { literalPlan } = await import("../plan/literal.js");
  const plan = literalPlan(profile);
  return { profile, plan, caps, warnings: [...warnings, ...plan.warnings] };
}

/** Refuse with every error: the message lists them (stderr); with --format json the CLI also prints
 *  the one error document, `{"error": {kind, message}, "diagnostics": [...]}`, on stdout. */
function refuse(a: RenderOptions, why: string, errors: Diagnostic[], warnings: Diagnostic[], hint?: string): never {
  const sorted = sortDiagnostics(errors);
  throw new UserError(
    `cannot render ${a.profile}${why ? `: ${why}` : ""} (${sorted.length} error${sorted.length === 1 ? "" : "s"}):\n` +
      sorted.map(formatDiagnostic).join("\n") +
      (hint ? `\n(${hint})` : ""),
    "invalid",
    [...sorted, ...warnings],
  );
}

export async function run(a: RenderOptions): Promise<Outcome> {
  const { inlineProfileFiles } = await import("../render/files.js");
  const { renderArgv } = await import("../render/render.js");

  const ctx = await renderContext(a);
  const profileWarnings = ctx.warnings.filter((w) => !ctx.plan.warnings.includes(w));
  if (ctx.plan.errors.length > 0) {
    return refuse(
      a,
      "the plan does not hold, so launch would refuse",
      ctx.plan.errors,
      ctx.warnings,
      `qcvm plan ${a.profile} shows the whole plan; --literal renders the profile as written, without checking placement`,
    );
  }
  // What launch runs (privileges dropped, sandboxed, files and QMP as descriptors), unless
  // --literal asks for the profile as written: paths as the profile names them, no prefix.
  const launchForm = !a.literal;
  const inlined = inlineProfileFiles(ctx.profile);
  const rendered = inlined.value
    ? renderArgv(inlined.value, ctx.plan, ctx.caps, { launch: launchForm })
    : { errors: inlined.errors, warnings: [] };
  if (rendered.errors.length > 0 || !rendered.value) return refuse(a, "", rendered.errors, ctx.warnings);

  const warnings = [...profileWarnings, ...ctx.plan.warnings, ...rendered.warnings];
  const out: RenderOutput = {
    argv: rendered.value,
    // What launch as root runs: setpriv drops to the QEMU user first (launch/privsep.ts).
    prefix: launchForm
      ? launchCommand({
          drop: symbolicPrefix(chooseQemuUser(undefined, ctx.profile.qemu.user)),
          policy: ctx.plan.launch.processPolicy,
        })
      : [],
    warnings: warnings.map(formatDiagnostic),
    diagnostics: warnings,
    notExpressed: launchForm ? [...describeLaunchOnly(ctx.plan), ...describePassedFds(ctx.profile)] : [],
  };
  process.stdout.write(a.format === "json" ? `${JSON.stringify(out, null, 2)}\n` : formatShell(out));
  return "ok";
}

/** The descriptors launch opens for QEMU (render/passed-fds.ts): a pasted command line has none. */
function describePassedFds(profile: Profile): string[] {
  const lines = [
    `fd ${QMP_FD}: QMP listening socket, bound by qcvm (0600, in the VM's 0700 directory); QEMU runs with env LC_ALL=C, PATH, HOME only, umask 077`,
  ];
  for (const f of passedFiles(profile)) lines.push(`fd ${f.fd}: ${f.field} ${f.path} (${f.access}), opened by qcvm`);
  return lines;
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
