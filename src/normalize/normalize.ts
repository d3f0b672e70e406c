// Normalize (pure): a schema-valid WrittenProfile (src/generated/, from the schema) -> Profile. Defaults filled, sizes in bytes, id lists
// expanded, policy flags folded to numbers, relative paths resolved against the profile's
// directory. Nothing here rejects anything: inconsistencies (topology vs count, node memory vs
// total...) are left visible in the result for rules.ts to report with positions.
import { dirname, isAbsolute, resolve } from "node:path";
import { parseIdList, parseSize } from "../core/sizes.js";
import { VM_NAME } from "../core/vm-name.js";
import { parseSerial } from "../core/serial.js";
import { usesGuestMemfd, BLOB_BYTES, DEFAULT_GUEST_POLICY, foldAttributes, foldPolicy } from "../core/confidential.js";
import type {
  Confidential,
  ConfidentialType,
  Disk,
  FileOrBase64,
  GuestNumaNode,
  MemPolicy,
  NumaDistance,
  Profile,
  HugepageSize,
  SocketAddress,
} from "../core/types.js";
import type { WrittenProfile } from "../generated/written-profile.js";

/**
 * THE table of built-in defaults (lowest precedence; see docs/profile.md#precedence). A test
 * checks that examples/reference.yaml shows exactly these values, and that the schema's `default`
 * annotations agree, so the documentation cannot drift from the code.
 */
export const DEFAULTS = {
  qemu: { binary: "qemu-system-x86_64", version: "7.2" },
  machine: { type: "q35", accel: "kvm" },
  cpu: { model: "host", count: 2 },
  memory: {
    size: "1G",
    backend: "memfd",
    share: true,
    hugepages: "none",
    prealloc: false,
    hostNodes: [] as number[],
    policy: "default",
  },
  numa: { nodes: [] as unknown[], distances: [] as unknown[] },
  confidential: { type: "none" },
  firmware: {},
  boot: {},
  disks: [] as unknown[],
  network: { type: "none", model: "virtio-net-pci" },
  serial: "none",
  placement: { strict: false, pinVcpus: false, private: "auto" as const },
  extraArgs: [] as string[],
} as const;

/**
 * Defaults that depend on other fields (same precedence as DEFAULTS). Listed here, next to the
 * table, so there is one place to read them; docs/profile.md repeats this list.
 */
export const DERIVED_DEFAULTS: readonly { field: string; value: string; when: string }[] = [
  { field: "name", value: "the file name without .yaml/.yml", when: "name is not given" },
  { field: "cpu.model", value: "max", when: "machine.accel is tcg (host needs KVM)" },
  { field: "cpu.count", value: "sockets * dies * cores * threads", when: "a topology field is given" },
  { field: "cpu.sockets, dies, threads", value: "1", when: "not given" },
  { field: "cpu.cores", value: "count / (sockets * dies * threads)", when: "not given" },
  { field: "memory.share", value: "false", when: "memory.backend is ram or file (memfd: true)" },
  {
    field: "memory.prealloc",
    value: "true",
    when: "memory.hugepages is 2M or 1G and confidential.type is none, sev or sev-es (a short pool fails at start)",
  },
  { field: "memory.policy, numa.nodes[].policy", value: "bind", when: "hostNodes is given (else default)" },
  { field: "machine.kernelIrqchip", value: "split", when: "confidential.type is tdx" },
  { field: "confidential.policy", value: "0x1 sev, 0x5 sev-es, 0x30000 sev-snp", when: "not given" },
  { field: "disks[].interface", value: "virtio-blk", when: "not given" },
  { field: "disks[].readOnly", value: "false", when: "not given" },
  { field: "numa.distances", value: "the reverse direction with the same value", when: "only one direction is given" },
];

/** Blob fields (FileOrBase64) of the confidential section, with their exact sizes in bytes. */
export const BLOB_FIELDS = BLOB_BYTES;

