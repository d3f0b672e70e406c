// `qcvm export --to libvirt`: a profile (and its plan on the target host) as a libvirt domain.
//
// What libvirt can say is said in libvirt's own elements, so libvirt does it: memory size and
// backing, NUMA cells with distances, numatune per cell, vcpupin, launchSecurity, firmware, disks,
// NIC, serial. What it cannot say goes two places: a comment block (and the stderr summary) that
// names what libvirt will not do that qcvm would, and `<metadata><qcvm:profile>`, which keeps the
// exact profile values libvirt has no element for so that `qcvm import` gives the profile back.
// Which values those are is not listed by hand: the domain is imported again (without metadata)
// and every field that does not come back is kept (src/export/raw.ts diffRaw). libvirt keeps
// foreign-namespace metadata as it is (virsh dumpxml shows it) and acts on none of it.
//
// Built with fast-xml-parser's XMLBuilder, which escapes every text and attribute value: no
// profile value can end up as markup. Pure: the caller reads files (blobs) and plans first.
import { XMLBuilder } from "fast-xml-parser";
import { formatList } from "../core/lists.js";
import { diffRaw, profileToRaw } from "./raw.js";
import type { Plan, PrivateMechanism, Profile, TdxGuest } from "../core/types.js";

export const QCVM_XMLNS = "https://qcvm.dev/xmlns/libvirt-domain/1";
export const QEMU_XMLNS = "http://libvirt.org/schemas/domain/qemu/1.0";

/** libvirt versions that first support what a domain uses (DOMAIN.md "How libvirt does it"). */
export const LIBVIRT_FLOORS = {
  base: { version: "9.0.0", why: "the oldest libvirt these exports are tested with (Debian 12)" },
  "sev-snp": { version: "10.5.0", why: "launchSecurity type sev-snp" },
  tdx: { version: "11.6.0", why: "launchSecurity type tdx" },
} as const;

export interface LibvirtExport {
  xml: string;
  /** What libvirt will not do that qcvm would, one sentence each. */
  losses: string[];
  /** Profile fields kept only in <metadata> (dotted raw paths). */
  keptInMetadata: string[];
  minVersion: { version: string; why: string };
}

type Node = Record<string, unknown>;

/** libvirt's numatune modes for qcvm's policies; weighted interleave has none (nearest: interleave). */
const MODE: Record<string, string> = {
  bind: "strict",
  preferred: "preferred",
  interleave: "interleave",
  "weighted-interleave": "interleave",
};

/** NIC device names <-> libvirt model types. */
export const NIC_MODELS: Record<string, string> = {
  "virtio-net-pci": "virtio",
  e1000: "e1000",
  e1000e: "e1000e",
  rtl8139: "rtl8139",
};

function hex(n: number | bigint, width = 0): string {
  return `0x${n.toString(16).padStart(width, "0")}`;
}

function kib(bytes: number): Node {
  return bytes % 1024 === 0 ? { "@_unit": "KiB", "#text": bytes / 1024 } : { "@_unit": "b", "#text": bytes };
}

/**
 * Private-memory mechanisms (and so grades) whose libvirt counterpart is restrictive mode (no
 * backend policy; cgroup cpuset.mems per vCPU thread, the whole domain's union for the emulator):
 * vcpu-cpuset (first-touch) is that mode, and guest-memfd-prealloc (exact-at-launch) keeps the
 * same per-vCPU cpusets for pages re-faulted after a conversion. libvirt cannot pre-allocate
 * guest_memfd, so restrictive is the nearest it comes; lossesOf says what is lost.
 */
export const RESTRICTIVE_MECHANISMS: ReadonlySet<PrivateMechanism> = new Set(["vcpu-cpuset", "guest-memfd-prealloc"]);

