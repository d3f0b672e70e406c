// Validate an imported profile's YAML text with the same reader every other command uses
// (load -> schema -> normalize -> rules), so `qcvm import` never prints a profile qcvm would
// refuse without saying so. readProfile reads files: the text goes to a private temporary
// directory (mode 0700, removed afterwards), never next to the user's files.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Diagnostic, LoadedProfile } from "../core/types.js";

export async function readImported(text: string): Promise<LoadedProfile> {
  const { readProfile } = await import("../pipeline/read-profile.js");
  const dir = mkdtempSync(join(tmpdir(), "qcvm-import-"));
  try {
    const file = join(dir, "imported.yaml");
    writeFileSync(file, text, { mode: 0o600, flag: "wx" });
    // No host check: the profile is checked as text here (its relative paths would resolve in this
    // temporary directory); `qcvm validate` of the written profile checks its files.
    return await readProfile(file, { hostCheck: false });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Errors of the imported profile, with the file named as what the user sees (stdout). */
export async function validateImported(text: string): Promise<Diagnostic[]> {
  const loaded = await readImported(text);
  return loaded.errors.map((d) => ({ ...d, file: "<imported profile>" }));
}
