// The renderer: normalized profile + plan + QEMU capabilities -> QEMU argv. Pure: no file
// reads, no probing, no environment. Everything it needs is in its arguments, so the same inputs
// always give the same argv (golden tests rely on it) and a dry run for another host is exact.
//
// What it does not render, on purpose:
// - the plan's process policy (plan.launch.processPolicy): the caller prepends its numactl argv;
// - files named by FileOrBase64 fields: the caller inlines them first (inlineProfileFiles() in
//   render-files.ts), so this function only ever sees base64;
// - cgroups and thread pinning: the launcher applies them to the running process.
//
// Choices a reader of the argv should know:
// - `-nodefaults`: no default VGA, NIC, serial, parallel, monitor, floppy or CD-ROM. A
//   confidential guest should expose nothing it did not ask for, and every device qcvm wants is
//   rendered explicitly (serial only when `serial:` asks, a NIC only when `network:` asks).
// - `-display none`: qcvm guests are headless; the console is the serial port.
// - memory: one backend per guest NUMA node (`-numa node,memdev=`), or one backend attached with
//   `-machine memory-backend=` when the guest has no NUMA nodes; QEMU refuses both at once.
import { FEATURES, featureGap, hasFeature, missingFeatureMessage } from "../probe/capabilities.js";
import type { Feature } from "../probe/capabilities.js";
import { InternalError, diag, invariant } from "../core/diagnostics.js";
import { CONFIDENTIAL, SEV_POLICY_ES, TDX_ATTR_SEPT_VE_DISABLE, confidentialFacts } from "../core/confidential.js";
import { QemuValueError, formatJsonObject, formatOpts, hex } from "./qemu-opts.js";
import type { JsonValue, OptEntry } from "./qemu-opts.js";
import { QMP_FD, addFdArgs, consoleFd, fdsetPath, passedFiles } from "./passed-fds.js";
import type { PassedFile } from "./passed-fds.js";
import type {
  Diagnostic,
  FileOrBase64,
  GuestNumaNode,
  MemPolicy,
  Plan,
  PlanNode,
  PrivateBackend,
  Profile,
  QemuCapabilities,
  Result,
} from "../core/types.js";

const MiB = 1024 * 1024;
const HUGEPAGE_BYTES = { "2M": 2 * MiB, "1G": 1024 * MiB } as const;

/** IDs qcvm generates; never derived from profile text. */
export const RENDER_IDS = {
  backend: (node: number) => `mem${node}`,
  threadContext: (node: number) => `tc${node}`,
  sev: CONFIDENTIAL.sev.objectId,
  snp: CONFIDENTIAL["sev-snp"].objectId,
  tdx: CONFIDENTIAL.tdx.objectId,
  igvm: "igvm0",
  net: "net0",
  scsi: "scsi0",
  serial: "serial0",
  disk: (i: number) => `disk${i}`,
  pflash: (unit: 0 | 1) => `pflash${unit}`,
} as const;

/** Policies a QEMU memory backend knows (`policy=` of memory-backend-*; HostMemPolicy in qapi). */
const BACKEND_POLICIES: ReadonlySet<MemPolicy> = new Set(["bind", "preferred", "interleave"]);

/** One guest memory region: an explicit NUMA node, or the whole guest when it has none. */
interface MemoryRegion {
  guestNode: number;
  sizeBytes: number;
  cpus: number[];
  /** Profile path for messages: `numa.nodes[1]` or `memory`. */
  path: string;
}

/**
 * How launch runs QEMU (issue 8, libvirt's defaults): files passed as descriptors, QMP on a
 * pre-opened listening socket, `-sandbox` and `-no-user-config`. `render` shows the same, so what
 * it prints is what launch runs; without it (unit tests of the rest) paths are rendered as written.
 */
export interface RenderOptions {
  launch?: boolean;
}

class Renderer {
  readonly errors: Diagnostic[] = [];
  readonly warnings: Diagnostic[] = [];
  private readonly reported = new Set<string>();

  /** Files passed as descriptors, by profile field (launch form only). */
  readonly passed: ReadonlyMap<string, PassedFile>;

  constructor(
    readonly profile: Profile,
    readonly plan: Plan,
    readonly caps: QemuCapabilities,
    readonly options: RenderOptions = {},
  ) {
    this.passed = new Map(options.launch ? passedFiles(profile).map((f) => [f.field, f]) : []);
  }