/**
 * Restrictive where qcvm's plan places private memory per guest node through those mechanisms
 * (guest nodes on different host nodes) and so gives vCPU threads cpusets of their own. Anywhere
 * else strict (a backend policy plus the emulator's cpuset) matches qcvm's backend policy and
 * process policy. A host without a cpuset controller (cgroup v2 not delegating it) gets
 * guest-memfd-prealloc with no vCPU cpusets: restrictive would place nothing there (libvirt skips
 * cpuset.mems without the controller, and restrictive drops the backend's host-nodes), while strict
 * keeps the shared half's backend policy, as qcvm's plan does.
 */
export function usesRestrictive(plan: Plan): boolean {
  return (
    plan.guestMemfd &&
    plan.nodes.some((n) => RESTRICTIVE_MECHANISMS.has(n.private.mechanism)) &&
    plan.launch.cgroups.some((c) => c.tasks !== "process")
  );
}

function cpuElement(p: Profile): Node {
  const cpu: Node =
    p.cpu.model === "host"
      ? { "@_mode": "host-passthrough", "@_check": "none", "@_migratable": "off" }
      : p.cpu.model === "max"
        ? { "@_mode": "maximum", "@_check": "none" }
        : {
            "@_mode": "custom",
            "@_match": "exact",
            "@_check": "none",
            model: { "@_fallback": "forbid", "#text": p.cpu.model },
          };
  const t = p.cpu;
  cpu.topology = { "@_sockets": t.sockets, "@_dies": t.dies, "@_cores": t.cores, "@_threads": t.threads };
  if (p.numa.nodes.length > 0) {
    cpu.numa = {
      cell: p.numa.nodes.map((n) => {
        const siblings = p.numa.distances.filter((d) => d.from === n.id);
        const cell: Node = { "@_id": n.id, "@_cpus": formatList(n.cpus), "@_memory": n.memoryBytes / 1024 };
        cell["@_unit"] = "KiB";
        if (siblings.length > 0) {
          // libvirt wants the local distance too once any is given (10, as QEMU's default).
          const all = siblings.some((d) => d.to === n.id) ? siblings : [{ to: n.id, value: 10 }, ...siblings];
          cell.distances = {
            sibling: [...all].sort((a, b) => a.to - b.to).map((d) => ({ "@_id": d.to, "@_value": d.value })),
          };
        }
        return cell;
      }),
    };
  }
  return cpu;
}

function memoryBacking(p: Profile): Node {
  const m = p.memory;
  const mb: Node = {};
  if (m.hugepages !== "none")
    mb.hugepages = { page: { "@_size": m.hugepages === "2M" ? 2048 : 1048576, "@_unit": "KiB" } };
  mb.source = { "@_type": m.backend === "ram" ? "anonymous" : m.backend };
  mb.access = { "@_mode": m.share ? "shared" : "private" };
  mb.allocation = m.prealloc
    ? { "@_mode": "immediate", ...(m.preallocThreads !== undefined ? { "@_threads": m.preallocThreads } : {}) }
    : { "@_mode": "ondemand" };
  return mb;
}

function numatune(p: Profile, plan: Plan): Node | undefined {
  const restrictive = usesRestrictive(plan);
  const placed = p.numa.nodes.filter((n) => n.policy !== "default");
  if (p.numa.nodes.length === 0) {
    if (p.memory.policy === "default") return undefined;
    return { memory: { "@_mode": MODE[p.memory.policy], "@_nodeset": formatList(p.memory.hostNodes) } };
  }
  if (placed.length === 0) return undefined;
  const union = [...new Set(placed.flatMap((n) => n.hostNodes))].sort((a, b) => a - b);
  const modes = new Set(placed.map((n) => MODE[n.policy]));
  return {
    memory: {
      "@_mode": restrictive ? "restrictive" : modes.size === 1 ? [...modes][0] : "strict",
      "@_nodeset": formatList(union),
    },
    memnode: placed.map((n) => ({
      "@_cellid": n.id,
      "@_mode": restrictive ? "restrictive" : MODE[n.policy],
      "@_nodeset": formatList(n.hostNodes),
    })),
  };
}

