// No import cycles among src/ modules: each phase depends only on the ones before it (a cycle,
// as lock.ts <-> runtime.ts once was, means two modules own one concern between them). Static and
// dynamic `import(...)` both count; `import type` does not (it is erased at build time).
import { describe, expect, it } from "vitest";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dirname, "..", "src");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? sources(join(dir, d.name)) : d.name.endsWith(".ts") ? [join(dir, d.name)] : [],
  );
}

/** Relative value imports of a file, as absolute .ts paths. */
export function importsOf(file: string, text: string): string[] {
  const out: string[] = [];
  const patterns = [
    /^\s*import\s+(?!type\b)[^;]*?from\s+"(\.[^"]+)"/gm,
    /^\s*export\s+(?!type\b)[^;]*?from\s+"(\.[^"]+)"/gm,
    /^\s*import\s+"(\.[^"]+)"/gm,
    /import\(\s*"(\.[^"]+)"\s*\)/g,
  ];
  for (const re of patterns)
    for (const m of text.matchAll(re)) out.push(resolve(dirname(file), m[1]!.replace(/\.js$/, ".ts")));
  return out.filter((p) => p.startsWith(SRC));
}

/** Every cycle found by a depth-first walk, each as the list of files around it. */
export function findCycles(graph: Map<string, string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const visit = (n: string) => {
    state.set(n, "visiting");
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === "visiting") cycles.push([...stack.slice(stack.indexOf(m)), m]);
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, "done");
  };
  for (const n of graph.keys()) if (!state.has(n)) visit(n);
  return cycles;
}

describe("import graph of src/", () => {
  const graph = new Map(sources(SRC).map((f) => [f, importsOf(f, readFileSync(f, "utf8"))]));

  it("has no cycles", () => {
    const cycles = findCycles(graph).map((c) => c.map((f) => relative(SRC, f)).join(" -> "));
    expect(cycles).toEqual([]);
  });

  it("the check sees a cycle when there is one (not vacuous)", () => {
    expect(graph.size).toBeGreaterThan(30);
    expect([...graph.values()].flat().length).toBeGreaterThan(50);
    const a = join(SRC, "a.ts");
    const b = join(SRC, "b.ts");
    const g = new Map([
      [a, importsOf(a, 'import { x } from "./b.js";\n')],
      [b, importsOf(b, 'const { y } = await import("./a.js");\nimport type { Z } from "./c.js";\n')],
    ]);
    expect(findCycles(g).map((c) => c.map((f) => relative(SRC, f)))).toEqual([["a.ts", "b.ts", "a.ts"]]);
  });
});
