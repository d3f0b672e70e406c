import { describe, expect, it } from "vitest";
import { parseSerial } from "../src/core/serial.js";
import { builtinCapabilities } from "../src/probe/capabilities.js";
import { InternalError, formatDiagnostic } from "../src/core/diagnostics.js";
import { renderArgv } from "../src/render/render.js";
import type { Plan, PrivateBackend, Profile, Result } from "../src/core/types.js";
import { GiB, MiB, makePlan, makeProfile, merge, nodes } from "./helpers/profile.js";

function render(profile: Profile, plan: Plan = makePlan(profile)): Result<string[]> {
  return renderArgv(profile, plan, builtinCapabilities(profile.qemu.version));
}

/** The argv of a render that must succeed; fails with the formatted errors otherwise. */
function argvOf(profile: Profile, plan?: Plan): string[] {
  const r = render(profile, plan);
  expect(r.errors.map(formatDiagnostic)).toEqual([]);
  return r.value!;
}

/** Every value that follows `flag` in argv, in order. */
function values(argv: string[], flag: string): string[] {
  return argv.flatMap((w, i) => (w === flag && i + 1 < argv.length ? [argv[i + 1]!] : []));
}

function errorsOf(profile: Profile, plan?: Plan): string[] {
  const r = render(profile, plan);
  expect(r.value).toBeUndefined();
  return r.errors.map(formatDiagnostic);
}

const SNP = { type: "sev-snp", cbitpos: 51, reducedPhysBits: 1, policy: 0x30000 } as const;
const TDX = { type: "tdx" } as const;

describe("renderArgv: shape", () => {
  it("renders a minimal guest in a fixed order, starting with the binary and ending with extraArgs", () => {
    const argv = argvOf(
      makeProfile({ qemu: { binary: "/opt/qemu/bin/qemu-system-x86_64" }, extraArgs: ["-S", "-cpu", "max,pmu=off"] }),
    );
    expect(argv).toEqual([
      "/opt/qemu/bin/qemu-system-x86_64",
      "-name",
      "guest=test,debug-threads=on",
      "-nodefaults",
      "-machine",
      "q35,accel=kvm,memory-backend=mem0",
      "-cpu",
      "max",
      "-smp",
      "2,sockets=1,dies=1,cores=2,threads=1",
      "-m",
      "512M",
      "-object",
      "memory-backend-memfd,id=mem0,size=536870912,share=on,prealloc=off",
      "-display",
      "none",
      "-S",
      "-cpu",
      "max,pmu=off",
    ]);
  });

  it("does not include the plan's numactl prefix (the caller prepends it)", () => {
    const p = makeProfile();
    const argv = argvOf(
      p,
      makePlan(p, { overrides: { launch: { processPolicy: { policy: "bind", nodes: [0], numactl: "membind" } } } }),
    );
    expect(argv).not.toContain("numactl");
    expect(argv[0]).toBe("qemu-system-x86_64");
  });

  it.each([
    [512 * MiB, "512M"],
    [4 * GiB, "4096M"],
    [512 * MiB + 4096, `${512 * MiB + 4096}B`],
  ])("-m for %d bytes is %s", (bytes, m) => {
    expect(values(argvOf(makeProfile({ memory: { sizeBytes: bytes } })), "-m")).toEqual([m]);
  });

  it.each([
    [
      { kernelIrqchip: "split", smm: "off", pic: "off" } as const,
      "q35,accel=kvm,kernel-irqchip=split,smm=off,pic=off,memory-backend=mem0",
    ],
    [{ accel: "tcg", type: "pc-q35-7.2" } as const, "pc-q35-7.2,accel=tcg,memory-backend=mem0"],
  ])("-machine %o", (machine, expected) => {
    expect(values(argvOf(makeProfile({ machine })), "-machine")).toEqual([expected]);
  });

  it("renders -smp from the topology", () => {
    const argv = argvOf(makeProfile({ cpu: { count: 16, sockets: 2, dies: 1, cores: 4, threads: 2 } }));
    expect(values(argv, "-smp")).toEqual(["16,sockets=2,dies=1,cores=4,threads=2"]);
  });
});

