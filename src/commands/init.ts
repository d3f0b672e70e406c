// `qcvm init <file> [--from PROFILE]`: write a new profile, a starter one or a copy of PROFILE (a
// file, or the name of one qcvm ships: snp-2node, reference, ...), named after the new file. Its
// first line points editors at the schema by absolute path (yaml-language-server's modeline), the
// schema file of this qcvm installation, so it resolves wherever the profile is saved on this
// machine (a repository shared across machines maps the schema by glob instead: docs/profile.md).
// A copy keeps the comments of PROFILE; one with `extends:` is written with its bases merged in,
// since their relative paths would not resolve from the new place. Never overwrites anything:
// the file is created exclusively (O_EXCL: an existing file or symlink there is refused).
// --format json: {file, name, from, valid, diagnostics} on stdout instead of the lines on stderr.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname } from "node:path";
import { parseDocument, stringify } from "yaml";
import type { Outcome } from "../core/errors.js";
import type { InitOptions } from "../cli/command-options.js";
import { UserError, describeFsError, formatDiagnostic } from "../core/diagnostics.js";
import { VM_NAME } from "../core/vm-name.js";
import { shippedPath } from "../io/package-dir.js";
import { errorMember, writeJson } from "./json-output.js";

const MODELINE = /^#\s*yaml-language-server:\s*\$schema=.*$/m;

/** The profiles qcvm ships, by the name `--from` takes. */
function shippedProfile(name: string): string | undefined {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) return undefined;
  for (const dir of ["profiles", "examples"]) {
    const p = shippedPath(`${dir}/${name}.yaml`);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function modeline(): string {
  return `# yaml-language-server: $schema=${shippedPath("schemas/profile.schema.json")}`;
}

function starter(name: string): string {
  return `${modeline()}
#
# A qcvm profile, written by \`qcvm init\`. Every field but apiVersion has a default:
# ${shippedPath("examples/reference.yaml")} shows them all, and
# \`qcvm validate ${name}.yaml --fill\` prints what this profile comes to.
apiVersion: qcvm/v1
name: ${name}

cpu:
  model: qemu64   # starts under every KVM or TCG host; \`host\` gives the guest your CPU's features
  count: 2

memory:
  size: 1G

serial: stdio     # the console on the terminal (\`qcvm console ${name}\` after launch --detach)
`;
}

/** A copy of `from` named `name`: its own text with comments, or its bases merged in. */
async function copyOf(from: string, name: string): Promise<string> {
  let text: string;
  try {
    text = readFileSync(from, "utf8");
  } catch (e) {
    throw new UserError(`--from ${from}: ${describeFsError(e)}`, "usage");
  }
  const doc = parseDocument(text);
  if (doc.errors.length > 0 || !doc.has("apiVersion"))
    throw new UserError(`--from ${from}: not a qcvm profile (qcvm validate ${from} says why)`, "usage");
  if (!doc.has("extends")) {
    doc.set("name", name);
    const out = doc.toString({ lineWidth: 0 });
    return MODELINE.test(out) ? out.replace(MODELINE, modeline()) : `${modeline()}\n${out}`;
  }
  const { loadProfileFile } = await import("../load/load.js");
  const loaded = await loadProfileFile(from);
  if (!loaded.raw || loaded.errors.length > 0)
    throw new UserError(`--from ${from}: its extends: bases do not load (qcvm validate ${from} says why)`, "usage");
  const { orderFields } = await import("../export/raw.js");
  const raw = orderFields({ ...loaded.raw, name });
  return `${modeline()}\n# Written by \`qcvm init\` from ${from}, with its extends: bases merged in.\n${stringify(raw, { lineWidth: 0 })}`;
}

export async function run(o: InitOptions): Promise<Outcome> {
  const given = o.file;
  const file = /\.ya?ml$/.test(given) ? given : `${given}.yaml`;
  const name = basename(file).replace(/\.ya?ml$/, "");
  if (!VM_NAME.test(name))
    throw new UserError(
      `${file}: the profile is named after its file, and \`${name}\` is not a VM name (lower-case letters, digits and -, up to 63): name the file e.g. web1.yaml`,
      "usage",
    );
  let from: string | undefined;
  if (o.from !== undefined) {
    from = existsSync(o.from) ? o.from : shippedProfile(o.from);
    if (!from)
      throw new UserError(
        `--from ${o.from}: no such file, and not a profile qcvm ships (in ${shippedPath("profiles")} or ${shippedPath("examples")})`,
        "usage",
      );
  }
  const text = from ? await copyOf(from, name) : starter(name);
  try {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text, { flag: "wx", mode: 0o644 });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new UserError(`${file} exists; qcvm init never overwrites a file`, "usage");
    throw new UserError(`cannot write ${file}: ${describeFsError(e)}`);
  }
  const json = o.format === "json";
  if (!json) process.stderr.write(`qcvm: wrote ${file}${from ? ` (from ${from})` : ""}; next: qcvm validate ${file}\n`);
  const { readProfile } = await import("../pipeline/read-profile.js");
  const checked = await readProfile(file);
  if (json) {
    const valid = checked.errors.length === 0;
    writeJson({
      file,
      name,
      from: from ?? null,
      valid,
      diagnostics: [...checked.errors, ...checked.warnings],
      ...errorMember(
        valid ? "ok" : "invalid",
        `wrote ${file}, and it is not valid: fix the problems in \`diagnostics\``,
      ),
    });
    return valid ? "ok" : "invalid";
  }
  for (const d of [...checked.errors, ...checked.warnings]) process.stderr.write(`${formatDiagnostic(d)}\n`);
  return checked.errors.length > 0 ? "invalid" : "ok";
}
