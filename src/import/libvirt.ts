// `qcvm import <domain.xml>`: a profile from a libvirt domain, for users arriving from libvirt.
//
// Every element and attribute is either taken (mapped to a profile field) or reported: the parsed
// tree is consumed as it is read (Taker removes what it maps), and whatever is left afterwards is
// listed as not imported, by its XML path. Nothing is dropped silently. `<metadata><qcvm:profile>`
// (written by `qcvm export --to libvirt`) restores the fields libvirt has no element for, last, so
// export then import gives the profile back. Pure: text in, raw profile and report out. The XML
// reading itself (parser, Taker, libvirt's value forms) is in libvirt-xml.ts.
import { XMLValidator } from "fast-xml-parser";
import { ImportError, Taker, ids, intOf, parser, sizeOf, yes } from "./libvirt-xml.js";
import type { Obj } from "./libvirt-xml.js";
import { NIC_MODELS, QCVM_XMLNS } from "../export/libvirt.js";
import { idList, orderFields, setRawPath } from "../export/raw.js";
import type { RawProfile } from "../core/types.js";

export { ImportError };

export interface ImportResult {
  raw: RawProfile;
  /** XML paths of elements and attributes that map to nothing in a profile. */
  notImported: string[];
  /** Things the reader should know (a default chosen, a value interpreted). */
  notes: string[];
}

const POLICY_OF_MODE: Record<string, string> = {
  strict: "bind",
  restrictive: "bind",
  preferred: "preferred",
  interleave: "interleave",
};

/** Parse domain XML text into a profile. Throws ImportError for XML that is not a domain. */
export function importDomain(xml: string, options: { useMetadata?: boolean } = {}): ImportResult {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw new ImportError(`not well-formed XML: line ${valid.err.line}: ${valid.err.msg}`);
  const doc = parser.parse(xml) as Obj;
  if (doc.domain === undefined) throw new ImportError("not a libvirt domain: the root element is not <domain>");
  const notImported: string[] = [];
  const notes: string[] = [];
  Taker.sink = notImported;
  try {
    const d = Taker.of(doc.domain, "/domain");
    const raw: Obj = { apiVersion: "qcvm/v1" };
    readDomain(d, raw, notes);
    const overlay = d.child("metadata");
    if (overlay) readMetadata(overlay, raw, options.useMetadata !== false);
    d.done();
    return { raw: orderFields(raw), notImported, notes };
  } finally {
    Taker.sink = undefined;
  }
}

function readDomain(d: Taker, raw: Obj, notes: string[]): void {
  const type = d.attr("type");
  d.attr("xmlns:qemu");
  raw.name = d.childText("name");
  raw.qemu = { binary: "qemu-system-x86_64" };
  raw.machine = { accel: type === "kvm" ? "kvm" : "tcg" };
  const memory = d.child("memory");
  if (memory) {
    (raw as { memory?: Obj }).memory = { size: sizeOf(memory.text(), memory.attr("unit"), "/domain/memory") };
    memory.done();
  }
  const vcpu = d.child("vcpu");
  const count = intOf(vcpu?.text(), "/domain/vcpu");
  vcpu?.attr("placement");
  vcpu?.done();
  readMemoryBacking(d.child("memoryBacking"), raw);
  const cputune = d.child("cputune");
  if (cputune) {
    if (cputune.children("vcpupin").length > 0) {
      raw.placement = { strict: false, pinVcpus: true };
      notes.push(
        "vcpupin cpusets are this host's: qcvm pins each vCPU to its guest node's host nodes (placement.pinVcpus)",
      );
    }
    cputune.done();
  }
  const numatune = d.child("numatune");
  readOs(d.child("os"), raw);
  readFeatures(d.child("features"), raw);
  readCpu(d.child("cpu"), raw, count);
  readNumatune(numatune, raw);
  readDevices(d.child("devices"), raw, notes);
  readLaunchSecurity(d.child("launchSecurity"), raw);
  raw.placement ??= { strict: false, pinVcpus: false };
  (raw.placement as Obj).strict ??= false;
  // A domain says nothing of guest_memfd pre-allocation: qcvm's default lever choice.
  (raw.placement as Obj).private ??= "auto";
  raw.extraArgs = [];
  const cmd = d.child("qemu:commandline");
  if (cmd) {
    raw.extraArgs = cmd.children("qemu:arg").map((a) => {
      const v = a.attr("value") ?? "";
      a.done();
      return v;
    });
    cmd.done();
  }
  const conf = (raw.confidential as Obj | undefined)?.type;
  const version = conf === "tdx" ? "10.1" : conf === "sev-snp" ? "9.1" : "7.2";
  (raw.qemu as Obj).version = version;
  notes.push(`qemu.version ${version}: libvirt XML does not name one (the oldest QEMU qcvm renders this guest for)`);
}

