// validate --format github|junit|sarif, each read back as its consumer reads it: GitHub's workflow
// command syntax, JUnit XML through an XML parser (the testsuite/testcase/failure shape GitLab
// shows), and SARIF 2.1.0 against its own JSON Schema (test/fixtures/sarif/).
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import Ajv4Module from "ajv-draft-04";
import addFormatsModule from "ajv-formats";
import { REPO, qcvm } from "./helpers/launch.js";

const dir = mkdtempSync(join(tmpdir(), "qcvm-formats-"));
const TYPO = join(dir, "typo.yaml");
writeFileSync(TYPO, "apiVersion: qcvm/v1\nname: typo\nmemory: {size: 1G, hugepages: 3M}\n");
// Two problems in one file, one of them with characters every format must escape.
const WORSE = join(dir, "worse, & <odd>.yaml");
writeFileSync(WORSE, "apiVersion: qcvm/v1\nname: worse\ncpu: {count: 0}\nmemroy: 1G\n");
const GOOD = join(REPO, "profiles", "kvm-1node.yaml");

/** GitHub's workflow command: `::name key=value,key=value::data`, with its escapes undone. */
function parseWorkflowCommand(line: string) {
  const m = /^::(error|warning|notice) ([^:]*)::(.*)$/.exec(line);
  if (!m) return undefined;
  const unescape = (s: string) =>
    s.replace(/%3A/g, ":").replace(/%2C/g, ",").replace(/%0D/g, "\r").replace(/%0A/g, "\n").replace(/%25/g, "%");
  const props = Object.fromEntries(
    m[2]!.split(",").map((kv) => {
      const eq = kv.indexOf("=");
      return [kv.slice(0, eq), unescape(kv.slice(eq + 1))];
    }),
  );
  return { level: m[1]!, props, message: unescape(m[3]!) };
}

describe("validate --format github", () => {
  it("one annotation per problem, with file, line, col and the diagnostic code", async () => {
    const r = await qcvm(["validate", TYPO, WORSE, GOOD, "--format", "github"]);
    expect(r.code).toBe(1);
    const lines = r.stdout.trimEnd().split("\n");
    const annotations = lines.map(parseWorkflowCommand).filter((a) => a !== undefined);
    expect(annotations).toHaveLength(lines.length - 1);
    expect(lines.at(-1)).toBe("3 profiles: 1 valid, 2 invalid (3 errors, 0 warnings)");
    expect(annotations[0]).toEqual({
      level: "error",
      props: { file: TYPO, line: "3", col: "31", title: "qcvm schema.enum" },
      message: 'memory.hugepages: must be one of none, 2M, 1G, got "3M" (did you mean `2M`?)',
    });
    // A comma in the file name is escaped in the property, so GitHub does not split it.
    expect(lines.some((l) => l.includes("worse%2C & <odd>.yaml"))).toBe(true);
    expect(annotations.filter((a) => a.props.file === WORSE)).toHaveLength(2);
  });

  it("a warning is a warning annotation, and an error one under --strict", async () => {
    const warned = join(REPO, "test/fixtures/profiles/warning-extra-args.yaml");
    const plain = await qcvm(["validate", warned, "--format", "github"]);
    const strict = await qcvm(["validate", warned, "--format", "github", "--strict"]);
    const levels = (out: string) =>
      out
        .split("\n")
        .map(parseWorkflowCommand)
        .filter(Boolean)
        .map((a) => a!.level);
    // One annotation per warning the text format prints (the fixture has one).
    const text = await qcvm(["validate", warned]);
    const count = text.stdout.split("\n").filter((l) => l.includes(": warning: ")).length;
    expect(count).toBeGreaterThan(0);
    expect(plain.code).toBe(0);
    expect(levels(plain.stdout)).toEqual(Array<string>(count).fill("warning"));
    expect(strict.code).toBe(1);
    expect(levels(strict.stdout)).toEqual(Array<string>(count).fill("error"));
  });
});

