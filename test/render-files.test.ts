import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { formatDiagnostic } from "../src/core/diagnostics.js";
import { inlineProfileFiles } from "../src/render/files.js";
import { makeProfile, snpOf } from "./helpers/profile.js";

describe("inlineProfileFiles", () => {
  const dir = mkdtempSync(join(tmpdir(), "qcvm-inline-"));
  const bytes = Buffer.from(Array.from({ length: 96 }, (_, i) => i));
  writeFileSync(join(dir, "id-block.bin"), bytes);

  it("reads {file} blobs relative to the profile into base64 and leaves base64 alone", () => {
    const p = makeProfile({
      file: join(dir, "vm.yaml"),
      confidential: { type: "sev-snp", idBlock: { file: "id-block.bin" }, hostData: { base64: "aG9zdA==" } },
    });
    const r = inlineProfileFiles(p);
    expect(r.errors).toEqual([]);
    expect(snpOf(r.value).idBlock).toEqual({ base64: bytes.toString("base64") });
    expect(snpOf(r.value).hostData).toEqual({ base64: "aG9zdA==" });
    // The input profile is not modified.
    expect(snpOf(p).idBlock).toEqual({ file: "id-block.bin" });
  });

  it("reports a missing file with the field and the path it tried", () => {
    const p = makeProfile({ file: join(dir, "vm.yaml"), confidential: { type: "tdx", mrowner: { file: "nope.bin" } } });
    const r = inlineProfileFiles(p);
    expect(r.value).toBeUndefined();
    expect(r.errors.map(formatDiagnostic)).toEqual([
      `${join(dir, "vm.yaml")}: confidential.mrowner.file: cannot read ${join(dir, "nope.bin")}: ENOENT, got "nope.bin" (paths are relative to the profile file)`,
    ]);
  });
});
