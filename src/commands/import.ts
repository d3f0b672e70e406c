// `qcvm import <domain.xml>`: a profile from a libvirt domain (`virsh dumpxml NAME > d.xml`, or
// what `qcvm export --to libvirt` wrote). The profile YAML goes to stdout; what could not be
// imported is listed on stderr, element by element. The profile is validated before it is
// printed, so what comes out is a profile qcvm accepts (or the problems are named).
// --format json: {domain, text (the profile YAML), valid, notes, notImported, diagnostics}.
import type { Outcome } from "../core/errors.js";
import type { ImportOptions } from "../cli/command-options.js";
import { readFileSync } from "node:fs";
import { stringify } from "yaml";
import { UserError, describeFsError, formatDiagnostic } from "../core/diagnostics.js";
import { errorMember, writeJson } from "./json-output.js";

export async function run(o: ImportOptions): Promise<Outcome> {
  const file = o.domain;
  let xml: string;
  try {
    xml = file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
  } catch (e) {
    throw new UserError(`cannot read ${file}: ${describeFsError(e)}`);
  }
  const { importDomain, ImportError } = await import("../import/libvirt.js");
  let result;
  try {
    result = importDomain(xml);
  } catch (e) {
    if (e instanceof ImportError) throw new UserError(`${file}: ${e.message}`);
    throw e;
  }
  const text = `# Imported by qcvm from ${file === "-" ? "stdin" : file}\n${stringify(result.raw)}`;
  const { validateImported } = await import("../import/check.js");
  const problems = await validateImported(text);
  if (o.format === "json") {
    writeJson({
      domain: file,
      text,
      valid: problems.length === 0,
      notes: result.notes,
      notImported: result.notImported,
      diagnostics: problems,
      ...errorMember(
        problems.length > 0 ? "invalid" : "ok",
        "the imported profile is not valid as it is; fix the problems in `diagnostics` before using it",
      ),
    });
    return problems.length > 0 ? "invalid" : "ok";
  }
  for (const n of result.notes) process.stderr.write(`qcvm: note: ${n}\n`);
  if (result.notImported.length > 0) {
    process.stderr.write(`qcvm: not imported (no profile field for ${result.notImported.length}):\n`);
    for (const p of result.notImported) process.stderr.write(`qcvm:   ${p}\n`);
  }
  process.stdout.write(text);
  if (problems.length > 0) {
    process.stderr.write(
      `qcvm: the imported profile is not valid as it is; fix these before using it:\n${problems.map(formatDiagnostic).join("\n")}\n`,
    );
    return "invalid";
  }
  return "ok";
}
