// examples/walkthrough.md shows real command output; it must not drift from what qcvm prints.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { renderWalkthrough } from "../scripts/walkthrough.mjs";

describe("examples/walkthrough.md", () => {
  it("matches what its commands print (regenerate: node scripts/walkthrough.mjs, then review the diff)", () => {
    const fresh = renderWalkthrough();
    expect(fresh).toContain("$ qcvm plan profiles/snp-2node.yaml");
    expect(readFileSync("examples/walkthrough.md", "utf8")).toBe(fresh);
  });
});
