// Bundles src/cli.ts into dist/ with esbuild. Commands are separate chunks (dynamic import),
// so `qcvm render` loads neither the launcher nor the probe: start-up stays near `node -e 0`.
import { build } from "esbuild";
import { rmSync, readFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

rmSync(new URL("../dist", import.meta.url), { recursive: true, force: true });
await build({
  entryPoints: { cli: "src/cli.ts" },
  outdir: "dist",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  sourcemap: false,
  minify: false,
  logLevel: "warning",
  define: { QCVM_VERSION: JSON.stringify(pkg.version) },
  // createRequire shim: some CommonJS dependencies (ajv runtime helpers) call require().
  banner: { js: "import { createRequire as __qcvmCreateRequire } from 'node:module'; const require = __qcvmCreateRequire(import.meta.url);" },
});
