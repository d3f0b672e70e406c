// What a QEMU command line means for memory, NUMA and confidential computing, as plain data, so
// two command lines (qcvm's render and libvirt's domxml-to-native) can be compared by meaning:
// properties, not strings. -object in both forms (key=value with ",," escapes and repeated list
// keys, and JSON), QEMU's defaults filled in (memfd shares, nothing preallocated, distance 10
// local / 20 remote), ids dropped (each side names its backends its own way).
import { parseIdList } from "../../src/core/sizes.js";

export interface BackendMeaning {
  type: string;
  size: number;
  share: boolean;
  prealloc: boolean;
  hugetlb: boolean;
  hugetlbsize?: string;
  hostNodes: number[];
  policy: string;
}

export interface MemoryMeaning {
  nodes: Array<{ node: number; cpus: number[]; backend: BackendMeaning }>;
  /** "from-to" -> distance for every ordered pair of distinct nodes. */
  distances: Record<string, number>;
  confidential?: { type: string; props: Record<string, unknown> };
}

type Props = Record<string, unknown>;

/** key=value,... with ",," as a literal comma; a key given twice collects its values. */
export function parseKeyValue(text: string, implied?: string): Props {
  const parts: string[] = [];
  let cur = "";
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ",") {
      if (text[i + 1] === ",") {
        cur += ",";
        i++;
        continue;
      }
      parts.push(cur);
      cur = "";
    } else cur += text[i];
  }
  parts.push(cur);
  const out: Props = {};
  for (const [i, p] of parts.entries()) {
    const eq = p.indexOf("=");
    if (eq < 0) {
      if (i === 0 && implied) out[implied] = p;
      continue;
    }
    const k = p.slice(0, eq);
    const v = p.slice(eq + 1);
    out[k] = k in out ? [...(Array.isArray(out[k]) ? out[k] : [out[k]]), v] : v;
  }
  return out;
}

function objectProps(value: string): Props {
  if (value.startsWith("{")) return JSON.parse(value) as Props;
  return parseKeyValue(value, "qom-type");
}

function bool(v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  return v === true || v === "on" || v === "true" || v === "yes";
}

function nodesOf(v: unknown): number[] {
  if (v === undefined) return [];
  const list = Array.isArray(v) ? v : [v];
  return list.flatMap((x) => (typeof x === "number" ? [x] : (parseIdList(String(x)) ?? []))).sort((a, b) => a - b);
}

function text(v: unknown): string {
  return typeof v === "string" || typeof v === "number" || typeof v === "boolean" ? String(v) : JSON.stringify(v);
}

function backend(p: Props): BackendMeaning {
  const type = String(p["qom-type"]);
  return {
    type,
    size: Number(p.size),
    share: bool(p.share, type === "memory-backend-memfd"),
    prealloc: bool(p.prealloc, false),
    hugetlb: bool(p.hugetlb, false),
    ...(p.hugetlbsize !== undefined ? { hugetlbsize: text(p.hugetlbsize) } : {}),
    hostNodes: nodesOf(p["host-nodes"]),
    policy: p.policy === undefined ? "default" : text(p.policy),
  };
}

/** Options of one kind, in order. */
function values(argv: readonly string[], opt: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length - 1; i++) if (argv[i] === opt) out.push(argv[i + 1]!);
  return out;
}

const CONFIDENTIAL = new Set(["sev-guest", "sev-snp-guest", "tdx-guest"]);

export function memoryMeaning(argv: readonly string[]): MemoryMeaning {
  const objects = values(argv, "-object").map(objectProps);
  const byId = new Map(objects.map((o) => [String(o.id), o]));
  const smp = parseKeyValue(values(argv, "-smp")[0] ?? "1", "cpus");
  const vcpus = Number(smp.cpus);
  const numa = values(argv, "-numa").map((v) => parseKeyValue(v, "type"));
  const nodes = numa
    .filter((n) => n.type === "node")
    .map((n) => ({
      node: Number(n.nodeid),
      cpus: nodesOf(n.cpus),
      backend: backend(byId.get(String(n.memdev)) ?? {}),
    }));
  if (nodes.length === 0) {
    const machine = parseKeyValue(values(argv, "-machine")[0] ?? "", "type");
    const mem = byId.get(String(machine["memory-backend"]));
    if (mem) nodes.push({ node: 0, cpus: [...Array(vcpus).keys()], backend: backend(mem) });
  }
  const distances: Record<string, number> = {};
  for (const a of nodes) for (const b of nodes) if (a.node !== b.node) distances[`${a.node}-${b.node}`] = 20;
  // The local distance is always 10 (QEMU refuses anything else); libvirt writes it, qcvm does not.
  for (const d of numa.filter((n) => n.type === "dist" && n.src !== n.dst))
    distances[`${String(d.src)}-${String(d.dst)}`] = Number(d.val);
  const conf = objects.find((o) => CONFIDENTIAL.has(String(o["qom-type"])));
  const out: MemoryMeaning = { nodes: nodes.sort((a, b) => a.node - b.node), distances };
  if (conf) {
    const { "qom-type": type, id: _id, ...props } = conf;
    out.confidential = { type: String(type), props };
  }
  return out;
}
