// qcvm doctor: what this host and QEMU can do, and for everything missing, which profile features
// that rules out. Doctor reports; it does not fail: exit 0 whatever it finds, 2 only when a probe
// itself cannot run (no QEMU binary, QEMU dies, an unreadable --capabilities file) or --save
// would overwrite a file that is not a capabilities file; 1 when --save cannot write.
import { readFileSync, statSync } from "node:fs";
import { FEATURES, hasFeature } from "../probe/capabilities.js";
import { CONFIDENTIAL } from "../core/confidential.js";
import {
  CONFIDENTIAL_HOST,
  CONFIDENTIAL_KINDS,
  KERNEL,
  NUMACTL,
  confidentialHostSupport,
  kernelAtLeast,
} from "../core/host-support.js";
import type { Feature, FeatureDef } from "../probe/capabilities.js";
import { UserError, outputWidth } from "../core/diagnostics.js";
import { checkHostRoot, formatList, isRealHost } from "../io/fsroot.js";
import { wrap } from "../plan/format.js";
import { probeHostAsync, probeKvm, readInterleaveWeights } from "../probe/host.js";
import type { KvmAccess } from "../probe/host.js";
import type { HostInfo, QemuCapabilities } from "../core/types.js";

interface Args {
  host?: string;
  qemu?: string;
  format?: "text" | "json";
  save?: string;
  capabilities?: string;
}

export type FindingStatus = "ok" | "missing" | "info";

export interface Finding {
  /** "summary": what host and QEMU together can run. */
  area: "host" | "qemu" | "summary";
  /** Short name: "SEV-SNP", "numactl", or a FEATURES key for QEMU. */
  item: string;
  status: FindingStatus;
  /** What was found. */
  detail: string;
  /** For status "missing": the profile features this rules out, and what would fix it. */
  rulesOut?: string;
}

export interface DoctorReport {
  host: HostInfo;
  qemu: QemuCapabilities | null;
  /** Why QEMU could not be probed, when it could not. */
  qemuError?: string;
  findings: Finding[];
}

function check(area: Finding["area"], item: string, ok: boolean, detail: string, rulesOut: string): Finding {
  return ok ? { area, item, status: "ok", detail } : { area, item, status: "missing", detail, rulesOut };
}

