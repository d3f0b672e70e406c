// Layout of a QEMU argv for people: an option with its value on one line (render, launch --dry-run).

/** Group argv into lines: an option with its value, so the result reads one option per line. */
export function groupOptions(argv: readonly string[]): string[][] {
  const lines: string[][] = [];
  for (const word of argv) {
    const last = lines[lines.length - 1];
    if (last && last.length === 1 && last[0]!.startsWith("-") && !word.startsWith("-")) last.push(word);
    else lines.push([word]);
  }
  return lines;
}
