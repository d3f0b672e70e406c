// WrittenProfile (src/generated/written-profile.ts), the type normalize reads, is generated from
// schemas/profile.schema.json by scripts/gen-types.mjs: this test fails when the committed type is
// not what the schema gives today, so the two cannot drift apart.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { generateTypes, outFile } from "../scripts/gen-types.mjs";

describe("WrittenProfile type", () => {
  it("is what scripts/gen-types.mjs makes from the schema today (no drift)", async () => {
    const committed = readFileSync(outFile, "utf8");
    expect(committed === (await generateTypes()), "run: node scripts/gen-types.mjs").toBe(true);
  });

  it("has every top-level property of the schema", async () => {
    const schema = JSON.parse(readFileSync("schemas/profile.schema.json", "utf8")) as {
      properties: Record<string, unknown>;
    };
    const text = readFileSync(outFile, "utf8");
    const body = text.slice(text.indexOf("export interface WrittenProfile {"));
    for (const key of Object.keys(schema.properties)) expect(body).toMatch(new RegExp(`\\n  "?${key}"?\\??:`));
  });
});
