// Guest memory in the argv: one memory backend per guest NUMA node (or one for the whole guest),
// its thread-context for NUMA-local preallocation, the host-nodes/policy the plan chose for it, and
// the -numa node/dist options that attach the backends. Called by renderArgv() (render.ts).
import { invariant } from "../core/diagnostics.js";
import { hasFeature, missingFeatureMessage } from "../probe/capabilities.js";
import type { Feature } from "../probe/capabilities.js";
import type { GuestNumaNode, MemPolicy, PlanNode, PrivateBackend } from "../core/types.js";
import type { OptEntry } from "./qemu-opts.js";
import { RENDER_IDS } from "./ids.js";
import type { Renderer } from "./render.js";

const MiB = 1024 * 1024;
const HUGEPAGE_BYTES = { "2M": 2 * MiB, "1G": 1024 * MiB } as const;

/** Policies a QEMU memory backend knows (`policy=` of memory-backend-*; HostMemPolicy in qapi). */
const BACKEND_POLICIES: ReadonlySet<MemPolicy> = new Set(["bind", "preferred", "interleave"]);

/** One guest memory region: an explicit NUMA node, or the whole guest when it has none. */
interface MemoryRegion {
  guestNode: number;
  sizeBytes: number;
  cpus: number[];
  /** Profile path for messages: `numa.nodes[1]` or `memory`. */
  path: string;
}

function regions(r: Renderer): MemoryRegion[] {
  const { numa, memory, cpu } = r.profile;
  if (numa.nodes.length === 0) {
    return [{ guestNode: 0, sizeBytes: memory.sizeBytes, cpus: range(cpu.count), path: "memory" }];
  }
  return numa.nodes.map((n: GuestNumaNode, i) => ({
    guestNode: n.id,
    sizeBytes: n.memoryBytes,
    cpus: n.cpus,
    path: `numa.nodes[${i}]`,
  }));
}

/** The memory backends (and their thread-contexts), one per guest NUMA node or one for the guest. */
export function memoryArgs(r: Renderer): string[] {
  const { memory } = r.profile;
  const out: string[] = [];
  const gmem = gmemBackend(r);
  const profileType = `memory-backend-${memory.backend}`;
  const backendType = gmem?.qomType ?? profileType;
  if (backendType === profileType) r.need(profileType as Feature, "memory.backend");
  invariant(
    gmem?.guestMemfdProperty !== false || r.caps.types.includes(backendType),
    `planned ${backendType}, which QEMU ${r.caps.version} lacks`,
  );
  // The planner picks memory-backend-memfd guest-memfd=on only for a memfd profile; the rules
  // refuse a file backend without a path (memory.file-path) and hugepages on ram.
  invariant(!gmem?.guestMemfdProperty || memory.backend === "memfd", "guest-memfd=on planned on a non-memfd backend");
  invariant(memory.backend !== "file" || memory.path !== undefined, "file backend without memory.path");
  invariant(memory.hugepages === "none" || memory.backend !== "ram", "hugepages on memory-backend-ram");
  // A backend type no upstream QEMU has is rendered only with the properties the probe saw.
  const known = backendType !== profileType ? r.caps.properties[backendType] : undefined;
  if (memory.prealloc && memory.preallocThreads !== undefined) r.need("prealloc-threads", "memory.preallocThreads");
  if (memory.reserve !== undefined) r.need("reserve", "memory.reserve");

  for (const region of regions(r)) {
    const id = RENDER_IDS.backend(region.guestNode);
    const pn = r.planNode(region.guestNode);
    const policy = backendPolicy(r, region, pn);
    // The rules refuse a size that is not a multiple of the huge page (memory.hugepage-multiple).
    invariant(
      memory.hugepages === "none" || region.sizeBytes % HUGEPAGE_BYTES[memory.hugepages] === 0,
      `${region.path} is not a multiple of the ${memory.hugepages} huge page`,
    );

    const tc = threadContext(r, region, pn, known);
    if (tc) out.push(...tc.args);

    const entries: Array<readonly [string, OptEntry[1], string?]> = [
      ["id", id],
      ["size", region.sizeBytes],
      ["mem-path", memory.backend === "file" ? memory.path : undefined, "memory.path"],
      ["share", memory.share],
      ["hugetlb", memory.backend === "memfd" && memory.hugepages !== "none" ? true : undefined, "memory.hugepages"],
      [
        "hugetlbsize",
        memory.backend === "memfd" && memory.hugepages !== "none" ? memory.hugepages : undefined,
        "memory.hugepages",
      ],
      ["reserve", memory.reserve, "memory.reserve"],
      ["prealloc", memory.prealloc, "memory.prealloc"],
      ["prealloc-threads", memory.prealloc ? memory.preallocThreads : undefined, "memory.preallocThreads"],
      ["prealloc-context", tc?.id],
      ["host-nodes", policy ? { list: policy.hostNodes } : undefined],
      ["policy", policy?.policy],
      ["guest-memfd", gmem?.guestMemfdProperty ? true : undefined],
    ];
    const usable = known ? entries.filter(([k, v, path]) => backendHas(r, backendType, known, k, v, path)) : entries;
    out.push("-object", r.opts(region.path, backendType, usable));
  }
  return out;
}

