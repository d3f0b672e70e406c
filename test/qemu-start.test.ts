// Every published profile that this machine's QEMU (7.2) can start is rendered exactly as
// `qcvm render` does, started paused (-S) with a QMP socket, and checked through QMP: the memory
// backends (query-memdev) and the vCPU-to-node assignment (query-cpus-fast) are what the profile
// asked for. KVM when /dev/kvm is KVM's device and opens read-write, TCG otherwise. SEV, SEV-ES, SEV-SNP and
// TDX need the hardware, so confidential profiles are not started here (their argv is covered by
// the golden tests).
import { mkdtempSync, readdirSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { processPolicyArgv } from "../src/render/process-policy.js";
import { builtinCapabilities } from "../src/probe/capabilities.js";
import { loadContext } from "../src/pipeline/context.js";
import { spawn } from "./helpers/exec.js";
import { probeKvm } from "../src/probe/host.js";
import { QmpClient } from "../src/vm/qmp.js";
import { renderArgv } from "../src/render/render.js";
import { inlineProfileFiles } from "../src/render/files.js";
import type { Plan, Profile } from "../src/core/types.js";
import { makePlan, makeProfile, nodes } from "./helpers/profile.js";

const root = join(import.meta.dirname, "..");

// KVM's device opens read-write: an empty file or a driverless node at /dev/kvm does not count.
const kvm = probeKvm();
const KVM = kvm.ok;

interface Started {
  client: QmpClient;
  exited: Promise<{ exitCode?: number; stderr?: unknown }>;
  kill: AbortController;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A temp dir whose name has a comma in it: every path qcvm passes to QEMU must survive that. */
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "qcvm,start-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Render the profile (TCG instead of KVM where KVM is unusable) paused, with QMP at `sock`. */
function renderPaused(profile: Profile, plan: Plan, sock: string): string[] {
  const machine = KVM ? profile.machine : { ...profile.machine, accel: "tcg" as const };
  const p: Profile = { ...profile, machine, qmp: sock, extraArgs: [...profile.extraArgs, "-S"] };
  const inlined = inlineProfileFiles(p);
  expect(inlined.errors).toEqual([]);
  const r = renderArgv(inlined.value!, plan, builtinCapabilities(p.qemu.version));
  expect(r.errors).toEqual([]);
  return [...processPolicyArgv(plan.launch.processPolicy), ...r.value!];
}

async function start(argv: string[], sock: string): Promise<Started> {
  const kill = new AbortController();
  // The subprocess is also a promise that settles when QEMU exits: kept as `exited`.
  const exited: Started["exited"] = spawn(argv, { stdio: ["ignore", "ignore", "pipe"], cancelSignal: kill.signal });
  const gone = new AbortController();
  void exited.then(() => gone.abort());
  cleanups.push(async () => {
    kill.abort();
    await exited;
  });
  let client: QmpClient;
  try {
    client = await QmpClient.connect(sock, { timeoutMs: 30_000, signal: gone.signal });
  } catch (e) {
    const r = await Promise.race([exited, new Promise<undefined>((res) => setTimeout(res, 100))]);
    throw new Error(
      `QEMU did not come up: ${String(e)}\n${String((r?.stderr as string | undefined) ?? "")}\nargv: ${JSON.stringify(argv)}`,
      { cause: e },
    );
  }
  cleanups.push(() => client.close());
  return { client, exited, kill };
}

/** Quit over QMP; QEMU must exit with status 0. */
async function quit(s: Started): Promise<void> {
  const r = await s.client.quit();
  expect(r).toEqual({ return: {} });
  const done = await s.exited;
  expect(done.exitCode, String((done.stderr as string | undefined) ?? "")).toBe(0);
}

interface Memdev {
  id: string;
  size: number;
  "host-nodes": number[];
  policy: string;
  share: boolean;
  prealloc: boolean;
}

interface CpuInfo {
  "cpu-index": number;
  props: { "node-id"?: number };
}

const published = readdirSync(join(root, "profiles"))
  .filter((f) => f.endsWith(".yaml"))
  .sort()
  .map((f) => `profiles/${f}`);
const typeOf = new Map<string, string>();
for (const file of published)
  typeOf.set(file, (await loadContext({ profile: join(root, file) })).profile.confidential.type);
// SEV, SEV-ES, SEV-SNP and TDX need the hardware; their command lines are covered by test/golden.
const startable = published.filter((f) => typeOf.get(f) === "none");

describe(`published profiles start under QEMU (${KVM ? "KVM" : "TCG: /dev/kvm is not usable here"})`, () => {
  if (!KVM) console.log(`qemu-start: ${kvm.problem}; starting guests with accel=tcg instead`);

  it("starts every plain profile, and leaves out only confidential ones", () => {
    expect(startable).toEqual(expect.arrayContaining(["profiles/kvm-1node.yaml", "profiles/kvm-2node.yaml"]));
    for (const f of published.filter((f) => !startable.includes(f)))
      expect(["sev", "sev-es", "sev-snp", "tdx"]).toContain(typeOf.get(f));
  });

  it.each(startable)("%s: QMP shows the backends and vCPU nodes the profile asked for", async (file) => {
    const ctx = await loadContext({ profile: join(root, file) });
    const { profile } = ctx;
    expect(ctx.plan.errors).toEqual([]);
    const dir = tempDir();
    const sock = join(dir, "qmp.sock");
    const s = await start(renderPaused(profile, ctx.plan, sock), sock);

    const memdevs = await s.client.command<Memdev[]>("query-memdev");
    const asked =
      profile.numa.nodes.length > 0
        ? profile.numa.nodes.map((n) => ({
            id: `mem${n.id}`,
            size: n.memoryBytes,
            hostNodes: n.hostNodes,
            policy: n.policy,
          }))
        : [
            {
              id: "mem0",
              size: profile.memory.sizeBytes,
              hostNodes: profile.memory.hostNodes,
              policy: profile.memory.policy,
            },
          ];
    expect(
      memdevs
        .map((m) => ({
          id: m.id,
          size: m.size,
          hostNodes: m["host-nodes"],
          policy: m.policy,
          share: m.share,
          prealloc: m.prealloc,
        }))
        .sort((a, b) => a.id.localeCompare(b.id)),
    ).toEqual(asked.map((a) => ({ ...a, share: profile.memory.share, prealloc: profile.memory.prealloc })));

    const cpus = await s.client.command<CpuInfo[]>("query-cpus-fast");
    expect(cpus).toHaveLength(profile.cpu.count);
    const nodeOf = (i: number) => profile.numa.nodes.find((n) => n.cpus.includes(i))?.id;
    for (const c of cpus)
      expect({ cpu: c["cpu-index"], node: c.props["node-id"] }).toEqual({
        cpu: c["cpu-index"],
        node: nodeOf(c["cpu-index"]),
      });

    await quit(s);
  });
});

describe("escaped values reach QEMU as one value", () => {
  it("a name, a mem-path, a serial log and a QMP socket with commas in them", async () => {
    const dir = tempDir();
    const memDir = join(dir, "mem,share=off");
    mkdirSync(memDir);
    const sock = join(dir, "qmp,server=off.sock");
    const log = join(dir, "serial,append=on.log");
    const profile = makeProfile({
      name: "evil,debug-threads=off,process=x",
      machine: { accel: KVM ? "kvm" : "tcg" },
      cpu: { model: "qemu64" }, // as in profiles/kvm-*.yaml: starts on nested hosts too
      memory: { sizeBytes: 256 * 1024 * 1024, backend: "file", path: memDir, share: true },
      serial: { kind: "file", path: log },
    });
    const s = await start(renderPaused(profile, makePlan(profile), sock), sock);

    expect(await s.client.command("query-name")).toEqual({ name: "evil,debug-threads=off,process=x" });
    expect(await s.client.command("qom-get", { path: "/objects/mem0", property: "mem-path" })).toBe(memDir);
    const [mem] = await s.client.command<Memdev[]>("query-memdev");
    expect(mem).toMatchObject({ id: "mem0", share: true });
    const chardevs = await s.client.command<Array<{ label: string; filename: string }>>("query-chardev");
    expect(chardevs.find((c) => c.label === "serial0")?.filename).toBe("file");
    expect(readdirSync(dir).sort()).toEqual(["mem,share=off", "qmp,server=off.sock", "serial,append=on.log"]);

    await quit(s);
  });
});

describe("lists reach QEMU as lists", () => {
  // Non-contiguous sets are repeated keys (`cpus=0,cpus=2`): QemuOpts' OptsVisitor gathers them
  // into one list. If QEMU kept only the last key, vCPU 0 would land in no node (node 0 by default).
  it("non-contiguous vCPU sets put each vCPU in the node the profile names", async () => {
    const dir = tempDir();
    const sock = join(dir, "qmp.sock");
    const profile = makeProfile({
      machine: { accel: KVM ? "kvm" : "tcg" },
      cpu: { model: "qemu64", count: 4, cores: 4 },
      memory: { sizeBytes: 256 * 1024 * 1024 },
      numa: { nodes: nodes([[0, 2], 128, [], "default"], [[1, 3], 128, [], "default"]), distances: [] },
    });
    const argv = renderPaused(profile, makePlan(profile), sock);
    expect(argv).toContain("node,nodeid=0,cpus=0,cpus=2,memdev=mem0");
    const s = await start(argv, sock);
    const cpus = await s.client.command<CpuInfo[]>("query-cpus-fast");
    expect(cpus.map((c) => [c["cpu-index"], c.props["node-id"]]).sort()).toEqual([
      [0, 0],
      [1, 1],
      [2, 0],
      [3, 1],
    ]);
    await quit(s);
  });
});
