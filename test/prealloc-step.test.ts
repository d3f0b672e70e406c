// The launch step around guest-memfd-prealloc (src/launch/prealloc-step.ts): what it says and
// which placements it reports lost, for each outcome, on plans as the planner makes them.
import { describe, expect, it } from "vitest";
import { checkPrealloc, describePrealloc } from "../src/launch/prealloc-step.js";
import type { PreallocOutcome } from "../src/launch/prealloc.js";
import { planPlacement } from "../src/plan/plan.js";
import { builtinCapabilities } from "../src/probe/capabilities.js";
import { formatLost } from "../src/vm/state.js";
import { fixtureHost, loadProfile } from "./helpers/host.js";

const GiB = 2 ** 30;
const profile = await loadProfile("snp-2node.yaml", ["placement.private=auto"]);
const plan = planPlacement(profile, fixtureHost("epyc-2s4n"), builtinCapabilities(profile.qemu.version));
const node = (guestNode: number, extra: Partial<PreallocOutcome["nodes"][number]> = {}) => ({
  guestNode,
  hostNodes: [guestNode],
  policy: "bind",
  mode: "MPOL_BIND",
  bytes: 4 * GiB,
  doneBytes: 4 * GiB,
  workers: 1,
  ms: 1000,
  ...extra,
});

describe("describePrealloc", () => {
  it("done: one line per node with mode, nodes, time and rate; nothing lost", () => {
    const r = describePrealloc(plan, { status: "done", nodes: [node(0), node(1)], notes: [], ms: 1000, workers: 2 });
    expect(r.message).toBe(
      "private memory pre-allocated: guest node 0 4 GiB MPOL_BIND 0, guest node 1 4 GiB MPOL_BIND 1 (1000 ms, 8 GiB/s, 2 workers)",
    );
    expect(r.lost).toEqual([]);
    expect(r.record.nodes.map((n) => [n.guestNode, n.doneBytes])).toEqual([
      [0, 4 * GiB],
      [1, 4 * GiB],
    ]);
  });

  it("a node that failed is lost, naming the call and errno, with what it falls back to", () => {
    const failed = node(1, { doneBytes: GiB, error: "fallocate failed: ENOMEM (...)", errno: "ENOMEM" });
    const r = describePrealloc(plan, { status: "partial", nodes: [node(0), failed], notes: [], ms: 500, workers: 2 });
    expect(r.lost.map(formatLost)).toEqual([
      "guest node 1 private memory: guest-memfd-prealloc not applied (fallocate failed: ENOMEM (...)); 1 GiB of 4 GiB was pre-allocated on plan; its private pages are placed on first touch instead (vcpu-cpuset: cgroup vcpu-node1, mems 1); pages QEMU populates at launch may land elsewhere",
    ]);
  });

  it("skipped (ambiguous files, no koffi, QEMU with no guest_memfd): every planned node is lost", () => {
    const r = describePrealloc(plan, {
      status: "skipped",
      reason: "QEMU holds no guest_memfd (...): nothing to pre-allocate",
      nodes: [],
      notes: [],
      ms: 1,
      workers: 0,
    });
    expect(r.message).toBe(
      "private memory: not pre-allocated (QEMU holds no guest_memfd (...): nothing to pre-allocate)",
    );
    expect(r.lost.map((l) => [l.guestNode, l.mechanism])).toEqual([
      [0, "guest-memfd-prealloc"],
      [1, "guest-memfd-prealloc"],
    ]);
  });
});

describe("checkPrealloc (stats right after launch)", () => {
  const record = {
    status: "done" as const,
    ms: 10,
    nodes: [
      { guestNode: 0, hostNodes: [0], bytes: 4 * GiB, doneBytes: 4 * GiB },
      { guestNode: 1, hostNodes: [1, 2], bytes: 4 * GiB, doneBytes: 4 * GiB },
    ],
  };
  it("per host node: pre-allocated bytes (interleave split evenly) against private bytes now, >= 99% holds", () => {
    const rows = checkPrealloc(record, [
      { hostNode: 0, privateBytes: 4 * GiB + 4096 },
      { hostNode: 1, privateBytes: 2 * GiB },
      { hostNode: 2, privateBytes: 1.5 * GiB },
    ]);
    expect(rows.map((r) => [r.hostNode, r.preallocatedBytes, r.ok])).toEqual([
      [0, 4 * GiB, true],
      [1, 2 * GiB, true],
      [2, 2 * GiB, false],
    ]);
    expect(rows[2]!.ratio).toBe(0.75);
  });
  it("without a memory cgroup it cannot say: null, not a made-up figure", () => {
    expect(checkPrealloc(record, [{ hostNode: 0, privateBytes: null }])[0]).toMatchObject({ ratio: null, ok: null });
    expect(checkPrealloc(undefined, [])).toEqual([]);
  });
});
