// qcvm benchmarks: each comparison is measured side by side in one run, interleaved, and reported
// as medians and a ratio against its target. Run with `npm run bench` (builds first).
//   1. start-up: `qcvm render <profile>` vs `node -e 0`, from this clone     target <= 1.5x
//                and from an installed package (npm pack + npm install)      target <= 1.5x
//                and, with --baseline DIR, against the build in DIR (this profile)  target <= 1.1x
//   2. validate: `qcvm validate` of 1,000 profiles vs ajv-cli (js-yaml)       target <= 0.5x
//                10,000 profiles vs 1,000 (linear)                            target <= 11x
//                and, with --baseline DIR, 1,000 profiles against the build of an  target <= 1.1x
//                earlier checkout in DIR (built there: bin/qcvm) ("no slower", within noise)
//   3. scale:    the planner's own time on a 1,024-vCPU, 16-guest-node profile
//                on a 32-node, 1,024-CPU host tree                            target < 20 ms
//                and `qcvm plan` of it against `qcvm validate` of it          (reported)
//   4. launch:   `qcvm launch --detach` to vCPUs running with placement
//                vs QEMU alone reaching QMP-ready, with where the time goes   target <= 3x
//                vs libvirt's `virsh create` of the equivalent domain,
//                when a libvirtd can be started here                          target <= 0.5x
//   5. prealloc: guest-memfd-prealloc throughput (the helper's workers) vs a raw fallocate of
//                the same size, one call; and its launch cost, 1, 4, 16 GiB    target >= 80%
// Options: --only render|validate|scale|launch|prealloc, --runs N, --baseline DIR. Exit 1 when a
// target is missed.
import { spawnSync, spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync, readdirSync, existsSync } from "node:fs";
import { syntheticHost, writeHostTree } from "../scripts/make-host-fixture.mjs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// The installed command (bin/qcvm: V8 startup snapshot when built by this node, else the ESM bundle).
const qcvm = join(root, "bin", "qcvm");
const args = process.argv.slice(2);
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
const baseline = args.includes("--baseline") ? args[args.indexOf("--baseline") + 1] : undefined;
if (baseline !== undefined && !existsSync(join(baseline, "bin", "qcvm"))) {
  process.stderr.write(`bench: --baseline ${baseline}: no bin/qcvm there (build that checkout first)\n`);
  process.exit(2);
}
const runsArg = args.includes("--runs") ? Number(args[args.indexOf("--runs") + 1]) : undefined;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function timeSync(argv, opts = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", ...opts });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  return { ms, status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Run a and b alternately `runs` times (after one warm-up each) and return their medians. */
function compare(name, a, b, runs, check) {
  for (const cmd of [a, b]) {
    const w = timeSync(cmd.argv, cmd.opts);
    if (check) check(cmd, w);
  }
  const ta = [];
  const tb = [];
  for (let i = 0; i < runs; i++) {
    ta.push(timeSync(a.argv, a.opts).ms);
    tb.push(timeSync(b.argv, b.opts).ms);
  }
  return { name, a: { label: a.label, median: median(ta) }, b: { label: b.label, median: median(tb) }, runs };
}

const results = [];
/** Print a side-by-side comparison; `target` undefined means reported, not judged. */
function report(r, target, extra = "") {
  const ratio = r.a.median / r.b.median;
  const ok = target === undefined || ratio <= target;
  results.push({ ...r, ratio, target, ok });
  const verdict = target === undefined ? "(reported)" : `target <= ${target}x  ${ok ? "OK" : "MISSED"}`;
  console.log(
    `${r.name}\n  ${r.a.label.padEnd(52)} ${r.a.median.toFixed(1).padStart(8)} ms (median of ${r.runs})\n` +
      `  ${r.b.label.padEnd(52)} ${r.b.median.toFixed(1).padStart(8)} ms\n` +
      `  ratio ${ratio.toFixed(2)}x  ${verdict}\n${extra}`,
  );
}

/** A figure judged against an absolute target (ms). */
function reportAbsolute(name, label, ms, target, extra = "") {
  const ok = ms < target;
  results.push({ name, ok });
  console.log(
    `${name}\n  ${label.padEnd(52)} ${ms.toFixed(2).padStart(8)} ms\n  target < ${target} ms  ${ok ? "OK" : "MISSED"}\n${extra}`,
  );
}

/** A row that could not be measured here, with why (never counted as met). */
function reportSkipped(name, why) {
  console.log(`${name}\n  not measured: ${why}\n`);
}

// --- 1. start-up ------------------------------------------------------------------------------
const renderCheck = (cmd, w) => {
  if (w.status !== 0) throw new Error(`${cmd.label} failed (${w.status}):\n${w.stderr}`);
};

/** Pack this checkout and install the tarball into a fresh directory, as a user would. */
function installPackage() {
  const dir = mkdtempSync(join(tmpdir(), "qcvm-bench-pkg-"));
  const pack = spawnSync("npm", ["pack", "--silent", "--pack-destination", dir], { cwd: root, encoding: "utf8" });
  if (pack.status !== 0) return { why: `npm pack failed: ${pack.stderr.slice(0, 500)}` };
  const tgz = join(dir, pack.stdout.trim().split("\n").pop());
  const app = join(dir, "app");
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), '{"name":"bench-app","private":true}\n');
  const inst = spawnSync("npm", ["install", "--no-audit", "--no-fund", "--silent", tgz], {
    cwd: app,
    encoding: "utf8",
  });
  if (inst.status !== 0) return { why: `npm install of the tarball failed: ${inst.stderr.slice(0, 500)}` };
  return { dir, bin: join(app, "node_modules", ".bin", "qcvm"), pkg: join(app, "node_modules", "qcvm") };
}

