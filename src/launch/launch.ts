// `qcvm launch`: carry out the plan. The order matters and each step says why:
//
//   1. plan      profile -> host -> capabilities -> plan (loadContext's steps, as for render and
//                plan); refuse on plan errors. KVM unusable (probeKvm: no KVM device 10:232 that
//                opens read-write): non-confidential guests fall back to TCG, with one warning;
//                the kernel refusing memory policies (seccomp) drops them, or refuses with
//                placement.strict. Should QEMU itself then fail to initialize KVM (a detached
//                launch reads that in qemu.log), the whole launch is undone and retried once
//                under TCG.
//   2. locks     VM name, then every disk image (read-only images may be shared).
//   3. run dir   <runDir>/<name>, mode 0700: QMP socket, pidfile, log, state.json.
//   4. cgroup    the VM cgroup (memory + cpuset: the accounting unit) and one child per guest
//                node's vCPUs, with the planned cpus and mems.
//   5. QEMU      spawned with the plan's numactl prefix and -S, *from inside* the VM cgroup: qcvm
//                moves itself in, spawns, and moves itself back (VmCgroup.spawnInside, the same
//                trick as cgexec). So QEMU is born in its cgroup: every page it ever allocates,
//                preallocation and an SNP launch update included, is charged to the VM and obeys
//                its cpuset mems. Moving QEMU in after it started would leave early charges behind
//                (memory charges do not follow a task). QEMU gets its own session, so Ctrl-C at
//                the terminal and qcvm's own death (even SIGKILL) do not take it down.
//   6. QMP       connect (the socket is polled every 2 ms while QEMU starts).
//   7. vCPUs     query-cpus-fast -> each vCPU thread into its node's cgroup, then pinned (taskset);
//                pinning after the cgroup move, because a cpuset attach resets the affinity.
//   8. running   `cont`: the guest's vCPUs start only now, with placement in force.
//
// Placement that cannot be applied (EACCES/EPERM on cgroups as in containers, a seccomp'd mbind,
// TCG without a thread per vCPU) is recorded as a LostPlacement naming the node, the mechanism, the
// errno and the file, printed, and kept in state.json; with placement.strict it aborts the launch
// and everything created so far is removed.
import { closeSync, existsSync, openSync, readFileSync, realpathSync, renameSync, statSync } from "node:fs";
import { createHash } from "node:crypto";
import { join, relative } from "node:path";
import type { Options, ResultPromise } from "execa";
import { UserError, diag, formatDiagnostic } from "../core/diagnostics.js";
import { prettyCommand, run, shellQuote, spawn, which } from "../io/exec.js";
import { groupOptions } from "../commands/render.js";
import { formatList } from "../io/fsroot.js";
import { acquireDiskLocks, acquireVmLock, locksDir, readVmLock, vmLockPath } from "../vm/lock.js";
import type { Lock } from "../vm/lock.js";
import {
  cleanupVm,
  createVmDir,
  ensureRunDir,
  makeDirs,
  formatLost,
  pidStartTime,
  readState,
  resolveRunDir,
  selfIdentity,
  stopQemu,
  vmPaths,
  writeState,
} from "../vm/runtime.js";
import type { LostPlacement, VmState } from "../vm/runtime.js";
// Static imports on purpose: launch needs all of these, and one module graph loads faster than a
// chain of dynamic imports each waiting for the previous one.
import { createVmCgroup, openCgroupLayout, systemdScopePrefix } from "../vm/cgroup.js";
import { loadContext, resolveCapabilities } from "../pipeline/context.js";
import { probeKvm } from "../probe/host.js";
import type { KvmAccess } from "../probe/host.js";
import { QmpClient } from "../vm/qmp.js";
import { renderArgv } from "../render/render.js";
import { inlineProfileFiles } from "../render/files.js";
import type { CgroupError, CgroupLayout, VmCgroup } from "../vm/cgroup.js";
import type { Context } from "../pipeline/context.js";
import type { Diagnostic, Plan, Profile, QemuCapabilities } from "../core/types.js";

export interface LaunchArgs {
  profile: string;
  host?: string;
  capabilities?: string;
  set?: string[];
  detach?: boolean;
  dryRun?: boolean;
  quiet?: boolean;
  format?: "text" | "json";
  runDir?: string;
}

const STEPS = 8;
/** Foreground SIGINT/SIGTERM: how long the guest gets to power down before QEMU is told to quit. */
export const POWERDOWN_TIMEOUT_MS = 10_000;
/** QEMU creates its QMP socket early in start-up; poll it this often. */
const QMP_POLL_MS = 2;
/** Unix socket paths are limited to 108 bytes including the NUL (sun_path). */
const SUN_PATH_MAX = 107;

/** Milliseconds since this process started (performance.timeOrigin): the benchmark's clock. */
function now(): number {
  return Math.round(performance.now() * 100) / 100;
}

/**
 * Progress on stderr (text) or one JSON event per line on stdout (json). A JSON dry run prints one
 * document, not events: its warnings and notes are kept (`held`) and go inside that document, so
 * stdout stays a single JSON value for `jq` and JSON.parse.
 */
export class Reporter {
  readonly held?: { warnings: Array<Record<string, unknown>>; notes: string[] };

  constructor(
    readonly format: "text" | "json",
    readonly quiet: boolean,
    options: { hold?: boolean } = {},
  ) {
    if (options.hold && format === "json") this.held = { warnings: [], notes: [] };
  }

  emit(event: Record<string, unknown>): void {
    process.stdout.write(`${JSON.stringify({ ...event, ms: now() })}\n`);
  }

  step(n: number, name: string, message: string, data: Record<string, unknown> = {}): void {
    if (this.quiet) return;
    if (this.format === "json") this.emit({ event: "step", step: n, of: STEPS, name, message, ...data });
    else process.stderr.write(`qcvm: [${n}/${STEPS}] ${message}\n`);
  }

  /** Warnings are not silenced by --quiet: a lost placement must never pass unnoticed. */
  warn(message: string, data: Record<string, unknown> = {}): void {
    if (this.held) this.held.warnings.push({ message, ...data });
    else if (this.format === "json") this.emit({ event: "warning", message, ...data });
    else process.stderr.write(`qcvm: warning: ${message}\n`);
  }

  /** A profile, plan or render diagnostic (already says "warning:"). */
  diagnostic(d: Diagnostic): void {
    if (this.held) this.held.warnings.push({ message: formatDiagnostic(d), diagnostic: d });
    else if (this.format === "json") this.emit({ event: "warning", message: formatDiagnostic(d), diagnostic: d });
    else process.stderr.write(`qcvm: ${formatDiagnostic(d)}\n`);
  }

