// Dotted version comparison, the one used for QEMU, Linux and numactl gates alike.

/** Compare dotted versions: <0, 0, >0. "9.1" == "9.1.0". */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split(".").map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function versionAtLeast(version: string, since: string): boolean {
  return compareVersions(version, since) >= 0;
}
