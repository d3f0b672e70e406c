// Rules on the name, the vCPUs, memory sizes, NUMA nodes, placement policies, huge pages and
// preallocation: what the schema cannot say about them.
import { formatList } from "../core/lists.js";
import { formatSize, HUGEPAGE_BYTES, parseSize, sizeProblem } from "../core/sizes.js";
import { usesGuestMemfd } from "../core/confidential.js";
import { needVersion, s } from "./rule-context.js";
import type { Rule, RuleContext } from "./rule-context.js";

export const name: Rule = (ctx) => {
  if (ctx.profile.name === "") {
    ctx.error("name.missing", "name", "is missing, and the file name is not a valid VM name", {
      hint: "add name: with lowercase letters, digits and '-', or rename the file",
    });
  }
};

// --- CPU -------------------------------------------------------------------------------------

export const cpuTopology: Rule = (ctx) => {
  const { cpu } = ctx.profile;
  const product = cpu.sockets * cpu.dies * cpu.cores * cpu.threads;
  if (product !== cpu.count) {
    ctx.error(
      "cpu.topology",
      ctx.has("cpu.count") ? "cpu.count" : "cpu",
      `count must equal sockets * dies * cores * threads (${cpu.sockets} * ${cpu.dies} * ${cpu.cores} * ${cpu.threads} = ${product})`,
      { got: cpu.count, hint: "give count alone, or the topology alone, or make them agree" },
    );
  }
};

export const cpuModel: Rule = (ctx) => {
  const { machine, cpu, confidential } = ctx.profile;
  if (machine.accel === "tcg" && cpu.model === "host") {
    ctx.warn("cpu.host-tcg", "cpu.model", "host is a KVM-only CPU model; with accel tcg QEMU refuses it", {
      got: "host",
      hint: "use max, or leave cpu.model out: tcg defaults to max",
    });
  }
  if (machine.accel === "tcg" && confidential.type !== "none") {
    ctx.error("machine.tcg-confidential", "machine.accel", `confidential guests (${confidential.type}) need KVM`, {
      got: "tcg",
      hint: "use accel kvm on a host with the hardware, or confidential.type none",
    });
  }
};

// --- Memory and NUMA -------------------------------------------------------------------------

export const numaCpus: Rule = (ctx) => {
  const { nodes } = ctx.profile.numa;
  if (nodes.length === 0) return;
  const count = ctx.profile.cpu.count;
  const owner = new Map<number, number>();
  nodes.forEach((node, i) => {
    const dup = new Set<number>();
    const outOfRange: number[] = [];
    for (const c of node.cpus) {
      if (c >= count) outOfRange.push(c);
      else if (owner.has(c)) dup.add(c);
      else owner.set(c, i);
    }
    if (outOfRange.length > 0) {
      ctx.error(
        "numa.cpus-range",
        `numa.nodes[${i}].cpus`,
        `vCPU ${formatList(outOfRange)} does not exist (the guest has ${s(count, "vCPU")}, 0-${count - 1})`,
        {
          got: ctx.written(`numa.nodes[${i}].cpus`),
          hint: "raise cpu.count or fix the list",
        },
      );
    }
    for (const c of dup) {
      ctx.error("numa.cpus-overlap", `numa.nodes[${i}].cpus`, `vCPU ${c} is already in numa.nodes[${owner.get(c)}]`, {
        got: ctx.written(`numa.nodes[${i}].cpus`),
        hint: "each vCPU belongs to exactly one node",
      });
    }
  });
  const missing: number[] = [];
  for (let c = 0; c < count; c++) if (!owner.has(c)) missing.push(c);
  if (missing.length > 0) {
    ctx.error(
      "numa.cpus-cover",
      "numa.nodes",
      `${missing.length === 1 ? "vCPU" : "vCPUs"} ${formatList(missing)} ${missing.length === 1 ? "is" : "are"} in no node; every vCPU must be in exactly one node`,
      {
        got: nodes.map((n) => formatList(n.cpus)),
        hint: `cpu.count is ${count}`,
      },
    );
  }
};

/** memory.size and every numa.nodes[].memory: zero, beyond 2^53, beyond what a guest can address,
 *  or a size QEMU would round (see QEMU_RAM_ALIGN in core/sizes.ts). */
export const sizes: Rule = (ctx) => {
  const paths = ["memory.size", ...ctx.profile.numa.nodes.map((_, i) => `numa.nodes[${i}].memory`)];
  for (const path of paths) {
    const written = ctx.written(path);
    if (written === undefined) continue;
    // A node's 0 has its own message (numa.memory-zero).
    if (path !== "memory.size" && parseSize(written) === 0) continue;
    const problem = sizeProblem(written);
    if (problem)
      ctx.error("memory.size-invalid", path, problem.message, {
        got: written,
        ...(problem.hint ? { hint: problem.hint } : {}),
      });
  }
};