function readMemoryBacking(mb: Taker | undefined, raw: Obj): void {
  const mem = (raw.memory ??= {}) as Obj;
  // libvirt's default backing: anonymous private RAM (memory-backend-ram).
  let backend = "ram";
  let share = false;
  if (mb) {
    const source = mb.child("source");
    const t = source?.attr("type");
    source?.done();
    if (t === "memfd" || t === "file") backend = t;
    const access = mb.child("access");
    const mode = access?.attr("mode");
    access?.done();
    share = mode === "shared";
    const huge = mb.child("hugepages");
    if (huge) {
      const page = huge.children("page")[0];
      const size = page ? sizeOf(page.attr("size"), page.attr("unit"), "/domain/memoryBacking/hugepages/page") : "2M";
      page?.done();
      mem.hugepages = size === "1G" ? "1G" : "2M";
      huge.done();
    }
    const alloc = mb.child("allocation");
    if (alloc) {
      mem.prealloc = alloc.attr("mode") === "immediate";
      const threads = intOf(alloc.attr("threads"), "/domain/memoryBacking/allocation/@threads");
      if (threads !== undefined) mem.preallocThreads = threads;
      alloc.done();
    }
    mb.done();
  }
  Object.assign(mem, { backend, share, hugepages: mem.hugepages ?? "none", prealloc: mem.prealloc ?? false });
  mem.hostNodes = [];
  mem.policy = "default";
}

function readOs(os: Taker | undefined, raw: Obj): void {
  if (!os) return;
  const type = os.child("type");
  type?.attr("arch");
  (raw.machine as Obj).type = type?.attr("machine") ?? "q35";
  type?.text();
  type?.done();
  const fw: Obj = {};
  const loader = os.child("loader");
  if (loader) {
    const kind = loader.attr("type");
    loader.attr("readonly");
    const path = loader.text();
    if (kind === "pflash") fw.pflash = { code: path };
    else fw.bios = path;
    loader.done();
  }
  const nvram = os.child("nvram");
  if (nvram) {
    if (fw.pflash) (fw.pflash as Obj).vars = nvram.text();
    nvram.done();
  }
  raw.firmware = fw;
  const boot: Obj = {};
  for (const k of ["kernel", "initrd", "cmdline"]) {
    const v = os.childText(k);
    if (v !== undefined) boot[k] = v;
  }
  raw.boot = boot;
  os.done();
}

function readFeatures(f: Taker | undefined, raw: Obj): void {
  if (!f) return;
  f.child("acpi")?.done();
  const ioapic = f.child("ioapic");
  if (ioapic) {
    const driver = ioapic.attr("driver");
    if (driver === "qemu") (raw.machine as Obj).kernelIrqchip = "split";
    if (driver === "kvm") (raw.machine as Obj).kernelIrqchip = "on";
    ioapic.done();
  }
  const smm = f.child("smm");
  if (smm) {
    (raw.machine as Obj).smm = smm.attr("state") === "on" ? "on" : "off";
    smm.done();
  }
  f.done();
}

function readCpu(cpu: Taker | undefined, raw: Obj, count: number | undefined): void {
  const out: Obj = { model: "host" };
  let nodes: Obj[] = [];
  let distances: Obj[] = [];
  if (cpu) {
    const mode = cpu.attr("mode");
    cpu.attr("check");
    cpu.attr("migratable");
    cpu.attr("match");
    const model = cpu.child("model");
    model?.attr("fallback");
    const name = model?.text();
    model?.done();
    out.model = mode === "maximum" ? "max" : mode === "custom" && name ? name : "host";
    const topo = cpu.child("topology");
    if (topo) {
      for (const k of ["sockets", "dies", "cores", "threads"]) {
        const v = intOf(topo.attr(k), `/domain/cpu/topology/@${k}`);
        if (v !== undefined) out[k] = v;
      }
      topo.done();
    }
    const numa = cpu.child("numa");
    if (numa) {
      ({ nodes, distances } = readCells(numa));
      numa.done();
    }
    cpu.done();
  }
  if (count !== undefined) out.count = count;
  raw.cpu = { model: out.model, count: out.count, sockets: 1, dies: 1, cores: count, threads: 1, ...out };
  raw.numa = { nodes, distances };
}