describe("renderArgv: memory and NUMA", () => {
  it("without NUMA nodes attaches one backend with -machine memory-backend= and renders no -numa", () => {
    const argv = argvOf(makeProfile());
    expect(values(argv, "-machine")[0]).toContain("memory-backend=mem0");
    expect(values(argv, "-object")).toEqual(["memory-backend-memfd,id=mem0,size=536870912,share=on,prealloc=off"]);
    expect(values(argv, "-numa")).toEqual([]);
  });

  it("with NUMA nodes renders one backend and one -numa node per guest node, and no -machine memory-backend=", () => {
    const p = makeProfile({
      numa: {
        nodes: nodes([[0], 256, [0], "bind"], [[1], 256, [1], "bind"]),
        distances: [
          { from: 0, to: 1, value: 20 },
          { from: 1, to: 0, value: 20 },
        ],
      },
    });
    const argv = argvOf(p);
    expect(values(argv, "-machine")).toEqual(["q35,accel=kvm"]);
    expect(values(argv, "-object")).toEqual([
      "memory-backend-memfd,id=mem0,size=268435456,share=on,prealloc=off,host-nodes=0,policy=bind",
      "memory-backend-memfd,id=mem1,size=268435456,share=on,prealloc=off,host-nodes=1,policy=bind",
    ]);
    expect(values(argv, "-numa")).toEqual([
      "node,nodeid=0,cpus=0,memdev=mem0",
      "node,nodeid=1,cpus=1,memdev=mem1",
      "dist,src=0,dst=1,val=20",
      "dist,src=1,dst=0,val=20",
    ]);
  });

  it("renders non-contiguous vCPU and host node sets as repeated keys with ranges", () => {
    const p = makeProfile({
      cpu: { count: 6, cores: 6 },
      numa: { nodes: nodes([[0, 1, 4], 256, [0, 1, 3], "interleave"], [[2, 3, 5], 256, [2], "preferred"]) },
    });
    const argv = argvOf(p);
    expect(values(argv, "-numa")).toEqual([
      "node,nodeid=0,cpus=0-1,cpus=4,memdev=mem0",
      "node,nodeid=1,cpus=2-3,cpus=5,memdev=mem1",
    ]);
    expect(values(argv, "-object")[0]).toMatch(/,host-nodes=0-1,host-nodes=3,policy=interleave$/);
    expect(values(argv, "-object")[1]).toMatch(/,host-nodes=2,policy=preferred$/);
  });

  it.each([
    ["process-mempolicy", false],
    ["none", false],
    ["backend-policy", true],
  ] as const)(
    "puts host-nodes/policy on the backend only when the plan's shared mechanism is backend-policy (%s)",
    (shared, present) => {
      const p = makeProfile({ numa: { nodes: nodes([[0, 1], 512, [0], "bind"]) } });
      const obj = values(argvOf(p, makePlan(p, { shared })), "-object")[0]!;
      expect(obj.includes("host-nodes=0,policy=bind")).toBe(present);
    },
  );

  it("places a guest without NUMA nodes by memory.hostNodes through the plan", () => {
    const p = makeProfile({ memory: { hostNodes: [0, 1], policy: "interleave" } });
    expect(values(argvOf(p), "-object")).toEqual([
      "memory-backend-memfd,id=mem0,size=536870912,share=on,prealloc=off,host-nodes=0-1,policy=interleave",
    ]);
  });

  it("renders no policy for policy default", () => {
    const p = makeProfile({ numa: { nodes: nodes([[0, 1], 512, [], "default"]) } });
    expect(values(argvOf(p), "-object")[0]).not.toContain("policy");
  });

  it("asserts the plan never puts weighted-interleave on a backend: QEMU backends only know bind, preferred, interleave", () => {
    // The planner applies weighted interleave with numactl (test/plan.test.ts "weighted interleave");
    // a plan that asks a backend for it is qcvm's bug, not a profile error.
    const p = makeProfile({ numa: { nodes: nodes([[0, 1], 512, [0, 1], "weighted-interleave"]) } });
    expect(() => render(p)).toThrow(/broken invariant: numa.nodes\[0\]: backend policy weighted-interleave/);
  });

  it.each(["7.2", "8.0"])(
    "renders preferred over several host nodes as asked on QEMU %s (the planner warns when only the first counts)",
    (version) => {
      const p = makeProfile({ qemu: { version }, numa: { nodes: nodes([[0, 1], 512, [2, 3], "preferred"]) } });
      const r = render(p);
      expect(r.errors).toEqual([]);
      expect(r.warnings).toEqual([]);
      expect(values(r.value!, "-object")[0]).toMatch(/,host-nodes=2-3,policy=preferred$/);
    },
  );

  it.each([
    ["memfd", "none", "memory-backend-memfd,id=mem0,size=1073741824,share=on,prealloc=off"],
    ["memfd", "2M", "memory-backend-memfd,id=mem0,size=1073741824,share=on,hugetlb=on,hugetlbsize=2M,prealloc=off"],
    ["memfd", "1G", "memory-backend-memfd,id=mem0,size=1073741824,share=on,hugetlb=on,hugetlbsize=1G,prealloc=off"],
    ["ram", "none", "memory-backend-ram,id=mem0,size=1073741824,share=on,prealloc=off"],
    ["file", "2M", "memory-backend-file,id=mem0,size=1073741824,mem-path=/dev/hugepages,share=on,prealloc=off"],
  ] as const)("backend %s with hugepages %s", (backend, hugepages, expected) => {
    const p = makeProfile({
      memory: { sizeBytes: GiB, backend, hugepages, path: backend === "file" ? "/dev/hugepages" : undefined },
    });
    expect(values(argvOf(p), "-object")).toEqual([expected]);
  });

  // The hugepage multiple was also a renderer error ("render.hugepage-align"), which repeated the
  // rules' memory.hugepage-multiple (validate.test.ts, invalid-hugepage-multiple.yaml): the
  // renderer now asserts it, like the others the rules refuse (issue 7: one owner per decision).
  it.each([
    [{ backend: "ram", hugepages: "2M" } as const, /hugepages on memory-backend-ram/],
    [{ backend: "file" } as const, /file backend without memory.path/],
    [{ hugepages: "1G", sizeBytes: 1536 * MiB } as const, /memory is not a multiple of the 1G huge page/],
  ])(
    "asserts what the rules refuse (memory.hugepages-backend, memory.file-path, memory.hugepage-multiple): %o",
    (memory, message) => {
      expect(() => render(makeProfile({ memory }))).toThrow(message);
    },
  );

  it("renders share=off, reserve and prealloc-threads as asked", () => {
    const p = makeProfile({ memory: { share: false, reserve: false, prealloc: true, preallocThreads: 4 } });
    expect(values(argvOf(p), "-object")).toEqual([
      "memory-backend-memfd,id=mem0,size=536870912,share=off,reserve=off,prealloc=on,prealloc-threads=4",
    ]);
  });
});

