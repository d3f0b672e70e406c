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