/** Every field that holds a file path ("*" = each list item). */
const PATH_FIELDS: readonly (readonly string[])[] = [
  ["memory", "path"],
  ["firmware", "bios"],
  ["firmware", "pflash", "code"],
  ["firmware", "pflash", "vars"],
  ["firmware", "igvm"],
  ["boot", "kernel"],
  ["boot", "initrd"],
  ["disks", "*", "path"],
  ["confidential", "dhCertFile"],
  ["confidential", "sessionFile"],
  ["confidential", "quoteGenerationSocket", "path"],
  ...Object.keys(BLOB_FIELDS).map((k) => ["confidential", k, "file"]),
  ["qmp"],
  ["serial"],
];

/**
 * Rewrite every relative path in `raw` (in place) with `fn`, passing the field's path. Bare
 * `firmware.bios` names are QEMU's to look up and `serial` only holds a path after `file:` or `device:`.
 * load.ts uses it so a path written in a base profile stays relative to the base's own directory.
 */
export function mapPathFields(
  raw: Record<string, unknown>,
  fn: (path: string, field: (string | number)[]) => string,
): void {
  const visit = (node: unknown, spec: readonly string[], at: (string | number)[]): void => {
    if (node === null || typeof node !== "object") return;
    const [head, ...rest] = spec;
    if (head === "*") {
      if (Array.isArray(node)) node.forEach((item, i) => visit(item, rest, [...at, i]));
      return;
    }
    const o = node as Record<string, unknown>;
    const v = o[head!];
    if (rest.length > 0) return visit(v, rest, [...at, head!]);
    if (typeof v !== "string") return;
    const field = [...at, head!];
    if (head === "serial") {
      const m = /^(file|device):(.*)$/.exec(v);
      if (m && !isAbsolute(m[2]!)) o[head] = `${m[1]}:${fn(m[2]!, field)}`;
    } else if (head === "bios" && at.length === 1 && !v.includes("/")) {
      // `-bios OVMF.fd`: QEMU searches its firmware directory
    } else if (!isAbsolute(v)) o[head!] = fn(v, field);
  };
  for (const spec of PATH_FIELDS) visit(raw, spec, []);
}

// Policy flags, their folding, defaults and blob sizes are facts of the confidential-type table.
export {
  DEFAULT_GUEST_POLICY,
  SEV_POLICY_FLAGS,
  SNP_POLICY_FLAGS,
  SNP_POLICY_RESERVED,
  TDX_ATTRIBUTE_FLAGS,
  foldAttributes,
  foldPolicy,
} from "../core/confidential.js";

type Written<K extends keyof WrittenProfile> = NonNullable<WrittenProfile[K]>;
type WrittenBlob = Written<"confidential">["idBlock"];

/** An integer as written; the schema says `integer`, a test may hand anything else. */
function int(v: number | undefined): number | undefined {
  return Number.isInteger(v) ? v : undefined;
}

/**
 * The prealloc default. Hugepage-backed memory of a guest without guest_memfd is preallocated, as
 * libvirt does: a hugetlb pool short of pages then fails the launch at start instead of killing
 * the guest (SIGBUS) when it first touches the missing pages. SEV-SNP and TDX keep prealloc off:
 * their private memory is regular pages in guest_memfd, and prealloc would fill the shared half
 * with a second full copy (the rule memory.prealloc-guest-memfd); QEMU's mapping still reserves
 * the pool at start unless reserve=off.
 */
function hugepagePrealloc(hugepages: HugepageSize, type: ConfidentialType): boolean {
  return hugepages !== "none" && !usesGuestMemfd(type);
}

/** A name from a file name, when it is a valid one (`snp-2node.yaml` -> `snp-2node`). */
export function nameFromFile(file: string): string | undefined {
  const base = file.split(/[\\/]/).pop() ?? "";
  const name = base.replace(/\.ya?ml$/i, "");
  return VM_NAME.test(name) ? name : undefined;
}

function resolvePath(dir: string, p: string | undefined): string | undefined {
  if (p === undefined) return undefined;
  return isAbsolute(p) ? p : resolve(dir, p);
}