  /** A dry run that fails prints no document: what it held goes to stderr, before the error. */
  releaseHeld(): void {
    for (const w of this.held?.warnings ?? []) {
      const text = String(w.message);
      process.stderr.write(w.diagnostic ? `qcvm: ${text}\n` : `qcvm: warning: ${text}\n`);
    }
    for (const n of this.held?.notes ?? []) process.stderr.write(`qcvm: note: ${n}\n`);
  }

  note(message: string): void {
    if (this.quiet) return;
    if (this.held) this.held.notes.push(message);
    else if (this.format === "json") this.emit({ event: "note", message });
    else process.stderr.write(`qcvm: note: ${message}\n`);
  }
}

// ---------------------------------------------------------------------------------------------
// Context: profile, capabilities (probed once per QEMU binary and cached), host, plan
// ---------------------------------------------------------------------------------------------

/**
 * Capabilities of `binary`, probed once and cached in the run dir, keyed by the binary's real path,
 * inode, size and mtime: a probe starts a QEMU of its own, which would double launch time, and an
 * upgraded binary has a new inode or mtime, so it is probed again. A cache that cannot be written
 * (a read-only run dir) only costs the next launch another probe.
 */
async function cachedCapabilities(binary: string, runDir: string, write: boolean): Promise<QemuCapabilities> {
  const real = realpathSync(binary);
  const st = statSync(real);
  const key = createHash("sha256")
    .update(`${real}\0${st.dev}\0${st.ino}\0${st.size}\0${st.mtimeMs}`)
    .digest("hex")
    .slice(0, 20);
  const file = join(runDir, "caps", `${key}.json`);
  const { loadCapabilities, probeQemu, saveCapabilities } = await import("../probe/qemu.js");
  if (existsSync(file)) {
    try {
      return loadCapabilities(file);
    } catch {
      // damaged: probe again and replace it
    }
  }
  const caps = await probeQemu(real);
  if (write) {
    try {
      makeDirs(join(runDir, "caps"), 0o755);
      const tmp = `${file}.${process.pid}.tmp`;
      saveCapabilities(caps, tmp);
      renameSync(tmp, file);
    } catch {
      // not cached: see above
    }
  }
  return caps;
}

/**
 * The same steps as loadContext (profile, host, capabilities, plan: render and plan use them too),
 * with the profile read once: the QEMU binary it names decides which capabilities apply (a cached
 * probe of that very binary), and the host probe runs meanwhile.
 */
