// The fast YAML reader must agree with the yaml package wherever it answers, and must answer for
// the profiles people write (else validation silently falls back to the slow path).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { parseFastYaml } from "../src/load/yaml-fast.js";

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(name)) out.push(p);
  }
  return out;
}

const repoFiles = ["profiles", "examples", "test/fixtures/profiles"].flatMap((d) => yamlFiles(d));

function yamlParse(text: string): unknown {
  try {
    return parse(text, { uniqueKeys: true });
  } catch {
    return "yaml-error";
  }
}

describe("agrees with yaml", () => {
  it.each(repoFiles)("%s", (file) => {
    const text = readFileSync(file, "utf8");
    const fast = parseFastYaml(text);
    if (fast !== undefined) expect(fast).toEqual(yamlParse(text));
  });

  const snippets = [
    "a: 1\nb: -2\nc: +3\nd: 007\ne: 0x1F\nf: 0o17\n",
    "a: true\nb: False\nc: NULL\nd: ~\ne:\nf: null\n",
    "a: 1.5\n",
    "a: 1e3\n",
    "a: .inf\n",
    "a: 12345678901234567890\n",
    "a: 0x8000000000000001\n",
    "a: \"x # y\"  # c\nb: 'it''s'\nc: \"tab\\there\"\n",
    "a: x # comment\nb: x#y\nc: file:/tmp/x\n",
    'a: [1, 2, "3", x y]\nb: {k: v, n: 1}\nc: []\nd: {}\n',
    "a: [[1, 2], {b: [3]}]\n",
    "a: {0: 3, 1: 1}\n",
    "a:\n- 1\n- 2\nb: 3\n",
    "a:\n  - x: 1\n    y: 2\n  - x: 3\n",
    "a:\n  -   x: 1\n      y: 2\n",
    "a:\n  b:\n    c: d\n  e: f\ng: h\n",
    "---\na: 1\n",
    "a: 1\n---\nb: 2\n",
    "a: &x 1\nb: *x\n",
    "a: !!str 1\n",
    "a: |\n  text\n",
    "a: b\n  c\n",
    "a: 1\na: 2\n",
    "a: [1, 2,]\n",
    "a: {b: 1, b: 2}\n",
    "a:\n\tb: 1\n",
    "a: b: c\n",
    "- a\n",
    "just a string\n",
    "a: 'multi\n  line'\n",
    "a: [1,\n  2]\n",
    "a: -\n",
    "a: - b\n",
    "a:\n  - - 1\n",
    "a: yes\nb: on\nc: off\n",
    "? a\n: b\n",
    'a: "\\u0041"\n',
    "True: 1\n",
    "1: a\n2: b\n",
    "__proto__: 1\n",
    "a: {x:1}\n",
    "a: 1 # c\n# c\n\n  # indented comment\nb: 2\n",
    "a:   \n  b: 1\n",
    "a: [a:b]\n",
    "a: x\r\nb: y\r\n",
  ];
  it.each(snippets)("%j", (text) => {
    const fast = parseFastYaml(text);
    if (fast !== undefined) expect(fast).toEqual(yamlParse(text));
  });
});

describe("answers for ordinary profiles", () => {
  it.each(repoFiles.filter((f) => /^(profiles|examples)\//.test(f) || /\/valid-/.test(f)))("%s", (file) => {
    expect(parseFastYaml(readFileSync(file, "utf8"))).toBeDefined();
  });

  it("handles the common constructs itself (so the agreement checks above are not vacuous)", () => {
    const accepted = [
      "a: 1\nb: -2\nc: +3\nd: 007\ne: 0x1F\nf: 0o17\n",
      "a: true\nb: False\nc: NULL\nd: ~\ne:\nf: null\n",
      "a: \"x # y\"  # c\nb: 'it''s'\nc: \"tab\\there\"\n",
      "a: [[1, 2], {b: [3]}]\n",
      "a:\n- 1\n- 2\nb: 3\n",
      "a:\n  -   x: 1\n      y: 2\n",
      "---\na: 1\n",
    ];
    for (const text of accepted) expect(parseFastYaml(text), text).toEqual(yamlParse(text));
  });

  it("declines what it does not handle, so yaml can explain it", () => {
    for (const text of ["a: &x 1\nb: *x\n", "a: |\n  t\n", "a: 1\na: 2\n", "a: b\n  c\n", "a: 1.5\n", "- a\n"]) {
      expect(parseFastYaml(text), text).toBeUndefined();
    }
  });
});