function weightsOf(v: Record<string, number | undefined> | undefined): Record<number, number> | undefined {
  if (v === undefined) return undefined;
  const out: Record<number, number> = {};
  for (const [k, w] of Object.entries(v)) out[Number(k)] = Number(w);
  return out;
}

function policyOf(written: MemPolicy | undefined, hostNodes: number[]): MemPolicy {
  return written ?? (hostNodes.length > 0 ? "bind" : "default");
}

function fileOrBase64(dir: string, v: WrittenBlob): FileOrBase64 | undefined {
  if (v === undefined) return undefined;
  if ("base64" in v && typeof v.base64 === "string") return { base64: v.base64.replace(/\s+/g, "") };
  if ("file" in v && typeof v.file === "string") return { file: resolvePath(dir, v.file) };
  return undefined;
}

/** Topology: count alone, topology alone, or both (then a mismatch is left for rules.ts). */
export function reconcileTopology(cpu: Written<"cpu">): Profile["cpu"] {
  const sockets = int(cpu.sockets) ?? 1;
  const dies = int(cpu.dies) ?? 1;
  const threads = int(cpu.threads) ?? 1;
  const given = int(cpu.count);
  const hasTopology = (["sockets", "dies", "cores", "threads"] as const).some((k) => cpu[k] !== undefined);
  let cores = int(cpu.cores);
  let count: number;
  if (given !== undefined) {
    count = given;
    if (cores === undefined) cores = Math.max(1, Math.floor(given / (sockets * dies * threads)));
  } else if (hasTopology) {
    cores ??= 1;
    count = sockets * dies * cores * threads;
  } else {
    count = DEFAULTS.cpu.count;
    cores = count;
  }
  return { model: cpu.model ?? DEFAULTS.cpu.model, count, sockets, dies, cores, threads };
}

/** A schema-valid profile -> Profile. `file` is the profile's path: names and relative paths. The
 *  apiVersion the schema requires is not read: the result is qcvm/v1 by construction. */
export function normalizeProfile(raw: Partial<WrittenProfile>, file: string): Profile {
  const abs = resolve(file);
  const dir = dirname(abs);
  const q = raw.qemu ?? {};
  const m = raw.machine ?? {};
  const c = raw.cpu ?? {};
  const mem = raw.memory ?? {};
  const numa = raw.numa ?? {};
  const conf = raw.confidential ?? {};
  const fw = raw.firmware ?? {};
  const boot = raw.boot ?? {};
  const net = raw.network ?? {};
  const pl = raw.placement ?? {};

  const accel = m.accel ?? DEFAULTS.machine.accel;
  const type = conf.type ?? DEFAULTS.confidential.type;

  const cpu = reconcileTopology(c);
  if (c.model === undefined && accel === "tcg") cpu.model = "max";

  const memory = normalizeMemory(mem, type, dir);
  const { nodes, distances } = normalizeNuma(numa);

  const confidential = normalizeConfidential(conf, type, dir);

  const machine: Profile["machine"] = {
    type: m.type ?? DEFAULTS.machine.type,
    accel,
  };
  const irq = m.kernelIrqchip ?? (type === "tdx" ? "split" : undefined);
  if (irq) machine.kernelIrqchip = irq;
  if (m.smm !== undefined) machine.smm = m.smm;
  if (m.pic !== undefined) machine.pic = m.pic;

  const firmware = normalizeFirmware(fw, dir);
  const bootOut = normalizeBoot(boot, dir);

  const disks: Disk[] = (raw.disks ?? []).map((d) => ({
    path: resolvePath(dir, d.path)!,
    format: d.format,
    interface: d.interface ?? "virtio-blk",
    readOnly: d.readOnly ?? false,
  }));

  const network: Profile["network"] = {
    type: net.type ?? DEFAULTS.network.type,
    model: net.model ?? DEFAULTS.network.model,
  };
  if (net.ifname !== undefined) network.ifname = net.ifname;
  if (net.mac !== undefined) network.mac = net.mac;

  const serial = parseSerial(raw.serial ?? DEFAULTS.serial);
  if (serial.kind === "file" || serial.kind === "device") serial.path = resolvePath(dir, serial.path)!;

  const profile: Profile = {
    apiVersion: "qcvm/v1",
    name: raw.name ?? nameFromFile(abs) ?? "",
    file: abs,
    qemu: {
      binary: q.binary ?? DEFAULTS.qemu.binary,
      version: q.version ?? DEFAULTS.qemu.version,
      ...(q.allowControlArgs === true ? { allowControlArgs: true as const } : {}),
      ...(q.user !== undefined ? { user: q.user } : {}),
    },
    machine,
    cpu,
    memory,
    numa: { nodes, distances },
    confidential,
    firmware,
    boot: bootOut,
    disks,
    network,
    serial,
    placement: {
      strict: pl.strict ?? DEFAULTS.placement.strict,
      pinVcpus: pl.pinVcpus ?? DEFAULTS.placement.pinVcpus,
      private: pl.private ?? DEFAULTS.placement.private,
    },
    extraArgs: raw.extraArgs ?? [],
  };
  if (raw.qmp !== undefined) profile.qmp = resolvePath(dir, raw.qmp);
  return dropUndefined(profile);
}

