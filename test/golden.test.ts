// Golden argv for every published profile and example: `qcvm render --format json` on a fixture
// host, compared with test/golden/<dir>/<name>.json. A change in the rendered command line fails
// here with a diff; to accept it, run
//   QCVM_UPDATE_GOLDEN=1 npx vitest run test/golden.test.ts
// and review the diff of test/golden/ against DOMAIN.md before committing it.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");
const update = process.env.QCVM_UPDATE_GOLDEN === "1";

/** TDX profiles are rendered for an Intel Sapphire Rapids host, everything else for a 2-socket EPYC. */
function hostFor(file: string): string {
  return /\btype:\s*tdx\b/.test(readFileSync(file, "utf8")) ? "spr-tdx-2n" : "epyc-2s4n";
}

function renderJson(file: string, host: string): unknown {
  const out = execFileSync(
    process.execPath,
    ["bin/qcvm.js", "render", file, "--format", "json", "--host", `examples/hosts/${host}`],
    {
      cwd: root,
      encoding: "utf8",
    },
  );
  // Paths inside the checkout (profile file names in warnings) are made relative to it, so the
  // goldens do not depend on where the repository is cloned.
  return JSON.parse(out.replaceAll(`${root}/`, ""));
}

const cases = ["profiles", "examples"].flatMap((dir) =>
  readdirSync(join(root, dir))
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => ({ dir, name: basename(f, ".yaml"), file: `${dir}/${f}` })),
);

describe("golden render output", () => {
  it("covers the seven published profiles at least", () => {
    const names = cases.filter((c) => c.dir === "profiles").map((c) => c.name);
    expect(names).toEqual(
      expect.arrayContaining([
        "kvm-1node",
        "kvm-2node",
        "sev-es",
        "snp-1node",
        "snp-2node",
        "snp-hugepages",
        "tdx-2node",
      ]),
    );
  });

  it.each(cases)("$file", ({ dir, name, file }) => {
    const host = hostFor(join(root, file));
    const actual = { host, ...(renderJson(file, host) as object) };
    const goldenFile = join(root, "test/golden", dir, `${name}.json`);
    if (update) {
      mkdirSync(join(root, "test/golden", dir), { recursive: true });
      writeFileSync(goldenFile, `${JSON.stringify(actual, null, 2)}\n`);
    }
    if (!existsSync(goldenFile)) {
      expect.fail(
        `no golden file ${goldenFile}: run QCVM_UPDATE_GOLDEN=1 npx vitest run test/golden.test.ts and review it`,
      );
    }
    expect(actual).toEqual(JSON.parse(readFileSync(goldenFile, "utf8")));
  });

  it("has no golden file without its profile", () => {
    const expected = new Set(cases.map((c) => `${c.dir}/${c.name}.json`));
    const present = ["profiles", "examples"].flatMap((dir) =>
      existsSync(join(root, "test/golden", dir))
        ? readdirSync(join(root, "test/golden", dir)).map((f) => `${dir}/${f}`)
        : [],
    );
    expect(present.filter((f) => !expected.has(f))).toEqual([]);
  });
});
