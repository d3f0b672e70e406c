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

/** Ids as written ("0-3,6", [0, 1], 3) -> sorted list in written order; undefined when malformed. */
export function parseIdList(value: unknown): number[] | undefined {
  if (typeof value === "number") return Number.isInteger(value) && value >= 0 ? [value] : undefined;
  if (Array.isArray(value)) {
    return value.every((v) => typeof v === "number" && Number.isInteger(v) && v >= 0) ? (value as number[]) : undefined;
  }
  if (typeof value !== "string") return undefined;
  const out: number[] = [];
  const text = value.trim();
  if (text === "") return out;
  for (const part of text.split(",")) {
    const m = /^\s*([0-9]+)(?:-([0-9]+))?\s*$/.exec(part);
    if (!m) return undefined;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo || hi - lo > 65536) return undefined;
    for (let i = lo; i <= hi; i++) out.push(i);
  }
  return out;
}