  /** The file name QEMU is given for a profile file field: /dev/fdset/N when qcvm opens it. */
  fileName(field: string, path: string): string {
    const f = this.passed.get(field);
    return f ? fdsetPath(f) : path;
  }

  /**
   * The launch form's hardening. `-sandbox`: QEMU's seccomp filter, with every optional deny set
   * (obsolete, elevateprivileges, spawn, resourcecontrol: QEMU 2.11), as libvirt renders it.
   * resourcecontrol=deny refuses sched_setaffinity and friends; thread-context objects set their
   * affinity before the filter is installed (QEMU 7.2 creates them pre-sandbox): checked on QEMU
   * 7.2 here, a thread-context with cpu-affinity=1 under this -sandbox got Cpus_allowed_list 1 and
   * prealloc-context preallocation ran in it; vCPU pinning is qcvm's (taskset, from outside).
   * `-no-user-config`: no /etc/qemu/*.conf read behind the profile's back.
   */
  hardening(): string[] {
    if (!this.options.launch) return [];
    const out = ["-no-user-config"];
    if (hasFeature(this.caps, "sandbox"))
      out.push("-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    else
      this.warn(
        "no-sandbox",
        "qemu.version",
        `QEMU runs without its seccomp sandbox: ${missingFeatureMessage(this.caps, "sandbox")}`,
      );
    out.push(...addFdArgs([...this.passed.values()]));
    return out;
  }

  error(code: string, path: string, message: string, extra: Partial<Diagnostic> = {}): void {
    this.errors.push(diag("error", `render.${code}`, path, message, { file: this.profile.file, ...extra }));
  }

  warn(code: string, path: string, message: string, extra: Partial<Diagnostic> = {}): void {
    this.warnings.push(diag("warning", `render.${code}`, path, message, { file: this.profile.file, ...extra }));
  }

  /** True when the target QEMU has the feature; otherwise an error naming the version needed. */
  need(feature: Feature, path: string, hint?: string): boolean {
    const gap = featureGap(this.caps, feature);
    if (gap === undefined) return true;
    const since = FEATURES[feature].since;
    const fallback =
      gap === "built-without"
        ? "use a QEMU built with it (qemu.binary), or drop the field"
        : since
          ? `set qemu.version to ${since} or later if your QEMU has it, or drop the field`
          : "drop the field";
    this.error("missing-feature", path, missingFeatureMessage(this.caps, feature), {
      hint: gap === "built-without" ? fallback : (hint ?? fallback),
    });
    return false;
  }

  /**
   * formatOpts() with each entry's profile path, so a value QEMU cannot take is reported where the
   * user wrote it. Returns "" after recording an error (the argv is discarded then anyway).
   */
  opts(
    path: string,
    head: string | undefined,
    entries: ReadonlyArray<readonly [string, OptEntry[1], string?]>,
  ): string {
    try {
      return formatOpts(
        head,
        entries.map(([k, v]) => [k, v] as const),
      );
    } catch (e) {
      if (!(e instanceof QemuValueError)) throw e;
      const where = e.index >= 0 ? (entries[e.index]?.[2] ?? path) : path;
      this.error("value", where, `cannot be passed to QEMU: it ${e.reason}`, { got: e.value });
      return "";
    }
  }

  /** A plain argv word (not key=value syntax): only NUL is impossible. */
  word(path: string, value: string): string {
    if (value.includes("\0"))
      this.error("value", path, "cannot be passed to QEMU: it contains a NUL byte", { got: value });
    return value;
  }

  planNode(guestNode: number): PlanNode | undefined {
    return this.plan.nodes.find((n) => n.guestNode === guestNode);
  }

  regions(): MemoryRegion[] {
    const { numa, memory, cpu } = this.profile;
    if (numa.nodes.length === 0) {
      return [{ guestNode: 0, sizeBytes: memory.sizeBytes, cpus: range(cpu.count), path: "memory" }];
    }
    return numa.nodes.map((n: GuestNumaNode, i) => ({
      guestNode: n.id,
      sizeBytes: n.memoryBytes,
      cpus: n.cpus,
      path: `numa.nodes[${i}]`,
    }));
  }

  confidentialId(): string | undefined {
    return confidentialFacts(this.profile.confidential.type)?.objectId;
  }

  // -------------------------------------------------------------------------------------------

  name(): string[] {
    // debug-threads=on names vCPU threads "CPU n/KVM", so pinning is visible in ps and top.
    return [
      "-name",
      this.opts("name", undefined, [
        ["guest", this.profile.name, "name"],
        ["debug-threads", true],
      ]),
    ];
  }

  machine(): string[] {
    const { machine, numa, firmware } = this.profile;
    const noNuma = numa.nodes.length === 0;
    if (noNuma) {
      this.need(
        "machine-memory-backend",
        "memory",
        "give the guest numa.nodes (one backend each, -numa node,memdev= since QEMU 2.1), or target QEMU 5.0 or later",
      );
    }
    if (firmware.igvm !== undefined) this.need("igvm", "firmware.igvm");
    return [
      "-machine",
      this.opts("machine.type", machine.type, [
        // The plan's accelerator when it falls back (a launch where KVM is unusable).
        ["accel", this.plan.launch.accel ?? machine.accel, "machine.accel"],
        ["kernel-irqchip", machine.kernelIrqchip, "machine.kernelIrqchip"],
        ["smm", machine.smm, "machine.smm"],
        ["pic", machine.pic, "machine.pic"],
        ["confidential-guest-support", this.confidentialId()],
        ["memory-backend", noNuma ? RENDER_IDS.backend(0) : undefined],
        ["igvm-cfg", firmware.igvm !== undefined ? RENDER_IDS.igvm : undefined],
        ["pflash0", firmware.pflash ? RENDER_IDS.pflash(0) : undefined],
        ["pflash1", firmware.pflash?.vars !== undefined ? RENDER_IDS.pflash(1) : undefined],
      ]),
    ];
  }

  cpu(): string[] {
    const { count, sockets, dies, cores, threads } = this.profile.cpu;
    // `-cpu host` exists only with KVM; under a TCG fallback `max` is its closest.
    const model =
      this.plan.launch.accel === "tcg" && this.profile.cpu.model === "host" ? "max" : this.profile.cpu.model;
    // -cpu is not QemuOpts: everything after the first comma is a CPU feature list, and `,,` is
    // not an escape there. So a model name must be a plain name.
    if (!/^[A-Za-z0-9._-]+$/.test(model)) {
      this.error(
        "value",
        "cpu.model",
        "must be a CPU model name (letters, digits, . _ -): -cpu reads anything after a comma as CPU features",
        {
          got: model,
          hint: "to set CPU features, put a complete -cpu option in extraArgs; the last -cpu wins",
        },
      );
    }
    return [
      "-cpu",
      model,
      "-smp",
      this.opts("cpu", String(count), [
        ["sockets", sockets],
        ["dies", dies],
        ["cores", cores],
        ["threads", threads],
      ]),
    ];
  }

  memorySize(): string[] {
    const bytes = this.profile.memory.sizeBytes;
    // -m reads a plain number as MiB; a B suffix keeps sizes that are not whole MiB exact.
    return ["-m", bytes % MiB === 0 ? `${bytes / MiB}M` : `${bytes}B`];
  }

  confidential(): string[] {
    const c = this.profile.confidential;
    const p = "confidential";
    switch (c.type) {
      case "none":
        return [];
      case "sev":
      case "sev-es": {
        if (!this.need("sev-guest", `${p}.type`)) return [];
        if (c.kernelHashes) this.need("sev-kernel-hashes", `${p}.kernelHashes`);
        if (c.legacyVmType !== undefined) this.need("sev-legacy-vm-type", `${p}.legacyVmType`);
        this.requireAmd();
        // sev-es means the ES policy bit; without it the guest would silently launch as plain SEV.
        // Defaults are QEMU's: 0x1 (NODBG), plus ES for sev-es.
        const base = c.policy ?? CONFIDENTIAL.sev.defaultPolicy!;
        const policy = c.type === "sev-es" ? base | SEV_POLICY_ES : base;
        return [
          "-object",
          this.opts(p, CONFIDENTIAL[c.type].qomType, [
            ["id", RENDER_IDS.sev],
            ["cbitpos", c.cbitpos, `${p}.cbitpos`],
            ["reduced-phys-bits", c.reducedPhysBits, `${p}.reducedPhysBits`],
            ["policy", hex(policy), `${p}.policy`],
            ["handle", c.handle, `${p}.handle`],
            ["dh-cert-file", c.dhCertFile, `${p}.dhCertFile`],
            ["session-file", c.sessionFile, `${p}.sessionFile`],
            ["kernel-hashes", c.kernelHashes ? true : undefined],
            // Both values are rendered: QEMU's default is auto (OnOffAuto since 9.1.0, target/i386/
            // sev.c), which keeps the legacy KVM_SEV_INIT unless another option needs INIT2, so
            // `false` must say off to get the KVM_SEV_INIT2 VM type (and its measurement).
            ["legacy-vm-type", c.legacyVmType],
          ]),
        ];
      }
      case "sev-snp": {
        if (!this.need("sev-snp-guest", `${p}.type`)) return [];
        this.requireAmd();
        return [
          "-object",
          this.opts(p, CONFIDENTIAL["sev-snp"].qomType, [
            ["id", RENDER_IDS.snp],
            ["cbitpos", c.cbitpos, `${p}.cbitpos`],
            ["reduced-phys-bits", c.reducedPhysBits, `${p}.reducedPhysBits`],
            ["policy", hex(c.policy ?? CONFIDENTIAL["sev-snp"].defaultPolicy!), `${p}.policy`],
            [
              "guest-visible-workarounds",
              this.base64(`${p}.guestVisibleWorkarounds`, c.guestVisibleWorkarounds),
              `${p}.guestVisibleWorkarounds`,
            ],
            ["id-block", this.base64(`${p}.idBlock`, c.idBlock), `${p}.idBlock`],
            ["id-auth", this.base64(`${p}.idAuth`, c.idAuth), `${p}.idAuth`],
            ["author-key-enabled", c.authorKeyEnabled ? true : undefined],
            ["host-data", this.base64(`${p}.hostData`, c.hostData), `${p}.hostData`],
            ["vcek-disabled", c.vcekDisabled ? true : undefined],
            ["kernel-hashes", c.kernelHashes ? true : undefined],
            // Private pages converted in place, so the guest_memfd policy covers them (out of tree).
            [
              "convert-in-place",
              this.gmemBackend()?.convertInPlace && this.need("snp-convert-in-place", `${p}.type`) ? true : undefined,
            ],
          ]),
        ];
      }
      case "tdx": {
        if (!this.need("tdx-guest", `${p}.type`)) return [];
        // sept-ve-disable is a setter for bit 28 of attributes, and QEMU applies -object
        // properties in no defined order, so both at once would race. Fold it into attributes.
        // QEMU's own default sets the bit; `septVeDisable: false` must therefore be explicit.
        let attributes = c.attributes;
        let septVeDisable = c.septVeDisable;
        if (attributes !== undefined && septVeDisable !== undefined) {
          attributes = septVeDisable ? attributes | TDX_ATTR_SEPT_VE_DISABLE : attributes & ~TDX_ATTR_SEPT_VE_DISABLE;
          septVeDisable = undefined;
        }
        const props = {
          attributes,
          "sept-ve-disable": septVeDisable,
          mrconfigid: this.base64(`${p}.mrconfigid`, c.mrconfigid),
          mrowner: this.base64(`${p}.mrowner`, c.mrowner),
          mrownerconfig: this.base64(`${p}.mrownerconfig`, c.mrownerconfig),
        };
        const qgs = c.quoteGenerationSocket;
        if (qgs) {
          // quote-generation-socket is a SocketAddress (a structure): only the JSON form has it.
          const socket = this.socketAddress(`${p}.quoteGenerationSocket`, qgs);
          return [
            "-object",
            this.json(p, CONFIDENTIAL.tdx.qomType, RENDER_IDS.tdx, { ...props, "quote-generation-socket": socket }),
          ];
        }
        return [
          "-object",
          this.opts(p, CONFIDENTIAL.tdx.qomType, [
            ["id", RENDER_IDS.tdx],
            ["attributes", attributes !== undefined ? hex(attributes) : undefined, `${p}.attributes`],
            ["sept-ve-disable", septVeDisable, `${p}.septVeDisable`],
            ["mrconfigid", props.mrconfigid, `${p}.mrconfigid`],
            ["mrowner", props.mrowner, `${p}.mrowner`],
            ["mrownerconfig", props.mrownerconfig, `${p}.mrownerconfig`],
          ]),
        ];
      }
    }
  }

  /** cbitpos and reducedPhysBits are required by the rules (confidential.required) before a render. */
  requireAmd(): void {
    const c = this.profile.confidential;
    invariant(c.cbitpos !== undefined && c.reducedPhysBits !== undefined, `${c.type} without cbitpos/reducedPhysBits`);
  }

  base64(path: string, v: FileOrBase64 | undefined): string | undefined {
    if (v === undefined) return undefined;
    invariant(
      v.base64 !== undefined,
      `${path} was not read into base64: call inlineProfileFiles() before renderArgv()`,
    );
    return v.base64;
  }

  socketAddress(path: string, s: NonNullable<Profile["confidential"]["quoteGenerationSocket"]>): JsonValue {
    // The schema's socketAddress requires path (unix) and cid and port (vsock).
    if (s.type === "unix") {
      invariant(s.path !== undefined, `${path}: a unix socket without a path`);
      return { type: "unix", path: this.word(`${path}.path`, s.path) };
    }
    invariant(s.cid !== undefined && s.port !== undefined, `${path}: a vsock socket without cid or port`);
    // VsockSocketAddress carries cid and port as strings (qapi/sockets.json).
    return { type: "vsock", cid: String(s.cid ?? ""), port: String(s.port ?? "") };
  }

  json(path: string, type: string, id: string, props: Record<string, JsonValue | undefined>): string {
    try {
      return formatJsonObject(type, id, props);
    } catch (e) {
      if (!(e instanceof QemuValueError)) throw e;
      this.error("value", path, `cannot be passed to QEMU: it ${e.reason}`);
      return "";
    }
  }

  memory(): string[] {
    const { memory } = this.profile;
    const out: string[] = [];
    const gmem = this.gmemBackend();
    const profileType = `memory-backend-${memory.backend}`;
    const backendType = gmem?.qomType ?? profileType;
    if (backendType === profileType) this.need(profileType as Feature, "memory.backend");
    invariant(
      gmem?.guestMemfdProperty !== false || this.caps.types.includes(backendType),
      `planned ${backendType}, which QEMU ${this.caps.version} lacks`,
    );
    // The planner picks memory-backend-memfd guest-memfd=on only for a memfd profile; the rules
    // refuse a file backend without a path (memory.file-path) and hugepages on ram.
    invariant(!gmem?.guestMemfdProperty || memory.backend === "memfd", "guest-memfd=on planned on a non-memfd backend");
    invariant(memory.backend !== "file" || memory.path !== undefined, "file backend without memory.path");
    invariant(memory.hugepages === "none" || memory.backend !== "ram", "hugepages on memory-backend-ram");
    // A backend type no upstream QEMU has is rendered only with the properties the probe saw.
    const known = backendType !== profileType ? this.caps.properties[backendType] : undefined;
    if (memory.prealloc && memory.preallocThreads !== undefined)
      this.need("prealloc-threads", "memory.preallocThreads");
    if (memory.reserve !== undefined) this.need("reserve", "memory.reserve");

    let warnedThreadContext = false;
    for (const region of this.regions()) {
      const id = RENDER_IDS.backend(region.guestNode);
      const pn = this.planNode(region.guestNode);
      const policy = this.backendPolicy(region, pn);
      if (memory.hugepages !== "none" && region.sizeBytes % HUGEPAGE_BYTES[memory.hugepages] !== 0) {
        this.error(
          "hugepage-align",
          region.path === "memory" ? "memory.size" : `${region.path}.memory`,
          `must be a multiple of the ${memory.hugepages} hugepage size`,
          {
            got: region.sizeBytes,
          },
        );
      }

      // NUMA-local preallocation (QEMU 7.2): a thread-context whose threads run near the target
      // host nodes, so preallocation runs from CPUs close to the memory, as libvirt does. The
      // plan's hostCpus are preferred to node-affinity: a memory-only (CXL) node has no CPUs, and
      // QEMU refuses node-affinity that selects none ("The nodes select no CPUs").
      let tc: string | undefined;
      const placed = pn !== undefined && pn.policy !== "default" && pn.hostNodes.length > 0;
      if (memory.prealloc && placed && (!known || known.includes("prealloc-context"))) {
        if (hasFeature(this.caps, "thread-context") && hasFeature(this.caps, "prealloc-context")) {
          tc = RENDER_IDS.threadContext(region.guestNode);
          const affinity: OptEntry =
            pn.hostCpus && pn.hostCpus.length > 0
              ? ["cpu-affinity", { list: pn.hostCpus }]
              : ["node-affinity", { list: pn.hostNodes }];
          out.push("-object", this.opts(region.path, "thread-context", [["id", tc], affinity]));
        } else if (!warnedThreadContext) {
          warnedThreadContext = true;
          this.warn(
            "thread-context",
            "memory.prealloc",
            `preallocation threads will run on any CPU, not near the target nodes: ${missingFeatureMessage(this.caps, "thread-context")}`,
          );
        }
      }

      const entries: Array<readonly [string, OptEntry[1], string?]> = [
        ["id", id],
        ["size", region.sizeBytes],
        ["mem-path", memory.backend === "file" ? memory.path : undefined, "memory.path"],
        ["share", memory.share],
        ["hugetlb", memory.backend === "memfd" && memory.hugepages !== "none" ? true : undefined, "memory.hugepages"],
        [
          "hugetlbsize",
          memory.backend === "memfd" && memory.hugepages !== "none" ? memory.hugepages : undefined,
          "memory.hugepages",
        ],
        ["reserve", memory.reserve, "memory.reserve"],
        ["prealloc", memory.prealloc, "memory.prealloc"],
        ["prealloc-threads", memory.prealloc ? memory.preallocThreads : undefined, "memory.preallocThreads"],
        ["prealloc-context", tc],
        ["host-nodes", policy ? { list: policy.hostNodes } : undefined],
        ["policy", policy?.policy],
        ["guest-memfd", gmem?.guestMemfdProperty ? true : undefined],
      ];
      const usable = known
        ? entries.filter(([k, v, path]) => this.backendHas(backendType, known, k, v, path))
        : entries;
      out.push("-object", this.opts(region.path, backendType, usable));
    }
    return out;
  }

  /** Does a probed backend type take this property? A value the profile set that it lacks is an error. */
  backendHas(type: string, known: string[], key: string, value: OptEntry[1], path: string | undefined): boolean {
    if (key === "id" || value === undefined || known.includes(key)) return true;
    // Defaults qcvm renders explicitly (share, prealloc) are dropped silently when the type lacks them.
    if (path && !(key === "prealloc" && value === false) && !this.reported.has(`${type}.${key}`)) {
      this.reported.add(`${type}.${key}`); // once, not once per guest node
      this.error(
        "backend-property",
        path,
        `${type}, which the plan uses to place private memory, has no ${key} property`,
        {
          hint: "drop the field, or plan with capabilities of a QEMU whose backend has it",
        },
      );
    }
    return false;
  }

  /** The backend the plan chose to carry host-nodes/policy to guest_memfd, when it chose one. */
  gmemBackend(): PrivateBackend | undefined {
    return this.plan.nodes.find((n) => n.private.backend)?.private.backend;
  }

  /** host-nodes/policy for a backend, when the plan places this node's memory by backend policy. */
  backendPolicy(
    region: MemoryRegion,
    pn: PlanNode | undefined,
  ): { hostNodes: number[]; policy: MemPolicy } | undefined {
    if (!pn) return undefined;
    if (pn.shared.mechanism !== "backend-policy" && pn.private.mechanism !== "guest-memfd-mempolicy") return undefined;
    if (pn.policy === "default" || pn.hostNodes.length === 0) return undefined;
    // The planner applies weighted interleave with numactl (a process policy), never a backend.
    invariant(BACKEND_POLICIES.has(pn.policy), `${region.path}: backend policy ${pn.policy} in the plan`);
    // preferred over several nodes before QEMU 8.0 prefers only the first: the planner says so.
    return { hostNodes: pn.hostNodes, policy: pn.policy };
  }

  numa(): string[] {
    const { numa } = this.profile;
    if (numa.nodes.length === 0) return [];
    const out: string[] = [];
    if (!this.need("numa-memdev", "numa.nodes")) return [];
    numa.nodes.forEach((n, i) => {
      out.push(
        "-numa",
        this.opts(`numa.nodes[${i}]`, "node", [
          ["nodeid", n.id],
          // Non-contiguous vCPU sets are repeated cpus= keys; QEMU has no `0-1:4` syntax.
          ["cpus", n.cpus.length > 0 ? { list: n.cpus } : undefined],
          ["memdev", RENDER_IDS.backend(n.id)],
        ]),
      );
    });
    if (numa.distances.length > 0 && this.need("numa-dist", "numa.distances")) {
      for (const d of numa.distances) {
        out.push(
          "-numa",
          this.opts("numa.distances", "dist", [
            ["src", d.from],
            ["dst", d.to],
            ["val", d.value],
          ]),
        );
      }
    }
    return out;
  }

  firmware(): string[] {
    const { firmware } = this.profile;
    const out: string[] = [];
    if (firmware.bios !== undefined)
      out.push("-bios", this.word("firmware.bios", this.fileName("firmware.bios", firmware.bios)));
    if (firmware.pflash) {
      // -blockdev instead of -drive if=pflash: a file name goes to the file driver as-is, with no
      // protocol prefix parsing (`nbd:`, `json:`), and the machine takes the node by name.
      out.push(
        "-blockdev",
        this.opts("firmware.pflash.code", undefined, [
          ["driver", "file"],
          ["node-name", RENDER_IDS.pflash(0)],
          ["filename", this.fileName("firmware.pflash.code", firmware.pflash.code), "firmware.pflash.code"],
          ["read-only", true],
        ]),
      );
      if (firmware.pflash.vars !== undefined) {
        out.push(
          "-blockdev",
          this.opts("firmware.pflash.vars", undefined, [
            ["driver", "file"],
            ["node-name", RENDER_IDS.pflash(1)],
            ["filename", this.fileName("firmware.pflash.vars", firmware.pflash.vars), "firmware.pflash.vars"],
          ]),
        );
      }
    }
    if (firmware.igvm !== undefined) {
      out.push(
        "-object",
        this.opts("firmware.igvm", "igvm-cfg", [
          ["id", RENDER_IDS.igvm],
          ["file", this.fileName("firmware.igvm", firmware.igvm), "firmware.igvm"],
        ]),
      );
    }
    return out;
  }

  boot(): string[] {
    const { boot } = this.profile;
    const out: string[] = [];
    if (boot.kernel !== undefined)
      out.push("-kernel", this.word("boot.kernel", this.fileName("boot.kernel", boot.kernel)));
    if (boot.initrd !== undefined)
      out.push("-initrd", this.word("boot.initrd", this.fileName("boot.initrd", boot.initrd)));
    if (boot.cmdline !== undefined) out.push("-append", this.word("boot.cmdline", boot.cmdline));
    return out;
  }

  /**
   * Devices of a confidential guest: guest memory is encrypted, so virtio devices must use the
   * DMA API (bounce buffers in shared memory): iommu_platform=on, and modern virtio only, as AMD's
   * and COCONUT-SVSM's launch examples do.
   */
  virtioExtras(driver: string): OptEntry[] {
    if (this.profile.confidential.type === "none" || !/^virtio-.*-pci$/.test(driver)) return [];
    return [
      ["disable-legacy", true],
      ["iommu_platform", true],
    ];
  }

  disks(): string[] {
    const out: string[] = [];
    let scsi = false;
    this.profile.disks.forEach((d, i) => {
      const p = `disks[${i}]`;
      const node = RENDER_IDS.disk(i);
      const ro = d.readOnly ? true : undefined;
      out.push(
        "-blockdev",
        this.opts(p, undefined, [
          ["driver", "file"],
          ["node-name", `${node}-file`],
          ["filename", this.fileName(`${p}.path`, d.path), `${p}.path`],
          ["read-only", ro],
        ]),
        "-blockdev",
        this.opts(p, undefined, [
          ["driver", d.format],
          ["node-name", node],
          ["file", `${node}-file`],
          ["read-only", ro],
        ]),
      );
      if (d.interface === "virtio-scsi") {
        if (!scsi) {
          scsi = true;
          out.push(
            "-device",
            this.opts(p, "virtio-scsi-pci", [["id", RENDER_IDS.scsi], ...this.virtioExtras("virtio-scsi-pci")]),
          );
        }
        out.push(
          "-device",
          this.opts(p, "scsi-hd", [
            ["bus", `${RENDER_IDS.scsi}.0`],
            ["drive", node],
          ]),
        );
      } else {
        out.push("-device", this.opts(p, "virtio-blk-pci", [["drive", node], ...this.virtioExtras("virtio-blk-pci")]));
      }
    });
    return out;
  }

  network(): string[] {
    const { network } = this.profile;
    if (network.type === "none") return []; // -nodefaults: no NIC unless asked
    const netdev =
      network.type === "user"
        ? this.opts("network", "user", [["id", RENDER_IDS.net]])
        : this.opts("network", "tap", [
            ["id", RENDER_IDS.net],
            ["ifname", network.ifname, "network.ifname"],
            // qcvm never runs scripts: the tap device is the operator's to create and wire.
            ["script", "no"],
            ["downscript", "no"],
          ]);
    return [
      "-netdev",
      netdev,
      "-device",
      this.opts("network.model", network.model, [
        ["netdev", RENDER_IDS.net],
        ["mac", network.mac, "network.mac"],
        ...this.virtioExtras(network.model),
      ]),
    ];
  }

  serial(): string[] {
    const s = this.profile.serial;
    if (s === "none") return []; // -nodefaults: no serial port unless asked
    if (s === "stdio" || s === "pty") return ["-serial", s];
    if (s.startsWith("file:")) {
      // -serial file:PATH takes the rest verbatim, but -chardev takes it through the same escaped
      // key=value syntax as everything else, so one rule covers every value.
      return [
        "-chardev",
        this.opts("serial", "file", [
          ["id", RENDER_IDS.serial],
          ["path", this.fileName("serial", s.slice("file:".length)), "serial"],
        ]),
        "-serial",
        `chardev:${RENDER_IDS.serial}`,
      ];
    }
    if (s.startsWith("device:")) {
      // An existing FIFO or tty the profile opted into: QEMU's file chardev writes to it (its
      // O_TRUNC is a no-op there); at launch qcvm opens it and QEMU gets /dev/fdset/N.
      return [
        "-chardev",
        this.opts("serial", "file", [
          ["id", RENDER_IDS.serial],
          ["path", this.fileName("serial", s.slice("device:".length)), "serial"],
        ]),
        "-serial",
        `chardev:${RENDER_IDS.serial}`,
      ];
    }
    if (s.startsWith("socket:")) {
      // Set only by `launch --detach` for `serial: stdio` (the schema admits no `socket:`): a
      // detached QEMU has no terminal, so the port becomes a unix socket server in the VM's 0700
      // directory for `qcvm console`. wait=off: the guest runs (and its output is dropped) while
      // no console is attached, as on a real serial line.
      // Launch form: QEMU accepts on the socket qcvm bound at that path (consoleFd), as for QMP.
      const fd = this.options.launch ? consoleFd(this.profile) : undefined;
      return [
        "-chardev",
        this.opts("serial", "socket", [
          ["id", RENDER_IDS.serial],
          fd !== undefined ? ["fd", fd] : ["path", s.slice("socket:".length), "serial"],
          ["server", true],
          ["wait", false],
        ]),
        "-serial",
        `chardev:${RENDER_IDS.serial}`,
      ];
    }
    // The schema's pattern allows exactly these forms.
    throw new InternalError(`serial ${s} passed the schema`);
  }

  qmp(): string[] {
    if (this.profile.qmp === undefined) return [];
    // Launch form: QEMU accepts on the socket qcvm bound (fd 3), at the path profile.qmp.
    if (this.options.launch) {
      return [
        "-chardev",
        this.opts("qmp", "socket", [
          ["id", "qmp0"],
          ["fd", QMP_FD],
          ["server", true],
          ["wait", false],
        ]),
        "-mon",
        "chardev=qmp0,mode=control",
      ];
    }
    // unix:PATH goes through QemuOpts with path as the implied key, so the path is escaped.
    return [
      "-qmp",
      this.opts("qmp", `unix:${this.profile.qmp}`, [
        ["server", true],
        ["wait", false],
      ]),
    ];
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/**
 * Render the QEMU argv for a profile under a plan. The argv starts with profile.qemu.binary; the
 * plan's numactl prefix is not included. Errors (a value QEMU cannot take, a feature the target
 * QEMU lacks) leave `value` undefined; warnings come with a value.
 */
export function renderArgv(
  profile: Profile,
  plan: Plan,
  caps: QemuCapabilities,
  options: RenderOptions = {},
): Result<string[]> {
  const r = new Renderer(profile, plan, caps, options);
  const argv = [
    profile.qemu.binary,
    ...r.name(),
    "-nodefaults",
    ...r.hardening(),
    ...r.machine(),
    ...r.cpu(),
    ...r.memorySize(),
    ...r.confidential(),
    ...r.memory(),
    ...r.numa(),
    ...r.firmware(),
    ...r.boot(),
    ...r.disks(),
    ...r.network(),
    ...r.serial(),
    "-display",
    "none",
    ...r.qmp(),
    ...profile.extraArgs,
  ];
  if (r.errors.length > 0) return { errors: r.errors, warnings: r.warnings };
  return { value: argv, errors: [], warnings: r.warnings };
}