/** Every size the NUMA rules add up was read exactly (else `sizes` reported it). */
function sizesReadable(ctx: RuleContext): boolean {
  const all = [
    ctx.written("memory.size") ?? "1G",
    ...ctx.profile.numa.nodes.map((_, i) => ctx.written(`numa.nodes[${i}].memory`)),
  ];
  return all.every((v) => v === undefined || parseSize(v) !== undefined);
}

export const numaMemory: Rule = (ctx) => {
  const { nodes } = ctx.profile.numa;
  if (nodes.length === 0 || !sizesReadable(ctx)) return;
  const sum = nodes.reduce((a, n) => a + n.memoryBytes, 0);
  const total = ctx.profile.memory.sizeBytes;
  if (sum !== total) {
    ctx.error(
      "numa.memory-sum",
      "numa.nodes",
      `node memory sums to ${formatSize(sum)} but memory.size is ${formatSize(total)}`,
      {
        got: nodes.map((n) => formatSize(n.memoryBytes)),
        hint: "QEMU requires the nodes' memory to add up to -m",
      },
    );
  }
  nodes.forEach((n, i) => {
    if (n.memoryBytes === 0)
      ctx.error("numa.memory-zero", `numa.nodes[${i}].memory`, "must be more than 0", {
        got: ctx.written(`numa.nodes[${i}].memory`),
      });
  });
};

/** policy/hostNodes/weights on memory (no nodes) or on each guest node. */
function placementRules(
  ctx: RuleContext,
  base: string,
  p: { policy: string; hostNodes: number[]; weights?: Record<number, number> },
): void {
  const policyWritten = ctx.has(`${base}.policy`);
  if (p.policy === "default") {
    if (p.hostNodes.length > 0) {
      ctx.error(
        "placement.host-nodes-default",
        `${base}.hostNodes`,
        "must be empty with policy default, which sets no policy",
        {
          got: ctx.written(`${base}.hostNodes`),
          hint: "set policy: bind, preferred or interleave, or remove hostNodes",
        },
      );
    }
  } else if (p.hostNodes.length === 0) {
    ctx.error(
      "placement.host-nodes-required",
      `${base}.${policyWritten ? "policy" : "hostNodes"}`,
      `policy ${p.policy} needs hostNodes`,
      {
        got: p.policy,
        hint: 'e.g. hostNodes: "0", or policy: default',
      },
    );
  }
  // Once per list, not once per id: "0-65535" is one mistake.
  const tooHigh = p.hostNodes.find((h) => h >= 128);
  if (tooHigh !== undefined)
    ctx.error("placement.host-node-range", `${base}.hostNodes`, "host node ids must be below 128 (QEMU's limit)", {
      got: tooHigh,
    });
  if (p.weights !== undefined) {
    if (p.policy !== "weighted-interleave") {
      ctx.error("placement.weights-policy", `${base}.weights`, "weights need policy weighted-interleave", {
        got: p.policy,
      });
    } else {
      const hostNodes = new Set(p.hostNodes);
      const extra = Object.keys(p.weights)
        .map(Number)
        .filter((n) => !hostNodes.has(n));
      if (extra.length > 0) {
        ctx.error(
          "placement.weights-nodes",
          `${base}.weights`,
          `weights name host node ${formatList(extra)}, which is not in hostNodes`,
          {
            got: p.weights,
            hint: `hostNodes is ${formatList(p.hostNodes) || "empty"}`,
          },
        );
      }
    }
  }
}

export const placement: Rule = (ctx) => {
  const { memory, numa } = ctx.profile;
  if (numa.nodes.length === 0) placementRules(ctx, "memory", memory);
  else {
    for (const k of ["hostNodes", "policy", "weights"]) {
      if (ctx.has(`memory.${k}`)) {
        ctx.warn("memory.placement-ignored", `memory.${k}`, "is ignored when numa.nodes is given", {
          hint: "set hostNodes/policy on each numa.nodes entry",
        });
      }
    }
    numa.nodes.forEach((n, i) => placementRules(ctx, `numa.nodes[${i}]`, n));
  }
};