async function loadLaunchContext(a: LaunchArgs, runDir: string, r: Reporter): Promise<Context> {
  return loadContext({
    profile: a.profile,
    set: a.set,
    host: a.host,
    capabilities: a.capabilities,
    resolveCaps: async (profile) => {
      // A dry run for another host (--host) cannot know that host's QEMU: the profile's target
      // version stands in, as for render and plan.
      if (a.dryRun && a.host) return resolveCapabilities(profile, { profile: a.profile });
      // The binary is checked before anything else so a missing QEMU is one clear message.
      const binary = await which(profile.qemu.binary);
      if (!binary) {
        const msg =
          `QEMU binary \`${profile.qemu.binary}\` not found (qemu.binary in ${relative(process.cwd(), profile.file) || profile.file}): ` +
          "install it (Debian: apt-get install qemu-system-x86) or set qemu.binary to its path";
        if (!a.dryRun) throw new UserError(msg);
        r.note(`${msg}; this dry run uses the built-in capabilities of QEMU ${profile.qemu.version}`);
        return resolveCapabilities(profile, { profile: a.profile });
      }
      return cachedCapabilities(binary, runDir, !a.dryRun);
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Accelerator fallback and the mempolicy preflight
// ---------------------------------------------------------------------------------------------

/** The profile with TCG instead of KVM; `-cpu host` exists only with KVM, `max` is TCG's closest. */
export function withTcg(profile: Profile): Profile {
  return {
    ...profile,
    machine: { ...profile.machine, accel: "tcg" },
    cpu: { ...profile.cpu, model: profile.cpu.model === "host" ? "max" : profile.cpu.model },
  };
}

/**
 * The one warning that this launch runs under TCG instead of KVM. The planner warns too when the
 * host has no KVM at all (host.kvm); launch knows more (an EACCES, a file where the device should
 * be), so its warning takes the planner's place and keeps its position in the profile.
 */
function kvmFallbackWarning(
  profile: Profile,
  problem: string,
  planned: readonly Diagnostic[],
  hint = "set machine.accel: tcg to say so, or load kvm_amd/kvm_intel and give this user read-write access to /dev/kvm",
): Diagnostic {
  const where = planned.find((w) => w.code === "host.kvm");
  return diag(
    "warning",
    "host.kvm",
    "machine.accel",
    `${problem}: falling back to tcg (software emulation, much slower${profile.cpu.model === "host" ? "; cpu.model host becomes max" : ""})`,
    {
      got: "kvm",
      hint,
      file: where?.file ?? profile.file,
      ...(where?.line ? { line: where.line, col: where.col } : {}),
    },
  );
}

/** QEMU's own words when KVM fails in its hands (KVM_CREATE_VM refused, say, by a nested host). */
const KVM_INIT_FAILED = /failed to initialize kvm|Could not access KVM kernel module/;

/** Host nodes the plan asks the kernel to bind memory to (backend mbind or numactl). */
function mempolicyNodes(plan: Plan): number[] {
  const nodes = new Set<number>();
  for (const n of plan.nodes) if (n.shared.mechanism === "backend-policy") n.hostNodes.forEach((h) => nodes.add(h));
  if (plan.launch.argvPrefix.length > 0) plan.nodes.forEach((n) => n.hostNodes.forEach((h) => nodes.add(h)));
  return [...nodes].sort((x, y) => x - y);
}

/**
 * Does the kernel let this process set a NUMA memory policy? Inside containers a seccomp profile
 * typically answers EPERM to set_mempolicy and mbind alike (Docker's default profile allows them
 * only with CAP_SYS_NICE), and QEMU then dies at start-up with "cannot bind memory to host NUMA
 * nodes". numactl calls set_mempolicy, the same family of syscalls as QEMU's mbind.
 */
async function checkMempolicy(nodes: number[]): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (nodes.length === 0) return { ok: true };
  // Without a seccomp filter nothing answers EPERM to them (QEMU's MPOL_MF_MOVE needs no
  // capability; a cpuset conflict is EINVAL, which QEMU reports itself): skip the test run.
  if (seccompMode() === 0) return { ok: true };
  if (!(await which("numactl"))) return { ok: true }; // nothing to test with; QEMU's own error will tell
  const r = await run(["numactl", `--membind=${formatList(nodes)}`, "--", "true"]);
  if (r.exitCode === 0) return { ok: true };
  const text = (r.stderr || r.stdout).trim();
  // numactl says "set_mempolicy: Operation not permitted".
  if (/not permitted|EPERM/i.test(text))
    return { ok: false, reason: "EPERM from set_mempolicy/mbind, as under a container's seccomp profile" };
  return { ok: true }; // another failure (an offline node): QEMU reports it precisely
}

/** Seccomp: field of /proc/self/status: 0 none, 1 strict, 2 filter; undefined when unknown. */
function seccompMode(): number | undefined {
  try {
    const m = /^Seccomp:\s*(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The plan without kernel memory policies (no backend host-nodes, no numactl), and what that loses. */
function dropMempolicy(plan: Plan, reason: string): { plan: Plan; lost: LostPlacement[] } {
  const lost: LostPlacement[] = [];
  const nodes = plan.nodes.map((n) => {
    const changes: Partial<typeof n> = {};
    if (n.shared.mechanism === "backend-policy") {
      lost.push({
        guestNode: n.guestNode,
        what: "shared memory",
        mechanism: "backend-policy",
        reason,
        consequence: plan.launch.cgroups.some((c) => c.mems.length > 0)
          ? `only the VM's cpuset mems (${vmMems(plan)}) bound it`
          : "it goes wherever it is first touched",
      });
      changes.shared = { ...n.shared, mechanism: "none", reason: `lost at launch: ${reason}` };
    }
    if (plan.launch.argvPrefix.length > 0 && n.private.mechanism === "process-mempolicy") {
      lost.push({
        guestNode: n.guestNode,
        what: "private memory",
        mechanism: "process-mempolicy",
        reason,
        consequence: "it follows the VM cgroup's mems only",
      });
      changes.private = { ...n.private, mechanism: "none", fidelity: "none", reason: `lost at launch: ${reason}` };
    }
    return { ...n, ...changes };
  });
  return { plan: { ...plan, nodes, launch: { ...plan.launch, argvPrefix: [] } }, lost };
}

// ---------------------------------------------------------------------------------------------
// Cgroup failures as lost placements
// ---------------------------------------------------------------------------------------------

function describeErrno(e: CgroupError): string {
  const verb = e.op === "write" ? "writing" : e.op === "mkdir" ? "creating" : e.op === "rmdir" ? "removing" : "reading";
  return e.errno === "EMISSING" ? `${e.file} not available` : `${e.errno} ${verb} ${e.file}`;
}

/** Guest nodes whose vCPUs a cgroup child holds. */
function nodesOfChild(plan: Plan, child: string): number[] {
  const cg = plan.launch.cgroups.find((c) => c.name === child);
  if (!cg || cg.tasks === "process") return [];
  const vcpus = new Set(cg.tasks.vcpus);
  return plan.nodes.filter((n) => n.cpus.some((c) => vcpus.has(c))).map((n) => n.guestNode);
}

function vmMems(plan: Plan): string {
  const vm = plan.launch.cgroups.find((c) => c.name === "");
  return formatList(vm?.mems ?? []) || "all";
}

/** A lost vCPU cgroup for one guest node: what it costs depends on what the plan used it for. */
function lostVcpuCgroup(plan: Plan, guestNode: number, reason: string, vmCgroupLost = false): LostPlacement {
  const node = plan.nodes.find((n) => n.guestNode === guestNode);
  const privateViaCpuset = node?.private.mechanism === "vcpu-cpuset";
  return {
    guestNode,
    what: privateViaCpuset ? "private memory" : "vCPU placement",
    mechanism: "vcpu-cpuset",
    reason,
    consequence: privateViaCpuset
      ? `it will follow QEMU's process policy (VM cgroup mems ${vmMems(plan)})`
      : vmCgroupLost
        ? "its vCPU threads run wherever QEMU's process may"
        : "its vCPU threads stay in the VM cgroup, on any of its CPUs",
  };
}

const VM_LEVEL = new Set(["VM cgroup", "qcvm parent cgroup", "cgroup v2 root"]);

/**
 * What createVmCgroup's (or addProcess's) errors cost, as lost placements: one for the VM cgroup
 * (QEMU's process) and one per guest node whose vCPU child is missing or failed. A child that was
 * never made because its parent could not be is lost for the parent's reason, not a vaguer one.
 * Returns the reason per failed child too, so thread placement does not report it twice.
 */
export function lostFromCgroupErrors(
  errors: readonly CgroupError[],
  plan: Plan,
  existingChildren?: readonly string[],
): { lost: LostPlacement[]; failedChildren: Map<string, string> } {
  const lost: LostPlacement[] = [];
  const failedChildren = new Map<string, string>();
  const vmError = errors.find((e) => VM_LEVEL.has(e.subject));
  if (vmError) {
    // Without a planned VM cpuset the VM cgroup is only the accounting unit.
    const planned = plan.launch.cgroups.some((c) => c.name === "" && (c.cpus.length > 0 || c.mems.length > 0));
    lost.push({
      what: "QEMU process",
      mechanism: "VM cgroup",
      reason: describeErrno(vmError),
      consequence: planned
        ? `QEMU runs in qcvm's own cgroup: its memory is not confined to host nodes ${vmMems(plan)} and not accounted per VM`
        : "QEMU runs in qcvm's own cgroup: its memory is not accounted per VM (qcvm stats cannot attribute it)",
      ...(planned ? {} : { accountingOnly: true }),
    });
  }
  const accounting = errors.find((e) => e.subject === "VM memory accounting");
  if (accounting) {
    lost.push({
      what: "memory accounting",
      mechanism: "memory cgroup",
      reason: describeErrno(accounting),
      consequence: "qcvm stats cannot attribute the VM's private memory per host node",
      accountingOnly: true,
    });
  }
  for (const c of plan.launch.cgroups) {
    if (c.name === "") continue;
    const own = errors.find((e) => e.subject === `vCPU cgroup ${c.name}`);
    const missing = existingChildren !== undefined && !existingChildren.includes(c.name);
    const reason = own
      ? describeErrno(own)
      : missing
        ? vmError
          ? describeErrno(vmError)
          : "the cpuset controller is not available"
        : undefined;
    if (!reason) continue;
    failedChildren.set(c.name, reason);
    for (const g of nodesOfChild(plan, c.name)) lost.push(lostVcpuCgroup(plan, g, reason, vmError !== undefined));
  }
  return { lost, failedChildren };
}

// ---------------------------------------------------------------------------------------------
// vCPU threads
// ---------------------------------------------------------------------------------------------

interface CpuInfoFast {
  "cpu-index": number;
  "thread-id": number;
}

/** Move each vCPU thread into its node's cgroup, then pin it; every failure is a lost placement. */
async function placeVcpus(
  cpus: readonly CpuInfoFast[],
  plan: Plan,
  cg: VmCgroup | undefined,
  accel: string,
  failedChildren: ReadonlyMap<string, string> = new Map(),
): Promise<{ lost: LostPlacement[]; placed: string[] }> {
  const lost: LostPlacement[] = [];
  const placed: string[] = [];
  const tidOf = new Map(cpus.map((c) => [c["cpu-index"], c["thread-id"]]));
  // TCG without MTTCG runs every vCPU on one thread: per-node thread placement is impossible.
  const tids = new Set(cpus.map((c) => c["thread-id"]));
  const shared = tids.size < cpus.length;
  const lostNodes = new Set<number>();
  for (const cgp of plan.launch.cgroups) {
    // Already reported as lost when the cgroup was made.
    if (cgp.tasks === "process" || failedChildren.has(cgp.name)) continue;
    for (const vcpu of cgp.tasks.vcpus) {
      const tid = tidOf.get(vcpu);
      const nodes = nodesOfChild(plan, cgp.name);
      let reason: string | undefined;
      if (tid === undefined) reason = `QEMU reported no thread for vCPU ${vcpu}`;
      else if (shared) reason = `vCPUs share thread ${tid} (${accel} without a thread per vCPU)`;
      else if (!cg) reason = "no VM cgroup";
      else {
        const err = cg.addThread(tid, cgp.name);
        if (err) reason = describeErrno(err);
      }
      if (reason) {
        for (const g of nodes) {
          if (lostNodes.has(g)) continue;
          lostNodes.add(g);
          lost.push(lostVcpuCgroup(plan, g, reason));
        }
      } else {
        placed.push(`vCPU ${vcpu} (thread ${tid}) -> ${cgp.name}`);
      }
    }
  }
  for (const pin of plan.launch.pinning) {
    const tid = tidOf.get(pin.vcpu);
    const list = formatList(pin.hostCpus);
    let reason: string | undefined;
    if (tid === undefined) reason = `QEMU reported no thread for vCPU ${pin.vcpu}`;
    else if (shared) reason = `vCPUs share thread ${tid} (${accel} without a thread per vCPU)`;
    else {
      const r = await run(["taskset", "-pc", list, String(tid)]).catch((e: Error) => ({
        exitCode: -1,
        stderr: e.message,
        stdout: "",
      }));
      if (r.exitCode !== 0) reason = `taskset -pc ${list} ${tid} failed: ${r.stderr.trim().split("\n")[0]}`;
    }
    if (reason) {
      lost.push({
        what: `vCPU ${pin.vcpu} pinning`,
        mechanism: "thread affinity",
        reason,
        consequence: "the thread may run on any CPU its cgroup allows",
      });
    } else {
      placed.push(`vCPU ${pin.vcpu} pinned to CPUs ${list}`);
    }
  }
  return { lost, placed };
}

// ---------------------------------------------------------------------------------------------
// Dry run
// ---------------------------------------------------------------------------------------------

interface Action {
  action: string;
  detail: string;
}

function cgroupActions(layout: CgroupLayout, name: string, plan: Plan): Action[] {
  const out: Action[] = [];
  const vm = plan.launch.cgroups.find((c) => c.name === "");
  const children = plan.launch.cgroups.filter((c) => c.name !== "");
  const cpus = formatList([...(vm?.cpus ?? []), ...children.flatMap((c) => c.cpus)]);
  const mems = formatList([...(vm?.mems ?? []), ...children.flatMap((c) => c.mems)]);
  if (layout.systemd) {
    out.push({
      action: "cgroup",
      detail: `systemd scope machine.slice/qcvm-${name}.scope (Delegate=yes), adopted as the VM cgroup`,
    });
  }
  for (const h of layout.hierarchies) {
    const dir = join(
      layout.root,
      h.mount,
      layout.systemd ? `machine.slice/qcvm-${name}.scope` : join(layout.base, name),
    );
    const has = (c: string) => h.controllers.includes(c as "cpuset" | "memory");
    const what = [
      has("cpuset") ? `cpus ${cpus || "all"}, mems ${mems || "all"}` : "",
      has("memory") ? "memory accounting" : "",
    ]
      .filter(Boolean)
      .join("; ");
    if (!layout.systemd) out.push({ action: "cgroup", detail: `mkdir ${dir}: ${what} (QEMU process)` });
    if (
      has("cpuset") ||
      (h.version === 2 && !layout.hierarchies.some((o) => o !== h && o.controllers.includes("cpuset")))
    ) {
      for (const c of children) {
        const vcpus = c.tasks === "process" ? "" : ` (vCPU ${formatList(c.tasks.vcpus)})`;
        out.push({
          action: "cgroup",
          detail: `mkdir ${join(dir, c.name)}: cpus ${formatList(c.cpus) || "all"}, mems ${formatList(c.mems) || "all"}${vcpus}`,
        });
      }
    }
  }
  for (const c of layout.missing)
    out.push({ action: "cgroup", detail: `no ${c} controller on this host: ${missingControllerCost(c, plan)}` });
  return out;
}

/** What a controller the host lacks costs this plan (the planner already avoided cpusets then). */
function missingControllerCost(c: "cpuset" | "memory", plan: Plan): string {
  if (c === "memory") return "the VM's memory would not be accounted per VM (qcvm stats cannot attribute it)";
  if (plan.launch.cgroups.length > 0) return "the planned cgroup cpus and mems would be lost";
  return `the plan uses no cpuset${plan.launch.pinning.length > 0 ? " (vCPUs are pinned by thread affinity)" : ""}`;
}

function dryRunActions(
  profile: Profile,
  plan: Plan,
  layout: CgroupLayout,
  runDir: string,
  argv: string[],
  detach: boolean,
): Action[] {
  const name = profile.name;
  const paths = vmPaths(runDir, name);
  const actions: Action[] = [];
  actions.push({ action: "lock", detail: `VM name: ${vmLockPath(runDir, name)}` });
  for (const d of profile.disks) {
    actions.push({
      action: "lock",
      detail: `disk ${d.path} (${d.readOnly ? "read-only, shareable" : "read-write, exclusive"}) in ${locksDir(runDir)}`,
    });
  }
  actions.push({ action: "mkdir", detail: `${paths.dir} (mode 0700): qmp.sock, qemu.pid, qemu.log, state.json` });
  actions.push(...cgroupActions(layout, name, plan));
  actions.push({
    action: "exec",
    detail:
      `${prettyCommand(argv)}  (${
        layout.systemd
          ? "born in its systemd scope"
          : layout.hierarchies.length > 0
            ? "spawned from inside the VM cgroup"
            : "no VM cgroup to be born in"
      }, ` + `in its own session${detach ? `, output to ${paths.log}` : ""})`,
  });
  actions.push({ action: "qmp", detail: `connect ${paths.qmp}; query-cpus-fast (vCPU thread ids)` });
  for (const c of plan.launch.cgroups) {
    if (c.tasks === "process") continue;
    for (const v of c.tasks.vcpus) actions.push({ action: "vcpu", detail: `vCPU ${v} thread -> cgroup ${c.name}` });
  }
  for (const p of plan.launch.pinning)
    actions.push({ action: "pin", detail: `taskset -pc ${formatList(p.hostCpus)} <vCPU ${p.vcpu} thread>` });
  actions.push({ action: "qmp", detail: "cont (vCPUs start with placement in force)" });
  actions.push({ action: "state", detail: paths.state });
  return actions;
}

// ---------------------------------------------------------------------------------------------
// Preparation: everything decided before the host is touched (shared by --dry-run)
// ---------------------------------------------------------------------------------------------

interface Prepared {
  ctx: Context;
  profile: Profile;
  plan: Plan;
  layout: CgroupLayout;
  argv: string[];
  qmpPath: string;
  /** Placements lost before launch (mempolicy not permitted). */
  lost: LostPlacement[];
}

function planSummary(plan: Plan): string {
  if (plan.nodes.length === 0) return "no NUMA placement";
  return plan.nodes
    .map((n) => `node ${n.guestNode} -> host ${formatList(n.hostNodes) || "any"} (${n.policy}, ${n.private.fidelity})`)
    .join(", ");
}

function countOf(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

async function prepare(a: LaunchArgs, runDir: string, r: Reporter): Promise<Prepared> {
  const ctx = await loadLaunchContext(a, runDir, r);
  if (ctx.plan.errors.length > 0) {
    const lines = ctx.plan.errors.map(formatDiagnostic);
    throw new UserError(
      `cannot launch ${a.profile}: the plan does not hold (${countOf(lines.length, "error")}):\n${lines.join("\n")}\n` +
        `(qcvm plan ${a.profile} shows the whole plan)`,
    );
  }
  let profile = ctx.profile;
  let fallback: Diagnostic | undefined;
  if (profile.machine.accel === "kvm") {
    // A fixture host (--host) in a dry run answers for its own /dev/kvm; otherwise QEMU runs here,
    // and probeKvm (KVM's own device 10:232, opened read-write) is what -accel kvm will need.
    const kvm: KvmAccess =
      a.dryRun && a.host
        ? { ok: ctx.host.kvm, present: ctx.host.kvm, problem: "the host tree has no usable dev/kvm" }
        : probeKvm();
    if (!kvm.ok) {
      const problem = kvm.problem ?? "/dev/kvm is not usable";
      if (profile.confidential.type !== "none") {
        throw new UserError(
          `${profile.confidential.type} guests need KVM, but ${problem}: ` +
            "load kvm_amd or kvm_intel, and run qcvm as root or as a member of the kvm group",
        );
      }
      fallback = kvmFallbackWarning(profile, problem, ctx.warnings);
      profile = withTcg(profile);
    }
  }
  // The fallback replaces the planner's host.kvm warning: one warning, with the precise cause.
  for (const w of ctx.warnings) if (!(fallback && w.code === "host.kvm")) r.diagnostic(w);
  if (fallback) r.diagnostic(fallback);
  const paths = vmPaths(runDir, profile.name);
  const qmpPath = profile.qmp ?? paths.qmp;
  if (qmpPath.length > SUN_PATH_MAX) {
    throw new UserError(
      `QMP socket path ${qmpPath} is longer than a unix socket allows (${SUN_PATH_MAX} bytes): use a shorter --run-dir`,
    );
  }

  let plan = ctx.plan;
  const lost: LostPlacement[] = [];
  if (!a.dryRun) {
    const mp = await checkMempolicy(mempolicyNodes(plan));
    if (!mp.ok) {
      const dropped = dropMempolicy(plan, mp.reason);
      if (profile.placement.strict && dropped.lost.length > 0) throw strictError(dropped.lost, "nothing was started");
      plan = dropped.plan;
      lost.push(...dropped.lost);
    }
  }

  const rendered = renderLaunch(a, ctx, profile, plan, runDir);
  for (const w of rendered.warnings) r.diagnostic(w);
  return { ctx, profile, plan, layout: rendered.layout, argv: rendered.argv, qmpPath, lost };
}

/** QEMU's argv for this profile and plan: the systemd scope, numactl, QEMU, -S and -pidfile. */
function renderLaunch(a: LaunchArgs, ctx: Context, profile: Profile, plan: Plan, runDir: string) {
  const paths = vmPaths(runDir, profile.name);
  const inlined = inlineProfileFiles({ ...profile, qmp: profile.qmp ?? paths.qmp });
  const rendered = inlined.value
    ? renderArgv(inlined.value, plan, ctx.caps)
    : { errors: inlined.errors, warnings: [], value: undefined };
  if (rendered.errors.length > 0 || !rendered.value) {
    const lines = rendered.errors.map(formatDiagnostic);
    throw new UserError(`cannot render ${a.profile} (${countOf(lines.length, "error")}):\n${lines.join("\n")}`);
  }
  const layout = openCgroupLayout(ctx.host);
  const scope = layout.systemd
    ? systemdScopePrefix(
        profile.name,
        plan.launch.cgroups.find((c) => c.name === ""),
      )
    : [];
  // -S: no vCPU runs before its thread is placed. -pidfile: for tools other than qcvm.
  const argv = [...scope, ...plan.launch.argvPrefix, ...rendered.value, "-S", "-pidfile", paths.pidfile];
  return { argv, layout, warnings: rendered.warnings };
}

/**
 * The launch again under TCG, after QEMU itself could not use KVM although /dev/kvm looked right
 * (probeKvm cannot issue KVM_CREATE_VM, which a nested host or a seccomp filter may refuse).
 * Render warnings already printed are not printed again.
 */
function prepareTcgRetry(a: LaunchArgs, p: Prepared, runDir: string, r: Reporter, said: string): Prepared {
  const planned = p.ctx.warnings.filter((w) => w.code === "host.kvm");
  r.diagnostic(
    kvmFallbackWarning(
      p.profile,
      `QEMU could not use KVM ("${said}")`,
      planned,
      "set machine.accel: tcg to say so; on a VM host, enable nested virtualization; in a container, allow KVM's ioctls",
    ),
  );
  r.note("retrying the launch once with tcg");
  const profile = withTcg(p.profile);
  const before = new Set(renderLaunch(a, p.ctx, p.profile, p.plan, runDir).warnings.map(formatDiagnostic));
  const rendered = renderLaunch(a, p.ctx, profile, p.plan, runDir);
  for (const w of rendered.warnings) if (!before.has(formatDiagnostic(w))) r.diagnostic(w);
  return { ...p, profile, argv: rendered.argv, layout: rendered.layout };
}

function interruptedError(sig: string): UserError {
  return new UserError(`launch interrupted by ${sig}; QEMU stopped and everything cleaned up`, 130);
}

function strictError(lost: readonly LostPlacement[], what: string): UserError {
  return new UserError(
    `placement.strict: ${countOf(lost.length, "placement")} could not be applied; ${what}:\n` +
      lost.map((l) => `  ${formatLost(l)}`).join("\n"),
  );
}

function printDryRun(a: LaunchArgs, p: Prepared, runDir: string, r: Reporter): void {
  const actions = dryRunActions(p.profile, p.plan, p.layout, runDir, p.argv, a.detach ?? false);
  if (r.format === "json") {
    const out = {
      dryRun: true,
      name: p.profile.name,
      accel: p.profile.machine.accel,
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
  const text = (x: { action: string; detail: string }) => {
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
    `# qcvm launch --dry-run ${a.profile}: nothing below is done\n` +
      `${"plan".padEnd(width)}  ${planSummary(p.plan)} [accel ${p.profile.machine.accel}]\n` +
      actions.map(text).join(""),
  );
}

// ---------------------------------------------------------------------------------------------
// Launch
// ---------------------------------------------------------------------------------------------

/** QEMU's exit as a shell-style code: the exit status, or 128 + signal number. */
export function exitCodeOf(r: { exitCode?: number; signal?: string }): number {
  if (typeof r.exitCode === "number") return r.exitCode;
  const signals: Record<string, number> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGABRT: 6,
    SIGKILL: 9,
    SIGSEGV: 11,
    SIGTERM: 15,
  };
  return 128 + (r.signal ? (signals[r.signal] ?? 0) : 0);
}

function describeExit(r: ChildExit): string {
  return r.signal ? `killed by ${r.signal}` : `exit code ${exitCodeOf(r)}`;
}

function tail(text: string, lines = 20): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

function readLog(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function cgroupDirs(cg: VmCgroup): string[] {
  return cg.dirs.flatMap((d) => [d.path, ...Object.values(d.children)]);
}

interface ChildExit {
  exitCode?: number;
  signal?: string;
  code?: string;
}

/**
 * QEMU 7.2 under KVM asserts ("failed to set MSR 0x10a", SIGABRT) with -cpu host or max on some
 * hosts, nested AMD ones among them: a profile left at the default model fails with nothing that
 * says which field to change.
 */
export function cpuAbortHint(exit: ChildExit, argv: readonly string[]): string {
  const i = argv.indexOf("-cpu");
  const model = i === -1 ? undefined : argv[i + 1]?.split(",")[0];
  if (exit.signal !== "SIGABRT" || (model !== "host" && model !== "max")) return "";
  return `\n(QEMU aborted with -cpu ${model}, as QEMU 7.2 does on some KVM hosts: set cpu.model: qemu64, or a named model such as EPYC-v4)`;
}

/** How QEMU ended: exit code, or the signal that killed it, or why it could not start. */
function waitExit(child: ResultPromise): Promise<ChildExit> {
  // The subprocess is a thenable: this chain settles when QEMU exits (reject: false, so never
  // rejects). It is only ever awaited through this wrapper, never returned from an async function.
  return child.then((r) => ({
    exitCode: r.exitCode,
    signal: r.signal,
    code:
      r.failed && r.exitCode === undefined && !r.signal ? ((r as { code?: string }).code ?? r.shortMessage) : undefined,
  }));
}

class Launch {
  readonly lost: LostPlacement[];
  private readonly undo: Array<() => unknown> = [];
  private readonly died = new AbortController();
  private readonly paths: ReturnType<typeof vmPaths>;
  private child?: ResultPromise;
  private exited?: Promise<ChildExit>;
  private childExit?: ChildExit;
  private cg?: VmCgroup;
  private qmp?: QmpClient;
  private nameLock?: Lock;
  private diskLocks: Lock[] = [];
  private failedChildren = new Map<string, string>();
  private spawnedMs?: number;
  private runningSignals = 0;
  private qmpMs?: number;
  private interrupted?: string;
  /** QEMU's line saying it could not use KVM, when that is why a detached launch failed. */
  kvmInitFailure?: string;
  state?: VmState;

  constructor(
    readonly a: LaunchArgs,
    readonly p: Prepared,
    readonly runDir: string,
    readonly r: Reporter,
  ) {
    this.lost = [...p.lost];
    this.paths = vmPaths(runDir, p.profile.name);
  }

  private get name(): string {
    return this.p.profile.name;
  }

  private addLost(lost: readonly LostPlacement[]): void {
    for (const l of lost) {
      this.lost.push(l);
      this.r.warn(formatLost(l), { lost: l });
    }
  }

  private addCgroupErrors(errors: readonly CgroupError[]): void {
    const children = this.cg ? Object.keys(this.cg.paths.children) : [];
    const r = lostFromCgroupErrors(errors, this.p.plan, children);
    this.failedChildren = r.failedChildren;
    this.addLost(r.lost);
  }

  private strictCheck(): void {
    const placement = this.lost.filter((l) => !l.accountingOnly);
    if (this.p.profile.placement.strict && placement.length > 0)
      throw strictError(placement, "launch aborted and cleaned up");
  }

  /**
   * What SIGINT/SIGTERM/SIGHUP mean, from launchVm's one handler: during start-up, abandon the
   * launch (QEMU killed, everything undone); once the guest runs in the foreground, power it down
   * (see superviseForeground); once it runs detached, nothing (QEMU is not ours to stop then).
   */
  onSignal(sig: NodeJS.Signals): void {
    if (this.state?.phase !== "running") {
      this.interrupted = sig;
      this.killChild();
    } else if (!this.a.detach) {
      this.runningSignals++;
      askQemuToStop(this.state, this.runningSignals > 1, sig, this.r);
    }
  }

  /** Run every step; on failure undo what was done, in reverse, and explain. */
  async run(): Promise<{ child: ResultPromise; exited: Promise<ChildExit>; state: VmState }> {
    try {
      this.r.step(1, "plan", `plan: ${planSummary(this.p.plan)}`, { accel: this.p.profile.machine.accel });
      for (const l of this.p.lost) this.r.warn(formatLost(l), { lost: l });
      const steps: Array<() => void | Promise<void>> = [
        () => this.takeLocks(),
        () => this.makeRunDir(),
        () => this.makeCgroup(),
        () => this.startQemu(),
        () => this.connectQmp(),
        () => this.placeThreads(),
        () => this.runGuest(),
      ];
      for (const step of steps) {
        if (this.interrupted) throw new UserError(`interrupted by ${this.interrupted}`, 130);
        await step();
      }
      return { child: this.child!, exited: this.exited!, state: this.state! };
    } catch (e) {
      throw await this.fail(e);
    } finally {
      // QEMU serves one QMP client at a time: leave it free for `qcvm stop` and stats.
      if (this.qmp && !this.qmp.isClosed) await this.qmp.close().catch(() => undefined);
    }
  }

  get interruptedBy(): string | undefined {
    return this.interrupted;
  }

  private killChild(): void {
    const pid = this.child?.pid;
    if (pid === undefined || this.childExit) return;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }

  private async fail(e: unknown): Promise<unknown> {
    // A lost QMP connection during start-up usually means QEMU is exiting: give it a moment to
    // finish, so the message is its exit status and output, not a socket error.
    if (this.exited && !this.childExit && (e as { class?: string }).class !== undefined) {
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2000).unref())]);
    }
    const exit = this.childExit;
    // Read before the undo removes the run dir.
    const said = exit && this.a.detach ? tail(readLog(this.paths.log)) : "";
    for (const u of this.undo.reverse()) {
      try {
        await u();
      } catch {
        // keep undoing the rest
      }
    }
    if (this.interrupted) return interruptedError(this.interrupted);
    // A file operation on the run dir that failed (EACCES, ENOSPC, EROFS): say which and where.
    const err = e as NodeJS.ErrnoException;
    if (err && typeof err.code === "string" && typeof err.path === "string") {
      return new UserError(`cannot ${err.syscall ?? "use"} ${err.path}: ${err.code}; launch undone (check --run-dir)`);
    }
    const kvmLine = said.split("\n").find((l) => KVM_INIT_FAILED.test(l));
    if (exit && kvmLine && this.p.profile.machine.accel === "kvm" && this.p.profile.confidential.type === "none") {
      this.kvmInitFailure = kvmLine.trim();
    }
    if (exit && !(e instanceof UserError && e.message.startsWith("placement.strict"))) {
      return new UserError(
        `QEMU exited during start-up (${describeExit(exit)}); cleaned up` +
          (this.a.detach ? (said ? `. QEMU said:\n${said}` : "; it printed nothing") : "; QEMU's messages are above") +
          cpuAbortHint(exit, this.p.argv),
      );
    }
    return e;
  }

  // 2. The name, then the disks. Leftovers of a run that died are cleared under the name lock.
  private async takeLocks(): Promise<void> {
    ensureRunDir(this.runDir);
    const notes: string[] = [];
    const nameLock = acquireVmLock(this.runDir, this.name, notes);
    this.nameLock = nameLock;
    this.undo.push(() => nameLock.release());
    let leftover: VmState | undefined;
    try {
      leftover = readState(this.runDir, this.name);
    } catch {
      leftover = undefined; // damaged: removed with the rest below
    }
    if (leftover || notes.length > 0 || existsSync(this.paths.dir)) {
      const report = await cleanupVm(this.runDir, this.name, leftover?.hostRoot ?? this.p.ctx.host.root, {
        keepNameLock: true,
      });
      if (report.removed.length > 0)
        notes.push(`removed what an earlier run of \`${this.name}\` left behind: ${report.removed.join(", ")}`);
    }
    this.diskLocks = acquireDiskLocks(this.runDir, this.name, this.p.profile.disks, notes);
    this.undo.push(() => this.diskLocks.forEach((l) => l.release()));
    for (const n of notes) this.r.note(n);
    const disks = this.p.profile.disks.length;
    this.r.step(2, "locks", `locks: VM \`${this.name}\`${disks ? `, ${countOf(disks, "disk image")}` : ""}`);
  }

  // 3.
  private makeRunDir(): void {
    createVmDir(this.runDir, this.name);
    // Removes the VM cgroup and run dir whatever stage the launch reached.
    this.undo.push(() => cleanupVm(this.runDir, this.name, this.p.ctx.host.root, { keepNameLock: true }));
    this.r.step(3, "runtime-dir", `runtime dir ${this.paths.dir} (mode 0700)`);
  }

  // 4. On systemd hosts the scope is created with QEMU (systemd-run in the argv) and adopted after.
  private makeCgroup(): void {
    if (this.p.layout.systemd) {
      this.r.step(4, "cgroup", `cgroup: systemd scope machine.slice/qcvm-${this.name}.scope, created with QEMU`);
      return;
    }
    const made = createVmCgroupSync(this.p.layout, this.name, this.p.plan);
    this.cg = made.cgroup;
    this.addCgroupErrors(made.errors);
    const paths = made.cgroup.paths;
    const main = paths.cpuset ?? paths.memory;
    const cgs = this.p.plan.launch.cgroups;
    const children = Object.keys(paths.children);
    this.r.step(
      4,
      "cgroup",
      main
        ? `cgroup ${main} created (cpus ${formatList(cgs.flatMap((c) => c.cpus)) || "all"}, mems ${formatList(cgs.flatMap((c) => c.mems)) || "all"})` +
            (children.length ? ` with ${children.join(", ")}` : "")
        : "cgroup: none could be created (see the warnings)",
      { cgroup: paths },
    );
    this.strictCheck();
  }

  // 5.
  private async startQemu(): Promise<void> {
    let logFd: number | undefined;
    if (this.a.detach) logFd = openSync(this.paths.log, "a", 0o600);
    const options: Options = {
      // Foreground: QEMU's output streams straight through. Detached: everything goes to qemu.log.
      stdin: logFd === undefined ? "inherit" : "ignore",
      stdout: logFd ?? "inherit",
      stderr: logFd ?? "inherit",
      // Own session: Ctrl-C reaches qcvm (which powers the guest down), and QEMU outlives qcvm.
      detached: true,
      cleanup: false,
      buffer: false,
    } as Options;
    // exec.spawn forks before it returns, so qcvm spends no more time in the VM cgroup than the
    // fork itself (spawnInside moves it in and back around this call).
    const spawnNow = () => spawn(this.p.argv, options);
    let child: ResultPromise;
    // spawnInside only when there is a cgroup to be born in: with none (EACCES), qcvm must not
    // try to move itself around either.
    if (this.cg && this.cg.dirs.length > 0) {
      const res = this.cg.spawnInside(spawnNow);
      child = res.value;
      for (const e of res.errors.filter((x) => x.subject.startsWith("qcvm's own"))) this.r.warn(e.message);
      this.addLost(
        lostFromCgroupErrors(
          res.errors.filter((x) => !x.subject.startsWith("qcvm's own")),
          this.p.plan,
        ).lost,
      );
    } else {
      child = spawnNow();
    }
    if (logFd !== undefined) closeSync(logFd);
    this.child = child;
    this.exited = waitExit(child).then((res) => {
      this.childExit = res;
      this.died.abort(`QEMU exited (exit code ${exitCodeOf(res)})`);
      return res;
    });
    if (child.pid === undefined) {
      const res = await this.exited;
      throw new UserError(`cannot start ${this.p.argv[0]}: ${res.code ?? "spawn failed"}`);
    }
    const pid = child.pid;
    this.undo.push(async () => {
      this.killChild();
      await this.exited;
    });
    const startTime = pidStartTime(pid) ?? "";
    if (startTime) {
      this.nameLock?.retarget(pid, startTime);
      for (const l of this.diskLocks) l.retarget(pid, startTime);
    }
    const { profile, plan, argv, ctx } = this.p;
    this.state = {
      version: 1,
      name: this.name,
      pid,
      pidStartTime: startTime,
      profile: profile.file,
      plan,
      argv,
      cgroup: { paths: this.cg ? cgroupDirs(this.cg) : [] },
      dir: this.paths.dir,
      qmp: this.p.qmpPath,
      pidfile: this.paths.pidfile,
      log: this.paths.log,
      startedAt: new Date().toISOString(),
      accel: profile.machine.accel,
      hostRoot: ctx.host.root,
      phase: "starting",
      detached: this.a.detach ?? false,
      lost: this.lost,
      launcher: selfIdentity(),
    };
    // Written now, not at the end: if qcvm dies mid-launch, status and stop still find QEMU.
    writeState(this.state);
    const prefix = plan.launch.argvPrefix.length ? `, under ${plan.launch.argvPrefix.join(" ")}` : "";
    this.spawnedMs = now();
    this.r.step(5, "qemu", `QEMU started (pid ${pid}, ${profile.machine.accel}${prefix})`, { pid });

    if (this.p.layout.systemd) {
      const made = createVmCgroupSync(this.p.layout, this.name, plan, pid);
      this.cg = made.cgroup;
      this.addCgroupErrors(made.errors);
      this.state.cgroup.paths = cgroupDirs(made.cgroup);
      this.strictCheck();
    }
  }

  // 6.
  private async connectQmp(): Promise<void> {
    this.qmp = await QmpClient.connect(this.p.qmpPath, {
      timeoutMs: 60_000,
      retryMs: QMP_POLL_MS,
      signal: this.died.signal,
    });
    this.state!.qemuVersion = this.qmp.version;
    this.qmpMs = now();
    this.r.step(6, "qmp", `QMP ready at ${this.p.qmpPath} (QEMU ${this.qmp.version})`);
  }

  // 7.
  private async placeThreads(): Promise<void> {
    const cpus = await this.qmp!.command<CpuInfoFast[]>("query-cpus-fast");
    const placed = await placeVcpus(cpus, this.p.plan, this.cg, this.p.profile.machine.accel, this.failedChildren);
    this.addLost(placed.lost);
    const threads = cpus.map((x) => ({ vcpu: x["cpu-index"], tid: x["thread-id"] }));
    this.r.step(
      7,
      "vcpus",
      placed.placed.length ? `vCPU threads: ${placed.placed.join("; ")}` : "vCPU threads: nothing to place",
      { threads },
    );
    this.strictCheck();
  }

  // 8.
  private async runGuest(): Promise<void> {
    const qmp = this.qmp!;
    // cont returns once the vCPUs are resumed (vm_start): no need to ask again.
    await qmp.command("cont");
    const state = this.state!;
    state.phase = "running";
    state.lost = this.lost;
    writeState(state);
    this.r.step(
      8,
      "running",
      `running: \`${this.name}\` (pid ${state.pid}); see qcvm status ${this.name}, stop with qcvm stop ${this.name}`,
    );
    if (this.r.format === "json") {
      // ms (added by emit) counts from qcvm's own start; the timings say where the time went.
      this.r.emit({
        event: "running",
        name: this.name,
        pid: state.pid,
        accel: state.accel,
        qmp: state.qmp,
        lost: this.lost.map(formatLost),
        timings: { spawned: this.spawnedMs, qmpReady: this.qmpMs },
      });
    }
  }
}

/** createVmCgroup with the plan's cgroups (and, on systemd hosts, the scope QEMU was born in). */
function createVmCgroupSync(layout: CgroupLayout, name: string, plan: Plan, adoptPid?: number) {
  return createVmCgroup(layout, name, plan.launch.cgroups, adoptPid === undefined ? {} : { adoptPid });
}

export async function launchVm(a: LaunchArgs): Promise<number> {
  const r = new Reporter(a.format ?? "text", a.quiet ?? false, { hold: a.dryRun });
  const runDir = resolveRunDir(a.runDir);
  const prepared = await prepare(a, runDir, r).catch((e: unknown) => {
    r.releaseHeld();
    throw e;
  });
  if (a.dryRun) {
    printDryRun(a, prepared, runDir, r);
    return 0;
  }
  // One handler from start-up to exit, so no signal ever falls between two of them (and
  // Node's default, dying on the spot, never applies while QEMU or the host is half set up).
  let launch = new Launch(a, prepared, runDir, r);
  const onSignal = (sig: NodeJS.Signals) => launch.onSignal(sig);
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const sig of signals) process.on(sig, onSignal);
  try {
    let started: Awaited<ReturnType<Launch["run"]>>;
    try {
      started = await launch.run();
    } catch (e) {
      // QEMU could not use KVM although /dev/kvm looked usable: once, under TCG, as when
      // /dev/kvm is missing. Only detached launches see QEMU's words (in qemu.log); in the
      // foreground they went to the terminal.
      const said = launch.kvmInitFailure;
      if (!said) throw e;
      if (launch.interruptedBy) throw interruptedError(launch.interruptedBy);
      launch = new Launch(a, prepareTcgRetry(a, prepared, runDir, r, said), runDir, r);
      started = await launch.run();
    }
    const { child, exited, state } = started;
    if (a.detach) {
      // Let qcvm exit while QEMU runs on: no handle of ours may keep the event loop alive.
      child.unref();
      return 0;
    }
    return await superviseForeground(exited, state, runDir, r);
  } finally {
    for (const sig of signals) process.off(sig, onSignal);
  }
}

/**
 * A signal to a foreground launcher: the first asks the guest to power down and quits QEMU after
 * POWERDOWN_TIMEOUT_MS; a second quits at once. QMP is connected only for that.
 */
function askQemuToStop(state: VmState, force: boolean, sig: NodeJS.Signals, r: Reporter): void {
  r.note(
    force
      ? `${sig} again: quitting QEMU now`
      : `${sig}: asking the guest to power down (QEMU quits after ${POWERDOWN_TIMEOUT_MS / 1000} s; send it again to quit now)`,
  );
  void stopQemu(state, { force, timeoutMs: POWERDOWN_TIMEOUT_MS }).catch((e: Error) => r.warn(e.message));
}

// ---------------------------------------------------------------------------------------------
// Foreground: QEMU's output streams through (inherited stdio); wait for it to exit, mirror its
// exit code, clean up.
// ---------------------------------------------------------------------------------------------

async function superviseForeground(
  exited: Promise<ChildExit>,
  state: VmState,
  runDir: string,
  r: Reporter,
): Promise<number> {
  const res = await exited;
  const code = exitCodeOf(res);
  // Clean up unless the name already belongs to a newer launch (after a `qcvm stop` cleaned up).
  const holder = readVmLock(runDir, state.name);
  if (!holder || holder.pid === state.pid) {
    const report = await cleanupVm(runDir, state.name, state.hostRoot);
    for (const e of report.errors) r.warn(`cleanup: ${e}`);
  }
  if (r.format === "json") r.emit({ event: "exited", name: state.name, pid: state.pid, exitCode: code });
  else if (!r.quiet)
    process.stderr.write(
      `qcvm: \`${state.name}\` exited (${res.signal ? `killed by ${res.signal}` : `exit code ${code}`}); cleaned up\n`,
    );
  return code;
}
