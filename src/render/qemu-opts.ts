// Building QEMU option strings. QEMU's `key=value,...` syntax (QemuOpts and keyval, used by
// -machine, -object, -blockdev, -device, -netdev, -chardev, -numa, -name, -qmp unix:) ends a value
// at a single comma and reads `,,` as a literal comma, so every value is escaped here and nowhere
// else: a profile value like `a,share=off` stays one value and can never add an option. Keys are
// always qcvm's own constants; IDs (mem0, tc0, snp0...) are generated, never taken from profile text.
import { formatList } from "../core/lists.js";

/** A value QEMU's command-line syntax cannot carry. */
export class QemuValueError extends Error {
  constructor(
    /** Index of the offending entry in formatOpts()'s list; -1 for the head. */
    readonly index: number,
    readonly value: string,
    readonly reason: string,
  ) {
    super(`${JSON.stringify(value)}: ${reason}`);
    this.name = "QemuValueError";
  }
}

/** A list of small non-negative integers (host nodes, vCPUs): rendered as repeated keys with ranges. */
export interface IntList {
  list: readonly number[];
}

export type OptValue = string | number | boolean | IntList;

/** [key, value]; an undefined value leaves the key out. */
export type OptEntry = readonly [key: string, value: OptValue | undefined];

const KEY = /^[a-z][a-z0-9_.-]*$/;

/** Why a string cannot be a value in `key=value` syntax, or undefined when it can. */
export function unsafeValueReason(value: string): string | undefined {
  if (value.includes("\0")) return "contains a NUL byte, which no command-line argument can carry";
  // QEMU would take a newline literally, but a value that spans lines is never what a profile
  // meant, and it would make the rendered shell command misleading to read.
  if (/[\n\r]/.test(value)) return "contains a line break";
  return undefined;
}

/** Escape one value for QEMU `key=value` syntax: `,` -> `,,`. Throws QemuValueError when impossible. */
export function escapeOptValue(value: string, index = 0): string {
  const reason = unsafeValueReason(value);
  if (reason) throw new QemuValueError(index, value, reason);
  return value.replaceAll(",", ",,");
}

function formatValue(value: Exclude<OptValue, IntList>, index: number): string {
  if (typeof value === "boolean") return value ? "on" : "off";
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Error(`qemu-opts: not an integer: ${value}`);
    return String(value);
  }
  return escapeOptValue(value, index);
}

/**
 * `head,key=value,...`: head is the implied first value (machine type, object type, chardev
 * backend) or undefined. Lists become repeated keys with ranges (`cpus=0-1,cpus=4`): -numa and
 * qemu-system's -object both go through QemuOpts and the OptsVisitor (hw/core/numa.c parse_numa,
 * system/vl.c object_option_parse), which gathers repeated keys into a uint16List and expands
 * `a-b` ranges (QEMU 7.2: `cpu-affinity=1,cpu-affinity=0` reads back [0,1]). keyval, used by
 * -blockdev and by -object in the tools, would keep only the last one (`key.0=`, `key.1=` there):
 * never pass a list to an option parsed that way.
 */
export function formatOpts(head: string | undefined, entries: readonly OptEntry[]): string {
  const parts: string[] = [];
  if (head !== undefined) parts.push(escapeOptValue(head, -1));
  entries.forEach(([key, value], index) => {
    if (!KEY.test(key)) throw new Error(`qemu-opts: bad key ${JSON.stringify(key)}`);
    if (value === undefined) return;
    if (typeof value === "object") {
      if (value.list.length === 0) throw new Error(`qemu-opts: empty list for ${key}`);
      for (const range of formatList(value.list).split(",")) parts.push(`${key}=${range}`);
      return;
    }
    parts.push(`${key}=${formatValue(value, index)}`);
  });
  return parts.join(",");
}

/** Hex for numeric flag words (guest policy, TD attributes), as AMD's and Intel's docs write them. */
export function hex(n: number | bigint): string {
  if (typeof n === "number" && !Number.isSafeInteger(n)) throw new Error(`qemu-opts: not an integer: ${n}`);
  if (n < 0) throw new Error(`qemu-opts: negative: ${n}`);
  return `0x${n.toString(16)}`;
}

/** JSON values accepted in the JSON `-object` form. */
export type JsonValue = string | number | bigint | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** JSON text where a bigint is written as an exact integer (TD attributes use bit 63). */
function stringifyJson(v: JsonValue): string {
  if (typeof v === "bigint") return v.toString();
  if (Array.isArray(v)) return `[${v.map(stringifyJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}:${stringifyJson(x)}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

/**
 * The JSON `-object '{"qom-type":...}'` form, for properties whose type is a structure (a
 * SocketAddress) that `key=value` cannot express. Types must match QEMU's exactly here: integers
 * as numbers, booleans as booleans (the key=value form parses strings instead).
 */
export function formatJsonObject(qomType: string, id: string, props: Record<string, JsonValue | undefined>): string {
  const obj: Record<string, JsonValue> = { "qom-type": qomType, id };
  for (const [k, v] of Object.entries(props)) if (v !== undefined) obj[k] = v;
  const text = stringifyJson(obj);
  if (text.includes("\\u0000")) throw new QemuValueError(0, text, "contains a NUL byte");
  return text;
}
