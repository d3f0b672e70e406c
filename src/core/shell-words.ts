// Command lines for people: POSIX-sh quoting of argv words, for display and `render --format shell`.

/** POSIX-sh quoting of one word, for display and for `render --format shell`. */
export function shellQuote(word: string): string {
  if (word !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A command line a person can paste into a POSIX shell. */
export function prettyCommand(argv: readonly string[]): string {
  return argv.map(shellQuote).join(" ");
}
