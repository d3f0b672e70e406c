// qcvm benchmarks: each comparison is measured side by side in one run, interleaved, and reported
// as medians and a ratio against its target. Run with `npm run bench` (builds first).
//   1. start-up: `qcvm render <profile>` vs `node -e 0`                  target <= 1.5x
//   2. validate: `qcvm validate` of 1,000 profiles vs ajv-cli (js-yaml)   target < 1.0x
//   3. launch:   `qcvm launch --detach` to vCPUs running with placement
//                vs QEMU alone reaching QMP-ready                          target <= 2x
// Options: --only render|validate|launch, --runs N. Exit 1 when a target is missed.
import { spawnSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, rmSync, readdirSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// The installed command (bin/qcvm: V8 startup snapshot when built by this node, else the ESM bundle).
const qcvm = join(root, "bin", "qcvm");
const args = process.argv.slice(2);
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
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
function report(r, target) {
  const ratio = r.a.median / r.b.median;
  const ok = ratio <= target;
  results.push({ ...r, ratio, target, ok });
  console.log(
    `${r.name}\n  ${r.a.label.padEnd(44)} ${r.a.median.toFixed(1).padStart(8)} ms (median of ${r.runs})\n` +
      `  ${r.b.label.padEnd(44)} ${r.b.median.toFixed(1).padStart(8)} ms\n` +
      `  ratio ${ratio.toFixed(2)}x  target <= ${target}x  ${ok ? "OK" : "MISSED"}\n`,
  );
}

// --- 1. start-up ------------------------------------------------------------------------------
if (!only || only === "render") {
  const profile = join(root, "profiles", "kvm-1node.yaml");
  const r = compare(
    "render: qcvm render profiles/kvm-1node.yaml vs node -e 0",
    { label: "qcvm render profiles/kvm-1node.yaml", argv: [qcvm, "render", profile] },
    { label: "node -e 0", argv: [process.execPath, "-e", "0"] },
    runsArg ?? 21,
    (cmd, w) => {
      if (w.status !== 0) throw new Error(`${cmd.label} failed (${w.status}):\n${w.stderr}`);
    },
  );
  report(r, 1.5);
}

// --- 2. validate 1,000 profiles -------------------------------------------------------------
if (!only || only === "validate") {
  const dir = mkdtempSync(join(tmpdir(), "qcvm-bench-"));
  const sources = readdirSync(join(root, "profiles"))
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => readFileSync(join(root, "profiles", f), "utf8"))
    // ajv-cli cannot follow extends:, so the corpus is self-contained profiles.
    .filter((text) => !/^extends:/m.test(text));
  for (let i = 0; i < 1000; i++) {
    const text = sources[i % sources.length].replace(/^name: .*$/m, `name: vm-${i}`);
    writeFileSync(join(dir, `vm-${i}.yaml`), text);
  }
  const ajvCli = join(root, "node_modules", "ajv-cli", "dist", "index.js");
  const r = compare(
    "validate: 1,000 profiles, qcvm validate vs ajv-cli (same schema, js-yaml)",
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
    (cmd, w) => {
      if (w.status !== 0)
        throw new Error(`${cmd.label} failed (${w.status}):\n${(w.stderr || w.stdout).slice(0, 2000)}`);
    },
  );
  rmSync(dir, { recursive: true, force: true });
  report(r, 1.0);
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
    const l = timeSync([qcvm, "launch", profile, "--detach", "--quiet", "--set", `name=${name}`, "--run-dir", runDir], {
      env,
    });
    if (l.status !== 0) throw new Error(`qcvm launch failed (${l.status}):\n${l.stderr}`);
    const s = timeSync([qcvm, "stop", name, "--force", "--run-dir", runDir], { env });
    if (s.status !== 0) throw new Error(`qcvm stop failed (${s.status}):\n${s.stderr}`);
    if (i > 0) {
      tq.push(alone);
      tl.push(l.ms);
    }
  }
  rmSync(runDir, { recursive: true, force: true });
  report(
    {
      name: `launch: profiles/kvm-2node.yaml (${kvmOk ? "KVM" : "TCG: /dev/kvm unusable"})`,
      a: { label: "qcvm launch --detach (placement applied, running)", median: median(tl) },
      b: { label: "QEMU alone to QMP-ready", median: median(tq) },
      runs,
    },
    2.0,
  );
}
if (!only || only === "launch") await launchBench();

const missed = results.filter((r) => !r.ok);
console.log(missed.length ? `${missed.length} target(s) missed` : "all targets met");
process.exitCode = missed.length ? 1 : 0;
