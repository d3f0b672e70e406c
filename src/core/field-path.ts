// Field paths, the one module that reads and writes them: `numa.nodes[1].cpus` as users write it
// (--set, rule paths) <-> ["numa", "nodes", 1, "cpus"] <-> JSON pointers (ajv's `/numa/nodes/1/cpus`),
// and the value at a path. Every phase names fields through these, so the forms cannot drift.

export type Segment = string | number;

/** `numa.nodes[1].cpus` -> ["numa", "nodes", 1, "cpus"]; undefined when malformed. */
export function parsePath(text: string): Segment[] | undefined {
  const out: Segment[] = [];
  const re = /([A-Za-z0-9_-]+)|\[([0-9]+)\]|(\.)/y;
  let expectKey = true;
  let m: RegExpExecArray | null;
  re.lastIndex = 0;
  while (re.lastIndex < text.length && (m = re.exec(text))) {
    if (m[1] !== undefined) {
      if (!expectKey) return undefined;
      out.push(m[1]);
      expectKey = false;
    } else if (m[2] !== undefined) {
      if (expectKey || out.length === 0) return undefined;
      out.push(Number(m[2]));
    } else {
      if (expectKey) return undefined;
      expectKey = true;
    }
  }
  if (re.lastIndex !== text.length || expectKey || out.length === 0) return undefined;
  return out;
}

/** ["numa", "nodes", 1, "cpus"] -> `numa.nodes[1].cpus` */
export function formatPath(path: readonly Segment[]): string {
  let s = "";
  for (const seg of path) s += typeof seg === "number" ? `[${seg}]` : s ? `.${seg}` : seg;
  return s;
}

/** A JSON pointer (`/numa/nodes/1`, as ajv reports instancePath) -> segments. */
export function splitPointer(p: string): Segment[] {
  if (!p) return [];
  return p
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : s));
}

/** The value at `path` in plain data (own properties only), or undefined. */
export function valueAt(data: unknown, path: readonly Segment[]): unknown {
  let cur = data;
  for (const seg of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    if (!Object.hasOwn(cur, seg)) return undefined;
    cur = (cur as Record<string, unknown>)[seg as string];
  }
  return cur;
}

/** Does `path` start with `prefix`? */
export function startsWith(path: readonly Segment[], prefix: readonly Segment[]): boolean {
  return prefix.length <= path.length && prefix.every((seg, i) => seg === path[i]);
}

/**
 * Read back a path qcvm wrote itself, never failing: a schema error's path (formatPath output,
 * whose keys may be any unknown field's name) or a rule input pattern (`disks[*].path`, where
 * `*` is one segment). Keys are whatever lies between `.`, `[` and `]`; `[N]` is index N.
 */
export function readPath(text: string): Segment[] {
  const out: Segment[] = [];
  for (const m of text.matchAll(/\[(\d+)\]|([^.[\]]+)/g)) out.push(m[1] !== undefined ? Number(m[1]) : m[2]!);
  return out;
}

/** Does `path` touch `pattern` (readPath form, `*` matching any one segment): is either a prefix of the other? */
export function overlapsPattern(path: readonly Segment[], pattern: readonly Segment[]): boolean {
  const n = Math.min(path.length, pattern.length);
  for (let i = 0; i < n; i++) if (pattern[i] !== "*" && String(path[i]) !== String(pattern[i])) return false;
  return true;
}

/**
 * The dotted form libvirt metadata keeps (`numa.nodes.0.policy`, an index as a plain segment),
 * <-> segments. A segment of digits only (no leading zero) is an index.
 */
export function formatDotted(path: readonly Segment[]): string {
  return path.join(".");
}

export function parseDotted(text: string): Segment[] {
  return text.split(".").map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : s));
}

/**
 * Set the value at `path` in plain data, creating objects (or lists, before an index) on the way;
 * `undefined` deletes it (a list element is spliced out). Only own properties are walked, and a
 * `__proto__` segment is refused (returns false): a path from a file cannot reach a prototype.
 */
export function setValueAt(data: Record<string, unknown>, path: readonly Segment[], value: unknown): boolean {
  if (path.length === 0 || path.includes("__proto__")) return false;
  let node = data;
  for (const [i, seg] of path.entries()) {
    if (i === path.length - 1) {
      if (value !== undefined) node[seg] = value;
      else if (Array.isArray(node)) node.splice(Number(seg), 1);
      else delete node[seg];
      return true;
    }
    const next = Object.hasOwn(node, seg) ? node[seg] : undefined;
    if (typeof next !== "object" || next === null) {
      if (value === undefined) return true;
      node[seg] = typeof path[i + 1] === "number" ? [] : {};
    }
    node = node[seg] as Record<string, unknown>;
  }
  return true;
}