describe("renderArgv: NUMA-local preallocation (thread-context, QEMU 7.2)", () => {
  const numa = { nodes: nodes([[0], 256, [0], "bind"], [[1], 256, [1], "bind"]) };

  it("adds a thread-context per node on the node's host CPUs and points prealloc-context at it", () => {
    const argv = argvOf(makeProfile({ memory: { prealloc: true }, numa }));
    expect(values(argv, "-object")).toEqual([
      "thread-context,id=tc0,cpu-affinity=0-7",
      "memory-backend-memfd,id=mem0,size=268435456,share=on,prealloc=on,prealloc-context=tc0,host-nodes=0,policy=bind",
      "thread-context,id=tc1,cpu-affinity=8-15",
      "memory-backend-memfd,id=mem1,size=268435456,share=on,prealloc=on,prealloc-context=tc1,host-nodes=1,policy=bind",
    ]);
  });

  it("falls back to node-affinity when the plan gives no host CPUs", () => {
    const p = makeProfile({ memory: { prealloc: true }, numa });
    const plan = makePlan(p);
    for (const n of plan.nodes) delete n.hostCpus;
    expect(values(argvOf(p, plan), "-object")[0]).toBe("thread-context,id=tc0,node-affinity=0");
  });

  it.each([
    ["no prealloc", { memory: { prealloc: false }, numa }],
    ["no host nodes", { memory: { prealloc: true }, numa: { nodes: nodes([[0, 1], 512, [], "default"]) } }],
  ] as const)("renders no thread-context with %s", (_name, over) => {
    expect(values(argvOf(makeProfile(over)), "-object").some((o) => o.startsWith("thread-context"))).toBe(false);
  });

  it("before QEMU 7.2 renders no thread-context and warns once that preallocation is not NUMA-local", () => {
    const r = render(makeProfile({ qemu: { version: "7.1" }, memory: { prealloc: true }, numa }));
    expect(r.errors).toEqual([]);
    expect(
      values(r.value!, "-object").some((o) => o.includes("thread-context") || o.includes("prealloc-context")),
    ).toBe(false);
    expect(r.warnings.map(formatDiagnostic)).toEqual([
      "/profiles/test.yaml: warning: memory.prealloc: preallocation threads will run on any CPU, not near the target nodes: thread-context object (NUMA-local preallocation) needs QEMU >= 7.2; target QEMU is 7.1",
    ]);
  });
});

