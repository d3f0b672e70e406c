// qcvm's libvirt exports against a real libvirtd (Debian's, started by the test: helpers/libvirtd.ts):
//   - `virsh domxml-to-native qemu-argv` of each export gives a QEMU command line whose memory
//     backends, NUMA nodes, distances and vCPU nodes mean what qcvm's own render of the same
//     profile means (compared as properties: helpers/qemu-argv.ts), except where the export
//     says libvirt differs (restrictive numatune: no backend policy);
//   - `virsh create` of the plain-KVM exports runs the guest, and QMP (virsh
//     qemu-monitor-command) shows the memdevs and vCPU nodes the profile asked for.
// Exports are for this host (`--host` absent): libvirt refuses host nodes the host lacks, so
// profiles written for two-node hosts are pointed at node 0 with --set (named in each case).
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO } from "./helpers/host.js";
import { KVM_USABLE, NO_CPUSET, qcvm, vmName } from "./helpers/launch.js";
import { libvirtdUnavailable, shellWords, startLibvirtd } from "./helpers/libvirtd.js";
import type { Libvirtd } from "./helpers/libvirtd.js";
import { memoryMeaning } from "./helpers/qemu-argv.js";
import type { MemoryMeaning } from "./helpers/qemu-argv.js";

const UNAVAILABLE = libvirtdUnavailable();
// Without a usable /dev/kvm (scripts/test-hosts.sh no-kvm, kvm-file, kvm-dead) the plain guests are
// exported and rendered for TCG (libvirt domain type qemu), as a user of such a host would say it;
// cpu.model host is KVM's alone (libvirt refuses host-passthrough for a qemu domain, QEMU refuses
// `-cpu host` under TCG), so it becomes max there, as launch's TCG fallback does. Confidential
// guests cannot say tcg (validate: they need KVM): see tcgDomain.
function accelFor(c: Case): string[] {
  if (KVM_USABLE || c.launchSecurity) return [];
  return ["--set", "machine.accel=tcg", ...(hostCpu(c) ? ["--set", "cpu.model=max"] : [])];
}

interface Case {
  file: string;
  /** --set overrides for this host, with the reason. */
  set?: string[];
  why?: string;
  /** libvirt 9.0 cannot take this launchSecurity here: compare the rest without it. */
  launchSecurity?: "unknown-to-9.0" | "needs-sev-host";
  /** The profile's cpu.model is host (with no cpu.model in set). */
  hostCpu?: boolean;
}

const hostCpu = (c: Case) => c.hostCpu === true && !(c.set ?? []).some((s) => s.startsWith("cpu.model="));

const CASES: Case[] = [
  { file: "profiles/kvm-1node.yaml", why: "as shipped" },
  { file: "profiles/kvm-2node.yaml", why: "as shipped" },
  { file: "examples/reference.yaml", why: "as shipped", hostCpu: true },
  {
    file: "profiles/sev-es.yaml",
    set: ["cpu.model=qemu64"],
    why: "libvirt's CPU map has no EPYC-v4 (QEMU's versioned name)",
    launchSecurity: "needs-sev-host",
  },
  {
    file: "profiles/snp-2node.yaml",
    set: ["numa.nodes[1].hostNodes=0", "numa.nodes[1].policy=preferred", "cpu.model=qemu64"],
    why: "one host node here; node 1 preferred so the guest nodes still differ (qcvm's per-vCPU cpuset plan)",
    launchSecurity: "unknown-to-9.0",
  },
  {
    file: "profiles/tdx-2node.yaml",
    set: ["numa.nodes[1].hostNodes=0", "numa.nodes[1].policy=preferred"],
    why: "one host node here",
    launchSecurity: "unknown-to-9.0",
    hostCpu: true,
  },
];

/**
 * Why libvirt cannot start a domain here at all: a /dev/kvm that exists but is no device
 * (scripts/test-hosts.sh kvm-file). libvirt gives each domain a private /dev holding /dev/kvm
 * whenever that path exists (qemu.conf namespaces, cgroup_device_acl), and for a regular file
 * the move of its mount fails: "Unable to move /run/libvirt/qemu/1-NAME.kvm mount to /dev/kvm:
 * Invalid argument", TCG domains included. Nothing of qcvm's export is in that.
 */
