// One QEMU version of the test matrix, for real: the binary named by QCVM_MATRIX_QEMU (a wrapper
// from scripts/qemu-versions.sh, or the system's qemu-system-x86_64), expected to be version
// QCVM_MATRIX_VERSION. .ci/run runs this file once per version (`npm run test:qemu -- VERSION`);
// `npm test` does not (vitest.config.ts leaves test/matrix/ out).
//
//   - `qcvm doctor --qemu BINARY` probes it.
//   - Drift: the built-in capability table (src/probe/capabilities.ts) for the binary's version
//     against what the binary reports: every type and property the table claims is there, and every
//     one qcvm knows that the binary has is in the table.
//   - Every shipped profile and example, rendered for the binary's probed capabilities: with the
//     confidential object removed it starts paused, and QMP query-memdev / query-cpus-fast agree
//     with the profile; its full confidential command line fails only at KVM's hardware check
//     (memory backends are created after that check, hence the paused start without the object).
//     A profile needing a feature the binary lacks must fail to render, naming that feature.
import { execFileSync } from "node:child_process";
import { accessSync, constants, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, onTestFinished } from "vitest";
import { processPolicyArgv } from "../../src/render/process-policy.js";
import {
  FEATURES,
  builtinCapabilities,
  hasFeature,
  type Feature,
  type FeatureDef,
} from "../../src/probe/capabilities.js";
import { probeQemu } from "../../src/probe/qemu.js";
import { probeHost, probeKvm } from "../../src/probe/host.js";
import { loadContext } from "../../src/pipeline/context.js";
import { renderArgv } from "../../src/render/render.js";
import { inlineProfileFiles } from "../../src/render/files.js";
import type { ConfidentialType, Plan, Profile, QemuCapabilities } from "../../src/core/types.js";
import { quitQemu, runToExit, startQemu, stopAll } from "../helpers/qemu-run.js";

const root = join(import.meta.dirname, "..", "..");
const BINARY = process.env.QCVM_MATRIX_QEMU;
const WANT = process.env.QCVM_MATRIX_VERSION ?? "?";

function absence(): string | undefined {
  if (!BINARY) return "QCVM_MATRIX_QEMU is not set (run `npm run test:qemu -- VERSION` or .ci/run)";
  if (!BINARY.includes("/")) return undefined; // a name on PATH: probeQemu resolves it
  try {
    accessSync(BINARY, constants.X_OK);
    return undefined;
  } catch {
    return `${BINARY} is absent: scripts/qemu-versions.sh could not fetch QEMU ${WANT} (Debian's archive unreachable?)`;
  }
}
const ABSENT = absence();

const kvm = probeKvm();
const KVM = kvm.ok;

afterEach(stopAll);

/** The QOM type that is each confidential type's object (the feature the binary must have). */
const CONFIDENTIAL_FEATURE: Record<Exclude<ConfidentialType, "none">, Feature> = {
  sev: "sev-guest",
  "sev-es": "sev-guest",
  "sev-snp": "sev-snp-guest",
  tdx: "tdx-guest",
};

/**
 * What a full confidential command line may end with on a host without that hardware: KVM's
 * check, after every option was parsed and every -object created. Anything else (an unknown
 * property, a bad value) is qcvm's fault.
 *   QEMU >= 9.1 (KVM_SEV_INIT2 / KVM_X86_*_VM): target/i386/kvm/kvm.c kvm_arch_get_default_type
 *     "vm-type SEV-SNP not supported by KVM" (also SEV, SEV-ES; TDX since 10.1).
 *   SEV and SEV-ES with QEMU < 9.1 (and with legacy-vm-type): target/i386/sev.c sev_kvm_init
 *     opens /dev/sev first: "Failed to open /dev/sev '...'".
 */
const HARDWARE_MISSING = [
  /vm-type (SEV|SEV-ES|SEV-SNP|TDX) not supported by KVM/,
  /Failed to open \/dev\/sev\b/,
  // sev-guest, QEMU >= 9.1 (sev_common_kvm_init): CPUID 0x8000001F says no C-bit before any KVM call.
  /cbitpos check failed, host '0' requested/,
];

/** A host that cannot back a hugepage profile: no free pages of that size (reserve=on maps fail). */
const HUGEPAGES_MISSING = /unable to map backing store for guest RAM: Cannot allocate memory/;

/** Files of every shipped profile and example, as the golden test lists them. */
const shipped = ["profiles", "examples"].flatMap((dir) =>
  readdirSync(join(root, dir))
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => `${dir}/${f}`),
);