/**
 * NUMA-local preallocation (QEMU 7.2): a thread-context whose threads run near the target host
 * nodes, so preallocation runs from CPUs close to the memory, as libvirt does. The plan's hostCpus
 * are preferred to node-affinity: a memory-only (CXL) node has no CPUs, and QEMU refuses
 * node-affinity that selects none ("The nodes select no CPUs").
 */
function threadContext(
  r: Renderer,
  region: MemoryRegion,
  pn: PlanNode | undefined,
  known: string[] | undefined,
): { id: string; args: string[] } | undefined {
  const { memory } = r.profile;
  const placed = pn !== undefined && pn.policy !== "default" && pn.hostNodes.length > 0;
  if (!memory.prealloc || !placed || (known && !known.includes("prealloc-context"))) return undefined;
  if (hasFeature(r.caps, "thread-context") && hasFeature(r.caps, "prealloc-context")) {
    const id = RENDER_IDS.threadContext(region.guestNode);
    const affinity: OptEntry =
      pn.hostCpus && pn.hostCpus.length > 0
        ? ["cpu-affinity", { list: pn.hostCpus }]
        : ["node-affinity", { list: pn.hostNodes }];
    return { id, args: ["-object", r.opts(region.path, "thread-context", [["id", id], affinity])] };
  }
  if (!r.reported.has("thread-context")) {
    r.reported.add("thread-context"); // once, not once per guest node
    r.warn(
      "thread-context",
      "memory.prealloc",
      `preallocation threads will run on any CPU, not near the target nodes: ${missingFeatureMessage(r.caps, "thread-context")}`,
    );
  }
  return undefined;
}

/** Does a probed backend type take this property? A value the profile set that it lacks is an error. */
function backendHas(
  r: Renderer,
  type: string,
  known: string[],
  key: string,
  value: OptEntry[1],
  path: string | undefined,
): boolean {
  if (key === "id" || value === undefined || known.includes(key)) return true;
  // Defaults qcvm renders explicitly (share, prealloc) are dropped silently when the type lacks them.
  if (path && !(key === "prealloc" && value === false) && !r.reported.has(`${type}.${key}`)) {
    r.reported.add(`${type}.${key}`); // once, not once per guest node
    r.error("backend-property", path, `${type}, which the plan uses to place private memory, has no ${key} property`, {
      hint: "drop the field, or plan with capabilities of a QEMU whose backend has it",
    });
  }
  return false;
}

/** The backend the plan chose to carry host-nodes/policy to guest_memfd, when it chose one. */
export function gmemBackend(r: Renderer): PrivateBackend | undefined {
  return r.plan.nodes.find((n) => n.private.backend)?.private.backend;
}

/** host-nodes/policy for a backend, when the plan places this node's memory by backend policy. */
function backendPolicy(
  r: Renderer,
  region: MemoryRegion,
  pn: PlanNode | undefined,
): { hostNodes: number[]; policy: MemPolicy } | undefined {
  if (!pn) return undefined;
  if (pn.shared.mechanism !== "backend-policy" && pn.private.mechanism !== "guest-memfd-mempolicy") return undefined;
  if (pn.policy === "default" || pn.hostNodes.length === 0) return undefined;
  // The planner applies weighted interleave with numactl (a process policy), never a backend.
  invariant(BACKEND_POLICIES.has(pn.policy), `${region.path}: backend policy ${pn.policy} in the plan`);
  // preferred over several nodes before QEMU 8.0 prefers only the first: the planner says so.
  return { hostNodes: pn.hostNodes, policy: pn.policy };
}

/** -numa node per guest node, attaching its backend, and -numa dist for the distances. */
export function numaArgs(r: Renderer): string[] {
  const { numa } = r.profile;
  if (numa.nodes.length === 0) return [];
  const out: string[] = [];
  if (!r.need("numa-memdev", "numa.nodes")) return [];
  numa.nodes.forEach((n, i) => {
    out.push(
      "-numa",
      r.opts(`numa.nodes[${i}]`, "node", [
        ["nodeid", n.id],
        // Non-contiguous vCPU sets are repeated cpus= keys; QEMU has no `0-1:4` syntax.
        ["cpus", n.cpus.length > 0 ? { list: n.cpus } : undefined],
        ["memdev", RENDER_IDS.backend(n.id)],
      ]),
    );
  });
  if (numa.distances.length > 0 && r.need("numa-dist", "numa.distances")) {
    for (const d of numa.distances) {
      out.push(
        "-numa",
        r.opts("numa.distances", "dist", [
          ["src", d.from],
          ["dst", d.to],
          ["val", d.value],
        ]),
      );
    }
  }
  return out;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