function osElement(p: Profile): Node {
  const os: Node = { type: { "@_arch": "x86_64", "@_machine": p.machine.type, "#text": "hvm" } };
  const fw = p.firmware;
  // -bios is libvirt's loader type rom; a bare name (QEMU's firmware search path) has no form.
  if (fw.bios !== undefined && fw.bios.startsWith("/")) os.loader = { "@_type": "rom", "#text": fw.bios };
  if (fw.pflash) {
    os.loader = { "@_readonly": "yes", "@_type": "pflash", "#text": fw.pflash.code };
    if (fw.pflash.vars !== undefined) os.nvram = { "#text": fw.pflash.vars };
  }
  if (p.boot.kernel !== undefined) os.kernel = p.boot.kernel;
  if (p.boot.initrd !== undefined) os.initrd = p.boot.initrd;
  if (p.boot.cmdline !== undefined) os.cmdline = p.boot.cmdline;
  return os;
}

function features(p: Profile): Node {
  // Without <acpi/> libvirt turns ACPI off, and `system_powerdown` (qcvm stop) does nothing.
  const f: Node = { acpi: "" };
  const irq = p.machine.kernelIrqchip;
  if (irq === "split") f.ioapic = { "@_driver": "qemu" };
  if (irq === "on") f.ioapic = { "@_driver": "kvm" };
  if (p.machine.smm === "on" || p.machine.smm === "off") f.smm = { "@_state": p.machine.smm };
  return f;
}

function launchSecurity(p: Profile): Node | undefined {
  const c = p.confidential;
  const b64 = (v: { base64?: string } | undefined) => v?.base64;
  const yesNo = (v: boolean | undefined) => (v === undefined ? undefined : v ? "yes" : "no");
  const defined = (o: Node) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  switch (c.type) {
    case "none":
      return undefined;
    case "sev":
    case "sev-es":
      // libvirt has one type for both: SEV-ES is the policy's ES bit (0x4).
      return defined({
        "@_type": "sev",
        "@_kernelHashes": yesNo(c.kernelHashes),
        cbitpos: c.cbitpos,
        reducedPhysBits: c.reducedPhysBits,
        policy: hex(c.policy ?? 0, 4),
        handle: c.handle,
      });
    case "sev-snp":
      return defined({
        "@_type": "sev-snp",
        "@_kernelHashes": yesNo(c.kernelHashes),
        "@_authorKey": yesNo(c.authorKeyEnabled),
        "@_vcek": c.vcekDisabled === undefined ? undefined : c.vcekDisabled ? "no" : "yes",
        cbitpos: c.cbitpos,
        reducedPhysBits: c.reducedPhysBits,
        policy: hex(c.policy ?? 0x30000, 8),
        guestVisibleWorkarounds: b64(c.guestVisibleWorkarounds),
        idBlock: b64(c.idBlock),
        idAuth: b64(c.idAuth),
        hostData: b64(c.hostData),
      });
    case "tdx":
      return defined({
        "@_type": "tdx",
        policy: tdxAttributes(c),
        mrConfigId: b64(c.mrconfigid),
        mrOwner: b64(c.mrowner),
        mrOwnerConfig: b64(c.mrownerconfig),
        quoteGenerationService:
          c.quoteGenerationSocket?.type === "unix" ? { "@_path": c.quoteGenerationSocket.path } : undefined,
      });
  }
}

/** libvirt's TDX policy is the TD attributes word; qcvm's septVeDisable is its bit 28 (as render folds it). */
function tdxAttributes(c: TdxGuest): string | undefined {
  if (c.attributes === undefined && c.septVeDisable === undefined) return undefined;
  const bit = 1n << 28n;
  let a = c.attributes ?? (c.septVeDisable ? 0n : bit);
  if (c.septVeDisable !== undefined) a = c.septVeDisable ? a | bit : a & ~bit;
  return hex(a, 8);
}

