// `qcvm export <profile> --to systemd|libvirt`: hand a profile to an engine operators already run.
// The unit or domain XML goes to stdout, a summary (what the engine will not do, the version it
// needs, where to install it) to stderr. See src/export/systemd.ts and src/export/libvirt.ts.
// --format json: one document on stdout instead, {to, name, file?, text, losses, warnings, ...}.
import type { Outcome } from "../core/errors.js";
import type { ExportOptions } from "../cli/command-options.js";
import { isAbsolute, resolve } from "node:path";
import { UserError, formatDiagnostic } from "../core/diagnostics.js";
import { resolveRunDir } from "../vm/paths.js";
import { which } from "../io/exec.js";
import type { Diagnostic } from "../core/types.js";
import { writeJson } from "./json-output.js";

export async function run(a: ExportOptions): Promise<Outcome> {
  return a.to === "libvirt" ? exportLibvirtCommand(a) : exportSystemdCommand(a);
}

/** The qcvm a unit runs: --qcvm, else `qcvm` on PATH (absolute: systemd does not search a user's PATH). */
async function qcvmCommand(given: string | undefined): Promise<string[]> {
  const found = await which(given ?? "qcvm");
  if (!found)
    throw new UserError(
      given
        ? `--qcvm ${given}: not an executable file`
        : "qcvm is not on PATH, so the unit cannot name it: give its absolute path with --qcvm /path/to/qcvm",
      "usage",
    );
  return [isAbsolute(found) ? found : resolve(found)];
}

async function exportSystemdCommand(a: ExportOptions): Promise<Outcome> {
  const { loadValidProfile } = await import("../pipeline/context.js");
  const { exportSystemd } = await import("../export/systemd.js");
  // No host check: an exported unit or domain may be for another host, where its images are; the
  // unit's `qcvm launch` and libvirt's start check them there.
  const { profile, warnings } = await loadValidProfile(a.profile, { set: a.set, hostCheck: false });
  const json = a.format === "json";
  if (!json) for (const w of warnings) process.stderr.write(`${formatDiagnostic(w)}\n`);
  const out = exportSystemd({
    name: profile.name,
    profile: resolve(a.profile),
    qcvm: await qcvmCommand(a.qcvm),
    runDir: resolve(resolveRunDir(a.runDir)),
    qemuUser: a.qemuUser,
    set: a.set,
    stopTimeout: a.stopTimeout,
    startTimeout: a.startTimeout,
  });
  const needs =
    "it needs cgroup v2 for Delegate= to hand qcvm the cpuset and memory controllers; on a v1 or hybrid host launch reports the placement it loses";
  if (json) {
    writeJson({
      to: "systemd",
      name: profile.name,
      file: out.unitName,
      install: `/etc/systemd/system/${out.unitName}`,
      text: out.unit,
      needs: [needs],
      losses: [],
      ...warningMembers(warnings),
    });
    return "ok";
  }
  process.stdout.write(out.unit);
  process.stderr.write(
    [
      `qcvm: unit ${out.unitName}: install it as /etc/systemd/system/${out.unitName}, then`,
      `qcvm:   systemctl daemon-reload && systemctl enable --now ${out.unitName}`,
      `qcvm: ${needs}`,
      "",
    ].join("\n"),
  );
  return "ok";
}

async function exportLibvirtCommand(a: ExportOptions): Promise<Outcome> {
  const { loadContext } = await import("../pipeline/context.js");
  const { inlineProfileFiles } = await import("../render/files.js");
  const { exportLibvirt } = await import("../export/libvirt.js");
  const { importDomain } = await import("../import/libvirt.js");
  // No host check, as for systemd: the domain may be started on another host.
  const ctx = await loadContext({
    profile: a.profile,
    set: a.set,
    hostCheck: false,
    host: a.host,
    capabilities: a.capabilities,
  });
  const inlined = inlineProfileFiles(ctx.profile);
  if (!inlined.value) {
    throw new UserError(
      `cannot export ${a.profile}:\n${inlined.errors.map(formatDiagnostic).join("\n")}`,
      "failed",
      inlined.errors,
    );
  }
  // The plan's errors are warnings here: the domain may be started on another host.
  const planWarnings: Diagnostic[] = ctx.plan.errors.map((e) => ({ ...e, severity: "warning" }));
  const json = a.format === "json";
  if (!json) {
    for (const w of ctx.warnings) process.stderr.write(`${formatDiagnostic(w)}\n`);
    for (const w of planWarnings) process.stderr.write(`${formatDiagnostic(w)} (the plan for this host)\n`);
  }
  const out = exportLibvirt(
    inlined.value,
    ctx.plan,
    ctx.profile,
    (xml) => importDomain(xml, { useMetadata: false }).raw,
  );
  if (json) {
    writeJson({
      to: "libvirt",
      name: ctx.profile.name,
      text: out.xml,
      needs: [`libvirt >= ${out.minVersion.version} (${out.minVersion.why})`],
      minVersion: out.minVersion,
      losses: out.losses,
      keptInMetadata: out.keptInMetadata,
      ...warningMembers([...ctx.warnings, ...planWarnings]),
    });
    return "ok";
  }
  process.stdout.write(out.xml);
  const lines = [
    `qcvm: domain ${ctx.profile.name}: needs libvirt >= ${out.minVersion.version} (${out.minVersion.why}); virsh define FILE, or virsh create FILE`,
    ...(out.losses.length > 0
      ? ["qcvm: what libvirt will not do that qcvm launch would:", ...out.losses.map((l) => `qcvm:   - ${l}`)]
      : ["qcvm: libvirt does everything qcvm launch would for this profile"]),
    ...(out.keptInMetadata.length > 0
      ? [`qcvm: kept in <metadata> for qcvm import only: ${out.keptInMetadata.join(", ")}`]
      : []),
    "",
  ];
  process.stderr.write(lines.join("\n"));
  return "ok";
}

/** Warnings as render --format json has them: each as its line, and as the diagnostic itself. */
function warningMembers(ds: readonly Diagnostic[]): { warnings: string[]; diagnostics: readonly Diagnostic[] } {
  return { warnings: ds.map(formatDiagnostic), diagnostics: ds };
}