if (!only || only === "render") {
  const profile = join(root, "profiles", "kvm-1node.yaml");
  const node0 = { label: "node -e 0", argv: [process.execPath, "-e", "0"] };
  const r = compare(
    "render (clone): qcvm render profiles/kvm-1node.yaml vs node -e 0",
    { label: "qcvm render profiles/kvm-1node.yaml", argv: [qcvm, "render", profile] },
    node0,
    runsArg ?? 21,
    renderCheck,
  );
  report(r, 1.5);
  if (baseline) {
    const rb = compare(
      `render (clone): this build vs the build in ${baseline}`,
      { label: "qcvm render, this build", argv: [qcvm, "render", profile] },
      { label: "qcvm render, baseline", argv: [join(baseline, "bin", "qcvm"), "render", profile] },
      runsArg ?? 21,
      renderCheck,
    );
    report(rb, 1.1);
  }
  const installed = installPackage();
  if (installed.why) reportSkipped("render (installed package)", installed.why);
  else {
    const r2 = compare(
      "render (installed package): npm pack, npm install, then qcvm render vs node -e 0",
      {
        label: "node_modules/.bin/qcvm render <its profiles/kvm-1node.yaml>",
        argv: [installed.bin, "render", join(installed.pkg, "profiles", "kvm-1node.yaml")],
      },
      node0,
      runsArg ?? 21,
      renderCheck,
    );
    report(r2, 1.5);
    rmSync(installed.dir, { recursive: true, force: true });
  }
}

// --- 2. validate 1,000 and 10,000 profiles -------------------------------------------------------
/** Write `count` self-contained profiles (ajv-cli cannot follow extends:) into a new directory. */
function writeCorpus(count) {
  const dir = mkdtempSync(join(tmpdir(), "qcvm-bench-"));
  const sources = readdirSync(join(root, "profiles"))
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => readFileSync(join(root, "profiles", f), "utf8"))
    .filter((text) => !/^extends:/m.test(text));
  for (let i = 0; i < count; i++) {
    const text = sources[i % sources.length].replace(/^name: .*$/m, `name: vm-${i}`);
    writeFileSync(join(dir, `vm-${i}.yaml`), text);
  }
  return dir;
}
const validateCheck = (cmd, w) => {
  if (w.status !== 0) throw new Error(`${cmd.label} failed (${w.status}):\n${(w.stderr || w.stdout).slice(0, 2000)}`);
};