function devices(p: Profile): Node {
  const confidential = p.confidential.type !== "none";
  // virtio on a confidential guest must use the IOMMU platform (bounce buffers), as render does.
  const iommu = confidential ? { "@_iommu": "on" } : {};
  const d: Node = {};
  if (p.qemu.binary.startsWith("/")) d.emulator = p.qemu.binary;
  const scsi = p.disks.some((x) => x.interface === "virtio-scsi");
  d.disk = p.disks.map((x, i) => {
    const disk: Node = {
      "@_type": "file",
      "@_device": "disk",
      driver: { "@_name": "qemu", "@_type": x.format, ...(x.interface === "virtio-blk" ? iommu : {}) },
      source: { "@_file": x.path },
      target: {
        "@_dev": `${x.interface === "virtio-scsi" ? "sd" : "vd"}${String.fromCharCode(97 + i)}`,
        "@_bus": x.interface === "virtio-scsi" ? "scsi" : "virtio",
      },
    };
    if (x.readOnly) disk.readonly = "";
    return disk;
  });
  d.controller = [
    { "@_type": "usb", "@_model": "none" },
    ...(scsi ? [{ "@_type": "scsi", "@_model": "virtio-scsi", ...(confidential ? { driver: iommu } : {}) }] : []),
  ];
  const net = p.network;
  if (net.type !== "none") {
    const model = NIC_MODELS[net.model] ?? net.model;
    const nic: Node = { "@_type": net.type === "user" ? "user" : "ethernet" };
    if (net.mac !== undefined) nic.mac = { "@_address": net.mac };
    if (net.type === "tap" && net.ifname !== undefined) nic.target = { "@_dev": net.ifname, "@_managed": "no" };
    nic.model = { "@_type": confidential && model === "virtio" ? "virtio-non-transitional" : model };
    if (confidential && model === "virtio") nic.driver = iommu;
    d.interface = nic;
  }
  const serial = p.serial;
  if (serial.kind === "stdio" || serial.kind === "pty") d.serial = { "@_type": "pty" };
  else if (serial.kind === "file") d.serial = { "@_type": "file", source: { "@_path": serial.path } };
  // An existing FIFO or tty: libvirt's host-device serial (<serial type="dev">) writes to it.
  else if (serial.kind === "device") d.serial = { "@_type": "dev", source: { "@_path": serial.path } };
  // A balloon lets the host take guest pages back: wrong for private memory, and qcvm adds none.
  d.memballoon = { "@_model": "none" };
  return d;
}

/** The domain as libvirt elements only (no comment, no metadata). */
export function domainOf(p: Profile, plan: Plan): Node {
  const domain: Node = { "@_type": p.machine.accel === "kvm" ? "kvm" : "qemu" };
  if (p.extraArgs.length > 0) domain["@_xmlns:qemu"] = QEMU_XMLNS;
  domain.name = p.name;
  domain.memory = kib(p.memory.sizeBytes);
  domain.memoryBacking = memoryBacking(p);
  domain.vcpu = { "@_placement": "static", "#text": p.cpu.count };
  if (p.placement.pinVcpus && plan.launch.pinning.length > 0) {
    domain.cputune = {
      vcpupin: plan.launch.pinning.map((pin) => ({ "@_vcpu": pin.vcpu, "@_cpuset": formatList(pin.hostCpus) })),
    };
  }
  const nt = numatune(p, plan);
  if (nt) domain.numatune = nt;
  domain.os = osElement(p);
  domain.features = features(p);
  domain.cpu = cpuElement(p);
  domain.devices = devices(p);
  const ls = launchSecurity(p);
  if (ls) domain.launchSecurity = ls;
  if (p.extraArgs.length > 0) domain["qemu:commandline"] = { "qemu:arg": p.extraArgs.map((a) => ({ "@_value": a })) };
  return domain;
}

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  commentPropName: "#comment",
  format: true,
  indentBy: "  ",
  suppressEmptyNode: true,
});

