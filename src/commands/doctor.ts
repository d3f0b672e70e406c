// qcvm doctor: what this host and QEMU can do. It separates what decides whether a guest type
// runs here at all (KVM, SEV, SEV-ES, SEV-SNP, TDX: "this host cannot run X") from optional
// features only the profiles that use them need, lists the private-memory levers from the
// planner's own table, and, given profiles, says for each whether it runs here, by planning it as
// `qcvm plan` would: doctor and plan cannot disagree. Doctor reports; it does not fail: exit 0
// whatever it finds, 2 only when a probe itself cannot run (no QEMU binary, QEMU dies, an
// unreadable --capabilities file) or --save would overwrite a file that is not a capabilities
// file (or --save-host a directory that is not new or empty); 1 when --save or --save-host cannot
// write.
import type { Outcome } from "../core/errors.js";
import type { DoctorOptions } from "../cli/command-options.js";
import { readFileSync, statSync } from "node:fs";
import { UserError, formatDiagnostic, outputWidth } from "../core/diagnostics.js";
import { checkHostRoot, isRealHost } from "../io/fsroot.js";
import { formatList } from "../core/lists.js";
import { wrap } from "../plan/format.js";
import { probeHostAsync } from "../probe/host.js";
import { check, diagnoseHost, diagnoseLevers, diagnoseQemu, findingMessage, summarize } from "./doctor-findings.js";
import type { Finding, FindingStatus } from "./doctor-findings.js";
import type { HostInfo, QemuCapabilities } from "../core/types.js";

export { diagnoseHost, diagnoseLevers, diagnoseQemu, findingMessage, summarize };
export type { Finding, FindingStatus };

/** Whether one profile runs here, decided by the planner and the renderer, as launch decides it. */
export interface ProfileVerdict {
  profile: string;
  runs: boolean;
  /** Plan, render or validation errors, formatted. */
  errors: string[];
  /** The plan's private fidelity when it runs. */
  fidelity?: string;
}

export interface DoctorReport {
  host: HostInfo;
  qemu: QemuCapabilities | null;
  /** Why QEMU could not be probed, when it could not. */
  qemuError?: string;
  findings: Finding[];
  profiles?: ProfileVerdict[];
}

