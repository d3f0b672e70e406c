// validate's reports for CI systems, each in the form its consumer reads:
//   github: workflow commands (`::error file=,line=,col=,title=::message`), shown by GitHub Actions
//           as annotations on the pull request's diff;
//   junit:  JUnit XML (one testcase per profile, a <failure> for an invalid one), as GitLab's
//           `artifacts:reports:junit` and Jenkins read it;
//   sarif:  SARIF 2.1.0 (one result per problem, one rule per diagnostic code), for GitHub code
//           scanning (`github/codeql-action/upload-sarif`) and other SARIF viewers.
// Pure: reports in, text out. Paths are shown as in every other qcvm message (relative below the cwd).
import { pathToFileURL } from "node:url";
import { isAbsolute } from "node:path";
import { displayPath, formatDiagnostic } from "../core/diagnostics.js";
import type { Diagnostic } from "../core/types.js";

declare const QCVM_VERSION: string | undefined;

export const CI_FORMATS = ["github", "junit", "sarif"] as const;
export type CiFormat = (typeof CI_FORMATS)[number];

/** One profile's outcome, as validate computed it. */
export interface FileReport {
  file: string;
  valid: boolean;
  errors: Diagnostic[];
  warnings: Diagnostic[];
}

function version(): string {
  return typeof QCVM_VERSION === "string" ? QCVM_VERSION : "0.0.0-dev";
}

/** The message without its location: the consumer shows the location itself. */
function text(d: Diagnostic): string {
  return formatDiagnostic({ ...d, file: undefined, severity: "error" });
}

function fileOf(d: Diagnostic, f: FileReport): string {
  return displayPath(d.file ?? f.file);
}

// GitHub workflow commands: data escapes %, CR and LF; property values also ':' and ','.
const escData = (s: string) => s.replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
const escProp = (s: string) => escData(s).replace(/:/g, "%3A").replace(/,/g, "%2C");

export function formatGithub(files: readonly FileReport[]): string[] {
  const out: string[] = [];
  for (const f of files) {
    for (const d of [...f.errors, ...f.warnings]) {
      // A warning fails a --strict run: it is then an error annotation too.
      const level = d.severity === "error" || !f.valid ? "error" : "warning";
      const loc = `file=${escProp(fileOf(d, f))}${d.line ? `,line=${d.line},col=${d.col ?? 1}` : ""}`;
      out.push(`::${level} ${loc},title=${escProp(`qcvm ${d.code}`)}::${escData(text(d))}`);
    }
  }
  return out;
}

const escXml = (s: string) =>
  s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    // XML 1.0 has no way to write most control characters, even as references.
    // eslint-disable-next-line no-control-regex -- the characters XML 1.0 forbids are the point
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "\ufffd");

export function formatJunit(files: readonly FileReport[], elapsedSeconds: number): string {
  const failures = files.filter((f) => !f.valid).length;
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="qcvm validate" tests="${files.length}" failures="${failures}" errors="0" time="${elapsedSeconds.toFixed(3)}">`,
    `  <testsuite name="qcvm validate" tests="${files.length}" failures="${failures}" errors="0" skipped="0" time="${elapsedSeconds.toFixed(3)}">`,
  ];
  for (const f of files) {
    const name = escXml(displayPath(f.file));
    const open = `    <testcase classname="qcvm.validate" name="${name}" file="${name}"`;
    const all = [...f.errors, ...f.warnings];
    if (f.valid && all.length === 0) {
      lines.push(`${open}/>`);
      continue;
    }
    lines.push(`${open}>`);
    const body = all.map((d) => escXml(formatDiagnostic(d))).join("\n");
    if (!f.valid) {
      const first = f.errors[0] ?? f.warnings[0]!;
      const count = f.errors.length + (f.errors.length === 0 ? f.warnings.length : 0);
      const summary = `${count} problem${count === 1 ? "" : "s"}: ${formatDiagnostic(first)}`;
      lines.push(`      <failure type="${escXml(first.code)}" message="${escXml(summary)}">${body}</failure>`);
    } else {
      lines.push(`      <system-out>${body}</system-out>`);
    }
    lines.push("    </testcase>");
  }
  lines.push("  </testsuite>", "</testsuites>");
  return `${lines.join("\n")}\n`;
}

/** A SARIF artifact URI: relative paths as URI references (against the checkout), absolute as file:. */
function artifactUri(file: string): { uri: string; uriBaseId?: string } {
  if (isAbsolute(file)) return { uri: pathToFileURL(file).href };
  return { uri: file.split("/").map(encodeURIComponent).join("/"), uriBaseId: "%SRCROOT%" };
}

export function formatSarif(files: readonly FileReport[]): string {
  const rules: string[] = [];
  const results = [];
  for (const f of files) {
    for (const d of [...f.errors, ...f.warnings]) {
      if (!rules.includes(d.code)) rules.push(d.code);
      results.push({
        ruleId: d.code,
        ruleIndex: rules.indexOf(d.code),
        level: d.severity === "error" || !f.valid ? "error" : "warning",
        message: { text: text(d) },
        locations: [
          {
            physicalLocation: {
              artifactLocation: artifactUri(fileOf(d, f)),
              ...(d.line ? { region: { startLine: d.line, startColumn: d.col ?? 1 } } : {}),
            },
          },
        ],
      });
    }
  }
  const log = {
    $schema: "https://json.schemastore.org/sarif-2.1.0.json",
    version: "2.1.0",
    runs: [
      {
        tool: {
          driver: {
            name: "qcvm",
            version: version(),
            informationUri: "https://github.com/qcvm/qcvm",
            rules: rules.map((id) => ({
              id,
              name: id.replace(/[^A-Za-z0-9]+(.)?/g, (_, c?: string) => (c ?? "").toUpperCase()),
            })),
          },
        },
        results,
      },
    ],
  };
  return `${JSON.stringify(log, null, 2)}\n`;
}