if (!only || only === "validate") {
  const dir = writeCorpus(1000);
  const ajvCli = join(root, "node_modules", "ajv-cli", "dist", "index.js");
  const r = compare(
    "validate: 1,000 profiles, qcvm validate vs ajv-cli (same schema, js-yaml), cold processes",
    { label: "qcvm validate (schema + rules + positions)", argv: [qcvm, "validate", dir] },
    {
      label: "ajv-cli validate --spec=draft2020",
      argv: [
        process.execPath,
        ajvCli,
        "validate",
        "--spec=draft2020",
        "--strict=false",
        "-c",
        "ajv-formats",
        "-s",
        join(root, "schemas", "profile.schema.json"),
        "-d",
        join(dir, "*.yaml"),
      ],
      opts: { cwd: root },
    },
    runsArg ?? 7,
    validateCheck,
  );
  report(r, 0.5);
  if (baseline) {
    const rb = compare(
      `validate: 1,000 profiles, this build vs the build in ${baseline}`,
      { label: "qcvm validate, this build", argv: [qcvm, "validate", dir] },
      { label: "qcvm validate, baseline", argv: [join(baseline, "bin", "qcvm"), "validate", dir] },
      runsArg ?? 7,
      validateCheck,
    );
    report(rb, 1.1);
  }
  const big = writeCorpus(10000);
  const r2 = compare(
    "validate: 10,000 profiles vs 1,000 (linear would be 10x)",
    { label: "qcvm validate, 10,000 profiles", argv: [qcvm, "validate", big] },
    { label: "qcvm validate, 1,000 profiles", argv: [qcvm, "validate", dir] },
    Math.max(3, Math.ceil((runsArg ?? 7) / 2)),
    validateCheck,
  );
  report(r2, 11);
  rmSync(dir, { recursive: true, force: true });
  rmSync(big, { recursive: true, force: true });
}

// --- 3. scale: a 1,024-vCPU, 16-node guest on a 32-node, 1,024-CPU host ---------------------------
/** The profile: 16 guest nodes of 64 vCPUs and 4 GiB, each bound to its own pair of host nodes. */
function scaleProfile() {
  const nodes = Array.from({ length: 16 }, (_, i) =>
    [
      `    - cpus: ${i * 64}-${i * 64 + 63}`,
      `      memory: 4G`,
      `      hostNodes: "${2 * i},${2 * i + 1}"`,
      `      policy: bind`,
    ].join("\n"),
  );
  return [
    "apiVersion: qcvm/v1",
    "name: scale-1024",
    "qemu:",
    '  version: "10.1"',
    "machine:",
    "  type: q35",
    "  accel: kvm",
    "cpu:",
    "  model: EPYC-v4",
    "  count: 1024",
    "memory:",
    "  size: 64G",
    "  backend: memfd",
    "numa:",
    "  nodes:",
    ...nodes,
    "confidential:",
    "  type: sev-snp",
    "  cbitpos: 51",
    "  reducedPhysBits: 1",
    "firmware:",
    "  bios: /usr/share/ovmf/OVMF.fd",
    "placement:",
    "  pinVcpus: true",
    "",
  ].join("\n");
}

if (!only || only === "scale") {
  const dir = mkdtempSync(join(tmpdir(), "qcvm-bench-scale-"));
  const host = join(dir, "host");
  writeHostTree(host, syntheticHost(32, 32, 256));
  const profile = join(dir, "scale-1024.yaml");
  writeFileSync(profile, scaleProfile());
  const inproc = spawnSync(process.execPath, [join(root, "bench", "plan-scale.mjs"), profile, host, "50"], {
    encoding: "utf8",
  });
  if (inproc.status !== 0) throw new Error(`plan-scale failed (${inproc.status}):\n${inproc.stderr}`);
  const t = JSON.parse(inproc.stdout);
  reportAbsolute(
    "scale: the planner's own time, 1,024 vCPUs in 16 guest nodes on a 32-node, 1,024-CPU host",
    "planPlacement (median of 50 in one process)",
    t.median,
    20,
    `  first call (what one qcvm plan pays, with V8 compiling): ${t.first.toFixed(2)} ms; ${t.nodes} nodes planned, ${t.errors} plan errors\n`,
  );
  const r = compare(
    "scale: qcvm plan of that profile vs qcvm validate of it",
    { label: "qcvm plan --host <32-node tree>", argv: [qcvm, "plan", profile, "--host", host] },
    { label: "qcvm validate", argv: [qcvm, "validate", profile] },
    runsArg ?? 7,
    (cmd, w) => {
      if (w.status !== 0) throw new Error(`${cmd.label} failed (${w.status}):\n${w.stderr}`);
    },
  );
  report(r);
  rmSync(dir, { recursive: true, force: true });
}