function gib(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

function nodesTable(host: HostInfo): string[] {
  const rows = [["node", "cpus", "memory", "free", "2M free/total", "1G free/total", "distances"]];
  for (const n of host.nodes) {
    rows.push([
      `${n.id}`,
      n.memoryOnly ? "(memory only)" : formatList(n.cpus),
      gib(n.memTotalBytes),
      gib(n.memFreeBytes),
      `${n.hugepages["2M"].free}/${n.hugepages["2M"].total}`,
      `${n.hugepages["1G"].free}/${n.hugepages["1G"].total}`,
      host.nodes.map((o) => n.distances[o.id] ?? "-").join(" "),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => `    ${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")}`);
}

const MARK: Record<FindingStatus, string> = { ok: "✓", missing: "✗", info: "•" };

function findingLines(list: Finding[], label = "rules out"): string[] {
  return list.map((f) =>
    f.status === "missing"
      ? `  ${MARK[f.status]} ${f.item}: ${f.detail}\n      ${label}: ${f.rulesOut}`
      : `  ${MARK[f.status]} ${f.item}: ${f.detail}`,
  );
}

/** The report as text; lines longer than `width` wrap with a hanging indent (the node table does not). */
/** The closing lines: what runs, what cannot, and how many optional features are unavailable. */
function verdictLines(r: DoctorReport): string[] {
  const out: string[] = [""];
  const summary = r.findings.filter((f) => f.area === "summary");
  const runs = summary.filter((f) => f.status === "ok").map((f) => f.item.replace("confidential.type ", ""));
  const cannot = summary.filter((f) => f.status === "missing");
  if (summary.length > 0) {
    out.push(`Runs here: ${runs.length > 0 ? runs.join(", ") : "nothing"}.`);
    if (cannot.length > 0)
      out.push(
        `Cannot run here: ${cannot.map((f) => `${f.item.replace("confidential.type ", "")} (${f.detail})`).join(", ")}.`,
      );
  } else {
    const hostCannot = r.findings.filter((f) => f.kind === "runs" && f.status === "missing").map((f) => f.item);
    if (hostCannot.length > 0) out.push(`This host cannot run: ${hostCannot.join(", ")}.`);
  }
  const optional = r.findings.filter((f) => f.kind === "feature" && f.status === "missing").length;
  out.push(
    optional === 0
      ? "Every optional feature is available."
      : `${optional} optional feature${optional === 1 ? " is" : "s are"} not available here (✗ above); only profiles that use ${optional === 1 ? "it" : "them"} are affected${r.profiles ? "" : " (name profiles to check them: qcvm doctor PROFILE...)"}.`,
  );
  for (const v of r.profiles ?? []) {
    out.push(
      v.runs
        ? `  ✓ ${v.profile}: runs here (private memory placement: ${v.fidelity})`
        : `  ✗ ${v.profile}: cannot run here (${v.errors.length} error${v.errors.length === 1 ? "" : "s"})`,
    );
    for (const e of v.errors) out.push(`      ${e}`);
  }
  return out;
}

function qemuLines(r: DoctorReport): string[] {
  if (!r.qemu) return [`QEMU: not probed: ${r.qemuError ?? "unknown error"}`];
  const out: string[] = [];
  const q = r.findings.filter((f) => f.area === "qemu");
  out.push(
    `QEMU ${r.qemu.version} (${r.qemu.source === "probe" ? `probed ${r.qemu.binary ?? ""}` : r.qemu.source === "file" ? "from a capabilities file" : "built-in table"})`,
  );
  out.push(...q.filter((f) => f.status === "ok").map((f) => `  ${MARK.ok} ${f.item}`));
  out.push(...q.filter((f) => f.status === "missing").map((f) => `  ${MARK.missing} ${f.item}: ${f.rulesOut}`));
  out.push("", "Private memory of SEV-SNP and TDX guests: the levers qcvm plan chooses from, best first");
  out.push(
    ...findingLines(
      r.findings.filter((f) => f.area === "placement"),
      "why",
    ),
  );
  out.push("", "Together");
  for (const f of r.findings.filter((x) => x.area === "summary"))
    out.push(`  ${MARK[f.status]} ${f.item}: ${f.detail}`);
  return out;
}

/** The report as text; lines longer than `width` wrap with a hanging indent (the node table does not). */
export function formatDoctorText(r: DoctorReport, width = 100): string {
  const hostFindings = r.findings.filter((f) => f.area === "host" && f.item !== "kernel");
  const table = nodesTable(r.host);
  const out: string[] = [
    `Host ${r.host.root}`,
    `  Linux ${r.host.kernel}, ${r.host.nodes.length} NUMA node(s):`,
    ...table,
  ];
  out.push(...findingLines(hostFindings.filter((f) => f.kind !== "feature")));
  out.push("  Optional features (only profiles that use them need them):");
  out.push(...findingLines(hostFindings.filter((f) => f.kind === "feature")));
  out.push("", ...qemuLines(r), ...verdictLines(r));
  const fixed = new Set(table);
  const fit = (line: string): string[] => {
    if (line.length <= width || fixed.has(line)) return [line];
    const indent = /^ */.exec(line)![0];
    return wrap(line.slice(indent.length), indent, `${indent}    `, width);
  };
  return `${out
    .flatMap((l) => l.split("\n"))
    .flatMap(fit)
    .join("\n")}\n`;
}

/** Plan (and render) each named profile for this host and QEMU, as `qcvm plan` and launch would. */
async function checkProfiles(files: string[], host: HostInfo, caps: QemuCapabilities): Promise<ProfileVerdict[]> {
  const { loadValidProfile } = await import("../pipeline/context.js");
  const { planPlacement, planFidelity } = await import("../plan/plan.js");
  const { inlineProfileFiles } = await import("../render/files.js");
  const { renderArgv } = await import("../render/render.js");
  const out: ProfileVerdict[] = [];
  for (const file of files) {
    try {
      const { profile } = await loadValidProfile(file);
      const plan = planPlacement(profile, host, caps);
      const inlined = inlineProfileFiles(profile);
      const rendered = inlined.value ? renderArgv(inlined.value, plan, caps) : inlined;
      const errors = [...plan.errors, ...rendered.errors].map(formatDiagnostic);
      out.push(
        errors.length > 0
          ? { profile: file, runs: false, errors }
          : {
              profile: file,
              runs: true,
              errors,
              fidelity: plan.guestMemfd ? planFidelity(plan) : "not applicable (no guest_memfd)",
            },
      );
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      out.push({ profile: file, runs: false, errors: [e.message] });
    }
  }
  return out;
}

export async function buildReport(args: DoctorOptions): Promise<{ report: DoctorReport; probeFailed: boolean }> {
  const root = args.host ?? "/";
  if (args.host !== undefined) checkHostRoot(root);
  const host = await probeHostAsync(root);

  let qemu: QemuCapabilities | null = null;
  let qemuError: string | undefined;
  try {
    if (args.capabilities) {
      const { loadCapabilities } = await import("../probe/qemu.js");
      qemu = loadCapabilities(args.capabilities);
    } else {
      const { probeQemu } = await import("../probe/qemu.js");
      qemu = await probeQemu(args.qemu ?? "qemu-system-x86_64");
    }
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    qemuError = e.message;
  }
  const findings = [
    ...diagnoseHost(host),
    ...(qemu ? [...diagnoseQemu(qemu), ...diagnoseLevers(host, qemu), ...summarize(host, qemu)] : []),
  ];
  // The live half of guest-memfd-prealloc's needs, on the machine itself only: the native calls
  // load (koffi), and pidfd_getfd works on another process here (seccomp, ptrace rights).
  if (isRealHost(root)) {
    const { probePrealloc } = await import("../launch/prealloc.js");
    for (const p of await probePrealloc()) findings.push(check("host", p.item, p.ok, p.detail, p.rulesOut));
  }
  if (!qemu) {
    findings.push({
      area: "qemu",
      item: "QEMU",
      kind: "runs",
      status: "missing",
      detail: qemuError ?? "not probed",
      rulesOut: "every profile: nothing can be launched, and capabilities cannot be detected",
    });
  }
  const report: DoctorReport = { host, qemu, ...(qemuError ? { qemuError } : {}), findings };
  if (qemu && args.profiles && args.profiles.length > 0)
    report.profiles = await checkProfiles(args.profiles, host, qemu);
  return { report, probeFailed: qemu === null };
}

/**
 * `--save FILE` replaces FILE. Refuse when FILE exists and is not a capabilities file: a slip such
 * as `--save profiles/snp.yaml` would otherwise overwrite a profile. Checked before probing, so the
 * refusal comes first and nothing is half done.
 */
function checkSaveTarget(file: string): void {
  let text: string;
  try {
    if (statSync(file).isDirectory())
      throw new UserError(`--save ${file}: is a directory (name the file to write, e.g. ${file}/caps.json)`, "usage");
    text = readFileSync(file, "utf8");
  } catch (e) {
    if (e instanceof UserError) throw e;
    return; // missing (to be created) or unreadable (the write reports it)
  }
  let format: unknown;
  try {
    format = (JSON.parse(text) as { format?: unknown }).format;
  } catch {
    // not JSON: not ours
  }
  if (format !== "qcvm-capabilities/v1") {
    throw new UserError(
      `--save ${file}: the file exists and is not a qcvm capabilities file; not overwriting it (remove it, or save to another name)`,
      "usage",
    );
  }
}

export async function run(a: DoctorOptions): Promise<Outcome> {
  if (a.save) checkSaveTarget(a.save);
  const saveHost = a.saveHost ? await import("../probe/save-host.js") : undefined;
  if (a.saveHost) saveHost?.checkSaveHostTarget(a.saveHost);
  const { report, probeFailed } = await buildReport(a);
  if (a.format === "json") {
    const findings = report.findings.map((f) => ({ ...f, message: findingMessage(f) }));
    process.stdout.write(`${JSON.stringify({ ...report, findings }, null, 2)}\n`);
  } else {
    process.stdout.write(formatDoctorText(report, outputWidth()));
  }
  // The host tree needs no QEMU: saved even when QEMU could not be probed.
  if (a.saveHost && saveHost) {
    const files = await saveHost.saveHostTree(a.host ?? "/", a.saveHost);
    process.stderr.write(
      `qcvm: saved this host (${files.length} files) to ${a.saveHost} (use with --host ${a.saveHost})\n`,
    );
  }
  if (probeFailed) {
    process.stderr.write(`qcvm: ${report.qemuError}\n`);
    return "unavailable";
  }
  if (a.save && report.qemu) {
    const { saveCapabilities } = await import("../probe/qemu.js");
    saveCapabilities(report.qemu, a.save);
    process.stderr.write(
      `qcvm: saved QEMU ${report.qemu.version} capabilities to ${a.save} (use with --capabilities ${a.save})\n`,
    );
  }
  return "ok";
}
