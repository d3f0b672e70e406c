// The way back from a normalized Profile to what a user would write (RawProfile): every field
// explicit, sizes in their shortest exact unit ("4G"), lists as YAML lists. normalize(raw(p)) is p
// again (test/export-libvirt.test.ts checks it on every shipped profile). Export uses it to find
// what a libvirt domain cannot carry (the fields that differ after a round trip), import to print
// the profile it rebuilt. Pure: no filesystem.
import { formatSize } from "../core/sizes.js";
import { formatList } from "../core/lists.js";
import type { Confidential, FileOrBase64, Profile, RawProfile, SevGuest, SevSnpGuest } from "../core/types.js";
import { serialText } from "../core/serial.js";
import { formatDotted, parseDotted, setValueAt } from "../core/field-path.js";

type Obj = Record<string, unknown>;

/** Id lists as a profile writes them: "0-3,6"; [] when empty. */
export function idList(ids: readonly number[]): string | number[] {
  return ids.length > 0 ? formatList(ids) : [];
}

/** The order fields appear in examples/reference.yaml, for a profile a person reads. */
const FIELD_ORDER = [
  "apiVersion",
  "name",
  "qemu",
  "machine",
  "cpu",
  "memory",
  "numa",
  "confidential",
  "firmware",
  "boot",
  "disks",
  "network",
  "serial",
  "qmp",
  "placement",
  "extraArgs",
];

/** Top-level fields in reference order (unknown ones last). */
export function orderFields(raw: RawProfile): RawProfile {
  const rank = (k: string) => (FIELD_ORDER.includes(k) ? FIELD_ORDER.indexOf(k) : FIELD_ORDER.length);
  return Object.fromEntries(Object.entries(raw).sort(([a], [b]) => rank(a) - rank(b)));
}

/** Leave out undefined values, so the YAML shows only what is set. */
function compact(o: Obj): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}

function blob(v: FileOrBase64 | undefined): Obj | undefined {
  if (!v) return undefined;
  return v.base64 !== undefined ? { base64: v.base64 } : { file: v.file };
}

function weights(w: Record<number, number> | undefined): Obj | undefined {
  if (!w) return undefined;
  return Object.fromEntries(Object.entries(w).map(([k, v]) => [k, v]));
}

/** The section as written: its variant's fields, in the order examples/reference.yaml has them. */
function confidentialToRaw(c: Confidential): Obj {
  switch (c.type) {
    case "none":
      return { type: c.type };
    case "sev":
    case "sev-es":
      return compact({
        ...sevCommonToRaw(c),
        handle: c.handle,
        dhCertFile: c.dhCertFile,
        sessionFile: c.sessionFile,
        kernelHashes: c.kernelHashes,
        legacyVmType: c.legacyVmType,
      });
    case "sev-snp":
      return compact({
        ...sevCommonToRaw(c),
        kernelHashes: c.kernelHashes,
        guestVisibleWorkarounds: blob(c.guestVisibleWorkarounds),
        idBlock: blob(c.idBlock),
        idAuth: blob(c.idAuth),
        authorKeyEnabled: c.authorKeyEnabled,
        hostData: blob(c.hostData),
        vcekDisabled: c.vcekDisabled,
      });
    case "tdx":
      return compact({
        type: c.type,
        // 64-bit: bit 63 does not fit a JS number, the schema takes a hex string.
        attributes: c.attributes !== undefined ? `0x${c.attributes.toString(16)}` : undefined,
        septVeDisable: c.septVeDisable,
        mrconfigid: blob(c.mrconfigid),
        mrowner: blob(c.mrowner),
        mrownerconfig: blob(c.mrownerconfig),
        quoteGenerationSocket: c.quoteGenerationSocket ? compact({ ...c.quoteGenerationSocket }) : undefined,
      });
  }
}

function sevCommonToRaw(c: SevGuest | SevSnpGuest): Obj {
  return { type: c.type, cbitpos: c.cbitpos, reducedPhysBits: c.reducedPhysBits, policy: c.policy };
}

/** A RawProfile that normalizes back to `p` (every default written out). */
export function profileToRaw(p: Profile): RawProfile {
  const m = p.memory;
  return compact({
    apiVersion: p.apiVersion,
    name: p.name,
    qemu: { binary: p.qemu.binary, version: p.qemu.version },
    machine: compact({ ...p.machine }),
    cpu: {
      model: p.cpu.model,
      count: p.cpu.count,
      sockets: p.cpu.sockets,
      dies: p.cpu.dies,
      cores: p.cpu.cores,
      threads: p.cpu.threads,
    },
    memory: compact({
      size: formatSize(m.sizeBytes),
      backend: m.backend,
      path: m.path,
      share: m.share,
      hugepages: m.hugepages,
      prealloc: m.prealloc,
      preallocThreads: m.preallocThreads,
      reserve: m.reserve,
      hostNodes: idList(m.hostNodes),
      policy: m.policy,
      weights: weights(m.weights),
    }),
    numa: {
      nodes: p.numa.nodes.map((n) =>
        compact({
          cpus: idList(n.cpus),
          memory: formatSize(n.memoryBytes),
          hostNodes: idList(n.hostNodes),
          policy: n.policy,
          weights: weights(n.weights),
        }),
      ),
      distances: p.numa.distances.map((d) => ({ from: d.from, to: d.to, value: d.value })),
    },
    confidential: confidentialToRaw(p.confidential),
    firmware: compact({
      bios: p.firmware.bios,
      pflash: p.firmware.pflash ? compact({ ...p.firmware.pflash }) : undefined,
      igvm: p.firmware.igvm,
    }),
    boot: compact({ ...p.boot }),
    disks: p.disks.map((d) => ({ ...d })),
    network: compact({ ...p.network }),
    serial: serialText(p.serial),
    qmp: p.qmp,
    placement: { ...p.placement },
    extraArgs: [...p.extraArgs],
  });
}

/** A leaf is anything but a plain object with named keys or a list of objects. */
function isBranch(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0 && v.every((x) => typeof x === "object" && x !== null);
  if (typeof v !== "object" || v === null) return false;
  const keys = Object.keys(v);
  // Weights ({0: 3, 1: 1}) are keyed by host node: one value, not fields.
  return keys.length > 0 && !keys.every((k) => /^[0-9]+$/.test(k));
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Where two raw profiles differ, leaf by leaf: path (`numa.nodes.0.policy`) -> `want`'s value (undefined: absent). */
export function diffRaw(want: unknown, got: unknown, at: string[] = []): Array<{ path: string; value: unknown }> {
  if (isBranch(want) && isBranch(got) && Array.isArray(want) === Array.isArray(got)) {
    const w = want as Obj;
    const g = got as Obj;
    const keys = [...new Set([...Object.keys(w), ...Object.keys(g)])];
    if (Array.isArray(want) && (want as unknown[]).length !== (got as unknown[]).length)
      return [{ path: formatDotted(at), value: want }];
    return keys.flatMap((k) => diffRaw(w[k], g[k], [...at, k]));
  }
  return same(want, got) ? [] : [{ path: formatDotted(at), value: want }];
}

/** Set (or, for undefined, delete) a dotted path in a raw profile, creating objects on the way;
 *  false when the path is refused (it names a prototype). */
export function setRawPath(raw: Obj, path: string, value: unknown): boolean {
  return setValueAt(raw, parseDotted(path), value);
}