// --- 3. launch overhead -----------------------------------------------------------------------
async function waitQmpReady(sock, deadline) {
  for (;;) {
    try {
      await new Promise((resolve, reject) => {
        const s = net.connect(sock);
        let buf = "";
        s.on("error", reject);
        s.on("data", (d) => {
          buf += d;
          if (buf.includes('"QMP"') && !buf.includes("return")) s.write('{"execute":"qmp_capabilities"}\n');
          if (buf.includes('"return"')) {
            s.end();
            resolve();
          }
        });
      });
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`QMP socket ${sock} never became ready`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

async function launchBench() {
  const profile = join(root, "profiles", "kvm-2node.yaml");
  const runDir = mkdtempSync(join(tmpdir(), "qcvm-bench-run-"));
  const runs = runsArg ?? 7;
  const name = `bench-${process.pid}`;
  const env = { ...process.env, QCVM_RUN_DIR: runDir };
  // The argv QEMU alone runs: the same command qcvm renders (with its own QMP socket).
  const rendered = JSON.parse(timeSync([qcvm, "render", profile, "--format", "json", "--set", `name=${name}`]).stdout);
  const kvmOk = (() => {
    try {
      return existsSync("/dev/kvm") && spawnSync("sh", ["-c", "test -w /dev/kvm"]).status === 0;
    } catch {
      return false;
    }
  })();
  const qemuArgv = [...rendered.argv].map((a) => (kvmOk ? a : a.replace("accel=kvm", "accel=tcg")));
  const tq = [];
  const tl = [];
  const steps = [];
  for (let i = 0; i < runs + 1; i++) {
    // QEMU alone: spawn -> QMP greeting + capabilities answered.
    const sock = join(runDir, `alone-${i}.sock`);
    const t0 = process.hrtime.bigint();
    const child = spawn(qemuArgv[0], [...qemuArgv.slice(1), "-S", "-qmp", `unix:${sock},server=on,wait=off`], {
      stdio: "ignore",
    });
    await waitQmpReady(sock, Date.now() + 20000);
    const alone = Number(process.hrtime.bigint() - t0) / 1e6;
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));

    // qcvm: invocation -> vCPUs running with placement applied (launch --detach returns then).
    // --format json: one event per step, each stamped with ms since qcvm's process started.
    const l = timeSync(
      [qcvm, "launch", profile, "--detach", "--format", "json", "--set", `name=${name}`, "--run-dir", runDir],
      { env },
    );
    if (l.status !== 0) throw new Error(`qcvm launch failed (${l.status}):\n${l.stderr}`);
    const s = timeSync([qcvm, "stop", name, "--force", "--run-dir", runDir], { env });
    if (s.status !== 0) throw new Error(`qcvm stop failed (${s.status}):\n${s.stderr}`);
    if (i > 0) {
      tq.push(alone);
      tl.push(l.ms);
      steps.push(stepTimes(l.stdout, l.ms));
    }
  }
  rmSync(runDir, { recursive: true, force: true });
  const node0 = median(Array.from({ length: 7 }, () => timeSync([process.execPath, "-e", "0"]).ms));
  report(
    {
      name: `launch: profiles/kvm-2node.yaml (${kvmOk ? "KVM" : "TCG: /dev/kvm unusable"})`,
      a: { label: "qcvm launch --detach (placement applied, running)", median: median(tl) },
      b: { label: "QEMU alone to QMP-ready", median: median(tq) },
      runs,
    },
    3.0,
    formatBreakdown(steps, node0, median(tq)),
  );
  await virshBench(profile, median(tl));
}

/**
 * Where one launch's time went, from its JSON step events (each stamped with ms since qcvm's process
 * started, emitted when the step is done): consecutive differences, plus the process's exit after
 * the last event. The first span includes node's own start-up.
 */
function stepTimes(stdout, wallMs) {
  const events = stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l))
    .filter((e) => e.event === "step");
  const out = {};
  let prev = 0;
  for (const e of events) {
    out[e.name] = (out[e.name] ?? 0) + (e.ms - prev);
    prev = e.ms;
  }
  out["exit"] = Math.max(0, wallMs - prev);
  return out;
}

