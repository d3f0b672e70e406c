// Builds dist/ from src/cli.ts with esbuild, in two forms:
//  1. dist/cli.js (+ chunks): an ESM bundle whose commands are lazily imported chunks, so
//     `node bin/qcvm.js render` loads neither the launcher nor the probe.
//  2. dist/qcvm.blob: a V8 startup snapshot of the whole CLI (Node's --build-snapshot, Node >= 18.20),
//     used by bin/qcvm when the blob was built by the same node binary. Loading yargs and ajv's
//     generated validators costs more than Node's own start-up; deserializing a heap costs little.
import { build } from "esbuild";
import { rmSync, readFileSync, writeFileSync, statSync, realpathSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { resolve as resolvePath } from "node:path";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
const dist = fileURLToPath(new URL("../dist/", import.meta.url));
rmSync(dist, { recursive: true, force: true });

// string-width (yargs' help layout) is slow for what qcvm prints: it builds an Intl.Segmenter at
// import time and segments every string, and yargs lays out the help text of every command it runs
// (to show it later on failure): ~30 ms per run. Make the segmenter lazy, and measure printable ASCII
// (one column per character, no escapes) by its length, so only non-ASCII text takes the full path.
const fastStringWidth = {
  name: "fast-string-width",
  setup(b) {
    b.onLoad({ filter: /[\\/]string-width[\\/]index\.js$/ }, async (args) => {
      let src = readFileSync(args.path, "utf8");
      src = src.replace(
        "const segmenter = new Intl.Segmenter();",
        "let realSegmenter; const segmenter = { segment: (s) => (realSegmenter ??= new Intl.Segmenter()).segment(s) };",
      );
      const head = /export default function stringWidth\((\w+), options = \{\}\) \{/;
      const m = head.exec(src);
      if (!m) throw new Error(`fast-string-width: no stringWidth() in ${args.path}`);
      src = src.replace(
        head,
        `${m[0]}\n\tif (typeof ${m[1]} === "string" && /^[\\x20-\\x7e]*$/.test(${m[1]})) return ${m[1]}.length;`,
      );
      return { contents: src, loader: "js" };
    });
  },
};

// `import text from "./file?raw"` (src/raw-imports.d.ts): the file's bytes as a string, the suffix
// vite (vitest) reads the same way. `qcvm schema` prints the shipped schema files so, unchanged.
const rawText = {
  name: "raw-text",
  setup(b) {
    b.onResolve({ filter: /\?raw$/ }, (args) => ({
      path: resolvePath(args.resolveDir, args.path.slice(0, -"?raw".length)),
      namespace: "raw-text",
    }));
    b.onLoad({ filter: /.*/, namespace: "raw-text" }, (args) => ({
      contents: readFileSync(args.path, "utf8"),
      loader: "text",
    }));
  },
};

const root = fileURLToPath(new URL("../", import.meta.url));
const WARM_UP = [
  ["render", `${root}profiles/kvm-1node.yaml`, "--host", `${root}examples/hosts/single-node`],
  ["render", `${root}profiles/snp-2node.yaml`, "--format", "json", "--host", `${root}examples/hosts/epyc-2s4n`],
  ["validate", `${root}profiles/kvm-2node.yaml`, `${root}test/fixtures/profiles/invalid-unknown-field.yaml`],
  ["plan", `${root}profiles/snp-2node.yaml`, "--host", `${root}examples/hosts/epyc-2s4n`],
];

const common = {
  entryPoints: { cli: "src/cli.ts" },
  bundle: true,
  platform: "node",
  target: "node20",
  // Node 20 has RegExp /v; without this esbuild rewrites such literals to eager `new RegExp()` calls.
  supported: { "regexp-set-notation": true, "regexp-unicode-property-escapes": true },
  minify: true,
  sourcemap: false,
  logLevel: "warning",
  plugins: [fastStringWidth, rawText],
  define: { QCVM_VERSION: JSON.stringify(pkg.version) },
};

await build({
  ...common,
  outdir: dist,
  splitting: true,
  format: "esm",
  // createRequire shim: some CommonJS dependencies call require().
  banner: {
    js: "import { createRequire as __qcvmCreateRequire } from 'node:module'; const require = __qcvmCreateRequire(import.meta.url);",
  },
});

// Snapshot entry: one IIFE script (the snapshot builder runs a single script with only built-in
// require), whose main runs when the snapshot is deserialized.
await build({
  ...common,
  entryPoints: ["src/cli.ts"],
  outfile: `${dist}snapshot-entry.js`,
  format: "iife",
  globalName: "__qcvm",
  define: { ...common.define, "import.meta.url": JSON.stringify("file:///qcvm/dist/cli.js") },
  footer: {
    // QCVM_SHOW_STARTUP=1 says which entry ran (the test of this path relies on it).
    js: [
      // Warm-up while building: run the commands whose start-up matters once, output discarded,
      // so the snapshot holds their compiled bytecode instead of compiling it at every start.
      "(async () => {",
      "  const write = process.stdout.write, ewrite = process.stderr.write;",
      "  process.stdout.write = process.stderr.write = () => true;",
      "  try {",
      `    for (const argv of ${JSON.stringify(WARM_UP)}) await __qcvm.main(argv);`,
      "  } finally { process.stdout.write = write; process.stderr.write = ewrite; }",
      "})();",
      'require("v8").startupSnapshot.setDeserializeMainFunction(() => { if (process.env.QCVM_SHOW_STARTUP) process.stderr.write("qcvm: started from snapshot\\n"); __qcvm.main(process.argv.slice(1)).then((c) => { process.exitCode = c; }); });',
    ].join("\n"),
  },
});

// The snapshot has no module loader: a dynamic import() that esbuild left in (a node: built-in)
// would fail at run time, so it fails the build instead. Import built-ins statically.
const entryText = readFileSync(`${dist}snapshot-entry.js`, "utf8");
const leftover = entryText.match(/\bimport\(["'][^"']+["']\)/g);
if (leftover) {
  console.error(
    `build: dynamic import of ${[...new Set(leftover)].join(", ")} cannot run in the startup snapshot; import it statically`,
  );
  process.exit(1);
}

const blob = `${dist}qcvm.blob`;
const snap = spawnSync(process.execPath, ["--snapshot-blob", blob, "--build-snapshot", `${dist}snapshot-entry.js`], {
  encoding: "utf8",
});
if (snap.status === 0) {
  // bin/qcvm uses the blob only with the node binary that built it (same size and mtime): a blob
  // from another Node version would not load.
  const st = statSync(realpathSync(process.execPath));
  writeFileSync(`${dist}qcvm.blob.stamp`, `${st.size} ${Math.floor(st.mtimeMs / 1000)}\n`);
} else {
  rmSync(blob, { force: true });
  console.warn(
    `build: no startup snapshot (bin/qcvm falls back to the ESM bundle):\n${snap.stderr.trim().split("\n").slice(-3).join("\n")}`,
  );
}