describe("renderArgv: private memory placed by a guest_memfd policy (no upstream QEMU yet)", () => {
  const snp2 = () =>
    makeProfile({
      qemu: { version: "10.2" },
      confidential: SNP,
      numa: { nodes: nodes([[0], 256, [0], "bind"], [[1], 256, [1], "interleave"]) },
    });
  const GMEM_BACKEND = { qomType: "memory-backend-guest-memfd", guestMemfdProperty: false, convertInPlace: true };
  const MEMFD_BACKEND = { qomType: "memory-backend-memfd", guestMemfdProperty: true, convertInPlace: true };
  /** A plan as the planner makes it on such a host: the chosen backend is data on each node. */
  function gmemPlan(p: Profile, backend: PrivateBackend = GMEM_BACKEND): Plan {
    const plan = makePlan(p);
    for (const n of plan.nodes)
      n.private = { mechanism: "guest-memfd-mempolicy", fidelity: "exact", reason: "test", backend };
    return plan;
  }
  function capsWith(types: string[], properties: Record<string, string[]>) {
    const caps = builtinCapabilities("10.2");
    return {
      ...caps,
      source: "file" as const,
      types: [...caps.types, ...types],
      properties: { ...caps.properties, ...properties },
    };
  }
  const backendCaps = () =>
    capsWith(["memory-backend-guest-memfd"], {
      "memory-backend-guest-memfd": ["host-nodes", "policy", "prealloc", "share", "size"],
      "sev-snp-guest": [...builtinCapabilities("10.2").properties["sev-snp-guest"]!, "convert-in-place"],
    });

  it("uses memory-backend-guest-memfd with only the properties the probe saw, and converts SNP pages in place", () => {
    const p = snp2();
    const r = renderArgv(p, gmemPlan(p), backendCaps());
    expect(r.errors.map(formatDiagnostic)).toEqual([]);
    expect(values(r.value!, "-object")).toEqual([
      "sev-snp-guest,id=snp0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,convert-in-place=on",
      "memory-backend-guest-memfd,id=mem0,size=268435456,share=on,prealloc=off,host-nodes=0,policy=bind",
      "memory-backend-guest-memfd,id=mem1,size=268435456,share=on,prealloc=off,host-nodes=1,policy=interleave",
    ]);
  });

  it("falls back to memory-backend-memfd guest-memfd=on, as the planner does", () => {
    const p = snp2();
    const caps = capsWith([], {
      "memory-backend-memfd": [...builtinCapabilities("10.2").properties["memory-backend-memfd"]!, "guest-memfd"],
      "sev-snp-guest": [...builtinCapabilities("10.2").properties["sev-snp-guest"]!, "convert-in-place"],
    });
    const r = renderArgv(p, gmemPlan(p, MEMFD_BACKEND), caps);
    expect(r.errors).toEqual([]);
    expect(values(r.value!, "-object")[1]).toBe(
      "memory-backend-memfd,id=mem0,size=268435456,share=on,prealloc=off,host-nodes=0,policy=bind,guest-memfd=on",
    );
  });

  it("asserts the plan's backend is one the QEMU has: plan and render share the capabilities", () => {
    const p = snp2();
    expect(() => renderArgv(p, gmemPlan(p), builtinCapabilities("10.2"))).toThrow(
      /planned memory-backend-guest-memfd, which QEMU 10.2 lacks/,
    );
  });

  it.each([
    [
      "a field the probed backend lacks",
      () => merge(snp2(), { memory: { reserve: true } }),
      backendCaps,
      [
        "memory.reserve: memory-backend-guest-memfd, which the plan uses to place private memory, has no reserve property",
      ],
    ],
  ])("is an error with %s", (_name, profile, caps, messages) => {
    const p = profile();
    const r = renderArgv(p, gmemPlan(p), caps());
    expect(r.value).toBeUndefined();
    const got = r.errors.map(formatDiagnostic);
    expect(got).toHaveLength(messages.length);
    messages.forEach((m, i) => expect(got[i]!.startsWith(`/profiles/test.yaml: ${m} (`), got[i]).toBe(true));
  });
});