function formatBreakdown(steps, node0, qemuAlone) {
  const names = [...new Set(steps.flatMap((s) => Object.keys(s)))];
  const rows = names.map((n) => [n, median(steps.map((s) => s[n] ?? 0))]);
  const lines = rows.map(([n, ms]) => `    ${n.padEnd(14)} ${ms.toFixed(1).padStart(7)} ms`);
  return (
    `  where launch time goes (medians; "plan" includes node start-up, ${node0.toFixed(1)} ms for node -e 0;\n` +
    `  "qmp" is QEMU's own start until QMP answers, ${qemuAlone.toFixed(1)} ms when run alone):\n` +
    `${lines.join("\n")}\n` +
    `  floor (node start + QEMU alone): ${(node0 + qemuAlone).toFixed(1)} ms = ${((node0 + qemuAlone) / qemuAlone).toFixed(2)}x\n`
  );
}

/**
 * libvirt side by side: `virsh create` of the domain `qcvm export --to libvirt` writes for the same
 * profile, against a libvirtd that is running or that this bench can start. Measured only where both
 * exist; otherwise the row says why.
 */
async function virshBench(profile, qcvmMedian) {
  const name = "libvirt: virsh create of the equivalent domain vs qcvm launch --detach";
  const has = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
  if (!has("virsh") || !has("libvirtd")) return reportSkipped(name, "virsh or libvirtd is not installed");
  const exp = timeSync([qcvm, "export", profile, "--to", "libvirt", "--set", "name=bench-virsh"]);
  if (exp.status !== 0) return reportSkipped(name, `qcvm export --to libvirt failed: ${exp.stderr.slice(0, 300)}`);
  const started = await ensureLibvirtd();
  if (started.why) return reportSkipped(name, started.why);
  const dir = mkdtempSync(join(tmpdir(), "qcvm-bench-virsh-"));
  const xml = join(dir, "domain.xml");
  writeFileSync(xml, exp.stdout);
  const tv = [];
  try {
    for (let i = 0; i < (runsArg ?? 7) + 1; i++) {
      const c = timeSync(["virsh", "-q", "-c", started.uri, "create", xml]);
      if (c.status !== 0) return reportSkipped(name, `virsh create failed: ${c.stderr.slice(0, 300)}`);
      timeSync(["virsh", "-q", "-c", started.uri, "destroy", "bench-virsh"]);
      if (i > 0) tv.push(c.ms);
    }
  } finally {
    await started.stop?.();
    rmSync(dir, { recursive: true, force: true });
  }
  report(
    {
      name,
      a: { label: "qcvm launch --detach (median above)", median: qcvmMedian },
      b: { label: "virsh create (libvirtd already running)", median: median(tv) },
      runs: tv.length,
    },
    0.5,
  );
}

/** A libvirtd to talk to: the running one, or the tests' own (test/helpers/libvirtd.ts, bundled
 *  here by esbuild: a private mount namespace, QEMU as libvirt-qemu, stdio_handler "file" so no
 *  virtlogd is needed; a bare `libvirtd` started here failed for want of virtlogd's socket). */
