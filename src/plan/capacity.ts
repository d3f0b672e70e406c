// Capacity: how much of each host node (and of its hugepage pools) this VM needs, from where the
// plan puts each half of each guest node's memory, and the errors or warnings when it does not fit.
// Pure.
import { diag } from "../core/diagnostics.js";
import { HUGEPAGE_BYTES, TIGHT_RATIO, formatBytes, nodeById } from "./model.js";
import type { Ctx, Outcome, Placement } from "./model.js";
import type { SharedOutcome } from "./shared.js";
import type { CapacityRow, Diagnostic, HostInfo, HostNode } from "../core/types.js";

/** Spread `amount` over a placement's nodes: interleave evenly (or by weights), preferred all on
 *  the first node, bind evenly (bind fills the faulting thread's local node first; with vCPUs
 *  spread over those nodes' CPUs, even is the expectation), default evenly over nodes with CPUs. */
export function spread(place: Placement, amount: number, host: HostInfo): Map<number, number> {
  const out = new Map<number, number>();
  if (amount <= 0) return out;
  let nodes = place.nodes.filter((n) => nodeById(host, n));
  if (place.policy === "default" || nodes.length === 0) {
    const withCpus = host.nodes.filter((n) => n.cpus.length > 0).map((n) => n.id);
    nodes = withCpus.length > 0 ? withCpus : host.nodes.map((n) => n.id);
  }
  if (nodes.length === 0) return out;
  if (place.policy === "preferred") {
    out.set(nodes[0]!, amount);
    return out;
  }
  const weights = nodes.map((n) => (place.policy === "weighted-interleave" ? (place.weights?.[n] ?? 1) : 1));
  const total = weights.reduce((a, b) => a + b, 0);
  let given = 0;
  nodes.forEach((n, k) => {
    const share = k === nodes.length - 1 ? amount - given : Math.floor((amount * weights[k]!) / total);
    given += share;
    out.set(n, (out.get(n) ?? 0) + share);
  });
  return out;
}

interface NodeNeed {
  need: number;
  upTo: number;
  hardNeed: number;
  pages: number;
  hardPages: number;
  /** Private bytes guest-memfd-prealloc commits before the guest starts. */
  atLaunch: number;
  /** Guest nodes with memory here, for pointing a diagnostic at the field to change. */
  guests: Set<number>;
}

/** Diagnostics with the guest node indexes they concern (capacity is per host node). */
export type Concerns = Map<Diagnostic, number[]>;

/**
 * Capacity model, per host node:
 *  - A guest without guest_memfd (none, SEV, SEV-ES) needs its whole size in the shared backend
 *    (SEV pins all of it at launch; a plain guest touches all of it in time).
 *  - An SNP/TDX guest needs its whole size as private guest_memfd pages: regular pages, never
 *    from hugetlb pools (Linux 6.18 guest_memfd has no hugetlb). Its shared half is touched only
 *    for pages the guest shares, and QEMU frees a page's other half on each conversion, so
 *    without prealloc the shared half is counted as "up to" (upToBytes), not as need; with
 *    prealloc it is populated up front and stays: need = private + shared, double the size.
 *    With in-place conversion (guest_memfd mempolicy for SNP) shared pages are the guest_memfd's
 *    own: one copy, nothing more to count. guest-memfd-prealloc commits the private half at
 *    launch, before the guest starts (atLaunchBytes): the same need, due earlier.
 *  - A hugetlb shared half needs its pages from the node's pool of that size: QEMU's mapping
 *    reserves the whole size at start (unless reserve=off), so the full size counts.
 */
function collectNeeds(ctx: Ctx, guestMemfd: boolean, shared: SharedOutcome[], priv: Outcome[]): Map<number, NodeNeed> {
  const { profile, host } = ctx;
  const hp = profile.memory.hugepages;
  const hpBytes = hp === "none" ? 0 : HUGEPAGE_BYTES[hp];
  const needs = new Map<number, NodeNeed>();
  const at = (n: number, i: number) => {
    let v = needs.get(n);
    if (!v)
      needs.set(n, (v = { need: 0, upTo: 0, hardNeed: 0, pages: 0, hardPages: 0, atLaunch: 0, guests: new Set() }));
    v.guests.add(i);
    return v;
  };
  ctx.nodes.forEach((g, i) => {
    const size = g.memoryBytes;
    const sh = shared[i]!.place;
    if (guestMemfd) {
      for (const [n, b] of spread(priv[i]!.place, size, host)) {
        const v = at(n, i);
        v.need += b;
        if (priv[i]!.place.hard) v.hardNeed += b;
        if (priv[i]!.mechanism === "guest-memfd-prealloc") v.atLaunch += b;
      }
    }
    if (shared[i]!.inPrivate) return;
    const sharedCertain = !guestMemfd || profile.memory.prealloc;
    if (hpBytes > 0) {
      if (!sharedCertain && profile.memory.reserve === false) return;
      for (const [n, b] of spread(sh, size, host)) {
        const pages = Math.ceil(b / hpBytes);
        const v = at(n, i);
        v.pages += pages;
        if (sh.hard) v.hardPages += pages;
      }
      return;
    }
    for (const [n, b] of spread(sh, size, host)) {
      const v = at(n, i);
      if (sharedCertain) {
        v.need += b;
        if (sh.hard) v.hardNeed += b;
      } else v.upTo += b;
    }
  });
  return needs;
}

interface Totals {
  free: number;
  need: number;
  freePages: number;
  pages: number;
}

interface Sink {
  errors: Diagnostic[];
  warnings: Diagnostic[];
  concerns: Concerns;
}

function emit(sink: Sink, d: Diagnostic, guests: Set<number>): void {
  (d.severity === "error" ? sink.errors : sink.warnings).push(d);
  sink.concerns.set(d, [...guests]);
}