export function buildXml(tree: Node): string {
  return builder.build(tree);
}

/** Export a profile. `profile` has its blobs inlined (base64); `written` is the profile as normalized from the file. */
export function exportLibvirt(
  profile: Profile,
  plan: Plan,
  written: Profile,
  importDomain: (xml: string) => Record<string, unknown>,
): LibvirtExport {
  const domain = domainOf(profile, plan);
  // What does not survive the way back is kept in metadata.
  const back = importDomain(buildXml({ domain }));
  const kept = diffRaw(profileToRaw(written), back);
  const losses = lossesOf(
    profile,
    plan,
    kept.map((k) => k.path),
  );
  const floor =
    profile.confidential.type === "tdx"
      ? LIBVIRT_FLOORS.tdx
      : profile.confidential.type === "sev-snp"
        ? LIBVIRT_FLOORS["sev-snp"]
        : LIBVIRT_FLOORS.base;
  const comment = [
    ` Exported by qcvm from ${written.name}. Needs libvirt >= ${floor.version} (${floor.why}).`,
    ...(losses.length > 0
      ? [" What libvirt will not do that qcvm launch would:"]
      : [" libvirt does all that qcvm launch would."]),
    ...losses.map((l) => `   - ${l}`),
    ...(kept.length > 0
      ? [` Kept for qcvm import only (<metadata>; libvirt ignores them): ${kept.map((k) => k.path).join(", ")}.`]
      : []),
    "",
  ].join("\n");
  const withExtras: Node = { "#comment": comment, ...domain };
  if (kept.length > 0) {
    const md: Node = {
      "qcvm:profile": {
        "@_xmlns:qcvm": QCVM_XMLNS,
        "qcvm:field": kept.map((k) =>
          k.value === undefined
            ? { "@_path": k.path, "@_unset": "yes" }
            : { "@_path": k.path, "#text": JSON.stringify(k.value) },
        ),
      },
    };
    // <metadata> conventionally follows the identity elements.
    const { "#comment": c, "@_type": t, "@_xmlns:qemu": q, name, ...rest } = withExtras;
    const ordered: Node = {
      "#comment": c,
      "@_type": t,
      ...(q ? { "@_xmlns:qemu": q } : {}),
      name,
      metadata: md,
      ...rest,
    };
    return { xml: buildXml({ domain: ordered }), losses, keptInMetadata: kept.map((k) => k.path), minVersion: floor };
  }
  return { xml: buildXml({ domain: withExtras }), losses, keptInMetadata: [], minVersion: floor };
}