describe("renderArgv: features the target QEMU lacks are errors naming the version", () => {
  it.each([
    [
      "prealloc-threads",
      {
        qemu: { version: "4.2" },
        memory: { prealloc: true, preallocThreads: 2 },
        numa: { nodes: nodes([[0, 1], 512, [], "default"]) },
      },
      "memory.preallocThreads: memory backend prealloc-threads needs QEMU >= 5.0; target QEMU is 4.2",
    ],
    [
      "reserve",
      { qemu: { version: "6.0" }, memory: { reserve: false } },
      "memory.reserve: memory backend reserve= needs QEMU >= 6.1; target QEMU is 6.0",
    ],
    [
      "memory-backend=",
      { qemu: { version: "4.2" } },
      "memory: -machine memory-backend= needs QEMU >= 5.0; target QEMU is 4.2",
    ],
    [
      "sev-snp-guest",
      { qemu: { version: "9.0" }, confidential: SNP },
      "confidential.type: sev-snp-guest (SEV-SNP, guest_memfd private memory) needs QEMU >= 9.1; target QEMU is 9.0",
    ],
    [
      "tdx-guest",
      { qemu: { version: "10.0" }, confidential: TDX },
      "confidential.type: tdx-guest (Intel TDX, guest_memfd private memory) needs QEMU >= 10.1; target QEMU is 10.0",
    ],
    [
      "igvm",
      { qemu: { version: "9.1" }, firmware: { igvm: "/fw/coconut.igvm" } },
      "firmware.igvm: -machine igvm-cfg= (IGVM firmware) needs QEMU >= 10.1; target QEMU is 9.1",
    ],
    [
      "kernel-hashes",
      { qemu: { version: "6.1" }, confidential: { type: "sev", cbitpos: 51, reducedPhysBits: 1, kernelHashes: true } },
      "confidential.kernelHashes: sev-guest kernel-hashes needs QEMU >= 6.2; target QEMU is 6.1",
    ],
    [
      "legacy-vm-type",
      { qemu: { version: "9.0" }, confidential: { type: "sev", cbitpos: 51, reducedPhysBits: 1, legacyVmType: true } },
      "confidential.legacyVmType: sev-guest legacy-vm-type needs QEMU >= 9.1; target QEMU is 9.0",
    ],
    [
      "legacy-vm-type off",
      { qemu: { version: "9.0" }, confidential: { type: "sev", cbitpos: 51, reducedPhysBits: 1, legacyVmType: false } },
      "confidential.legacyVmType: sev-guest legacy-vm-type needs QEMU >= 9.1; target QEMU is 9.0",
    ],
  ] as const)("%s", (_name, over, message) => {
    const errors = errorsOf(makeProfile(over));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(`/profiles/test.yaml: ${message}`);
    expect(errors[0]).toMatch(
      /\((set qemu.version to [\d.]+ or later if your QEMU has it, or drop the field|give the guest numa.nodes .*)\)$/,
    );
  });

  it("reports every missing feature at once", () => {
    const p = makeProfile({ qemu: { version: "4.2" }, memory: { prealloc: true, preallocThreads: 2, reserve: true } });
    expect(render(p).errors.map((e) => e.path)).toEqual(["memory", "memory.preallocThreads", "memory.reserve"]);
  });
});