function tempDir(): string {
  // A comma in the name: every path qcvm passes to QEMU must survive it.
  const dir = mkdtempSync(join(tmpdir(), "qcvm,matrix-"));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Render `profile` for `caps` (TCG where KVM is unusable), with QMP at `sock` and `extra` appended. */
function render(profile: Profile, plan: Plan, caps: QemuCapabilities, sock: string, extra: string[] = []) {
  const machine = KVM ? profile.machine : { ...profile.machine, accel: "tcg" as const };
  const cpu = !KVM && profile.cpu.model === "host" ? { ...profile.cpu, model: "max" } : profile.cpu;
  const p: Profile = { ...profile, machine, cpu, qmp: sock, extraArgs: [...profile.extraArgs, ...extra] };
  const inlined = inlineProfileFiles(p);
  expect(inlined.errors).toEqual([]);
  const r = renderArgv(inlined.value!, plan, caps);
  if (!r.value) return { errors: r.errors, argv: undefined };
  // -cpu host under KVM, without arch-capabilities: KVM refuses that MSR on nested AMD hosts (this
  // machine kind), "failed to set MSR 0x10a", and QEMU aborts. The one change made to the argv.
  const argv = r.value.map((a, i) =>
    a === "host" && r.value![i - 1] === "-cpu" && KVM ? "host,-arch-capabilities" : a,
  );
  return { errors: r.errors, argv: [...processPolicyArgv(plan.launch.processPolicy), ...argv] };
}

/** The argv without the confidential-guest object and the -machine reference to it. */
export function withoutConfidentialObject(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1] ?? "";
    if (
      a === "-object" &&
      /^(sev-guest|sev-snp-guest|tdx-guest),|"qom-type":\s*"(sev-guest|sev-snp-guest|tdx-guest)"/.test(next)
    ) {
      i++;
      continue;
    }
    out.push(a === "-machine" || argv[i - 1] !== "-machine" ? a : a.replace(/,confidential-guest-support=[^,]+/, ""));
  }
  return out;
}

interface Memdev {
  id: string;
  size: number;
  "host-nodes": number[];
  policy: string;
  share: boolean;
  prealloc: boolean;
}
interface CpuInfo {
  "cpu-index": number;
  props: { "node-id"?: number };
}

/** Does this host have `count` free huge pages of `size` on the nodes the plan uses? */
function hugepagesFree(size: "2M" | "1G", bytes: number): boolean {
  const host = probeHost("/");
  const per = size === "2M" ? 2 * 1024 * 1024 : 1024 * 1024 * 1024;
  const free = host.nodes.reduce((sum, n) => sum + (n.hugepages?.[size]?.free ?? 0), 0);
  return free * per >= bytes;
}

