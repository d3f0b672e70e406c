// `qcvm doctor` as a user runs it: the built bin, real QEMU, fixture hosts and this machine.
import { describe, expect, it } from "vitest";
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../src/io/exec.js";
import { loadCapabilities } from "../src/probe/qemu.js";

const repo = join(import.meta.dirname, "..");
const bin = join(repo, "bin", "qcvm.js");
const fixture = (name: string) => join(repo, "test", "fixtures", "hosts", name);
const tmp = () => mkdtempSync(join(tmpdir(), "qcvm-doctor-"));

async function qcvm(...args: string[]) {
  return run([process.execPath, bin, ...args], { timeoutMs: 60_000 });
}

interface JsonFinding {
  area: string;
  item: string;
  status: string;
  message: string;
  rulesOut?: string;
}
const find = (fs: JsonFinding[], item: string) => fs.find((f) => f.item === item)!;

describe("qcvm doctor", () => {
  it("epyc-2s4n: node table, SNP host, and what QEMU 7.2 rules out", async () => {
    const r = await qcvm("doctor", "--host", fixture("epyc-2s4n"));
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("Linux 6.11.0, 4 NUMA node(s):");
    expect(r.stdout).toMatch(/^ {4}0 +0-15,64-79 +188\.8 GiB +171\.8 GiB +1024\/1024 +0\/0 +10 12 32 32$/m);
    expect(r.stdout).toMatch(/^ {4}1 +16-31,80-95 .* 0\/0 +12\/16 +12 10 32 32$/m);
    expect(r.stdout).toContain("✓ SEV-SNP: kvm_amd sev_snp=Y, kernel 6.11.0");
    expect(r.stdout).toContain("✓ hugepages 1G: 12/16 free on node 1");
    expect(r.stdout).toContain("✗ sev-snp-guest: confidential.type sev-snp profiles cannot run; needs QEMU >= 9.1");
    // Issue 10 item 13: doctor said "first-touch at best ... never exact" where plan says exact
    // through process-mempolicy; the levers now come from the planner's own table.
    expect(r.stdout).not.toContain("first-touch at best");
    expect(r.stdout).toContain(
      "✓ process-wide policy (process-mempolicy): exact when every guest node wants the same host nodes",
    );
    expect(r.stdout).toContain("✗ guest_memfd mempolicy (guest-memfd-mempolicy)");
    // guest-memfd-prealloc: pidfd_getfd (Linux 5.6) with Yama ptrace_scope 1 is possible there.
    expect(r.stdout).toContain("✓ pidfd_getfd: kernel 6.11.0, Yama ptrace_scope 1");
    expect(r.stdout).toContain(
      "✓ guest_memfd pre-allocation (guest-memfd-prealloc): exact-at-launch for every guest node",
    );
    // ...and does not sound an alarm over optional features on a host that runs plain KVM.
    expect(r.stdout).not.toMatch(/missing items? rule out profile features/);
    expect(r.stdout).toContain("Runs here: none (plain KVM), sev, sev-es.");
    expect(r.stdout).toMatch(/\d+ optional features are not available here \(✗ above\); only profiles that use them/);
    expect(r.stdout).toContain("✗ confidential.type sev-snp: QEMU 7.2");
    expect(r.stdout).toContain("✓ confidential.type sev: host and QEMU can run it");
  });

  it("given profiles, says for each whether it runs here, as qcvm plan decides it (exit 1 there)", async () => {
    const host = fixture("epyc-2s4n");
    const caps = join(repo, "test/fixtures/plan-profiles/caps-gmem-snp.json");
    const r = await qcvm(
      "doctor",
      "--host",
      host,
      "--capabilities",
      caps,
      "profiles/kvm-1node.yaml",
      "profiles/tdx-2node.yaml",
    );
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("✓ profiles/kvm-1node.yaml: runs here");
    expect(r.stdout).toMatch(/✗ profiles\/tdx-2node.yaml: cannot run here \(\d+ errors?\)/);
    const plan = await qcvm("plan", "profiles/tdx-2node.yaml", "--host", host, "--capabilities", caps);
    expect(plan.exitCode).toBe(1);
    expect(r.stdout.replace(/\s+/g, " ")).toContain("TDX host support needs Linux >= 6.16");
    expect(plan.stdout.replace(/\s+/g, " ")).toContain("TDX host support needs Linux >= 6.16");
  });

  it("json: cxl-memonly has a memory-only node, findings carry messages", async () => {
    const r = await qcvm("doctor", "--host", fixture("cxl-memonly"), "--format", "json");
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(r.stdout) as {
      host: { nodes: { memoryOnly: boolean }[] };
      qemu: { version: string; source: string };
      findings: JsonFinding[];
    };
    expect(j.host.nodes.map((n) => n.memoryOnly)).toEqual([false, false, true]);
    expect(j.qemu.version).toMatch(/^7\.2\.\d+$/);
    expect(j.qemu.source).toBe("probe");
    expect(find(j.findings, "NUMA").message).toBe("NUMA: 3 nodes, memory-only (CXL-like): 2");
    expect(find(j.findings, "weighted interleave (kernel)").status).toBe("ok");
    expect(find(j.findings, "weighted interleave (kernel)").message).toContain("weights 0:3 1:3 2:1");
    expect(find(j.findings, "guest_memfd mempolicy").message).toBe(
      "guest_memfd mempolicy missing: kernel < 6.19: the guest_memfd mempolicy lever (each guest node exact on its own nodes) is unavailable; the other levers still apply (see the private memory levers below) (kernel 6.9.12)",
    );
    expect(find(j.findings, "sev-snp-guest").message).toBe(
      "sev-snp-guest missing: confidential.type sev-snp profiles cannot run; needs QEMU >= 9.1 (sev-snp-guest (SEV-SNP, guest_memfd private memory))",
    );
    expect(find(j.findings, "thread-context").status).toBe("ok");
  });

  it("single-node on kernel 6.1 without weighted interleave; gmem-mempolicy on 6.19 has it", async () => {
    const single = JSON.parse((await qcvm("doctor", "--host", fixture("single-node"), "--format", "json")).stdout) as {
      findings: JsonFinding[];
    };
    expect(find(single.findings, "NUMA").status).toBe("missing");
    expect(find(single.findings, "weighted interleave (kernel)").rulesOut).toBe(
      "policy weighted-interleave cannot be used (needs Linux >= 6.9)",
    );
    expect(find(single.findings, "cpuset cgroup").message).toBe("cpuset cgroup: at /sys/fs/cgroup/cpuset");
    const gmem = JSON.parse((await qcvm("doctor", "--host", fixture("gmem-mempolicy"), "--format", "json")).stdout) as {
      findings: JsonFinding[];
    };
    expect(find(gmem.findings, "guest_memfd mempolicy").status).toBe("ok");
  });

  it("--capabilities: a saved file for QEMU 10.1 on the TDX host says TDX can run", async () => {
    const file = join(tmp(), "caps.json");
    writeFileSync(
      file,
      JSON.stringify({
        version: "10.1.0",
        types: ["memory-backend-memfd", "tdx-guest", "thread-context"],
        properties: { "tdx-guest": ["attributes"] },
      }),
    );
    const r = await qcvm("doctor", "--host", fixture("spr-tdx-2n"), "--capabilities", file);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("QEMU 10.1.0 (from a capabilities file)");
    expect(r.stdout).toContain("✓ tdx-guest");
    expect(r.stdout).toContain("✓ confidential.type tdx: host and QEMU can run it");
  });

  it("--save writes capabilities that load back", async () => {
    const file = join(tmp(), "caps.json");
    const r = await qcvm("doctor", "--host", fixture("single-node"), "--save", file);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain(`saved QEMU 7.2`);
    const caps = loadCapabilities(file);
    expect(caps.source).toBe("file");
    expect(caps.properties["memory-backend-memfd"]).toContain("prealloc-context");
    expect(JSON.parse(readFileSync(file, "utf8")).format).toBe("qcvm-capabilities/v1");
  });

  it("this machine: a report for / with the real kernel", async () => {
    const r = await qcvm("doctor", "--format", "json");
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(r.stdout) as { host: { root: string; kernel: string } };
    expect(j.host.root).toBe("/");
    expect(j.host.kernel).toBe(/^\d+\.\d+\.\d+/.exec((await import("node:os")).release())![0]);
  });
});

