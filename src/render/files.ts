// The one impure step before rendering: FileOrBase64 fields given as {file} are read and turned
// into base64, because QEMU's sev-snp-guest and tdx-guest take these blobs only as base64 strings.
// renderArgv() stays pure by seeing only base64; `render` and `launch` call this first.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { diag } from "../core/diagnostics.js";
import { BLOB_FIELDS } from "../core/confidential.js";
import type { Diagnostic, FileOrBase64, Profile, Result } from "../core/types.js";

// The blobs a profile may give as a file (core/confidential.ts owns the list and their sizes).
const FILE_FIELDS = BLOB_FIELDS;

/** A copy of the profile with every {file} blob replaced by {base64}; relative paths are relative to the profile. */
export function inlineProfileFiles(profile: Profile): Result<Profile> {
  const errors: Diagnostic[] = [];
  const confidential = { ...profile.confidential };
  for (const field of FILE_FIELDS) {
    const v: FileOrBase64 | undefined = confidential[field];
    if (!v || v.base64 !== undefined || v.file === undefined) continue;
    const path = resolve(dirname(profile.file), v.file);
    try {
      confidential[field] = { base64: readFileSync(path).toString("base64") };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      errors.push(
        diag("error", "render.file", `confidential.${field}.file`, `cannot read ${path}: ${code}`, {
          file: profile.file,
          got: v.file,
          hint: "paths are relative to the profile file",
        }),
      );
    }
  }
  if (errors.length > 0) return { errors, warnings: [] };
  return { value: { ...profile, confidential }, errors: [], warnings: [] };
}
