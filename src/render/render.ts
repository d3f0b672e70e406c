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
//
// This file owns the Renderer (inputs, diagnostics, option formatting) and the small parts of the
// argv (name, machine, cpu, firmware, boot, disks, network, serial, qmp); memory.ts renders the
// memory backends and -numa, confidential.ts the confidential-guest object, ids.ts names them all.
import { FEATURES, featureGap, hasFeature, missingFeatureMessage } from "../probe/capabilities.js";
import type { Feature } from "../probe/capabilities.js";
import { diag } from "../core/diagnostics.js";
import { confidentialFacts } from "../core/confidential.js";
import { QemuValueError, formatJsonObject, formatOpts } from "./qemu-opts.js";
import type { JsonValue, OptEntry } from "./qemu-opts.js";
import { QMP_FD, addFdArgs, consoleFd, fdsetPath, passedFiles } from "./passed-fds.js";
import type { PassedFile } from "./passed-fds.js";
import type { Diagnostic, Plan, PlanNode, Profile, QemuCapabilities, Result } from "../core/types.js";

const MiB = 1024 * 1024;

import { RENDER_IDS } from "./ids.js";
import { confidentialArgs } from "./confidential.js";
import { memoryArgs, numaArgs } from "./memory.js";

export { RENDER_IDS };

/**
 * How launch runs QEMU (issue 8, libvirt's defaults): files passed as descriptors, QMP on a
 * pre-opened listening socket, `-sandbox` and `-no-user-config`. `render` shows the same, so what
 * it prints is what launch runs; without it (unit tests of the rest) paths are rendered as written.
 */
export interface RenderOptions {
  launch?: boolean;
}

/** What every part of the argv needs: the inputs, and the diagnostics collected while rendering. */
export class Renderer {
  readonly errors: Diagnostic[] = [];
  readonly warnings: Diagnostic[] = [];
  /** Problems reported once per render, not once per guest node (memory.ts). */
  readonly reported = new Set<string>();

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

  json(path: string, type: string, id: string, props: Record<string, JsonValue | undefined>): string {
    try {
      return formatJsonObject(type, id, props);
    } catch (e) {
      if (!(e instanceof QemuValueError)) throw e;
      this.error("value", path, `cannot be passed to QEMU: it ${e.reason}`);
      return "";
    }
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
    switch (s.kind) {
      case "none":
        return []; // -nodefaults: no serial port unless asked
      case "stdio":
      case "pty":
        return ["-serial", s.kind];
      // file: -serial file:PATH takes the rest verbatim, but -chardev takes it through the same
      // escaped key=value syntax as everything else, so one rule covers every value.
      // device: an existing FIFO or tty the profile opted into: QEMU's file chardev writes to it
      // (its O_TRUNC is a no-op there); at launch qcvm opens it and QEMU gets /dev/fdset/N.
      case "file":
      case "device":
        return [
          "-chardev",
          this.opts("serial", "file", [
            ["id", RENDER_IDS.serial],
            ["path", this.fileName("serial", s.path), "serial"],
          ]),
          "-serial",
          `chardev:${RENDER_IDS.serial}`,
        ];
      case "socket": {
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
            fd !== undefined ? ["fd", fd] : ["path", s.path, "serial"],
            ["server", true],
            ["wait", false],
          ]),
          "-serial",
          `chardev:${RENDER_IDS.serial}`,
        ];
      }
    }
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
    ...confidentialArgs(r),
    ...memoryArgs(r),
    ...numaArgs(r),
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
