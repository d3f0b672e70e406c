// Sizes and id lists as profiles write them. Units are binary, as in QEMU (`-m 1G` is 2^30 bytes):
// K/KiB = 2^10, M/MiB = 2^20, G/GiB = 2^30, T/TiB = 2^40; B or no unit = bytes.

const UNITS: Record<string, number> = {
  "": 1,
  B: 1,
  K: 2 ** 10,
  KiB: 2 ** 10,
  M: 2 ** 20,
  MiB: 2 ** 20,
  G: 2 ** 30,
  GiB: 2 ** 30,
  T: 2 ** 40,
  TiB: 2 ** 40,
};

const SIZE_RE = /^([0-9]+) ?([KMGT]|[KMGT]iB|B)?$/;

/** QEMU rounds -m up to a multiple of 8 KiB (system/vl.c set_memory_options: `QEMU_ALIGN_UP(sz,
 *  8192)`, unchanged from QEMU 2.x through 10.x), and treats `-m 0` as its
 *  default size. The memory backends keep the size as written, so QEMU then refuses a NUMA guest
 *  ("total memory for NUMA nodes ... should equal RAM size"; QEMU 7.2 here, -m 1000000B with two
 *  500000-byte nodes: "(0xf4240) should equal RAM size (0xf6000)"). qcvm refuses such sizes instead,
 *  for memory.size and for every node (a node of 8 KiB multiples always adds up). */
export const QEMU_RAM_ALIGN = 8192;
/** The most guest RAM qcvm accepts: 4 PiB, x86-64's 52-bit physical address space. */
export const MAX_GUEST_BYTES = 2 ** 52;

/** What is wrong with a guest memory size as written, or undefined when QEMU takes it as is. */
export function sizeProblem(value: unknown): { message: string; hint?: string } | undefined {
  if (typeof value === "number" && !Number.isSafeInteger(value))
    return { message: "is beyond 2^53 and cannot be read exactly", hint: "write it with a unit: e.g. 64G" };
  const bytes = parseSize(value);
  if (bytes === undefined) {
    if (typeof value === "string" && SIZE_RE.test(value.trim()))
      return {
        message: `is more than ${formatSize(MAX_GUEST_BYTES)}, the most an x86-64 guest can address`,
        hint: "is the unit right?",
      };
    return undefined; // not a size at all: the schema says so
  }
  if (bytes === 0) return { message: "must be more than 0 (QEMU would silently use its default for -m 0)" };
  if (bytes > MAX_GUEST_BYTES)
    return {
      message: `is more than ${formatSize(MAX_GUEST_BYTES)}, the most an x86-64 guest can address (52-bit physical addresses)`,
    };
  if (bytes % QEMU_RAM_ALIGN !== 0) {
    const down = bytes - (bytes % QEMU_RAM_ALIGN);
    const up = down + QEMU_RAM_ALIGN;
    return {
      message: "must be a multiple of 8K: QEMU rounds guest memory up to 8 KiB, and the NUMA nodes no longer add up",
      hint:
        down > 0
          ? `nearest valid sizes: ${formatSize(down)} or ${formatSize(up)}`
          : `nearest valid size: ${formatSize(up)}`,
    };
  }
  return undefined;
}

/** Bytes for a size as written (number or "512M"); undefined when it is not a size. */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== "string") return undefined;
  const m = SIZE_RE.exec(value.trim());
  if (!m) return undefined;
  const bytes = Number(m[1]) * UNITS[m[2] ?? ""]!;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Shortest exact form: 1073741824 -> "1G", 1536 MiB -> "1536M", odd byte counts stay numbers. */
export function formatSize(bytes: number): string {
  for (const [unit, mult] of [
    ["T", 2 ** 40],
    ["G", 2 ** 30],
    ["M", 2 ** 20],
    ["K", 2 ** 10],
  ] as const) {
    if (bytes >= mult && bytes % mult === 0) return `${bytes / mult}${unit}`;
  }
  return String(bytes);
}

export const HUGEPAGE_BYTES = { "2M": 2 ** 21, "1G": 2 ** 30 } as const;

/** More ids than any list may hold: QEMU's vCPU and host-node ids are far below it. */
export const MAX_IDS = 65536;

/** Ids as written ("0-3,6", [0, 1], 3) -> sorted list in written order; undefined when malformed. */
export function parseIdList(value: unknown): number[] | undefined {
  if (typeof value === "number") return Number.isInteger(value) && value >= 0 ? [value] : undefined;
  if (Array.isArray(value)) {
    return value.every((v) => typeof v === "number" && Number.isInteger(v) && v >= 0) ? (value as number[]) : undefined;
  }
  if (typeof value !== "string") return undefined;
  const out: number[] = [];
  const text = value.trim();
  // Bounded: "0-65536" repeated through a 1 MiB file would otherwise expand to billions of ids.
  let total = 0;
  if (text === "") return out;
  for (const part of text.split(",")) {
    const m = /^\s*([0-9]+)(?:-([0-9]+))?\s*$/.exec(part);
    if (!m) return undefined;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo || hi - lo > MAX_IDS) return undefined;
    total += hi - lo + 1;
    if (total > MAX_IDS) return undefined;
    for (let i = lo; i <= hi; i++) out.push(i);
  }
  return out;
}