describe("renderArgv: confidential guests", () => {
  it.each([
    [
      "sev",
      { type: "sev", cbitpos: 51, reducedPhysBits: 1 },
      "sev0",
      "sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x1",
    ],
    [
      "sev with policy and files",
      {
        type: "sev",
        cbitpos: 47,
        reducedPhysBits: 5,
        policy: 0x3,
        handle: 7,
        dhCertFile: "/v/dh,1.cert",
        sessionFile: "/v/s.bin",
        kernelHashes: true,
      },
      "sev0",
      "sev-guest,id=sev0,cbitpos=47,reduced-phys-bits=5,policy=0x3,handle=7,dh-cert-file=/v/dh,,1.cert,session-file=/v/s.bin,kernel-hashes=on",
    ],
    [
      "sev-es adds the ES policy bit",
      { type: "sev-es", cbitpos: 51, reducedPhysBits: 1, policy: 0x1 },
      "sev0",
      "sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x5",
    ],
    [
      "sev-es default policy",
      { type: "sev-es", cbitpos: 51, reducedPhysBits: 1 },
      "sev0",
      "sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x5",
    ],
    // QEMU's default is auto, which means legacy unless INIT2 is needed: false must be said.
    [
      "sev legacyVmType false asks for KVM_SEV_INIT2",
      { type: "sev", cbitpos: 51, reducedPhysBits: 1, legacyVmType: false },
      "sev0",
      "sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x1,legacy-vm-type=off",
    ],
    [
      "sev-es legacyVmType true",
      { type: "sev-es", cbitpos: 51, reducedPhysBits: 1, legacyVmType: true },
      "sev0",
      "sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x5,legacy-vm-type=on",
    ],
    ["sev-snp", SNP, "snp0", "sev-snp-guest,id=snp0,cbitpos=51,reduced-phys-bits=1,policy=0x30000"],
    [
      "sev-snp with every property",
      {
        ...SNP,
        policy: 0x30000 | 0x80000,
        guestVisibleWorkarounds: { base64: "AAAAAAAAAAAAAAAAAAAAAA==" },
        idBlock: { base64: "aWQ=" },
        idAuth: { base64: "YXV0aA==" },
        authorKeyEnabled: true,
        hostData: { base64: "aG9zdA==" },
        vcekDisabled: true,
        kernelHashes: true,
      },
      "snp0",
      "sev-snp-guest,id=snp0,cbitpos=51,reduced-phys-bits=1,policy=0xb0000,guest-visible-workarounds=AAAAAAAAAAAAAAAAAAAAAA==,id-block=aWQ=,id-auth=YXV0aA==,author-key-enabled=on,host-data=aG9zdA==,vcek-disabled=on,kernel-hashes=on",
    ],
    ["tdx", TDX, "tdx0", "tdx-guest,id=tdx0"],
    [
      "tdx with attributes and measurements",
      {
        type: "tdx",
        attributes: 0x10000000n,
        mrconfigid: { base64: "bWM=" },
        mrowner: { base64: "bW8=" },
        mrownerconfig: { base64: "bW9j" },
      },
      "tdx0",
      "tdx-guest,id=tdx0,attributes=0x10000000,mrconfigid=bWM=,mrowner=bW8=,mrownerconfig=bW9j",
    ],
    [
      "tdx sept-ve-disable alone",
      { type: "tdx", septVeDisable: false },
      "tdx0",
      "tdx-guest,id=tdx0,sept-ve-disable=off",
    ],
    [
      "tdx sept-ve-disable folded into attributes (bit 63 exact)",
      { type: "tdx", attributes: (1n << 63n) | 0x10000000n, septVeDisable: false },
      "tdx0",
      "tdx-guest,id=tdx0,attributes=0x8000000000000000",
    ],
  ] as const)("%s", (_name, confidential, id, object) => {
    const p = makeProfile({ qemu: { version: "10.1" }, confidential: confidential });
    const argv = argvOf(p);
    expect(values(argv, "-object")[0]).toBe(object);
    expect(values(argv, "-machine")[0]).toContain(`,confidential-guest-support=${id},`);
  });

  it.each([
    [{ type: "vsock", cid: 2, port: 4050 }, '{"type":"vsock","cid":"2","port":"4050"}'],
    [{ type: "unix", path: "/run/qgs,x.sock" }, '{"type":"unix","path":"/run/qgs,x.sock"}'],
  ] as const)("tdx quote-generation-socket %o uses the JSON -object form", (socket, json) => {
    const p = makeProfile({
      qemu: { version: "10.1" },
      confidential: { type: "tdx", attributes: 1n << 63n, septVeDisable: true, quoteGenerationSocket: socket },
    });
    const obj = values(argvOf(p), "-object")[0]!;
    expect(obj).toBe(
      `{"qom-type":"tdx-guest","id":"tdx0","attributes":9223372037123211264,"quote-generation-socket":${json}}`,
    );
    // The attributes integer stays exact (above 2^53), which JSON.parse cannot show.
    expect(obj).toContain(String((1n << 63n) | (1n << 28n)));
  });

  it("asserts a {file} blob was inlined first, naming the field", () => {
    const p = makeProfile({ qemu: { version: "9.1" }, confidential: { ...SNP, idBlock: { file: "id-block.bin" } } });
    expect(() => render(p)).toThrow(
      "broken invariant: confidential.idBlock was not read into base64: call inlineProfileFiles() before renderArgv()",
    );
  });

  it("asserts cbitpos and reduced-phys-bits for AMD guests (the rule confidential.required reports them)", () => {
    const p = makeProfile({ qemu: { version: "9.1" }, confidential: { type: "sev-snp" } });
    expect(() => render(p)).toThrow(InternalError);
  });

  it("makes virtio devices of a confidential guest modern-only with iommu_platform (DMA through shared memory)", () => {
    const base = {
      disks: [{ path: "/d.img", format: "raw", interface: "virtio-blk", readOnly: false }],
      network: { type: "user" },
    } as const;
    const plain = argvOf(makeProfile(base as never));
    const snp = argvOf(makeProfile({ ...base, qemu: { version: "9.1" }, confidential: SNP } as never));
    expect(values(plain, "-device")).toEqual(["virtio-blk-pci,drive=disk0", "virtio-net-pci,netdev=net0"]);
    expect(values(snp, "-device")).toEqual([
      "virtio-blk-pci,drive=disk0,disable-legacy=on,iommu_platform=on",
      "virtio-net-pci,netdev=net0,disable-legacy=on,iommu_platform=on",
    ]);
  });
});

