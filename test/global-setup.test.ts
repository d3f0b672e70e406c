// The test run rebuilds dist/ when a source changed since the last build (see global-setup.ts).
import { describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isBuildStale } from "./global-setup.js";

describe("isBuildStale", () => {
  it("is true with no build, or a source newer than it, and false once the build is newer", () => {
    const dir = mkdtempSync(join(tmpdir(), "qcvm-stale-"));
    try {
      mkdirSync(join(dir, "src", "commands"), { recursive: true });
      writeFileSync(join(dir, "src", "commands", "render.ts"), "");
      expect(isBuildStale(dir)).toBe(true);
      mkdirSync(join(dir, "dist"));
      writeFileSync(join(dir, "dist", "cli.js"), "");
      const t = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
      utimesSync(join(dir, "dist", "cli.js"), t(10), t(10));
      utimesSync(join(dir, "src", "commands", "render.ts"), t(20), t(20));
      expect(isBuildStale(dir)).toBe(true);
      utimesSync(join(dir, "src", "commands", "render.ts"), t(5), t(5));
      expect(isBuildStale(dir)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