async function ensureLibvirtd() {
  const system = "qemu:///system";
  if (timeSync(["virsh", "-q", "-c", system, "version"]).status === 0) return { uri: system };
  const { build } = await import("esbuild");
  const out = join(mkdtempSync(join(tmpdir(), "qcvm-bench-libvirtd-")), "libvirtd.mjs");
  await build({
    entryPoints: [join(root, "test", "helpers", "libvirtd.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    outfile: out,
    logLevel: "silent",
  });
  const { libvirtdUnavailable, startLibvirtd } = await import(out);
  const why = libvirtdUnavailable();
  if (why) return { why };
  try {
    const d = await startLibvirtd();
    return { uri: d.uri, stop: () => d.stop() };
  } catch (e) {
    return { why: `libvirtd could not be started here: ${String(e.message).split("\n")[0]}` };
  } finally {
    rmSync(dirname(out), { recursive: true, force: true });
  }
}
if (!only || only === "launch") await launchBench();

// --- 5. guest-memfd-prealloc ------------------------------------------------------------------
// A stand-in for a paused SNP/TDX QEMU (test/helpers/gmem-vm.c: a KVM VM with two guest_memfds of
// the size) per run; qcvm pre-allocates one as a guest node bound to host node 0 (the helper in a
// VM cgroup, worker threads), and a raw fallocate of the other, one call from one thread, is the
// baseline. Throughput: the helper's allocation time against the raw call's (target: >= 80% of
// raw, i.e. <= 1.25x the time). Launch cost: preallocate() end to end (helper start included).
async function preallocBench() {
  const name = "guest-memfd-prealloc";
  const { build } = await import("esbuild");
  const work = mkdtempSync(join(tmpdir(), "qcvm-bench-prealloc-"));
  try {
    const standIn = join(work, "gmem-vm");
    const cc = spawnSync("cc", ["-O2", "-o", standIn, join(root, "test/helpers/gmem-vm.c")], { encoding: "utf8" });
    if (cc.status !== 0) return reportSkipped(name, `cc failed: ${cc.stderr.slice(0, 300)}`);
    const driver = join(work, "driver.mjs");
    await build({
      stdin: { contents: PREALLOC_DRIVER, resolveDir: root, loader: "ts" },
      outfile: driver,
      bundle: true,
      platform: "node",
      format: "esm",
      logLevel: "error",
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    });
    const avail = Number(/^MemAvailable:\s+(\d+)/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0) * 1024;
    for (const gib of [1, 4, 16]) {
      const bytes = gib * 2 ** 30;
      // Two files of the size (qcvm's and the raw baseline's) are allocated at once, plus slack;
      // where only one fits, the launch cost alone is measured (no raw baseline).
      const withRaw = 2 * bytes + 4 * 2 ** 30 <= avail;
      if (!withRaw && bytes + 4 * 2 ** 30 > avail) {
        reportSkipped(
          `${name} ${gib} GiB`,
          `needs ${gib + 4} GiB available, this host has ${(avail / 2 ** 30).toFixed(1)} GiB`,
        );
        continue;
      }
      const runs = gib >= 16 ? 1 : (runsArg ?? 3);
      const samples = [];
      for (let i = 0; i < runs; i++) {
        const sizes = withRaw ? [String(gib * 1024), String(gib * 1024)] : [String(gib * 1024)];
        const child = spawn(standIn, sizes, { stdio: ["pipe", "pipe", "inherit"] });
        const lines = await new Promise((resolve) => {
          let out = "";
          child.stdout.on("data", (d) => {
            out += d;
            if (out.includes("created\n") || /^(no-|create-)/m.test(out)) resolve(out);
          });
        });
        if (!lines.includes("created\n")) {
          child.kill("SIGKILL");
          return reportSkipped(name, `the stand-in says ${lines.trim()}`);
        }
        const raw = withRaw
          ? lines
              .split("\n")
              .filter((l) => l.startsWith("file "))[1]
              .split(" ")[1]
          : "-1";
        const r = spawnSync(
          process.execPath,
          [driver, String(child.pid), raw, String(bytes), i % 2 ? "qcvm-first" : "raw-first"],
          {
            encoding: "utf8",
            env: { ...process.env, NODE_PATH: join(root, "node_modules") },
          },
        );
        child.stdin.end();
        child.kill("SIGKILL");
        await new Promise((res) => child.once("exit", res));
        if (r.status !== 0) return reportSkipped(name, `driver failed: ${r.stderr.slice(-400)}`);
        samples.push(JSON.parse(r.stdout));
      }
      const bad = samples.find((x) => x.status !== "done");
      if (bad) return reportSkipped(name, `pre-allocation did not complete: ${JSON.stringify(bad).slice(0, 400)}`);
      const alloc = median(samples.map((x) => x.allocMs));
      const rawMs = median(samples.map((x) => x.rawMs));
      const total = median(samples.map((x) => x.totalMs));
      const rate = (ms) => `${(bytes / 2 ** 30 / (ms / 1000)).toFixed(1)} GiB/s`;
      if (!withRaw) {
        console.log(
          `${name} ${gib} GiB (one guest node, bind host node 0, ${samples[0].workers} workers; no room for a raw baseline)\n` +
            `  qcvm pre-allocation (helper's workers) ${rate(alloc)}  ${alloc.toFixed(0)} ms\n` +
            `  launch cost (preallocate end to end, helper start included): ${total.toFixed(0)} ms, ${rate(total)}  (reported)\n`,
        );
        continue;
      }
      report(
        {
          name: `${name} ${gib} GiB (one guest node, bind host node 0, ${samples[0].workers} workers)`,
          a: { label: `qcvm pre-allocation (helper's workers) ${rate(alloc)}`, median: alloc },
          b: { label: `raw fallocate, one call ${rate(rawMs)}`, median: rawMs },
          runs,
        },
        1.25,
        `  launch cost (preallocate end to end, helper start included): ${total.toFixed(0)} ms, ${rate(total)}\n`,
      );
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const PREALLOC_DRIVER = `
import { preallocate } from "./src/launch/prealloc.ts";
import { loadNative } from "./src/io/native.ts";
import { createVmCgroup, openCgroupLayout } from "./src/vm/cgroup.ts";
import { probeHost } from "./src/probe/host.ts";
const [pid, rawFd, bytes, order] = process.argv.slice(2).map((x, i) => (i < 3 ? Number(x) : x));
const host = probeHost("/");
const node = host.nodes[0].id;
const native = loadNative();
if ("unavailable" in native) throw new Error(native.unavailable);
const { cgroup } = createVmCgroup(openCgroupLayout(host), "bench-prealloc-" + process.pid, [
  { name: "", cpus: [], mems: [node], tasks: "process" },
]);
const raw = () => {
  if (rawFd < 0) return undefined;
  const pidfd = native.pidfdOpen(pid);
  const fd = native.pidfdGetfd(pidfd, rawFd);
  const t0 = performance.now();
  native.fallocateKeepSize(fd, 0, bytes);
  const ms = performance.now() - t0;
  native.close(fd);
  native.close(pidfd);
  return ms;
};
const qcvm = async () => {
  const t0 = performance.now();
  const out = await preallocate({
    pid,
    cgroup,
    nodes: [{ guestNode: 0, hostNodes: [node], policy: "bind", sizeBytes: bytes, cpus: [0],
      shared: { mechanism: "none", reason: "" }, private: { mechanism: "guest-memfd-prealloc", fidelity: "exact-at-launch", reason: "" } }],
  });
  return { out, totalMs: performance.now() - t0 };
};
let rawMs, q;
try {
  if (order === "raw-first") { rawMs = raw(); q = await qcvm(); } else { q = await qcvm(); rawMs = raw(); }
} finally {
  cgroup.remove();
}
process.stdout.write(JSON.stringify({ status: q.out.status, error: q.out.reason ?? q.out.nodes[0]?.error, rawMs,
  allocMs: q.out.nodes[0]?.ms, totalMs: q.totalMs, workers: q.out.workers }));
`;
if (!only || only === "prealloc") await preallocBench();

const missed = results.filter((r) => !r.ok);
console.log(missed.length ? `${missed.length} target(s) missed` : "all targets met");
process.exitCode = missed.length ? 1 : 0;
