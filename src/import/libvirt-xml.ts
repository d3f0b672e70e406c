// Reading libvirt domain XML for `qcvm import`: the parser (lists, no entity expansion), Taker (which
// consumes what it maps, so the leftovers can be reported by XML path) and libvirt's value forms
// (scaled sizes, cpusets, integers, yes/no). import/libvirt.ts maps the elements to profile fields.
import { XMLParser } from "fast-xml-parser";
import { formatSize, parseIdList } from "../core/sizes.js";

export class ImportError extends Error {}

export type Obj = Record<string, unknown>;

/** Elements that may repeat: always parsed as lists, so one and many read the same. */
const LISTS = new Set([
  "cell",
  "sibling",
  "memnode",
  "vcpupin",
  "disk",
  "controller",
  "interface",
  "serial",
  "qemu:arg",
  "qcvm:field",
  "page",
]);

export const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  textNodeName: "#text",
  parseTagValue: false,
  parseAttributeValue: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  trimValues: true,
  // Entities libvirt does not use are left as text, never expanded into more input.
  processEntities: true,
  htmlEntities: false,
  isArray: (name) => LISTS.has(name),
});

/** Attribute and text values are strings (parseTagValue/parseAttributeValue off). */
function scalar(v: unknown): string | undefined {
  return typeof v === "string" ? v : typeof v === "number" || typeof v === "boolean" ? String(v) : undefined;
}

/** Reads one element, removing what it reads; `rest()` is what nobody took. */
export class Taker {
  constructor(
    private readonly node: Obj,
    readonly path: string,
  ) {}

  static of(v: unknown, path: string): Taker {
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return new Taker(v as Obj, path);
    // Text-only element: <name>x</name> parses as "x", <acpi/> as "".
    return new Taker(v === "" || v === undefined ? {} : { "#text": v }, path);
  }

  attr(name: string): string | undefined {
    const v = this.node[`@_${name}`];
    delete this.node[`@_${name}`];
    return scalar(v);
  }

  text(): string | undefined {
    const v = this.node["#text"];
    delete this.node["#text"];
    return scalar(v);
  }

  has(name: string): boolean {
    return this.node[name] !== undefined;
  }

  child(name: string): Taker | undefined {
    const v = this.node[name];
    if (v === undefined) return undefined;
    const one: unknown = Array.isArray(v) ? v[0] : v;
    if (Array.isArray(v) && v.length > 1) this.node[name] = v.slice(1);
    else delete this.node[name];
    return Taker.of(one, `${this.path}/${name}`);
  }

  children(name: string): Taker[] {
    const v = this.node[name];
    delete this.node[name];
    if (v === undefined) return [];
    return (Array.isArray(v) ? v : [v]).map((x, i) => Taker.of(x, `${this.path}/${name}[${i + 1}]`));
  }

  /** Take a child element's text. */
  childText(name: string): string | undefined {
    const c = this.child(name);
    if (!c) return undefined;
    const t = c.text();
    c.done();
    return t;
  }

  /** Report anything left in this element (attributes, text, child elements) as not imported. */
  done(): void {
    Taker.sink?.push(...leftoverPaths(this.node, this.path));
    for (const k of Object.keys(this.node)) delete this.node[k];
  }

  static sink: string[] | undefined;
}

function leftoverPaths(node: Obj, path: string): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(node)) {
    if (k.startsWith("@_")) out.push(`${path}/@${k.slice(2)}`);
    else if (k === "#text") out.push(`${path}/text()`);
    else {
      const list = Array.isArray(v) ? v : [v];
      for (const [i, x] of list.entries()) {
        const at = `${path}/${k}${list.length > 1 ? `[${i + 1}]` : ""}`;
        const inner = typeof x === "object" && x !== null ? leftoverPaths(x as Obj, at) : [];
        // An element with nothing inside is reported as itself.
        out.push(...(inner.length > 0 ? inner : [at]));
      }
    }
  }
  return out;
}

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  bytes: 1,
  KB: 1e3,
  k: 2 ** 10,
  KiB: 2 ** 10,
  MB: 1e6,
  M: 2 ** 20,
  MiB: 2 ** 20,
  GB: 1e9,
  G: 2 ** 30,
  GiB: 2 ** 30,
  TB: 1e12,
  T: 2 ** 40,
  TiB: 2 ** 40,
};

/** A libvirt scaled integer (unit default KiB) -> a profile size ("512M"). */
export function sizeOf(value: string | undefined, unit: string | undefined, where: string): string {
  const mult = UNIT_BYTES[unit ?? "KiB"];
  const n = Number(value);
  if (mult === undefined || !Number.isSafeInteger(n))
    throw new ImportError(`${where}: not a size libvirt writes, got ${JSON.stringify(`${value} ${unit ?? ""}`)}`);
  return formatSize(n * mult);
}

export function ids(text: string | undefined, where: string): number[] {
  // libvirt's cpusets also allow exclusions (0-3,^2), which a profile's lists do not.
  const parts = (text ?? "").split(",").map((s) => s.trim());
  const excluded = new Set(parts.filter((s) => s.startsWith("^")).flatMap((s) => parseIdList(s.slice(1)) ?? []));
  const list = parseIdList(parts.filter((s) => !s.startsWith("^")).join(","));
  if (!list) throw new ImportError(`${where}: not a list of ids, got ${JSON.stringify(text)}`);
  return list.filter((i) => !excluded.has(i));
}

export function intOf(text: string | undefined, where: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new ImportError(`${where}: not an integer, got ${JSON.stringify(text)}`);
  return n;
}

export function yes(v: string | undefined): boolean | undefined {
  return v === undefined ? undefined : v === "yes" || v === "on";
}