function gib(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

/** /dev/kvm as this user meets it; a fixture tree (--host) says nothing about that, so it passes. */
function kvmAccess(host: HostInfo): KvmAccess {
  return !isRealHost(host.root) ? { ok: true, present: true } : probeKvm("/dev/kvm");
}

export function diagnoseHost(host: HostInfo): Finding[] {
  const f: Finding[] = [];
  const h = (item: string, ok: boolean, detail: string, rulesOut: string) =>
    f.push(check("host", item, ok, detail, rulesOut));
  const info = (item: string, detail: string) => f.push({ area: "host", item, status: "info", detail });

  info("kernel", `Linux ${host.kernel}`);
  const kvm = kvmAccess(host);
  h(
    "KVM",
    host.kvm && kvm.ok,
    host.kvm
      ? kvm.ok
        ? "/dev/kvm present"
        : `/dev/kvm present but not read/write for this user (${kvm.errno})`
      : isRealHost(host.root)
        ? (kvm.problem ?? "the kvm module is not loaded")
        : "no /dev/kvm (or kvm module not loaded)",
    "machine.accel kvm profiles cannot run (TCG only), and no confidential guest can",
  );
  h(
    "guest_memfd",
    kernelAtLeast(host, KERNEL.guestMemfd),
    `kernel ${host.kernel}`,
    `SEV-SNP and TDX guests keep private memory in guest_memfd: needs Linux >= ${KERNEL.guestMemfd}`,
  );
  for (const type of CONFIDENTIAL_KINDS) {
    const v = confidentialHostSupport(type, host);
    h(
      CONFIDENTIAL[type].label,
      v.ok,
      v.found,
      `confidential.type ${type} profiles cannot run on this host${CONFIDENTIAL_HOST[type].kernel ? ` (needs ${v.requires})` : ""}`,
    );
  }

  const memOnly = host.nodes.filter((n) => n.memoryOnly).map((n) => n.id);
  h(
    "NUMA",
    host.nodes.length > 1,
    `${host.nodes.length} node${host.nodes.length === 1 ? "" : "s"}${memOnly.length ? `, memory-only (CXL-like): ${formatList(memOnly)}` : ""}`,
    "one host node: every guest node's memory lands on host node 0; host-nodes other than 0 cannot be used",
  );
  for (const size of ["2M", "1G"] as const) {
    const total = host.nodes.reduce((s, n) => s + n.hugepages[size].total, 0);
    const free = host.nodes.reduce((s, n) => s + n.hugepages[size].free, 0);
    const where = host.nodes.filter((n) => n.hugepages[size].free > 0).map((n) => n.id);
    h(
      `hugepages ${size}`,
      free > 0,
      `${free}/${total} free${where.length ? ` on node${where.length > 1 ? "s" : ""} ${formatList(where)}` : ""}`,
      `memory.hugepages ${size} profiles cannot get memory (reserve pages in /sys/devices/system/node/nodeN/hugepages/hugepages-${size === "2M" ? "2048" : "1048576"}kB/nr_hugepages)`,
    );
  }

  const cg = host.cgroup;
  const where = (c: string) => (cg.version === 1 ? cg.v1Mounts[c] : cg.version === 2 ? cg.v2Mount : undefined);
  info(
    "cgroups",
    cg.version === "none"
      ? "no cgroup hierarchy mounted"
      : `v${cg.version}${cg.version === 1 && cg.v2Mount ? ` (hybrid: v2 also at ${cg.v2Mount})` : ` at ${cg.version === 2 ? cg.v2Mount : "per controller"}`}${cg.systemd ? ", systemd" : ""}`,
  );
  h(
    "cpuset cgroup",
    cg.controllers.includes("cpuset"),
    cg.controllers.includes("cpuset") ? `at ${where("cpuset")}` : "cpuset controller not available",
    "per-vCPU cpuset placement of private memory (first-touch fidelity) and vCPU confinement cannot be applied",
  );
  h(
    "memory cgroup",
    cg.controllers.includes("memory"),
    cg.controllers.includes("memory") ? `at ${where("memory")}` : "memory controller not available",
    "per-VM memory accounting: `qcvm stats` cannot show private (guest_memfd) memory per node",
  );

  const nm = host.numactl;
  h(
    "numactl",
    nm.version !== undefined || nm.preferredMany,
    nm.version ? `numactl ${nm.version}` : nm.preferredMany ? "numactl (version unknown)" : "not installed",
    "process-wide memory policy (numactl before QEMU) cannot be applied: install numactl",
  );
  h(
    "preferred-many",
    nm.preferredMany,
    nm.preferredMany ? "numactl --preferred-many" : "numactl has no --preferred-many",
    `process-wide policy preferred over several host nodes (needs numactl >= ${NUMACTL.preferredMany} and Linux >= ${KERNEL.preferredMany})`,
  );
  const weights = readInterleaveWeights(host.root);
  const shown = Object.entries(weights)
    .map(([n, w]) => `${n}:${w}`)
    .join(" ");
  h(
    "weighted interleave (kernel)",
    host.weightedInterleave,
    host.weightedInterleave
      ? `sys/kernel/mm/mempolicy/weighted_interleave${shown ? ` (weights ${shown})` : ""}`
      : `kernel ${host.kernel}`,
    `policy weighted-interleave cannot be used (needs Linux >= ${KERNEL.weightedInterleave})`,
  );
  h(
    "weighted interleave (numactl)",
    nm.weightedInterleave,
    nm.weightedInterleave ? "numactl --weighted-interleave" : "numactl has no --weighted-interleave",
    `policy weighted-interleave for private memory through a numactl prefix (needs numactl >= ${NUMACTL.weightedInterleave})`,
  );
  h(
    "guest_memfd mempolicy",
    host.guestMemfdMempolicy,
    `kernel ${host.kernel}`,
    `kernel < ${KERNEL.guestMemfdMempolicy}: private memory placement is first-touch at best (vCPU cpusets), never exact`,
  );
  return f;
}

/** What each QEMU feature's absence rules out, in profile terms. */
const RULES_OUT: Record<Feature, string> = {
  "memory-backend-memfd": "memory.backend memfd (the default) cannot be rendered",
  "memory-backend-ram": "memory.backend ram cannot be rendered",
  "memory-backend-file": "memory.backend file cannot be rendered",
  "numa-memdev": "guest NUMA nodes (numa.nodes) cannot be rendered",
  "numa-dist": "numa.distances cannot be rendered",
  "machine-memory-backend": "guests without numa.nodes cannot name their memory backend",
  "prealloc-threads": "memory.preallocThreads cannot be set",
  reserve: "memory.reserve cannot be set",
  "thread-context":
    "NUMA-local preallocation (a thread-context per node) is unavailable: prealloc runs on whatever CPUs QEMU has",
  "prealloc-context": "NUMA-local preallocation (prealloc-context) is unavailable",
  "preferred-many": "policy preferred over several host nodes acts on the first node only",
  "sev-guest": "confidential.type sev and sev-es profiles cannot run",
  "sev-kernel-hashes": "confidential.kernelHashes cannot be set",
  "sev-legacy-vm-type": "confidential.legacyVmType cannot be set",
  "sev-snp-guest": "confidential.type sev-snp profiles cannot run",
  "tdx-guest": "confidential.type tdx profiles cannot run",
  igvm: "firmware.igvm profiles cannot run",
  "memory-backend-shm": "POSIX shm memory backends are unavailable (qcvm profiles do not need them)",
  "guest-memfd-backend": "exact private-memory placement through the backend's host-nodes/policy is unavailable",
  "memfd-guest-memfd":
    "exact placement of a non-confidential guest's guest_memfd through memory-backend-memfd is unavailable",
  "snp-convert-in-place": "in-place private/shared conversion for SEV-SNP is unavailable",
};

export function diagnoseQemu(caps: QemuCapabilities): Finding[] {
  return (Object.keys(FEATURES) as Feature[]).map((feature) => {
    const def: FeatureDef = FEATURES[feature];
    const need = def.since ? `needs QEMU >= ${def.since}` : "in no upstream QEMU release yet";
    return check("qemu", feature, hasFeature(caps, feature), def.what, `${RULES_OUT[feature]}; ${need}`);
  });
}

/** A confidential type runs where the host supports it (the host-support table) and QEMU has its object. */
const RUNNABLE: { type: string; host: (h: HostInfo) => boolean; feature: Feature | null }[] = [
  { type: "none (plain KVM)", host: (h) => h.kvm && kvmAccess(h).ok, feature: null },
  ...CONFIDENTIAL_KINDS.map((t) => ({
    type: t,
    host: (h: HostInfo) => confidentialHostSupport(t, h).ok,
    feature: CONFIDENTIAL[t].qomType satisfies Feature,
  })),
];

/** Which confidential.type values this host and this QEMU can run together. */
export function summarize(host: HostInfo, caps: QemuCapabilities): Finding[] {
  return RUNNABLE.map(({ type, host: hostOk, feature }) => {
    const h = hostOk(host);
    const q = feature === null || hasFeature(caps, feature);
    const why = [h ? "" : "the host cannot", q ? "" : `QEMU ${caps.version} cannot`].filter(Boolean).join(" and ");
    return check(
      "summary",
      `confidential.type ${type}`,
      h && q,
      h && q ? "host and QEMU can run it" : why,
      `profiles with confidential.type ${type.split(" ")[0]} cannot launch here`,
    );
  });
}

/** One line per missing thing, as the json `message` and the text report print it. */
export function findingMessage(f: Finding): string {
  if (f.status === "missing") return `${f.item} missing: ${f.rulesOut} (${f.detail})`;
  return `${f.item}: ${f.detail}`;
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

function findingLines(list: Finding[]): string[] {
  return list.map((f) =>
    f.status === "missing"
      ? `  ${MARK[f.status]} ${f.item}: ${f.detail}\n      rules out: ${f.rulesOut}`
      : `  ${MARK[f.status]} ${f.item}: ${f.detail}`,
  );
}

/** The report as text; lines longer than `width` wrap with a hanging indent (the node table does not). */
export function formatDoctorText(r: DoctorReport, width = 100): string {
  const hostFindings = r.findings.filter((f) => f.area === "host");
  const table = nodesTable(r.host);
  const out: string[] = [
    `Host ${r.host.root}`,
    `  Linux ${r.host.kernel}, ${r.host.nodes.length} NUMA node(s):`,
    ...table,
  ];
  out.push(...findingLines(hostFindings.filter((f) => f.item !== "kernel")));
  out.push("");
  if (r.qemu) {
    const q = r.findings.filter((f) => f.area === "qemu");
    out.push(
      `QEMU ${r.qemu.version} (${r.qemu.source === "probe" ? `probed ${r.qemu.binary ?? ""}` : r.qemu.source === "file" ? "from a capabilities file" : "built-in table"})`,
    );
    out.push(...q.filter((f) => f.status === "ok").map((f) => `  ${MARK.ok} ${f.item}`));
    out.push(...q.filter((f) => f.status === "missing").map((f) => `  ${MARK.missing} ${f.item}: ${f.rulesOut}`));
    out.push("", "Together");
    for (const f of r.findings.filter((x) => x.area === "summary"))
      out.push(`  ${MARK[f.status]} ${f.item}: ${f.detail}`);
  } else {
    out.push(`QEMU: not probed: ${r.qemuError ?? "unknown error"}`);
  }
  const missing = r.findings.filter((f) => f.status === "missing" && f.area !== "summary").length;
  out.push(
    "",
    missing === 0
      ? "Nothing missing."
      : `${missing} missing item${missing === 1 ? "" : "s"} rule out profile features (✗ above).`,
  );
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

export async function buildReport(args: Args): Promise<{ report: DoctorReport; probeFailed: boolean }> {
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
  const findings = [...diagnoseHost(host), ...(qemu ? [...diagnoseQemu(qemu), ...summarize(host, qemu)] : [])];
  if (!qemu) {
    findings.push({
      area: "qemu",
      item: "QEMU",
      status: "missing",
      detail: qemuError ?? "not probed",
      rulesOut: "every profile: nothing can be launched, and capabilities cannot be detected",
    });
  }
  return { report: { host, qemu, ...(qemuError ? { qemuError } : {}), findings }, probeFailed: qemu === null };
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
      throw new UserError(`--save ${file}: is a directory (name the file to write, e.g. ${file}/caps.json)`, 2);
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
      2,
    );
  }
}

export async function run(args: Record<string, unknown>): Promise<number> {
  const a = args as Args;
  if (a.save) checkSaveTarget(a.save);
  const { report, probeFailed } = await buildReport(a);
  if (a.format === "json") {
    const findings = report.findings.map((f) => ({ ...f, message: findingMessage(f) }));
    process.stdout.write(`${JSON.stringify({ ...report, findings }, null, 2)}\n`);
  } else {
    process.stdout.write(formatDoctorText(report, outputWidth()));
  }
  if (probeFailed) {
    process.stderr.write(`qcvm: ${report.qemuError}\n`);
    return 2;
  }
  if (a.save && report.qemu) {
    const { saveCapabilities } = await import("../probe/qemu.js");
    saveCapabilities(report.qemu, a.save);
    process.stderr.write(
      `qcvm: saved QEMU ${report.qemu.version} capabilities to ${a.save} (use with --capabilities ${a.save})\n`,
    );
  }
  return 0;
}
