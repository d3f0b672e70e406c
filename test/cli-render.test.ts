// `qcvm render` through the built CLI, as a user runs it.
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { builtinCapabilities } from "../src/probe/capabilities.js";
import { saveCapabilities } from "../src/probe/qemu.js";
import type { RenderOutput } from "../src/commands/render.js";

const root = join(import.meta.dirname, "..");
const EPYC = "examples/hosts/epyc-2s4n";
const SINGLE = "examples/hosts/single-node";
/** What launch as root runs QEMU under (launch/privsep.ts), shown by name: render reads no passwd. */
const DROP = [
  "setpriv",
  "--reuid=qcvm-qemu",
  "--regid=qcvm-qemu",
  "--groups=kvm",
  "--inh-caps=-all",
  "--bounding-set=-all",
  "--no-new-privs",
  "--",
];
const QMP_FD_LINE =
  "fd 3: QMP listening socket, bound by qcvm (0600, in the VM's 0700 directory); QEMU runs with env LC_ALL=C, PATH, HOME only, umask 077";

function qcvm(...args: string[]) {
  const r = spawnSync(process.execPath, ["bin/qcvm.js", ...args], { cwd: root, encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function renderJson(...args: string[]): RenderOutput {
  const r = qcvm("render", ...args, "--format", "json");
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as RenderOutput;
}

describe("qcvm render --format shell", () => {
  it("prints one option per line with continuations", () => {
    const r = qcvm("render", "profiles/kvm-2node.yaml", "--host", SINGLE);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        "# qcvm launch would also do this, which a shell command cannot:",
        `#   ${QMP_FD_LINE}`,
        `${DROP.join(" ")} \\`,
        "qemu-system-x86_64 \\",
        "  -name guest=kvm-2node,debug-threads=on \\",
        "  -nodefaults \\",
        "  -no-user-config \\",
        "  -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny \\",
        "  -machine q35,accel=kvm \\",
        "  -cpu qemu64 \\",
        "  -smp 2,sockets=1,dies=1,cores=2,threads=1 \\",
        "  -m 512M \\",
        "  -object memory-backend-memfd,id=mem0,size=268435456,share=on,prealloc=off,host-nodes=0,policy=bind \\",
        "  -object memory-backend-memfd,id=mem1,size=268435456,share=on,prealloc=off,host-nodes=0,policy=bind \\",
        "  -numa node,nodeid=0,cpus=0,memdev=mem0 \\",
        "  -numa node,nodeid=1,cpus=1,memdev=mem1 \\",
        "  -numa dist,src=0,dst=1,val=20 \\",
        "  -numa dist,src=1,dst=0,val=20 \\",
        "  -display none",
        "",
      ].join("\n"),
    );
  });

  it("pasted into sh, runs exactly the argv (prefix included), however hostile the values", () => {
    const set = [
      "--set",
      `boot.cmdline=console=ttyS0 it's $HOME "q" \\ x;\`id\``,
      "--set",
      "serial=file:/tmp/my log's,x $(id).txt",
    ];
    const json = renderJson("profiles/snp-1node.yaml", "--host", EPYC, ...set);
    const shell = qcvm("render", "profiles/snp-1node.yaml", "--host", EPYC, ...set);
    expect(shell.code).toBe(0);
    // setpriv drops privileges first, then the plan's numactl runs QEMU.
    expect(json.prefix.slice(0, DROP.length)).toEqual(DROP);
    expect(json.prefix[DROP.length]).toBe("numactl");
    // The firmware (fd 4, reopened as /proc/self/fd/4) and the serial log (fdset 5) are
    // descriptors qcvm opens: the hostile path never reaches QEMU.
    expect(json.argv).toContain("/proc/self/fd/4");
    expect(json.argv).toContain("file,id=serial0,path=/dev/fdset/5");
    expect(json.argv.filter((a) => a.includes("my log's"))).toEqual([]);
    expect(json.notExpressed).toContain("fd 5: serial /tmp/my log's,x $(id).txt (append), opened by qcvm");
    // Stand-ins for setpriv, numactl and QEMU, first on PATH, that print the words they were given.
    const bin = mkdtempSync(join(tmpdir(), "qcvm-stubs-"));
    for (const name of ["setpriv", "numactl", "qemu-system-x86_64"]) {
      writeFileSync(join(bin, name), `#!/bin/sh\nprintf '%s\\0' ${name} "$@"\n`, { mode: 0o755 });
    }
    const ran = spawnSync("sh", ["-c", shell.stdout], {
      encoding: "utf8",
      env: { PATH: `${bin}:${process.env.PATH}`, HOME: "/nonexistent" },
    });
    expect(ran.stderr).toBe("");
    expect(ran.stdout.split("\0").slice(0, -1)).toEqual([...json.prefix, ...json.argv]);
    expect(json.argv).toContain(`console=ttyS0 it's $HOME "q" \\ x;\`id\``);
  });

  it("says, as comments, the warnings and what launch does that a shell command cannot", () => {
    const r = qcvm("render", "profiles/snp-2node.yaml", "--host", EPYC);
    expect(r.code).toBe(0);
    const comments = r.stdout.split("\n").filter((l) => l.startsWith("#"));
    expect(comments).toEqual([
      `# profiles/snp-2node.yaml: warning: numa.nodes: changing this sev-snp guest's NUMA topology (nodes, their vCPUs or sizes) changes its launch measurement: attestation needs new reference values`,
      "# qcvm launch would also do this, which a shell command cannot:",
      "#   cgroup (VM): cpus 0-31,64-95, mems 0-1 for QEMU process",
      "#   cgroup vcpu-node0: cpus 0-15,64-79, mems 0 for vCPU 0-3",
      "#   cgroup vcpu-node1: cpus 16-31,80-95, mems 1 for vCPU 4-7",
      "#   pin vCPU 0-3 to host CPUs 0-15,64-79",
      "#   pin vCPU 4-7 to host CPUs 16-31,80-95",
      `#   ${QMP_FD_LINE}`,
      "#   fd 4: firmware.bios /usr/share/ovmf/OVMF.fd (read), opened by qcvm",
    ]);
    expect(r.stdout.split("\n").find((l) => !l.startsWith("#"))).toBe(`${DROP.join(" ")} \\`);
  });
});

describe("qcvm render --format json", () => {
  it("prints argv, the launch prefix, warnings as lines and as objects", () => {
    const out = renderJson("profiles/snp-1node.yaml", "--host", EPYC);
    expect(Object.keys(out)).toEqual(["argv", "prefix", "warnings", "diagnostics", "notExpressed"]);
    expect(out.argv[0]).toBe("qemu-system-x86_64");
    expect(out.argv).toContain("sev-snp-guest,id=snp0,cbitpos=51,reduced-phys-bits=1,policy=0x30000");
    expect(out.prefix).toEqual([...DROP, "numactl", "--membind=0", "--"]);
    expect(out.argv.slice(0, 7)).toEqual([
      "qemu-system-x86_64",
      "-name",
      "guest=snp-1node,debug-threads=on",
      "-nodefaults",
      "-no-user-config",
      "-sandbox",
      "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    ]);
    expect(out.warnings).toHaveLength(out.diagnostics.length);
  });

  it("serial: device:PATH renders a file chardev on the descriptor qcvm opens, and --literal on the path", () => {
    const out = renderJson("profiles/kvm-2node.yaml", "--host", SINGLE, "--set", "serial=device:/dev/null");
    expect(out.argv).toContain("file,id=serial0,path=/dev/fdset/4");
    expect(out.notExpressed).toContain("fd 4: serial /dev/null (write), opened by qcvm");
    const literal = renderJson("profiles/kvm-2node.yaml", "--literal", "--set", "serial=device:/dev/null");
    expect(literal.argv).toContain("file,id=serial0,path=/dev/null");
  });

  it("renders for this machine when --host is absent", () => {
    const out = renderJson("profiles/kvm-1node.yaml");
    expect(out.argv).toContain(
      "memory-backend-memfd,id=mem0,size=536870912,share=on,prealloc=off,host-nodes=0,policy=bind",
    );
  });

  // Issue 10 item 1: render printed a command line (exit 0) for a plan launch refuses, with only a
  // `#` comment; on a one-node host the backends silently lost host-nodes=2,policy=bind.
  it.each([
    [
      "a guest that does not fit",
      ["profiles/kvm-1node.yaml", "--host", SINGLE, "--set", "memory.size=4T"],
      "capacity.insufficient",
    ],
    ["host nodes this host lacks", ["examples/snp-from-base.yaml", "--host", SINGLE], "placement.host-node-missing"],
  ])("refuses, exit 1 with the plan's errors, when launch would: %s", (_name, args, code) => {
    const text = qcvm("render", ...args);
    expect(text.code).toBe(1);
    expect(text.stdout).toBe("");
    expect(text.stderr).toMatch(
      /^qcvm: cannot render \S+: the plan does not hold, so launch would refuse \(\d+ errors?\):\n/,
    );
    expect(text.stderr).toContain("--literal renders the profile as written");
    const json = qcvm("render", ...args, "--format", "json");
    expect(json.code).toBe(1);
    // The one error document every command prints under --format json (src/cli.ts reportError).
    const out = JSON.parse(json.stdout) as {
      error: { kind: string };
      diagnostics: { code: string; severity: string }[];
    };
    expect(out.error.kind).toBe("invalid");
    const errors = out.diagnostics.filter((d) => d.severity === "error");
    expect(errors.map((d) => d.code)).toContain(code);
  });

  it("--literal renders the profile as written, saying placement was not checked", () => {
    const r = qcvm("render", "examples/snp-from-base.yaml", "--host", SINGLE, "--literal");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("host-nodes=2,policy=bind");
    expect(r.stdout).toMatch(
      /^# .*warning: memory|numa\.nodes: rendered as written \(--literal\): placement was not checked/m,
    );
    const out = renderJson("examples/snp-from-base.yaml", "--literal");
    expect(out.argv).toContain(
      "memory-backend-memfd,id=mem0,size=4294967296,share=on,prealloc=off,host-nodes=2,policy=bind",
    );
    expect(out.prefix).toEqual([]);
    expect(out.notExpressed).toEqual([]);
    expect(out.diagnostics.map((d) => d.code)).toContain("render.literal");
  });

  it("renders for saved capabilities (--capabilities), refusing what that QEMU lacks", () => {
    const file = join(mkdtempSync(join(tmpdir(), "qcvm-caps-")), "caps.json");
    saveCapabilities(builtinCapabilities("9.0"), file);
    const r = qcvm("render", "profiles/snp-1node.yaml", "--host", EPYC, "--capabilities", file);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(
      "confidential.type: sev-snp-guest (SEV-SNP, guest_memfd private memory) needs QEMU >= 9.1; target QEMU is 9.0 (file)",
    );
  });
});

describe("qcvm render follows the plan", () => {
  it("renders the guest_memfd backend the planner chose on a Linux 6.19 host with a QEMU that has it", () => {
    const out = renderJson(
      "profiles/snp-2node.yaml",
      "--host",
      "examples/hosts/gmem-mempolicy",
      "--capabilities",
      "test/fixtures/plan-profiles/caps-gmem-snp.json",
    );
    const objects = out.argv.filter((_, i) => out.argv[i - 1] === "-object");
    expect(objects).toEqual([
      "sev-snp-guest,id=snp0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,convert-in-place=on",
      "memory-backend-guest-memfd,id=mem0,size=4294967296,share=on,prealloc=off,host-nodes=0,policy=bind",
      "memory-backend-guest-memfd,id=mem1,size=4294967296,share=on,prealloc=off,host-nodes=1,policy=bind",
    ]);
  });
});

describe("qcvm render errors", () => {
  it("exits 1 with file: path: message lines and no stack for a render error", () => {
    const r = qcvm("render", "profiles/kvm-1node.yaml", "--host", SINGLE, "--set", 'qemu.version="4.2"');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      "qcvm: cannot render profiles/kvm-1node.yaml (1 error):\n" +
        `profiles/kvm-1node.yaml: memory: -machine memory-backend= needs QEMU >= 5.0; target QEMU is 4.2 (give the guest numa.nodes (one backend each, -numa node,memdev= since QEMU 2.1), or target QEMU 5.0 or later)\n`,
    );
  });

  it("exits 1 for an invalid profile, listing its errors", () => {
    const r = qcvm("render", "profiles/kvm-1node.yaml", "--host", SINGLE, "--set", "memory.hugepages=3M");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("profiles/kvm-1node.yaml is not a valid profile (1 error):");
    expect(r.stderr).toContain("memory.hugepages: must be one of none, 2M, 1G");
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("exits 1 naming a file blob it cannot read", () => {
    const r = qcvm(
      "render",
      "profiles/snp-1node.yaml",
      "--host",
      EPYC,
      "--set",
      "confidential.idBlock.file=/nonexistent/id.bin",
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("confidential.idBlock.file");
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