/** Regular memory on one host node: insufficient (an error when nothing may spill) or tight. */
function memoryDiagnostic(hn: HostNode, v: NodeNeed, t: Totals, path: string, sink: Sink): void {
  const status = statusOf(v.need, hn.memFreeBytes);
  if (status === "insufficient") {
    const hard = v.hardNeed > hn.memFreeBytes || t.need > t.free;
    const message = hard
      ? `host node ${hn.id} needs ${formatBytes(v.need)} for this VM but has ${formatBytes(hn.memFreeBytes)} free${t.need > t.free ? ` (the host has ${formatBytes(t.free)} free in all)` : ", and the placement does not let it spill to other nodes"}`
      : `host node ${hn.id} would take ${formatBytes(v.need)} of this VM but has ${formatBytes(hn.memFreeBytes)} free: the soft policy spills the rest to other nodes`;
    const hint = hard
      ? "shrink memory, move guest nodes to other host nodes, or free memory on that node"
      : "expect part of the memory off its planned node";
    emit(
      sink,
      diag(hard ? "error" : "warning", "capacity.insufficient", path, message, { got: formatBytes(v.need), hint }),
      v.guests,
    );
  } else if (status === "tight") {
    const message = `host node ${hn.id} needs ${formatBytes(v.need)} of its ${formatBytes(hn.memFreeBytes)} free (over ${TIGHT_RATIO * 100}%)`;
    emit(
      sink,
      diag("warning", "capacity.tight", path, message, {
        got: formatBytes(v.need),
        hint: "the page cache and other VMs may push it over",
      }),
      v.guests,
    );
  }
}

/** One host node's hugepage pool: insufficient (an error when nothing may spill) or tight. */
function hugepageDiagnostic(hn: HostNode, v: NodeNeed, t: Totals, row: CapacityRow, sink: Sink): void {
  if (!row.hugepages) return;
  const { need, free, size } = row.hugepages;
  const status = statusOf(need, free);
  if (status === "ok") return;
  const bytes = HUGEPAGE_BYTES[size];
  if (status === "insufficient") {
    const hard = v.hardPages > free || t.pages > t.freePages;
    const message = `host node ${hn.id} needs ${need} free ${size} hugepages (${formatBytes(need * bytes)}) but its pool has ${free}${hard ? "" : ": the soft policy takes the rest from other nodes' pools"}`;
    const hint = `raise /sys/devices/system/node/node${hn.id}/hugepages/hugepages-${bytes / 1024}kB/nr_hugepages, or use another node`;
    emit(
      sink,
      diag(hard ? "error" : "warning", "capacity.hugepages", "memory.hugepages", message, { got: size, hint }),
      v.guests,
    );
    return;
  }
  const message = `host node ${hn.id} needs ${need} of its ${free} free ${size} hugepages (over ${TIGHT_RATIO * 100}%)`;
  emit(sink, diag("warning", "capacity.hugepages-tight", "memory.hugepages", message, { got: size }), v.guests);
}

/**
 * Capacity rows per host node with memory of this VM, and their diagnostics. Soft placements
 * (preferred, interleave, default) spill to other nodes when one fills, so a shortfall there is an
 * error only when the host as a whole cannot hold the VM.
 */
export function planCapacity(
  ctx: Ctx,
  guestMemfd: boolean,
  shared: SharedOutcome[],
  priv: Outcome[],
  sink: Sink,
): CapacityRow[] {
  const { profile, host } = ctx;
  const hp = profile.memory.hugepages;
  const needs = collectNeeds(ctx, guestMemfd, shared, priv);
  const totals: Totals = {
    free: host.nodes.reduce((a, n) => a + n.memFreeBytes, 0),
    need: [...needs.values()].reduce((a, v) => a + v.need, 0),
    freePages: hp === "none" ? 0 : host.nodes.reduce((a, n) => a + n.hugepages[hp].free, 0),
    pages: [...needs.values()].reduce((a, v) => a + v.pages, 0),
  };
  const rows: CapacityRow[] = [];
  for (const hn of [...host.nodes].sort((a, b) => a.id - b.id)) {
    const v = needs.get(hn.id);
    if (!v || (v.need === 0 && v.upTo === 0 && v.pages === 0)) continue;
    const row: CapacityRow = {
      hostNode: hn.id,
      needBytes: v.need,
      freeBytes: hn.memFreeBytes,
      status: statusOf(v.need, hn.memFreeBytes),
    };
    if (v.upTo > 0) row.upToBytes = v.upTo;
    if (v.atLaunch > 0) row.atLaunchBytes = v.atLaunch;
    if (hp !== "none" && v.pages > 0) {
      row.hugepages = { size: hp, need: v.pages, free: hn.hugepages[hp].free };
      row.status = worse(row.status, statusOf(v.pages, row.hugepages.free));
    }
    rows.push(row);
    // One guest node's memory here: point at its size; several: at the total.
    const only = v.guests.size === 1 ? [...v.guests][0]! : undefined;
    const path = only !== undefined && ctx.paths[only] !== "memory" ? `${ctx.paths[only]}.memory` : "memory.size";
    memoryDiagnostic(hn, v, totals, path, sink);
    hugepageDiagnostic(hn, v, totals, row, sink);
  }
  return rows;
}

function statusOf(need: number, free: number): CapacityRow["status"] {
  if (need > free) return "insufficient";
  if (need > TIGHT_RATIO * free) return "tight";
  return "ok";
}

function worse(a: CapacityRow["status"], b: CapacityRow["status"]): CapacityRow["status"] {
  const r = { ok: 0, tight: 1, insufficient: 2 };
  return r[a] >= r[b] ? a : b;
}