/** Firmware paths resolved; a bare -bios name stays QEMU's to look up. */
function normalizeFirmware(fw: Written<"firmware">, dir: string): Profile["firmware"] {
  const firmware: Profile["firmware"] = {};
  const bios = fw.bios;
  // A bare name (no slash) is QEMU's to find in its firmware directory, as with `-bios OVMF.fd`.
  if (bios !== undefined) firmware.bios = bios.includes("/") ? resolvePath(dir, bios) : bios;
  if (fw.pflash !== undefined) {
    firmware.pflash = { code: resolvePath(dir, fw.pflash.code)! };
    if (fw.pflash.vars !== undefined) firmware.pflash.vars = resolvePath(dir, fw.pflash.vars);
  }
  if (fw.igvm !== undefined) firmware.igvm = resolvePath(dir, fw.igvm);
  return firmware;
}

/** Direct kernel boot: kernel and initrd paths resolved. */
function normalizeBoot(boot: Written<"boot">, dir: string): Profile["boot"] {
  const bootOut: Profile["boot"] = {};
  if (boot.kernel !== undefined) bootOut.kernel = resolvePath(dir, boot.kernel);
  if (boot.initrd !== undefined) bootOut.initrd = resolvePath(dir, boot.initrd);
  if (boot.cmdline !== undefined) bootOut.cmdline = boot.cmdline;
  return bootOut;
}

/** The memory section: size in bytes, share and prealloc defaults, placement. */
function normalizeMemory(mem: Written<"memory">, type: ConfidentialType, dir: string): Profile["memory"] {
  const backend = mem.backend ?? DEFAULTS.memory.backend;
  const memHostNodes = parseIdList(mem.hostNodes) ?? [];
  const hugepages = mem.hugepages ?? DEFAULTS.memory.hugepages;
  return {
    sizeBytes: parseSize(mem.size ?? DEFAULTS.memory.size) ?? 0,
    backend,
    path: resolvePath(dir, mem.path),
    share: mem.share ?? backend === "memfd",
    hugepages,
    prealloc: mem.prealloc ?? hugepagePrealloc(hugepages, type),
    preallocThreads: int(mem.preallocThreads),
    reserve: mem.reserve,
    hostNodes: memHostNodes,
    policy: policyOf(mem.policy, memHostNodes),
    weights: weightsOf(mem.weights),
  };
}

