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

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
const dist = fileURLToPath(new URL("../dist/", import.meta.url));
rmSync(dist, { recursive: true, force: true });

// string-width (pulled in by yargs' help layout) builds an Intl.Segmenter at import time, which costs
// more than all of qcvm's own start-up; make it lazy so only --help pays for it.
const lazySegmenter = {
  name: "lazy-string-width",
  setup(b) {
    b.onLoad({ filter: /[\\/]string-width[\\/]index\.js$/ }, async (args) => {
      const src = readFileSync(args.path, "utf8");
      const patched = src.replace(
        "const segmenter = new Intl.Segmenter();",
        "let realSegmenter; const segmenter = { segment: (s) => (realSegmenter ??= new Intl.Segmenter()).segment(s) };",
      );
      return { contents: patched, loader: "js" };
    });
  },
};

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
  plugins: [lazySegmenter],
  define: { QCVM_VERSION: JSON.stringify(pkg.version) },
};

await build({
  ...common,
  outdir: dist,
  splitting: true,
  format: "esm",
  // createRequire shim: some CommonJS dependencies call require().
  banner: { js: "import { createRequire as __qcvmCreateRequire } from 'node:module'; const require = __qcvmCreateRequire(import.meta.url);" },
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
    js: 'require("v8").startupSnapshot.setDeserializeMainFunction(() => { if (process.env.QCVM_SHOW_STARTUP) process.stderr.write("qcvm: started from snapshot\\n"); __qcvm.main(process.argv.slice(1)).then((c) => { process.exitCode = c; }); });',
  },
});

const blob = `${dist}qcvm.blob`;
const snap = spawnSync(process.execPath, ["--snapshot-blob", blob, "--build-snapshot", `${dist}snapshot-entry.js`], {
  encoding: "utf8",
});
if (snap.status === 0) {
  // bin/qcvm uses the blob only with the node binary that built it (same path, size and mtime).
  const node = realpathSync(process.execPath);
  const st = statSync(node);
  writeFileSync(`${dist}qcvm.blob.stamp`, `${node} ${st.size} ${Math.floor(st.mtimeMs / 1000)}\n`);
} else {
  rmSync(blob, { force: true });
  console.warn(`build: no startup snapshot (bin/qcvm falls back to the ESM bundle):\n${snap.stderr.trim().split("\n").slice(-3).join("\n")}`);
}