function readCells(numa: Taker): { nodes: Obj[]; distances: Obj[] } {
  const nodes: Obj[] = [];
  const distances: Obj[] = [];
  for (const cell of numa.children("cell")) {
    const id = intOf(cell.attr("id"), `${cell.path}/@id`) ?? nodes.length;
    nodes.push({
      cpus: idList(ids(cell.attr("cpus"), `${cell.path}/@cpus`)),
      memory: sizeOf(cell.attr("memory"), cell.attr("unit"), `${cell.path}/@memory`),
      hostNodes: [],
      policy: "default",
    });
    const dist = cell.child("distances");
    for (const s of dist?.children("sibling") ?? []) {
      const to = intOf(s.attr("id"), `${s.path}/@id`)!;
      const value = intOf(s.attr("value"), `${s.path}/@value`)!;
      s.done();
      // The local distance is QEMU's default; a profile states only the others.
      if (!(to === id && value === 10)) distances.push({ from: id, to, value });
    }
    dist?.done();
    cell.done();
  }
  return { nodes, distances };
}

function readNumatune(nt: Taker | undefined, raw: Obj): void {
  if (!nt) return;
  const numa = raw.numa as { nodes: Obj[] };
  const memory = nt.child("memory");
  const whole = memory
    ? {
        policy: POLICY_OF_MODE[memory.attr("mode") ?? "strict"],
        hostNodes: idList(ids(memory.attr("nodeset"), "/domain/numatune/memory/@nodeset")),
      }
    : undefined;
  memory?.done();
  const memnodes = nt.children("memnode").map((m) => ({ m, cell: m.attr("cellid") }));
  if (numa.nodes.length === 0 && whole) Object.assign(raw.memory as Obj, whole);
  for (const [i, node] of numa.nodes.entries()) {
    const mn = memnodes.find((x) => x.cell === String(i))?.m;
    if (mn) {
      node.policy = POLICY_OF_MODE[mn.attr("mode") ?? "strict"];
      node.hostNodes = idList(ids(mn.attr("nodeset"), `${mn.path}/@nodeset`));
    } else if (whole) Object.assign(node, whole);
  }
  for (const { m } of memnodes) m.done();
  nt.done();
}

function readDevices(dev: Taker | undefined, raw: Obj, notes: string[]): void {
  raw.disks = [];
  raw.network = { type: "none", model: "virtio-net-pci" };
  raw.serial = "none";
  if (!dev) return;
  const emulator = dev.childText("emulator");
  if (emulator) (raw.qemu as Obj).binary = emulator;
  const disks: Obj[] = [];
  for (const disk of dev.children("disk")) {
    if (disk.attr("type") !== "file" || (disk.attr("device") ?? "disk") !== "disk") {
      notes.push(`${disk.path}: only file-backed disks are imported`);
      disk.done();
      continue;
    }
    const driver = disk.child("driver");
    driver?.attr("name");
    driver?.attr("iommu");
    const format = driver?.attr("type") ?? "raw";
    driver?.done();
    const source = disk.child("source");
    const path = source?.attr("file");
    source?.done();
    const target = disk.child("target");
    target?.attr("dev");
    const bus = target?.attr("bus");
    target?.done();
    const ro = disk.has("readonly");
    disk.child("readonly")?.done();
    disks.push({ path, format, interface: bus === "scsi" ? "virtio-scsi" : "virtio-blk", readOnly: ro });
    disk.done();
  }
  raw.disks = disks;
  for (const c of dev.children("controller")) {
    const t = c.attr("type");
    const model = c.attr("model");
    if ((t === "usb" && model === "none") || (t === "scsi" && model === "virtio-scsi"))
      c.child("driver")?.attr("iommu");
    else notes.push(`${c.path}: controller ${t} ${model ?? ""} is libvirt's to add; qcvm adds what its devices need`);
    c.done();
  }
  const nics = dev.children("interface");
  if (nics.length > 0) raw.network = readInterface(nics[0]!);
  for (const extra of nics.slice(1)) {
    notes.push(`${extra.path}: a profile has one NIC; only the first is imported`);
    extra.done();
  }
  const serials = dev.children("serial");
  if (serials.length > 0) {
    const s = serials[0]!;
    const t = s.attr("type");
    const src = s.child("source");
    const path = src?.attr("path");
    src?.done();
    raw.serial = t === "file" && path ? `file:${path}` : t === "pty" ? "pty" : "none";
    if (t !== "file" && t !== "pty") notes.push(`${s.path}: serial type ${t} has no profile form; serial: none`);
    s.done();
  }
  const balloon = dev.child("memballoon");
  if (balloon) {
    if (balloon.attr("model") !== "none") notes.push("memballoon: qcvm adds no balloon device");
    balloon.done();
  }
  dev.done();
}