describe("renderArgv: firmware, boot, devices", () => {
  it.each([
    [
      "bios",
      { bios: "/usr/share/ovmf/OVMF.fd" },
      ["-bios", "/usr/share/ovmf/OVMF.fd"],
      "q35,accel=kvm,memory-backend=mem0",
    ],
    [
      "pflash code and vars",
      { pflash: { code: "/fw/CODE.fd", vars: "/vm/VARS,1.fd" } },
      [
        "-blockdev",
        "driver=file,node-name=pflash0,filename=/fw/CODE.fd,read-only=on",
        "-blockdev",
        "driver=file,node-name=pflash1,filename=/vm/VARS,,1.fd",
      ],
      "q35,accel=kvm,memory-backend=mem0,pflash0=pflash0,pflash1=pflash1",
    ],
    [
      "pflash code only",
      { pflash: { code: "/fw/CODE.fd" } },
      ["-blockdev", "driver=file,node-name=pflash0,filename=/fw/CODE.fd,read-only=on"],
      "q35,accel=kvm,memory-backend=mem0,pflash0=pflash0",
    ],
    [
      "igvm",
      { igvm: "/fw/svsm.igvm" },
      ["-object", "igvm-cfg,id=igvm0,file=/fw/svsm.igvm"],
      "q35,accel=kvm,memory-backend=mem0,igvm-cfg=igvm0",
    ],
  ] as const)("%s", (_name, firmware, args, machine) => {
    const argv = argvOf(makeProfile({ qemu: { version: "10.1" }, firmware }));
    expect(values(argv, "-machine")).toEqual([machine]);
    const at = argv.indexOf(
      args[0],
      argv.indexOf("-numa") + 1 || argv.findIndex((w) => w.startsWith("memory-backend-")) + 1,
    );
    expect(argv.slice(at, at + args.length)).toEqual(args);
  });

  it("passes kernel, initrd and command line as plain words (no key=value parsing there)", () => {
    const argv = argvOf(
      makeProfile({ boot: { kernel: "/b/vmlinuz", initrd: "/b/initrd,1", cmdline: "console=ttyS0 root=/dev/vda,x" } }),
    );
    expect(values(argv, "-kernel")).toEqual(["/b/vmlinuz"]);
    expect(values(argv, "-initrd")).toEqual(["/b/initrd,1"]);
    expect(values(argv, "-append")).toEqual(["console=ttyS0 root=/dev/vda,x"]);
  });

  it("renders disks as -blockdev file + format nodes, read-only on both, one virtio-scsi controller for all scsi disks", () => {
    const argv = argvOf(
      makeProfile({
        disks: [
          { path: "/vm/root.qcow2", format: "qcow2", interface: "virtio-blk", readOnly: false },
          { path: "/vm/seed,ro.img", format: "raw", interface: "virtio-scsi", readOnly: true },
          { path: "/vm/data.img", format: "raw", interface: "virtio-scsi", readOnly: false },
        ],
      }),
    );
    expect(values(argv, "-blockdev")).toEqual([
      "driver=file,node-name=disk0-file,filename=/vm/root.qcow2",
      "driver=qcow2,node-name=disk0,file=disk0-file",
      "driver=file,node-name=disk1-file,filename=/vm/seed,,ro.img,read-only=on",
      "driver=raw,node-name=disk1,file=disk1-file,read-only=on",
      "driver=file,node-name=disk2-file,filename=/vm/data.img",
      "driver=raw,node-name=disk2,file=disk2-file",
    ]);
    expect(values(argv, "-device")).toEqual([
      "virtio-blk-pci,drive=disk0",
      "virtio-scsi-pci,id=scsi0",
      "scsi-hd,bus=scsi0.0,drive=disk1",
      "scsi-hd,bus=scsi0.0,drive=disk2",
    ]);
  });

  it.each([
    ["none", { type: "none" }, [], []],
    [
      "user",
      { type: "user", mac: "52:54:00:12:34:56" },
      ["user,id=net0"],
      ["virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56"],
    ],
    [
      "tap",
      { type: "tap", ifname: "tap0", model: "e1000" },
      ["tap,id=net0,ifname=tap0,script=no,downscript=no"],
      ["e1000,netdev=net0"],
    ],
  ] as const)("network %s", (_name, network, netdev, device) => {
    const argv = argvOf(makeProfile({ network }));
    expect(values(argv, "-netdev")).toEqual(netdev);
    expect(values(argv, "-device")).toEqual(device);
    expect(argv).not.toContain("-nic");
  });

  it.each([
    ["none", []],
    ["stdio", ["-serial", "stdio"]],
    ["pty", ["-serial", "pty"]],
    ["file:/var/log/vm,1.log", ["-chardev", "file,id=serial0,path=/var/log/vm,,1.log", "-serial", "chardev:serial0"]],
  ])("serial %s", (serial, args) => {
    const argv = argvOf(makeProfile({ serial: parseSerial(serial) }));
    const at = argv.indexOf(args[0] ?? "-serial");
    expect(at === -1 ? [] : argv.slice(at, at + args.length)).toEqual(args);
  });

  // The serial setting is parsed once, by normalize (core/serial.ts): the assertion moved there.
  it("asserts a serial value the schema's pattern lets through", () => {
    expect(() => parseSerial("tcp:1.2.3.4:5")).toThrow("serial tcp:1.2.3.4:5 passed the schema");
  });

  it("renders -qmp only when the profile names a socket, with the path escaped", () => {
    expect(argvOf(makeProfile())).not.toContain("-qmp");
    expect(values(argvOf(makeProfile({ qmp: "/run/q,1/qmp.sock" })), "-qmp")).toEqual([
      "unix:/run/q,,1/qmp.sock,server=on,wait=off",
    ]);
  });
});

