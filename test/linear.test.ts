// Linear time on hostile sizes (issue 9): the work of error collection, did-you-mean, unknown keys
// and the NUMA rules is counted (array reads through a Proxy, calls of locate), not timed, so the
// bound holds on a loaded machine too. A quadratic pass over 100,000 items would read ~10^10 times.
import { describe, expect, it } from "vitest";
import { explainErrors } from "../src/validate/schema.js";
import type { AjvError } from "../src/generated/profile-validator.js";
import { RULES, runRules } from "../src/validate/rules.js";
import { normalizeProfile } from "../src/normalize/normalize.js";
import { newMap } from "../src/load/data.js";
import schema from "../schemas/profile.schema.json" with { type: "json" };
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readProfile } from "../src/pipeline/read-profile.js";
import { MAX_EXPLAINED } from "../src/validate/schema.js";

const N = 100_000;

/** An array whose element reads are counted. */
function counted<T>(items: T[], counter: { reads: number }): T[] {
  return new Proxy(items, {
    get(target, prop, receiver) {
      if (typeof prop === "string" && /^[0-9]+$/.test(prop)) counter.reads++;
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
}

describe(`linear work on ${N} items`, () => {
  it("explains 100,000 unknown keys with one locate each and a bounded number of reads", () => {
    const errors: AjvError[] = Array.from({ length: N }, (_, i) => ({
      instancePath: "/memory",
      schemaPath: "#/properties/memory/additionalProperties",
      keyword: "additionalProperties",
      params: { additionalProperty: `k${i}` },
    }));
    const counter = { reads: 0 };
    let locates = 0;
    const data = newMap();
    data.memory = newMap();
    const out = explainErrors(counted(errors, counter), data, schema, () => {
      locates++;
      return { file: "x.yaml", line: 1, col: 1 };
    });
    expect(out).toHaveLength(N);
    expect(locates).toBe(N);
    expect(counter.reads).toBeLessThan(10 * N);
  }, 120_000);

  it("picks anyOf branches for 100,000 failed sizes by reading each error a bounded number of times", () => {
    const errors: AjvError[] = [];
    for (let i = 0; i < N / 2; i++) {
      const at = `/numa/nodes/${i}/memory`;
      const base = "#/properties/numa/properties/nodes/items/properties/memory/anyOf";
      errors.push({
        instancePath: at,
        schemaPath: `${base}/0/type`,
        keyword: "type",
        params: { type: "integer" },
      });
      errors.push({
        instancePath: at,
        schemaPath: `${base}/1/pattern`,
        keyword: "pattern",
        params: { pattern: "x" },
      });
      errors.push({ instancePath: at, schemaPath: base, keyword: "anyOf", params: {} });
    }
    const counter = { reads: 0 };
    const out = explainErrors(counted(errors, counter), newMap(), schema, () => ({
      file: "x",
    }));
    expect(out.length).toBeGreaterThan(0);
    expect(counter.reads).toBeLessThan(20 * errors.length);
  }, 120_000);

  it("runs every rule on 100,000 NUMA nodes and distances with a bounded number of reads", () => {
    const raw = newMap();
    raw.apiVersion = "qcvm/v1";
    raw.cpu = Object.assign(newMap(), { count: 4 });
    const nodes = Array.from({ length: N }, (_, i) =>
      Object.assign(newMap(), { cpus: String(i % 4), memory: "1M", hostNodes: "0", policy: "bind" }),
    );
    const distances = Array.from({ length: N }, () => Object.assign(newMap(), { from: 0, to: 1, value: 20 }));
    raw.numa = Object.assign(newMap(), { nodes, distances });
    const profile = normalizeProfile(raw, "/tmp/numa.yaml");
    const counter = { reads: 0 };
    profile.numa.nodes = counted(profile.numa.nodes, counter);
    profile.numa.distances = counted(profile.numa.distances, counter);
    const r = runRules(raw, profile, () => ({ file: "x" }), RULES);
    expect(r.errors.length).toBeGreaterThan(0);
    expect(counter.reads).toBeLessThan(50 * N);
  }, 120_000);

  it("reports 15,000 unknown keys of one file as 50 problems and a count, explaining at most MAX_EXPLAINED", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qcvm-linear-"));
    try {
      const lines = Array.from({ length: 15_000 }, (_, i) => `  k${i}: 1`);
      const file = join(dir, "many.yaml");
      writeFileSync(file, `apiVersion: qcvm/v1\nmemory:\n${lines.join("\n")}\n`);
      const r = await readProfile(file);
      expect(r.errors).toHaveLength(51);
      expect(r.moreErrors).toBe(15_000 - 50);
      expect(r.errors.at(-1)!.message).toBe("and 14950 more errors (only the first 50 are shown)");
      expect(MAX_EXPLAINED).toBeLessThan(15_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