/** The checks against one real binary (collected only when it is there: probing runs it). */
async function versionSuite(binary: string): Promise<void> {
  const probe = await probeQemu(binary);
  const table = builtinCapabilities(probe.version);
  // Every QOM type and property qcvm knows of: the table of a QEMU newer than any release.
  const known = builtinCapabilities("999.0");

  it(`is QEMU ${WANT}`, () => {
    expect(probe.version.startsWith(`${WANT}.`) || probe.version === WANT, probe.version).toBe(true);
  });

  it("qcvm doctor --qemu probes it", () => {
    const json = JSON.parse(
      execFileSync(process.execPath, [join(root, "bin/qcvm.js"), "doctor", "--qemu", binary, "--format", "json"], {
        encoding: "utf8",
      }),
    ) as { qemu: QemuCapabilities };
    expect({ source: json.qemu.source, binary: json.qemu.binary, version: json.qemu.version }).toEqual({
      source: "probe",
      binary,
      version: probe.version,
    });
    const text = execFileSync(process.execPath, [join(root, "bin/qcvm.js"), "doctor", "--qemu", binary], {
      encoding: "utf8",
    });
    expect(text).toContain(`QEMU ${probe.version} (probed ${binary})`);
    // Each detectable feature is reported as the probe found it.
    for (const [name, def] of Object.entries(FEATURES) as Array<[Feature, FeatureDef]>) {
      if (!def.type && !def.property) continue;
      expect(text).toMatch(new RegExp(`${hasFeature(probe, name) ? "✓" : "✗"} ${name}\\b`));
    }
  });

  describe("drift: the built-in capability table for this version against the binary", () => {
    it("every detectable feature: in the table exactly when the binary has it", () => {
      const drift: string[] = [];
      for (const [name, def] of Object.entries(FEATURES) as Array<[Feature, FeatureDef]>) {
        if (!def.type && !def.property) continue;
        const inTable = hasFeature(table, name);
        const inBinary = hasFeature(probe, name);
        if (inTable && !inBinary && !def.buildOption)
          drift.push(`${name}: the table says QEMU ${probe.version} has it (since ${def.since}); the binary has not`);
        if (!inTable && inBinary)
          drift.push(`${name}: the binary has it; the table says since ${def.since ?? "no release"}`);
      }
      expect(drift).toEqual([]);
    });

    it("every QOM type the table lists is in the binary, and every one qcvm knows that the binary has is listed", () => {
      const optional = new Set(
        (Object.values(FEATURES) as FeatureDef[]).filter((d) => d.buildOption && d.type).map((d) => d.type),
      );
      expect(table.types.filter((t) => !probe.types.includes(t) && !optional.has(t))).toEqual([]);
      expect(known.types.filter((t) => probe.types.includes(t) && !table.types.includes(t))).toEqual([]);
    });

    it("every property the table lists is in the binary, and every one qcvm knows that the binary has is listed", () => {
      const claimedMissing: string[] = [];
      const unlisted: string[] = [];
      for (const [type, props] of Object.entries(table.properties)) {
        const real = probe.properties[type];
        if (!real) continue; // a type the binary lacks: the test above names it
        for (const p of props) if (!real.includes(p)) claimedMissing.push(`${type}.${p}`);
      }
      for (const [type, props] of Object.entries(known.properties)) {
        const real = probe.properties[type];
        if (!real || !table.properties[type]) continue;
        for (const p of props)
          if (real.includes(p) && !table.properties[type].includes(p)) unlisted.push(`${type}.${p}`);
      }
      expect({ claimedMissing, unlisted }).toEqual({ claimedMissing: [], unlisted: [] });
    });

    it("version-only features are checked where QMP can see them: -machine memory-backend= (5.0), -sandbox's deny sets (2.11)", async () => {
      const dir = tempDir();
      const sock = join(dir, "qmp.sock");
      const s = await startQemu(
        [
          binary,
          "-machine",
          "none",
          "-S",
          "-nodefaults",
          "-display",
          "none",
          "-qmp",
          `unix:${sock.replaceAll(",", ",,")},server=on,wait=off`,
        ],
        sock,
      );
      const props = await s.client.command<Array<{ name: string }>>("qom-list-properties", { typename: "machine" });
      expect(props.some((p) => p.name === "memory-backend")).toBe(hasFeature(table, "machine-memory-backend"));
      // -sandbox exists only in a build with libseccomp (query-command-line-options then errors).
      const sandbox = await s.client
        .command<Array<{ parameters: Array<{ name: string }> }>>("query-command-line-options", { option: "sandbox" })
        .then((r) => r.flatMap((o) => o.parameters.map((p) => p.name)))
        .catch(() => [] as string[]);
      const denySets = ["obsolete", "elevateprivileges", "spawn", "resourcecontrol"];
      expect(denySets.every((n) => sandbox.includes(n))).toBe(hasFeature(table, "sandbox"));
      await quitQemu(s);
      // numa-memdev and numa-dist are exercised by the profiles started below (-numa node,memdev=
      // and -numa dist); preferred-many (MPOL_PREFERRED_MANY through libnuma) shows in no QMP reply.
      const versionOnly = (Object.entries(FEATURES) as Array<[Feature, FeatureDef]>)
        .filter(([, d]) => !d.type && !d.property)
        .map(([n]) => n)
        .sort();
      expect(versionOnly).toEqual(["machine-memory-backend", "numa-dist", "numa-memdev", "preferred-many", "sandbox"]);
    });
  });

  describe(`shipped profiles and examples rendered for QEMU ${probe.version}'s probed capabilities`, async () => {
    const cases: Array<{ file: string; profile: Profile; plan: Plan }> = [];
    for (const file of shipped) {
      const ctx = await loadContext({
        profile: join(root, file),
        set: [`qemu.binary=${binary}`],
        resolveCaps: async () => probe,
      });
      cases.push({ file, profile: ctx.profile, plan: ctx.plan });
    }
    const needs = (p: Profile) =>
      p.confidential.type === "none" ? undefined : CONFIDENTIAL_FEATURE[p.confidential.type];
    const renderable = cases.filter((c) => !needs(c.profile) || hasFeature(probe, needs(c.profile)!));
    const unrenderable = cases.filter((c) => !renderable.includes(c));

    for (const { file, profile, plan } of unrenderable)
      it(`${file}: this QEMU has no ${profile.confidential.type} object, and rendering says so`, () => {
        const r = render(profile, plan, probe, "/nonexistent/qmp.sock");
        expect(r.argv).toBeUndefined();
        const feature = needs(profile)!;
        expect(r.errors.map((e) => e.message).join("\n")).toContain(FEATURES[feature].what);
      });

    for (const { file, profile, plan } of renderable.filter((c) => c.profile.confidential.type !== "none"))
      it(`${file}: the full confidential command line fails only at KVM's hardware check`, async () => {
        const dir = tempDir();
        const r = render(profile, plan, probe, join(dir, "qmp.sock"), ["-S"]);
        expect(r.errors).toEqual([]);
        const ran = await runToExit(r.argv!);
        expect(ran.exitCode, ran.stderr).toBe(1);
        expect(
          HARDWARE_MISSING.some((m) => m.test(ran.stderr)),
          ran.stderr,
        ).toBe(true);
      });

    /** Why this host or binary cannot start the profile even without its confidential object, and
     *  the message QEMU must then stop at; undefined when it must start. */
    const blocker = (profile: Profile): { why: string; message: RegExp } | undefined => {
      // A CPU model newer than this binary (EPYC-v4 is QEMU 8.0; sev-es.yaml targets 8.2): the
      // probe's QOM types name every model the binary has.
      const model = profile.cpu.model.split(",")[0]!;
      if (KVM && !probe.types.includes(`${model}-x86_64-cpu`))
        return {
          why: `this QEMU has no CPU model ${model}`,
          message: new RegExp(`unable to find CPU model '${model}'`),
        };
      const huge = profile.memory.hugepages;
      if (huge !== "none" && !hugepagesFree(huge, profile.memory.sizeBytes))
        return { why: `this host has too few free ${huge} huge pages`, message: HUGEPAGES_MISSING };
      return undefined;
    };
    const startCases = renderable.map((c) => {
      const b = blocker(c.profile);
      const name = b
        ? `${c.file}: ${b.why}: with the confidential object removed, QEMU stops at exactly that`
        : `${c.file}: with the confidential object removed it starts paused, and QMP agrees with the profile`;
      return { ...c, blocked: b, name };
    });

    for (const { name, profile, plan, blocked } of startCases)
      it(name, async () => {
        const dir = tempDir();
        const sock = join(dir, "qmp.sock");
        const r = render(profile, plan, probe, sock, ["-S"]);
        expect(r.errors).toEqual([]);
        const argv = withoutConfidentialObject(r.argv!);
        expect(argv.join(" ")).not.toMatch(/confidential-guest-support|sev-guest|sev-snp-guest|tdx-guest/);
        if (blocked) {
          const ran = await runToExit(argv);
          expect(ran.exitCode, ran.stderr).toBe(1);
          expect(ran.stderr).toMatch(blocked.message);
          return;
        }
        const s = await startQemu(argv, sock);
        const status = await s.client.command<{ status: string }>("query-status");
        expect(status.status).toBe("prelaunch");

        // Backends: one per guest node, sized as the profile says; host-nodes/policy as the plan
        // places the shared half (the profile's, for every host node this host has).
        const memdevs = await s.client.command<Memdev[]>("query-memdev");
        const expected = plan.nodes.map((n) => {
          const bound = n.shared.mechanism === "backend-policy";
          return {
            id: `mem${n.guestNode}`,
            size: profile.numa.nodes[n.guestNode]?.memoryBytes ?? profile.memory.sizeBytes,
            hostNodes: bound ? n.hostNodes : [],
            policy: bound ? n.policy : "default",
            share: profile.memory.share,
            prealloc: profile.memory.prealloc,
          };
        });
        expect(
          memdevs
            .map((m) => ({
              id: m.id,
              size: m.size,
              hostNodes: m["host-nodes"],
              policy: m.policy,
              share: m.share,
              prealloc: m.prealloc,
            }))
            .sort((a, b) => a.id.localeCompare(b.id)),
        ).toEqual(expected);
        const hostNodes = new Set(probeHost("/").nodes.map((n) => n.id));
        for (const n of profile.numa.nodes)
          if (n.hostNodes.length > 0 && n.hostNodes.every((h) => hostNodes.has(h)) && n.policy !== "default")
            expect(plan.nodes[n.id]?.shared.hostNodes).toEqual(n.hostNodes);

        const cpus = await s.client.command<CpuInfo[]>("query-cpus-fast");
        expect(cpus).toHaveLength(profile.cpu.count);
        const nodeOf = (i: number) => profile.numa.nodes.find((n) => n.cpus.includes(i))?.id;
        expect(cpus.map((c) => [c["cpu-index"], c.props["node-id"]])).toEqual(
          cpus.map((c) => [c["cpu-index"], nodeOf(c["cpu-index"])]),
        );

        const q = await quitQemu(s);
        expect(q.reply).toEqual({ return: {} });
        expect(q.exitCode, q.stderr).toBe(0);
      });
  });
}

describe.skipIf(ABSENT !== undefined)(`QEMU ${WANT}${ABSENT ? `: skipped: ${ABSENT}` : ` (${BINARY})`}`, () =>
  BINARY !== undefined && ABSENT === undefined ? versionSuite(BINARY) : undefined,
);