export const distances: Rule = (ctx) => {
  const { nodes, distances: list } = ctx.profile.numa;
  const written = Array.isArray(ctx.written("numa.distances")) ? (ctx.written("numa.distances") as unknown[]) : [];
  written.forEach((_, i) => {
    const d = list[i]!;
    const path = `numa.distances[${i}]`;
    for (const end of ["from", "to"] as const) {
      if (d[end] >= nodes.length) {
        ctx.error(
          "numa.distance-node",
          `${path}.${end}`,
          nodes.length === 0
            ? "distances need numa.nodes"
            : `guest node ${d[end]} does not exist (numa.nodes has ${s(nodes.length, "node")})`,
          {
            got: d[end],
          },
        );
      }
    }
    if (d.from === d.to && d.value !== 10) {
      ctx.error("numa.distance-self", `${path}.value`, "the distance from a node to itself must be 10", {
        got: d.value,
      });
    } else if (d.from !== d.to && d.value <= 10) {
      ctx.error(
        "numa.distance-value",
        `${path}.value`,
        "distances between different nodes must be 11..255 (10 means local)",
        { got: d.value },
      );
    }
  });
  // Once any -numa dist is given, QEMU wants one for every pair of nodes and exits otherwise:
  // "The distance between node 0 and 2 is missing" (hw/core/numa.c validate_numa_distance, since
  // QEMU 2.10; checked with QEMU 7.2). The reverse direction is implied (normalize adds it).
  if (written.length === 0) return;
  // Linear in the distances given: a set of pairs, and the pairs walked only until enough missing
  // ones are found (each pair passed on the way is a given distance).
  const given = new Set<number>();
  for (const d of list)
    if (d.from < nodes.length && d.to < nodes.length)
      given.add(Math.min(d.from, d.to) * nodes.length + Math.max(d.from, d.to));
  const missing: string[] = [];
  const MAX_LISTED = 20;
  for (let a = 0; a < nodes.length && missing.length < MAX_LISTED; a++) {
    for (let b = a + 1; b < nodes.length && missing.length < MAX_LISTED; b++) {
      if (!given.has(a * nodes.length + b)) missing.push(`${a}-${b}`);
    }
  }
  if (missing.length > 0) {
    const [a, b] = missing[0]!.split("-");
    ctx.error(
      "numa.distance-missing",
      "numa.distances",
      `no distance for guest node pair${missing.length === 1 ? "" : "s"} ${missing.join(", ")}: once any distance is given, QEMU needs one for every pair of nodes`,
      {
        got: missing,
        hint: `add e.g. {from: ${a}, to: ${b}, value: 20}, or remove numa.distances to let QEMU use its defaults`,
      },
    );
  }
};

export const hugepages: Rule = (ctx) => {
  const { memory, numa } = ctx.profile;
  if (memory.backend === "ram" && memory.hugepages !== "none") {
    ctx.error("memory.hugepages-backend", "memory.hugepages", "the ram backend cannot use huge pages", {
      got: memory.hugepages,
      hint: "use backend memfd with hugepages, or file on a hugetlbfs mount",
    });
  }
  if (memory.backend === "file" && memory.path === undefined) {
    ctx.error("memory.file-path", "memory.backend", "the file backend needs memory.path", {
      got: "file",
      hint: "e.g. path: /dev/hugepages",
    });
  }
  if (memory.backend !== "file" && memory.path !== undefined) {
    ctx.error("memory.path-backend", "memory.path", `only the file backend uses a path`, {
      got: `backend ${memory.backend}`,
    });
  }
  if (memory.hugepages === "none") return;
  const page = HUGEPAGE_BYTES[memory.hugepages];
  if (memory.sizeBytes % page !== 0) {
    ctx.error(
      "memory.hugepage-multiple",
      "memory.size",
      `must be a multiple of the ${memory.hugepages} huge page size`,
      { got: formatSize(memory.sizeBytes) },
    );
  }
  numa.nodes.forEach((n, i) => {
    if (n.memoryBytes % page !== 0) {
      ctx.error(
        "memory.hugepage-multiple",
        `numa.nodes[${i}].memory`,
        `must be a multiple of the ${memory.hugepages} huge page size`,
        { got: formatSize(n.memoryBytes) },
      );
    }
  });
};

export const prealloc: Rule = (ctx) => {
  const { memory, confidential } = ctx.profile;
  if (memory.prealloc && usesGuestMemfd(confidential.type)) {
    ctx.warn(
      "memory.prealloc-guest-memfd",
      "memory.prealloc",
      `with ${confidential.type} the guest's private memory is in guest_memfd; prealloc pins a second, shared copy of all ${formatSize(memory.sizeBytes)} besides it (double the footprint)`,
      {
        got: true,
        hint: "leave prealloc off for sev-snp and tdx",
      },
    );
  }
  if (memory.preallocThreads !== undefined) {
    if (!memory.prealloc)
      ctx.warn("memory.prealloc-threads", "memory.preallocThreads", "has no effect without prealloc: true", {
        got: memory.preallocThreads,
      });
    needVersion(ctx, "prealloc-threads", "memory.preallocThreads");
  }
  if (memory.reserve !== undefined) needVersion(ctx, "reserve", "memory.reserve");
  // backends/hostmem.c refuses the pair in either order: "'prealloc=on' and 'reserve=off' are
  // incompatible" (QEMU 6.1, when reserve came).
  if (memory.prealloc && memory.reserve === false) {
    ctx.error(
      "memory.reserve-prealloc",
      "memory.reserve",
      "reserve: false cannot go with prealloc: true; QEMU refuses 'prealloc=on' with 'reserve=off'",
      {
        got: false,
        hint: "drop reserve (preallocated memory is reserved anyway), or turn prealloc off",
      },
    );
  }
};