describe("qcvm doctor: what guest-memfd-prealloc needs of the host", () => {
  it("Yama ptrace_scope 3 forbids pidfd_getfd: the host finding and the lever say so, and what falls back", async () => {
    const host = join(tmp(), "host");
    cpSync(fixture("epyc-2s4n"), host, { recursive: true });
    writeFileSync(join(host, "proc/sys/kernel/yama/ptrace_scope"), "3\n");
    const r = await qcvm("doctor", "--host", host, "--format", "json");
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(r.stdout) as { findings: JsonFinding[] };
    expect(find(j.findings, "pidfd_getfd")).toMatchObject({ status: "missing" });
    expect(find(j.findings, "pidfd_getfd").message).toBe(
      "pidfd_getfd missing: guest-memfd-prealloc (exact private placement at launch) cannot take QEMU's guest_memfd: needs Linux >= 5.6 and kernel.yama.ptrace_scope < 3; SNP/TDX private memory falls back to first-touch (vCPU cpusets) (kernel 6.11.0, Yama ptrace_scope 3)",
    );
    expect(find(j.findings, "guest_memfd pre-allocation (guest-memfd-prealloc)")).toMatchObject({
      status: "missing",
      rulesOut:
        "unavailable: Yama kernel.yama.ptrace_scope is 3, which forbids every ptrace attach, pidfd_getfd included",
    });
  });
});