describe("renderArgv: escaping", () => {
  it.each([
    ["name", { name: "a,share=off" }, "-name", "guest=a,,share=off,debug-threads=on"],
    [
      "mem-path",
      { memory: { backend: "file", path: "/x,readonly=off" } },
      "-object",
      "memory-backend-file,id=mem0,size=536870912,mem-path=/x,,readonly=off,share=on,prealloc=off",
    ],
    [
      "machine type",
      { machine: { type: "q35,accel=tcg" } },
      "-machine",
      "q35,,accel=tcg,accel=kvm,memory-backend=mem0",
    ],
    [
      "network model",
      { network: { type: "user", model: "e1000,romfile=/x" } },
      "-device",
      "e1000,,romfile=/x,netdev=net0",
    ],
    [
      "tap ifname",
      { network: { type: "tap", ifname: "t,script=/evil" } },
      "-netdev",
      "tap,id=net0,ifname=t,,script=/evil,script=no,downscript=no",
    ],
  ] as const)("a comma in %s stays inside one value", (_name, over, flag, expected) => {
    expect(values(argvOf(makeProfile(over as never)), flag)).toEqual([expected]);
  });

  it.each([
    ["memory.path", { memory: { backend: "file", path: "/x\nprealloc=on" } }],
    ["disks[0].path", { disks: [{ path: "/a\0b", format: "raw", interface: "virtio-blk", readOnly: true }] }],
    ["network.mac", { network: { type: "user", mac: "52:54\r" } }],
    ["qmp", { qmp: "/run/q\n.sock" }],
  ] as const)("refuses a line break or NUL in %s, naming the field", (path, over) => {
    const errors = errorsOf(makeProfile(over as never));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(
      new RegExp(
        `^/profiles/test\\.yaml: ${path.replace(/[[\].]/g, "\\$&")}: cannot be passed to QEMU: it contains (a line break|a NUL byte)`,
      ),
    );
  });

  it("refuses a CPU model with options in it: -cpu has no comma escape", () => {
    expect(errorsOf(makeProfile({ cpu: { model: "host,-sev" } }))).toEqual([
      '/profiles/test.yaml: cpu.model: must be a CPU model name (letters, digits, . _ -): -cpu reads anything after a comma as CPU features, got "host,-sev" (to set CPU features, put a complete -cpu option in extraArgs; the last -cpu wins)',
    ]);
  });
});
