// Kernel-style integer lists ("0-3,8,10-11"): cpulists and nodelists, parsed and formatted.

/** Parse a kernel cpulist/nodelist such as "0-3,8,10-11" (empty string -> []). */
export function parseList(text: string | undefined): number[] {
  const out: number[] = [];
  if (!text) return out;
  for (const part of text.trim().split(",")) {
    if (!part) continue;
    const [a, b] = part.split("-");
    const lo = Number(a);
    const hi = b === undefined ? lo : Number(b);
    if (!Number.isInteger(lo) || !Number.isInteger(hi)) continue;
    for (let i = lo; i <= hi; i++) out.push(i);
  }
  return out;
}

/** Format a sorted list of ints as a kernel-style list: [0,1,2,5] -> "0-2,5". */
export function formatList(values: readonly number[]): string {
  const sorted = [...new Set(values)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}