/** What libvirt will not do that qcvm would, from the profile and the plan. */
export function lossesOf(p: Profile, plan: Plan, kept: readonly string[]): string[] {
  const out: string[] = [];
  if (plan.guestMemfd) {
    const restrictive = usesRestrictive(plan);
    const prealloc = plan.nodes.some((n) => n.private.mechanism === "guest-memfd-prealloc");
    out.push(
      prealloc && restrictive
        ? "private (guest_memfd) memory: qcvm pre-allocates each guest node's private memory on its host nodes before the guest starts (guest-memfd-prealloc, exact-at-launch); libvirt cannot, and its restrictive mode gives each vCPU thread its cell's cpuset.mems (first-touch, qcvm's fallback after a conversion): pages QEMU populates at launch land anywhere in the union, and the shared half carries no backend policy (qcvm binds it with host-nodes)"
        : prealloc
          ? "private (guest_memfd) memory: qcvm pre-allocates each guest node's private memory on its host nodes before the guest starts (guest-memfd-prealloc, exact-at-launch); libvirt cannot: numatune reaches only the shared half (the backend's mbind, as qcvm's), and private pages land wherever the faulting thread runs, as they do under qcvm for a page re-faulted after a conversion (the plan has no vCPU cpusets on this host)"
          : restrictive
            ? "private (guest_memfd) memory: libvirt's restrictive mode gives each vCPU thread its cell's cpuset.mems, as qcvm's vcpu-cpuset does, but the shared half then carries no backend policy (qcvm binds it with host-nodes), and pages QEMU populates at launch land anywhere in the union"
            : "private (guest_memfd) memory: numatune reaches only the shared half (the backend's mbind); private pages follow the emulator's cpuset.mems, the union of all cells",
    );
    if (!prealloc)
      out.push(
        "no pre-allocation of private memory per guest node (qcvm's exact placement through guest_memfd fallocate)",
      );
    out.push(
      "no per-node private memory accounting (`qcvm stats` reads the VM's memory cgroup; libvirt's is per domain)",
    );
  }
  const policies = [p.memory.policy, ...p.numa.nodes.map((n) => n.policy)];
  if (policies.includes("weighted-interleave"))
    out.push("weighted interleave: libvirt has no such mode; exported as plain interleave, the weights are lost");
  if (p.placement.strict)
    out.push("placement.strict: libvirt starts the guest even where a placement cannot be enforced");
  if (p.placement.pinVcpus && plan.launch.pinning.length === 0)
    out.push("vCPU pinning: the plan pins nothing on this host, so no vcpupin was written");
  if (p.firmware.igvm !== undefined) out.push("firmware.igvm: libvirt has no IGVM loader; the guest has no firmware");
  if (p.firmware.bios !== undefined && !p.firmware.bios.startsWith("/"))
    out.push(`firmware.bios ${p.firmware.bios}: libvirt needs an absolute loader path; none was written`);
  const c = p.confidential;
  const sev = c.type === "sev" || c.type === "sev-es";
  if (c.type === "tdx" && c.quoteGenerationSocket?.type === "vsock")
    out.push(
      "TDX quote generation over vsock: libvirt's quoteGenerationService takes a unix socket only; none was written",
    );
  if (p.serial.kind === "stdio")
    out.push("serial stdio: libvirtd has no terminal; the serial port is a pty (virsh console)");
  if (p.qmp !== undefined) out.push("qmp: libvirt owns the monitor; use virsh qemu-monitor-command");
  if (p.extraArgs.length > 0)
    out.push("extraArgs become <qemu:commandline>: libvirt marks the domain tainted (custom-argv)");
  if (p.memory.reserve !== undefined) out.push("memory.reserve: libvirt has no element for it");
  if (p.memory.backend === "file" && p.memory.path !== undefined)
    out.push("memory.path: libvirt puts file-backed memory in qemu.conf's memory_backing_dir");
  if (p.machine.kernelIrqchip === "off") out.push("machine.kernelIrqchip off: libvirt has no form for it");
  if (p.machine.pic !== undefined) out.push("machine.pic: libvirt has no form for it (TDX forces it off anyway)");
  if (sev && c.legacyVmType !== undefined) out.push("confidential.legacyVmType: libvirt has no form for it");
  if (sev && (c.dhCertFile !== undefined || c.sessionFile !== undefined))
    out.push(
      "SEV dhCertFile/sessionFile: libvirt takes their base64 content (dhCert, session), not files; none was written",
    );
  // Measured with libvirt 9.0: "Unknown CPU model EPYC-v4"; its CPU map names models without QEMU's -vN.
  if (/-v[0-9]+$/.test(p.cpu.model))
    out.push(
      `cpu.model ${p.cpu.model} is QEMU's versioned name, which libvirt's CPU map does not know (it refuses the domain): use one \`virsh cpu-models x86_64\` lists`,
    );
  if (kept.includes("qemu.version"))
    out.push(`qemu.version ${p.qemu.version}: libvirt probes the QEMU it runs and builds the command line for that`);
  return out;
}