describe("validate --format junit", () => {
  it("parses as JUnit XML: one testcase per profile, a failure for each invalid one", async () => {
    const r = await qcvm(["validate", TYPO, WORSE, GOOD, "--format", "junit"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("qcvm: 3 profiles: 1 valid, 2 invalid (3 errors, 0 warnings)\n");
    expect(XMLValidator.validate(r.stdout)).toBe(true);
    const doc = new XMLParser({
      ignoreAttributes: false,
      attributeNamePrefix: "",
      isArray: (n) => n === "testcase",
    }).parse(r.stdout) as {
      testsuites: {
        testsuite: {
          name: string;
          tests: string;
          failures: string;
          testcase: Array<{
            name: string;
            classname: string;
            file: string;
            failure?: { type: string; message: string; "#text": string };
          }>;
        };
      };
    };
    const suite = doc.testsuites.testsuite;
    expect(suite).toMatchObject({ name: "qcvm validate", tests: "3", failures: "2" });
    const byName = Object.fromEntries(suite.testcase.map((t) => [t.name, t]));
    expect(Object.keys(byName).sort()).toEqual([GOOD.slice(REPO.length), TYPO, WORSE].sort());
    expect(byName[GOOD.slice(REPO.length)]!.failure).toBeUndefined();
    const typo = byName[TYPO]!;
    expect(typo.classname).toBe("qcvm.validate");
    expect(typo.failure!.type).toBe("schema.enum");
    expect(typo.failure!.message).toBe(
      `1 problem: ${TYPO}:3:31: memory.hugepages: must be one of none, 2M, 1G, got "3M" (did you mean \`2M\`?)`,
    );
    // The body lists every problem (entities decoded by the parser: `<odd>` and `&` came through).
    const worse = byName[WORSE]!;
    expect(worse.failure!.message).toMatch(/^2 problems: /);
    expect(worse.failure!["#text"].split("\n")).toHaveLength(2);
    expect(worse.failure!["#text"]).toContain(`${WORSE}:4:1: memroy:`);
  });
});

describe("validate --format sarif", () => {
  const schema = JSON.parse(readFileSync(join(REPO, "test/fixtures/sarif/sarif-schema-2.1.0.json"), "utf8")) as object;
  // Both are CommonJS with `exports.default`: under NodeNext the default import is the module object.
  const Ajv4 = Ajv4Module.default;
  const addFormats = addFormatsModule.default;
  // unicodeRegExp off: one of the schema's patterns is not valid under the u flag.
  const ajv = new Ajv4({ allErrors: true, strict: false, unicodeRegExp: false });
  addFormats(ajv);
  const validateSarif = ajv.compile(schema);

  it("is valid SARIF 2.1.0, one result per problem, with rules and regions", async () => {
    const r = await qcvm(["validate", TYPO, WORSE, GOOD, "--format", "sarif"]);
    expect(r.code).toBe(1);
    const log = JSON.parse(r.stdout) as {
      version: string;
      runs: Array<{
        tool: { driver: { name: string; rules: Array<{ id: string }> } };
        results: Array<{
          ruleId: string;
          ruleIndex: number;
          level: string;
          message: { text: string };
          locations: Array<{
            physicalLocation: {
              artifactLocation: { uri: string };
              region?: { startLine: number; startColumn: number };
            };
          }>;
        }>;
      }>;
    };
    expect(validateSarif(log), JSON.stringify(validateSarif.errors, null, 2)).toBe(true);
    expect(log.version).toBe("2.1.0");
    const run = log.runs[0]!;
    expect(run.tool.driver.name).toBe("qcvm");
    expect(run.results).toHaveLength(3);
    const first = run.results[0]!;
    expect(first).toMatchObject({ ruleId: "schema.enum", level: "error" });
    expect(run.tool.driver.rules[first.ruleIndex]!.id).toBe(first.ruleId);
    expect(first.locations[0]!.physicalLocation).toEqual({
      artifactLocation: { uri: `file://${TYPO}` },
      region: { startLine: 3, startColumn: 31 },
    });
    // A file name with a space, a comma and <> is a valid URI.
    const worse = run.results.find((x) => x.locations[0]!.physicalLocation.artifactLocation.uri.includes("worse"))!;
    expect(decodeURIComponent(new URL(worse.locations[0]!.physicalLocation.artifactLocation.uri).pathname)).toBe(WORSE);
  });

  it("a run with no problems is valid SARIF with no results", async () => {
    const r = await qcvm(["validate", GOOD, "--format", "sarif"]);
    expect(r.code).toBe(0);
    const log = JSON.parse(r.stdout) as { runs: Array<{ results: unknown[] }> };
    expect(validateSarif(log)).toBe(true);
    expect(log.runs[0]!.results).toEqual([]);
  });

  it("the schema check is not vacuous: a broken log fails it", () => {
    expect(validateSarif({ version: "2.1.0", runs: [{ tool: { driver: {} }, results: [] }] })).toBe(false);
  });
});
