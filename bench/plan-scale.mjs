// The planner's own time on a large profile, measured in-process: the pure planner is bundled from
// src/ with esbuild (a dev dependency) and called repeatedly on one loaded profile and host, so the
// figure excludes node start, reading and validation (which `qcvm plan` as a whole includes).
// Usage (from bench/run.mjs): node bench/plan-scale.mjs <profile> <host-dir> <iterations>
import { build } from "esbuild";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const [profileFile, hostDir, iterations = "50"] = process.argv.slice(2);
// Inside the checkout, so the external packages (yaml, ajv) resolve from its node_modules.
mkdirSync(join(root, "node_modules", ".cache"), { recursive: true });
const out = mkdtempSync(join(root, "node_modules", ".cache", "qcvm-plan-scale-"));
const entry = `
  export { readProfile } from "./src/pipeline/read-profile.ts";
  export { probeHost } from "./src/probe/host.ts";
  export { builtinCapabilities } from "./src/probe/capabilities.ts";
  export { planPlacement } from "./src/plan/plan.ts";
`;
await build({
  stdin: { contents: entry, resolveDir: root, loader: "ts" },
  bundle: true,
  platform: "node",
  format: "esm",
  packages: "external",
  outfile: join(out, "plan.mjs"),
  logLevel: "warning",
  define: { QCVM_VERSION: '"bench"' },
});
const m = await import(pathToFileURL(join(out, "plan.mjs")).href);
rmSync(out, { recursive: true, force: true });
const loaded = await m.readProfile(profileFile);
if (!loaded.profile) {
  process.stderr.write(
    `plan-scale: ${profileFile} is not valid:\n${JSON.stringify(loaded.errors.slice(0, 5), null, 1)}\n`,
  );
  process.exit(1);
}
const host = m.probeHost(hostDir);
const caps = m.builtinCapabilities(loaded.profile.qemu.version);
const times = [];
let plan;
for (let i = 0; i < Number(iterations); i++) {
  const t0 = process.hrtime.bigint();
  plan = m.planPlacement(loaded.profile, host, caps);
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
const first = times[0] ?? 0;
times.sort((a, b) => a - b);
// The first calls pay for V8's compilation; the median of the rest is the planner's steady cost,
// and the first call is what a one-shot `qcvm plan` pays.
process.stdout.write(
  JSON.stringify({
    first,
    median: times[times.length >> 1],
    nodes: plan.nodes.length,
    errors: plan.errors.length,
  }) + "\n",
);