function readInterface(nic: Taker): Obj {
  const t = nic.attr("type");
  const out: Obj = { type: t === "user" ? "user" : "tap", model: "virtio-net-pci" };
  const mac = nic.child("mac");
  if (mac) {
    out.mac = mac.attr("address");
    mac.done();
  }
  const target = nic.child("target");
  if (target) {
    out.ifname = target.attr("dev");
    target.attr("managed");
    target.done();
  }
  const model = nic.child("model");
  if (model) {
    const m = model.attr("type") ?? "virtio";
    const plain = m === "virtio-non-transitional" || m === "virtio-transitional" ? "virtio" : m;
    out.model = Object.entries(NIC_MODELS).find(([, v]) => v === plain)?.[0] ?? plain;
    model.done();
  }
  nic.child("driver")?.attr("iommu");
  nic.done();
  return out;
}

function b64(ls: Taker, name: string): Obj | undefined {
  const v = ls.childText(name);
  return v === undefined ? undefined : { base64: v };
}

function readLaunchSecurity(ls: Taker | undefined, raw: Obj): void {
  if (!ls) {
    raw.confidential = { type: "none" };
    return;
  }
  const type = ls.attr("type");
  const c: Obj = {};
  const kernelHashes = yes(ls.attr("kernelHashes"));
  const num = (name: string) => intOf(ls.childText(name), `/domain/launchSecurity/${name}`);
  if (type === "sev" || type === "sev-snp") {
    c.cbitpos = num("cbitpos");
    c.reducedPhysBits = num("reducedPhysBits");
    const policy = ls.childText("policy");
    if (policy !== undefined) c.policy = Number(BigInt(policy));
    c.kernelHashes = kernelHashes;
  }
  if (type === "sev") {
    c.type = ((c.policy as number | undefined) ?? 0) & 0x4 ? "sev-es" : "sev";
    c.handle = num("handle");
  } else if (type === "sev-snp") {
    c.type = "sev-snp";
    c.authorKeyEnabled = yes(ls.attr("authorKey"));
    const vcek = yes(ls.attr("vcek"));
    c.vcekDisabled = vcek === undefined ? undefined : !vcek;
    c.guestVisibleWorkarounds = b64(ls, "guestVisibleWorkarounds");
    c.idBlock = b64(ls, "idBlock");
    c.idAuth = b64(ls, "idAuth");
    c.hostData = b64(ls, "hostData");
  } else if (type === "tdx") {
    c.type = "tdx";
    const policy = ls.childText("policy");
    if (policy !== undefined) {
      const bit = 1n << 28n;
      const a = BigInt(policy);
      c.septVeDisable = (a & bit) !== 0n;
      if ((a & ~bit) !== 0n) c.attributes = `0x${(a & ~bit).toString(16)}`;
    }
    c.mrconfigid = b64(ls, "mrConfigId");
    c.mrowner = b64(ls, "mrOwner");
    c.mrownerconfig = b64(ls, "mrOwnerConfig");
    const qgs = ls.child("quoteGenerationService");
    if (qgs) {
      c.quoteGenerationSocket = { type: "unix", path: qgs.attr("path") ?? "/var/run/tdx-qgs/qgs.socket" };
      qgs.done();
    }
  } else {
    throw new ImportError(`/domain/launchSecurity: type ${JSON.stringify(type)} has no qcvm form (sev, sev-snp, tdx)`);
  }
  raw.confidential = Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined));
  ls.done();
}

function readMetadata(md: Taker, raw: Obj, apply: boolean): void {
  const ours = md.child("qcvm:profile");
  if (ours) {
    const ns = ours.attr("xmlns:qcvm");
    if (ns !== QCVM_XMLNS)
      throw new ImportError(`/domain/metadata/qcvm:profile: unknown namespace ${JSON.stringify(ns)}`);
    for (const f of ours.children("qcvm:field")) {
      const path = f.attr("path");
      const unset = f.attr("unset") === "yes";
      const text = f.text();
      f.done();
      if (!path || !apply) continue;
      let value: unknown;
      try {
        value = unset ? undefined : JSON.parse(text ?? "");
      } catch {
        throw new ImportError(`${f.path}: not a JSON value, got ${JSON.stringify(text)}`);
      }
      if (!setRawPath(raw, path, value))
        throw new ImportError(`${f.path}: path ${JSON.stringify(path)} names no profile field`);
    }
    ours.done();
  }
  md.done();
}
