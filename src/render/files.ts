// The one impure step before rendering: FileOrBase64 fields given as {file} are read and turned
// into base64, because QEMU's sev-snp-guest and tdx-guest take these blobs only as base64 strings.
// renderArgv() stays pure by seeing only base64; `render` and `launch` call this first.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { diag } from "../core/diagnostics.js";
import { mapBlobs } from "../core/confidential.js";
import type { Diagnostic, Profile, Result } from "../core/types.js";

/** A copy of the profile with every {file} blob replaced by {base64}; relative paths are relative to the profile. */
export function inlineProfileFiles(profile: Profile): Result<Profile> {
  const errors: Diagnostic[] = [];
  // The blobs of the section's own type (core/confidential.ts owns the list and their sizes).
  const confidential = mapBlobs(profile.confidential, (field, v) => {
    if (v.base64 !== undefined || v.file === undefined) return v;
    const path = resolve(dirname(profile.file), v.file);
    try {
      return { base64: readFileSync(path).toString("base64") };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      errors.push(
        diag("error", "render.file", `confidential.${field}.file`, `cannot read ${path}: ${code}`, {
          file: profile.file,
          got: v.file,
          hint: "paths are relative to the profile file",
        }),
      );
      return v;
    }
  });
  if (errors.length > 0) return { errors, warnings: [] };
  return { value: { ...profile, confidential }, errors: [], warnings: [] };
}