const KVM_NOT_A_DEVICE = (() => {
  try {
    return statSync("/dev/kvm").isCharacterDevice()
      ? undefined
      : " (skipped: /dev/kvm here is not a device, and libvirt's private /dev for a domain cannot hold it)";
  } catch {
    return undefined; // absent: libvirt leaves it out
  }
})();

let lv: Libvirtd | undefined;
const tmp = mkdtempSync(join(tmpdir(), "qcvm-libvirtd-test-"));
beforeAll(async () => {
  if (!UNAVAILABLE) lv = await startLibvirtd();
}, 60_000);
afterAll(async () => {
  await lv?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

function withoutLaunchSecurity(xml: string): string {
  return xml.replace(/\n\s*<launchSecurity[\s\S]*<\/launchSecurity>/, "");
}

/**
 * A confidential export is a KVM domain (confidential guests need KVM), and libvirt translates a
 * KVM domain only where KVM is usable. Without it the comparison is of the same domain retargeted
 * at TCG: type qemu, and host-passthrough (KVM's alone) as maximum, what `-cpu max` means there.
 * Neither touches the memory backends, NUMA cells or distances compared.
 */
function tcgDomain(xml: string): string {
  const out = xml
    .replace(/^<domain type="kvm"/m, '<domain type="qemu"')
    .replace(/<cpu mode="host-passthrough" check="none" migratable="off">/, '<cpu mode="maximum" check="none">');
  expect(out).toMatch(/^<domain type="qemu"/m);
  return out;
}

async function exportFor(c: Case): Promise<string> {
  const sets = (c.set ?? []).flatMap((s) => ["--set", s]);
  const r = await qcvm(["export", join(REPO, c.file), "--to", "libvirt", ...accelFor(c), ...sets]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

async function renderFor(c: Case): Promise<MemoryMeaning> {
  const sets = (c.set ?? []).flatMap((s) => ["--set", s]);
  // This host has no SEV, SNP or TDX, so render would refuse their plans: compare against the
  // profile as written (--literal), which is what export translates too.
  const literal = c.launchSecurity ? ["--literal"] : [];
  // Without KVM a confidential profile's render keeps cpu.model host; what it means for memory is
  // the same as max's (tcgDomain).
  const r = await qcvm(["render", join(REPO, c.file), "--format", "json", ...literal, ...accelFor(c), ...sets]);
  expect(r.code, r.stderr).toBe(0);
  return memoryMeaning((JSON.parse(r.stdout) as { argv: string[] }).argv);
}

function nativeArgv(xml: string, name: string): { code: number; argv: string[]; stderr: string } {
  const file = join(tmp, `${name}.xml`);
  writeFileSync(file, xml);
  const r = lv!.virsh(["domxml-to-native", "qemu-argv", file]);
  return { code: r.code, argv: shellWords(r.stdout), stderr: r.stderr };
}

describe.skipIf(UNAVAILABLE !== undefined)(`libvirtd ${UNAVAILABLE ?? ""}`, () => {
  it.each(CASES)("domxml-to-native of $file means what qcvm's render means ($why)", async (c) => {
    const xml = await exportFor(c);
    const name = c.file.replace(/[/.]/g, "_");
    let domain = xml;
    if (c.launchSecurity) {
      if (!KVM_USABLE) {
        // Without KVM, what stops libvirt in the rest is the domain type (see tcgDomain).
        const kvm = nativeArgv(withoutLaunchSecurity(xml), `${name}-kvm`);
        expect(kvm.code).not.toBe(0);
        expect(kvm.stderr).toMatch(/does not support virt type 'kvm'/);
        domain = tcgDomain(xml);
      }
      const whole = nativeArgv(domain, `${name}-whole`);
      expect(whole.code).not.toBe(0);
      // What stops libvirt 9.0 is the confidential element, and nothing else (the rest is compared below).
      expect(whole.stderr).toMatch(
        c.launchSecurity === "needs-sev-host"
          ? /SEV launch security is not supported with this QEMU binary/
          : /launchSecurity|unsupported configuration|XML error|Invalid value/i,
      );
      domain = withoutLaunchSecurity(domain);
    }
    const native = nativeArgv(domain, name);
    expect(native.stderr).toBe("");
    expect(native.code).toBe(0);
    const theirs = memoryMeaning(native.argv);
    const ours = await renderFor(c);
    delete ours.confidential; // not in the compared domain (see above)
    const restrictive = /<memory mode="restrictive"/.test(xml);
    // Restrictive numatune: libvirt's backends carry no policy (cgroups place the memory), as the export says.
    if (restrictive) {
      for (const n of ours.nodes) Object.assign(n.backend, { hostNodes: [], policy: "default" });
      expect(xml).toContain("the shared half then carries no backend policy");
    }
    expect(theirs).toEqual(ours);
    expect(theirs.nodes.length).toBeGreaterThan(0);
  });

  it(`the SNP export with differing guest nodes is ${NO_CPUSET ? "strict (no cpuset controller here, so qcvm's plan has no per-vCPU cpusets)" : "restrictive (qcvm's plan uses per-vCPU cpusets there)"}`, async () => {
    const xml = await exportFor(CASES.find((c) => c.file === "profiles/snp-2node.yaml")!);
    if (NO_CPUSET) {
      // Pre-allocation without vCPU cpusets: the backends keep their policies, as qcvm's do.
      expect(xml).toContain('<memory mode="strict" nodeset="0"/>');
      expect(xml).toContain('<memnode cellid="1" mode="preferred" nodeset="0"/>');
      expect(xml).toContain("the plan has no vCPU cpusets on this host");
    } else expect(xml).toContain('<memory mode="restrictive" nodeset="0"/>');
  });

  it.skipIf(KVM_NOT_A_DEVICE !== undefined).each(["profiles/kvm-1node.yaml", "profiles/kvm-2node.yaml"])(
    `virsh create of %s runs it, with the memdevs and vCPU nodes the profile asks for (QMP)${KVM_NOT_A_DEVICE ?? ""}`,
    async (file) => {
      // A name of this test's: libvirt names the domain's cgroup (machine/qemu-ID-NAME) from its id,
      // which starts at 1 in every libvirtd, and its name, in cgroup trees another CI leg's
      // libvirtd may be using at the same moment (.ci/run's two lanes).
      const xml = await exportFor({ file, set: [`name=${vmName("lv")}`] });
      const name = /<name>([^<]+)<\/name>/.exec(xml)![1]!;
      const xmlFile = join(tmp, `${name}-create.xml`);
      writeFileSync(xmlFile, xml);
      const created = lv!.virsh(["create", xmlFile]);
      expect(created.stderr).toBe("");
      expect(created.code).toBe(0);
      try {
        const qmp = (cmd: string) => {
          const r = lv!.virsh(["qemu-monitor-command", name, JSON.stringify({ execute: cmd })]);
          expect(r.code, r.stderr).toBe(0);
          return (JSON.parse(r.stdout) as { return: Array<Record<string, unknown>> }).return;
        };
        const memdevs = qmp("query-memdev")
          .map((m) => ({ size: m.size, hostNodes: m["host-nodes"], policy: m.policy, share: m.share }))
          .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
        const cpus = qmp("query-cpus-fast").map((c) => ({
          vcpu: c["cpu-index"],
          node: (c.props as Record<string, unknown>)["node-id"],
        }));
        if (file.endsWith("kvm-2node.yaml")) {
          // profiles/kvm-2node.yaml: two 256M nodes, vCPU 0 in node 0, vCPU 1 in node 1, both bound to host node 0.
          const node = { size: 268435456, hostNodes: [0], policy: "bind", share: true };
          expect(memdevs).toEqual([node, node]);
          expect(cpus).toEqual([
            { vcpu: 0, node: 0 },
            { vcpu: 1, node: 1 },
          ]);
        } else {
          // profiles/kvm-1node.yaml: one 512M memfd backend bound to host node 0, no guest NUMA.
          expect(memdevs).toEqual([{ size: 536870912, hostNodes: [0], policy: "bind", share: true }]);
          expect(cpus.map((c) => c.node)).toEqual([undefined, undefined]);
        }
      } finally {
        lv!.virsh(["destroy", name]);
      }
    },
  );
});
