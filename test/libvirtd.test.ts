// qcvm's libvirt exports against a real libvirtd (Debian's, started by the test: helpers/libvirtd.ts):
//   - `virsh domxml-to-native qemu-argv` of each export gives a QEMU command line whose memory
//     backends, NUMA nodes, distances and vCPU nodes mean what qcvm's own render of the same
//     profile means (compared as properties: helpers/qemu-argv.ts), except where the export
//     says libvirt differs (restrictive numatune: no backend policy);
//   - `virsh create` of the plain-KVM exports runs the guest, and QMP (virsh
//     qemu-monitor-command) shows the memdevs and vCPU nodes the profile asked for.
// Exports are for this host (`--host` absent): libvirt refuses host nodes the host lacks, so
// profiles written for two-node hosts are pointed at node 0 with --set (named in each case).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO } from "./helpers/host.js";
import { KVM_USABLE, qcvm } from "./helpers/launch.js";
import { libvirtdUnavailable, shellWords, startLibvirtd } from "./helpers/libvirtd.js";
import type { Libvirtd } from "./helpers/libvirtd.js";
import { memoryMeaning } from "./helpers/qemu-argv.js";
import type { MemoryMeaning } from "./helpers/qemu-argv.js";

const UNAVAILABLE = libvirtdUnavailable();
// Without a usable /dev/kvm the guests run under TCG (libvirt domain type qemu).
const ACCEL = KVM_USABLE ? [] : ["--set", "machine.accel=tcg"];

interface Case {
  file: string;
  /** --set overrides for this host, with the reason. */
  set?: string[];
  why?: string;
  /** libvirt 9.0 cannot take this launchSecurity here: compare the rest without it. */
  launchSecurity?: "unknown-to-9.0" | "needs-sev-host";
}

const CASES: Case[] = [
  { file: "profiles/kvm-1node.yaml", why: "as shipped" },
  { file: "profiles/kvm-2node.yaml", why: "as shipped" },
  { file: "examples/reference.yaml", why: "as shipped" },
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
  },
];

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

async function exportFor(c: Case): Promise<string> {
  const sets = (c.set ?? []).flatMap((s) => ["--set", s]);
  const r = await qcvm(["export", join(REPO, c.file), "--to", "libvirt", ...ACCEL, ...sets]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

async function renderFor(c: Case): Promise<MemoryMeaning> {
  const sets = (c.set ?? []).flatMap((s) => ["--set", s]);
  // This host has no SEV, SNP or TDX, so render would refuse their plans: compare against the
  // profile as written (--literal), which is what export translates too.
  const literal = c.launchSecurity ? ["--literal"] : [];
  const r = await qcvm(["render", join(REPO, c.file), "--format", "json", ...literal, ...ACCEL, ...sets]);
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
      const whole = nativeArgv(xml, `${name}-whole`);
      expect(whole.code).not.toBe(0);
      // What stops libvirt 9.0 is the confidential element, and nothing else (the rest is compared below).
      expect(whole.stderr).toMatch(
        c.launchSecurity === "needs-sev-host"
          ? /SEV launch security is not supported with this QEMU binary/
          : /launchSecurity|unsupported configuration|XML error|Invalid value/i,
      );
      domain = withoutLaunchSecurity(xml);
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

  it("the SNP export with differing guest nodes is restrictive (qcvm's plan uses per-vCPU cpusets there)", async () => {
    const xml = await exportFor(CASES.find((c) => c.file === "profiles/snp-2node.yaml")!);
    expect(xml).toContain('<memory mode="restrictive" nodeset="0"/>');
  });

  it.each(["profiles/kvm-1node.yaml", "profiles/kvm-2node.yaml"])(
    "virsh create of %s runs it, with the memdevs and vCPU nodes the profile asks for (QMP)",
    async (file) => {
      const xml = await exportFor({ file });
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