/** Guest NUMA nodes (ids in order), and distances with each missing reverse direction added. */
function normalizeNuma(numa: Written<"numa">): Profile["numa"] {
  const nodes: GuestNumaNode[] = (numa.nodes ?? []).map((n, id) => {
    const hostNodes = parseIdList(n.hostNodes) ?? [];
    return {
      id,
      cpus: parseIdList(n.cpus) ?? [],
      memoryBytes: parseSize(n.memory) ?? 0,
      hostNodes,
      policy: policyOf(n.policy, hostNodes),
      weights: weightsOf(n.weights),
    };
  });

  const written: NumaDistance[] = (numa.distances ?? []).map((d) => ({
    from: int(d.from) ?? 0,
    to: int(d.to) ?? 0,
    value: int(d.value) ?? 0,
  }));
  const distances = [...written];
  const directions = new Set(written.map((d) => `${d.from}>${d.to}`));
  for (const d of written) {
    if (d.from !== d.to && !directions.has(`${d.to}>${d.from}`))
      distances.push({ from: d.to, to: d.from, value: d.value });
  }
  return { nodes, distances };
}

/** The confidential section: the variant of its type, with only that QEMU object's properties
 *  (a property of another type is the rules' to report, from what was written); policy and
 *  attributes folded, paths resolved, blobs as written. Unset fields are dropped by dropUndefined. */
function normalizeConfidential(conf: Written<"confidential">, type: ConfidentialType, dir: string): Confidential {
  switch (type) {
    case "none":
      return { type };
    case "sev":
    case "sev-es":
      return {
        type,
        ...sevCommon(conf, type),
        handle: int(conf.handle),
        dhCertFile: resolvePath(dir, conf.dhCertFile),
        sessionFile: resolvePath(dir, conf.sessionFile),
        kernelHashes: conf.kernelHashes,
        legacyVmType: conf.legacyVmType,
      };
    case "sev-snp":
      return {
        type,
        ...sevCommon(conf, type),
        kernelHashes: conf.kernelHashes,
        guestVisibleWorkarounds: fileOrBase64(dir, conf.guestVisibleWorkarounds),
        idBlock: fileOrBase64(dir, conf.idBlock),
        idAuth: fileOrBase64(dir, conf.idAuth),
        authorKeyEnabled: conf.authorKeyEnabled,
        hostData: fileOrBase64(dir, conf.hostData),
        vcekDisabled: conf.vcekDisabled,
      };
    case "tdx":
      return {
        type,
        attributes: conf.attributes !== undefined ? foldAttributes(conf.attributes) : undefined,
        septVeDisable: conf.septVeDisable,
        mrconfigid: fileOrBase64(dir, conf.mrconfigid),
        mrowner: fileOrBase64(dir, conf.mrowner),
        mrownerconfig: fileOrBase64(dir, conf.mrownerconfig),
        quoteGenerationSocket: socketOf(dir, conf.quoteGenerationSocket),
      };
  }
}

/** What sev-guest and sev-snp-guest share, in the order the section is written out. */
function sevCommon(conf: Written<"confidential">, type: "sev" | "sev-es" | "sev-snp") {
  return {
    cbitpos: int(conf.cbitpos),
    reducedPhysBits: int(conf.reducedPhysBits),
    policy: conf.policy !== undefined ? foldPolicy(conf.policy, type) : DEFAULT_GUEST_POLICY[type],
  };
}

function socketOf(dir: string, s: Written<"confidential">["quoteGenerationSocket"]): SocketAddress | undefined {
  if (s === undefined) return undefined;
  return s.type === "unix"
    ? { type: "unix", path: resolvePath(dir, s.path) }
    : { type: "vsock", cid: s.cid, port: s.port };
}

/** Optional fields absent rather than `undefined`: stable snapshots and `--fill` output. */
function dropUndefined<T>(v: T): T {
  if (typeof v !== "object" || v === null) return v;
  if (Array.isArray(v)) {
    const arr: unknown[] = new Array<unknown>(v.length);
    for (let i = 0; i < v.length; i++) arr[i] = dropUndefined(v[i]);
    return arr as T;
  }
  // Object.keys and an index loop, not Object.entries: no [key, value] pair per field (this copy of
  // every normalized profile was a visible share of a 1,000-profile validate).
  const src = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  const keys = Object.keys(src);
  for (let i = 0; i < keys.length; i++) {
    const x = src[keys[i]!];
    if (x !== undefined) out[keys[i]!] = dropUndefined(x);
  }
  return out as T;
}
