// Differential fuzzer for the fast YAML reader (src/load/yaml-fast.ts): on every generated input
// it must give exactly what `yaml` gives, or step aside (undefined). Seeded, so a failure names an
// input that reproduces; mutations of every shipped profile and fixture: scalar styles, Unicode
// whitespace, flow/block mixes, comments, anchors, tags, indentation, structure characters.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { parseDocument } from "yaml";
import { describe, expect, it } from "vitest";
import { parseFastYaml } from "../src/load/yaml-fast.js";

const SEED = Number(process.env.QCVM_FUZZ_SEED ?? 20261201);
const RUNS = Number(process.env.QCVM_FUZZ_RUNS ?? 100_000);

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(name) && statSync(p).size < 8192) out.push(p);
  }
  return out;
}

const corpus = ["profiles", "examples", "test/fixtures/profiles"]
  .flatMap((d) => yamlFiles(d))
  .map((f) => readFileSync(f, "utf8"));

/** mulberry32: small, fast, and the same sequence everywhere for a seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const UNICODE_SPACE = [
  "\u00a0",
  "\ufeff",
  "\u2028",
  "\u2029",
  "\u3000",
  "\u2000",
  "\u2005",
  "\u200a",
  "\u0085",
  "\u1680",
  "\u202f",
  "\u205f",
  "\v",
  "\f",
  "\t",
  "\r",
  "\r\n",
];
const TOKENS = [
  " ",
  "  ",
  "\n",
  "\n  ",
  "#",
  " #",
  " # c",
  ":",
  ": ",
  "-",
  "- ",
  "-- ",
  ",",
  ", ",
  "[",
  "]",
  "{",
  "}",
  "[]",
  "{}",
  "'",
  '"',
  "''",
  '\\"',
  "\\",
  "\\n",
  "\\t",
  "\\x41",
  "\\u00e9",
  "&a ",
  "*a",
  "&a",
  "!",
  "!!str ",
  "!!int ",
  "!foo ",
  "|",
  ">",
  "|-\n  ",
  "?",
  "? ",
  "%",
  "@",
  "`",
  "---",
  "...",
  "--- ",
  "~",
  "null",
  "Null",
  "true",
  "False",
  "yes",
  "on",
  "0x1F",
  "0X1f",
  "0o17",
  "0O17",
  "007",
  "+1",
  "-0",
  "1e3",
  "1E+3",
  ".5",
  "5.",
  ".inf",
  "-.Inf",
  ".NaN",
  "123456789012345678",
  "0x123456789abcdef0",
  "9007199254740993",
  "1_000",
  "0b101",
  "=",
  "<<: *a",
  "a: b",
  "[a, b]",
  "{a: b}",
  "- [x]",
  "- {a: 1}",
  "key:",
  "x: [- y]",
  "é",
  "→",
  "\u0000",
  "\u007f",
  ...UNICODE_SPACE,
];
const SCALARS = [
  "plain",
  "two words",
  "x # not",
  "a:b",
  "a: b",
  "-x",
  "- x",
  "'q'",
  '"dq"',
  "x,y",
  "[x]",
  "{x}",
  "",
  " ",
  "1G",
  "0-3,6",
  "qcvm/v1",
  "#x",
];

function scalarIn(style: number, s: string): string {
  if (style === 0) return s;
  if (style === 1) return `'${s.replace(/'/g, "''")}'`;
  if (style === 2) return JSON.stringify(s);
  if (style === 3) return `"${s.replace(/"/g, '\\"').replace(/ /g, "\\ ")}"`;
  return `|\n  ${s}`;
}

function mutate(text: string, r: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  let t = text;
  const n = 1 + Math.floor(r() * 3);
  for (let k = 0; k < n; k++) {
    const at = Math.floor(r() * (t.length + 1));
    const lines = t.split("\n");
    const li = Math.floor(r() * lines.length);
    switch (Math.floor(r() * 8)) {
      case 0:
      case 1:
        t = t.slice(0, at) + pick(TOKENS) + t.slice(at);
        break;
      case 2:
        t = t.slice(0, at) + t.slice(at + 1 + Math.floor(r() * 4));
        break;
      case 3: // indentation
        lines[li] = r() < 0.5 ? ` ${lines[li]}` : lines[li]!.replace(/^ /, "");
        t = lines.join("\n");
        break;
      case 4: // a value in another scalar style
        lines[li] = lines[li]!.replace(/: .*$/, `: ${scalarIn(Math.floor(r() * 5), pick(SCALARS))}`);
        t = lines.join("\n");
        break;
      case 5: // block map line -> flow, or a list item
        lines[li] =
          r() < 0.5
            ? lines[li]!.replace(/^(\s*)(\w+): (.+)$/, "$1$2: {v: $3}")
            : lines[li]!.replace(/^(\s*)(\w+): (.+)$/, "$1$2: [$3, $3]");
        t = lines.join("\n");
        break;
      case 6: // duplicate or drop a line
        if (r() < 0.5) lines.splice(li, 0, lines[li]!);
        else lines.splice(li, 1);
        t = lines.join("\n");
        break;
      default: // anchors and aliases
        lines[li] = lines[li]!.replace(/: (.+)$/, r() < 0.5 ? ": &a $1" : ": *a");
        t = lines.join("\n");
    }
  }
  return t;
}

/** A few lines of a profile: small inputs make the 100k runs fast and the failures readable. */
function excerpt(text: string, r: () => number): string {
  const lines = text.split("\n");
  const start = Math.floor(r() * lines.length);
  return lines.slice(start, start + 2 + Math.floor(r() * 8)).join("\n") + "\n";
}

/** yaml's reading: its value when the text has no error or warning, else "rejected". */
function reference(text: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, logLevel: "error" });
  if (doc.errors.length > 0 || doc.warnings.length > 0) return "rejected";
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch {
    return "rejected";
  }
}

describe("fast YAML reader, differential fuzzing against yaml", () => {
  it(`agrees on ${RUNS} generated inputs (seed ${SEED}) or steps aside`, () => {
    const r = rng(SEED);
    const disagreements: { text: string; fast: unknown; yaml: unknown }[] = [];
    let answered = 0;
    for (let i = 0; i < RUNS; i++) {
      const base = corpus[Math.floor(r() * corpus.length)]!;
      const text = mutate(r() < 0.8 ? excerpt(base, r) : base, r);
      const fast = parseFastYaml(text);
      if (fast === undefined) continue;
      answered++;
      const expected = reference(text);
      if (!isDeepStrictEqual(fast, expected) && disagreements.length < 5)
        disagreements.push({ text, fast, yaml: expected });
    }
    expect(disagreements).toEqual([]);
    // Not vacuous: the fast reader answered for a good share of the inputs.
    expect(answered).toBeGreaterThan(RUNS / 10);
  }, 120_000);
});