describe("qcvm doctor when a probe cannot run", () => {
  it("a missing QEMU still prints the host report, then exits 2 with the fix", async () => {
    const r = await qcvm("doctor", "--host", fixture("epyc-2s4n"), "--qemu", "qcvm-no-such-qemu");
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toContain("✓ SEV-SNP");
    expect(r.stdout).toContain("QEMU: not probed: QEMU binary `qcvm-no-such-qemu` not found on PATH");
    expect(r.stderr).toBe(
      "qcvm: QEMU binary `qcvm-no-such-qemu` not found on PATH (install qemu-system-x86, or name another with qemu.binary or doctor --qemu)\n",
    );
  });

  it("a bad capabilities file names the file and the field", async () => {
    const file = join(tmp(), "caps.json");
    writeFileSync(file, '{"version": 9, "types": [], "properties": {}}');
    const r = await qcvm("doctor", "--host", fixture("single-node"), "--capabilities", file, "--format", "json");
    expect(r.exitCode).toBe(2);
    expect(JSON.parse(r.stdout).qemu).toBeNull();
    expect(r.stderr).toContain(`qcvm: ${file}: version: must be a QEMU version such as "9.1.0", got 9`);
    expect(r.stderr).not.toContain("    at ");
  });

  it("--host that is not a directory is a usage error without a stack", async () => {
    const r = await qcvm("doctor", "--host", "/nonexistent/qcvm-host");
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe(
      `qcvm: --host /nonexistent/qcvm-host: no such directory (give a tree shaped like /, with sys/ and proc/, as \`qcvm doctor --save-host DIR\` writes; or name one qcvm ships in ${join(repo, "examples/hosts")}: cgroup2-only, cxl-memonly, epyc-2s4n, gmem-mempolicy, single-node, spr-tdx-2n, tight-memory)\n`,
    );
    expect(r.stdout).toBe("");
  });

  it("this machine: the native calls load and pidfd_getfd works; under a seccomp filter it is EPERM, and says what that rules out", async () => {
    const ok = await qcvm("doctor");
    expect(ok.stdout).toMatch(/✓ native calls \(koffi\): koffi at \//);
    expect(ok.stdout).toContain("✓ pidfd_getfd (live): pidfd_open + pidfd_getfd on a child process work");
    const work = tmp();
    const deny = join(work, "deny-pidfd-getfd");
    expect((await run(["cc", "-O2", "-o", deny, join(repo, "test/helpers/deny-pidfd-getfd.c")])).exitCode).toBe(0);
    const denied = await run([deny, process.execPath, bin, "doctor"], { timeoutMs: 60_000 });
    expect(denied.stdout).toContain(
      "✗ pidfd_getfd (live): pidfd_getfd failed: EPERM (no ptrace-attach rights over QEMU",
    );
    expect(denied.stdout).toContain(
      "rules out: guest-memfd-prealloc: SNP/TDX private memory is not placed exactly at launch",
    );
  });
});
