// A fast reader for the plain subset of YAML that profiles are written in: block maps and lists,
// one-line flow lists/maps, plain and quoted one-line scalars, comments. It returns exactly what
// the `yaml` package (YAML 1.2 core schema) returns for such text, or undefined for anything else
// (anchors, tags, block scalars, multi-line scalars, floats, duplicate keys, odd indentation...),
// and the caller then parses with `yaml` itself, which also explains any syntax error.
// Why: `yaml`'s parseDocument builds a full CST and AST; validating 1,000 profiles spent most of its
// time there, while positions are only needed for the few files that have a diagnostic.
// test/yaml-fast.test.ts checks the two agree on every fixture and profile in the repository.

type Value = null | boolean | number | string | Value[] | { [k: string]: Value };

class Bail extends Error {}
const BAIL = new Bail();

interface Line {
  indent: number;
  text: string;
}

const KEY_RE = /^([A-Za-z0-9_][A-Za-z0-9_.-]*)[ ]*:(?:[ ]+|$)/;
const INT_RE = /^[-+]?[0-9]{1,15}$/;
const HEX_RE = /^0x[0-9a-fA-F]{1,13}$/;
const OCT_RE = /^0o[0-7]{1,17}$/;
// What YAML 1.2 core reads as a float, or an int too long to trust a double with: let `yaml` decide.
const FLOAT_RE = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$/;
const NAN_INF_RE = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const LONG_RE = /^(?:0x[0-9a-fA-F]+|0o[0-7]+)$/;

function scalar(s: string): Value {
  switch (s) {
    case "":
    case "~":
    case "null":
    case "Null":
    case "NULL":
      return null;
    case "true":
    case "True":
    case "TRUE":
      return true;
    case "false":
    case "False":
    case "FALSE":
      return false;
  }
  if (INT_RE.test(s)) return Number(s);
  if (HEX_RE.test(s)) return parseInt(s.slice(2), 16);
  if (OCT_RE.test(s)) return parseInt(s.slice(2), 8);
  if (FLOAT_RE.test(s) || NAN_INF_RE.test(s) || LONG_RE.test(s)) throw BAIL;
  return s;
}

/** A mapping key as the yaml package's toJS makes it: its scalar value as a string. */
function keyOf(s: string): string {
  if (s === "__proto__") throw BAIL;
  const v = scalar(s);
  if (typeof v === "string") return v;
  if (typeof v === "number") return String(v);
  throw BAIL; // null/true/false keys: rare, and yaml's stringification is its own business
}

/** A plain scalar in block context: up to a comment; bail on anything that is not simply text. */
function plainBlock(text: string): Value {
  const c = text.search(/[ ]#/);
  const s = (c === -1 ? text : text.slice(0, c)).trimEnd();
  const first = s[0];
  if (first !== undefined && "-?:,[]{}#&*!|>'\"%@`".includes(first)) {
    // `-5` is a number and `-x` a string; a lone `-`, `? `, `: ` are structure.
    if (!(first === "-" && s.length > 1 && s[1] !== " ")) throw BAIL;
  }
  if (s.includes(": ") || s.endsWith(":") || s.includes("\t")) throw BAIL;
  return scalar(s);
}

function doubleQuoted(text: string, start: number): [string, number] {
  let out = "";
  for (let i = start + 1; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '"') return [out, i + 1];
    if (ch === "\\") {
      const e = text[++i];
      if (e === '"' || e === "\\" || e === "/") out += e;
      else if (e === "n") out += "\n";
      else if (e === "t") out += "\t";
      else throw BAIL;
    } else out += ch;
  }
  throw BAIL; // continues on the next line
}

function singleQuoted(text: string, start: number): [string, number] {
  let out = "";
  for (let i = start + 1; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === "'") {
      if (text[i + 1] === "'") {
        out += "'";
        i++;
      } else return [out, i + 1];
    } else out += ch;
  }
  throw BAIL;
}

/** Only spaces and an optional comment may follow a value. */
function expectEnd(text: string, i: number): void {
  const rest = text.slice(i);
  if (rest.trim() === "") return;
  if (/^[ ]+#/.test(rest)) return;
  throw BAIL;
}

class Flow {
  i = 0;
  constructor(readonly t: string) {}

  ws(): void {
    while (this.t[this.i] === " ") this.i++;
  }

  value(): Value {
    this.ws();
    const ch = this.t[this.i];
    if (ch === "[") return this.seq();
    if (ch === "{") return this.map();
    if (ch === '"') {
      const [s, j] = doubleQuoted(this.t, this.i);
      this.i = j;
      return s;
    }
    if (ch === "'") {
      const [s, j] = singleQuoted(this.t, this.i);
      this.i = j;
      return s;
    }
    const start = this.i;
    while (this.i < this.t.length) {
      const c = this.t[this.i]!;
      if (c === "," || c === "]" || c === "}" || c === "#") break;
      if (c === ":" && (this.t[this.i + 1] === " " || this.t[this.i + 1] === "," || this.t[this.i + 1] === "}")) break;
      if ("[{&*!|>'\"%@`?\t".includes(c)) throw BAIL;
      this.i++;
    }
    const s = this.t.slice(start, this.i).trim();
    // `- x` in a flow collection is a block entry where none may be: yaml reports an error.
    if (s === "" || s === "-" || s.startsWith("- ")) throw BAIL;
    if (s.includes(":")) throw BAIL;
    return scalar(s);
  }

  seq(): Value[] {
    this.i++;
    const out: Value[] = [];
    this.ws();
    if (this.t[this.i] === "]") {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.ws();
      const c = this.t[this.i++];
      if (c === "]") return out;
      if (c !== ",") throw BAIL;
      this.ws();
      if (this.t[this.i] === "]") throw BAIL; // trailing comma: let yaml decide
    }
  }

  map(): { [k: string]: Value } {
    this.i++;
    const out: { [k: string]: Value } = {};
    this.ws();
    if (this.t[this.i] === "}") {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      const m = /^[A-Za-z0-9_][A-Za-z0-9_.-]*/.exec(this.t.slice(this.i));
      if (!m) throw BAIL;
      this.i += m[0].length;
      const key = keyOf(m[0]);
      if (this.t[this.i] !== ":" || this.t[this.i + 1] !== " ") throw BAIL;
      this.i += 2;
      if (Object.hasOwn(out, key)) throw BAIL;
      out[key] = this.value();
      this.ws();
      const c = this.t[this.i++];
      if (c === "}") return out;
      if (c !== ",") throw BAIL;
    }
  }
}

function inlineValue(text: string): Value {
  const ch = text[0];
  if (ch === "[" || ch === "{") {
    const f = new Flow(text);
    const v = f.value();
    expectEnd(text, f.i);
    return v;
  }
  if (ch === '"') {
    const [s, j] = doubleQuoted(text, 0);
    expectEnd(text, j);
    return s;
  }
  if (ch === "'") {
    const [s, j] = singleQuoted(text, 0);
    expectEnd(text, j);
    return s;
  }
  return plainBlock(text);
}

class Block {
  i = 0;
  constructor(readonly lines: Line[]) {}

  isSeqItem(l: Line): boolean {
    return l.text === "-" || l.text.startsWith("- ");
  }

  block(indent: number): Value {
    const l = this.lines[this.i]!;
    return this.isSeqItem(l) ? this.seq(indent) : this.map(indent);
  }

  /** The value after `key:` with nothing on the line: a nested block, or null. */
  nested(indent: number, seqAtSameIndent: boolean): Value {
    const next = this.lines[this.i];
    if (next && next.indent > indent) return this.block(next.indent);
    // YAML lets a list under a key sit at the key's own indentation.
    if (seqAtSameIndent && next && next.indent === indent && this.isSeqItem(next)) return this.seq(indent);
    return null;
  }

  map(indent: number): { [k: string]: Value } {
    const out: { [k: string]: Value } = {};
    while (this.i < this.lines.length) {
      const l = this.lines[this.i]!;
      if (l.indent < indent) break;
      if (l.indent > indent || this.isSeqItem(l)) throw BAIL;
      const m = KEY_RE.exec(l.text);
      if (!m) throw BAIL;
      const key = keyOf(m[1]!);
      if (Object.hasOwn(out, key)) throw BAIL; // yaml reports the duplicate with its position
      const rest = l.text.slice(m[0].length);
      this.i++;
      if (rest === "" || rest.startsWith("#")) {
        out[key] = this.nested(indent, true);
      } else {
        out[key] = inlineValue(rest);
        const next = this.lines[this.i];
        if (next && next.indent > indent) throw BAIL; // a scalar continued on the next line
      }
    }
    return out;
  }

  seq(indent: number): Value[] {
    const out: Value[] = [];
    while (this.i < this.lines.length) {
      const l = this.lines[this.i]!;
      if (l.indent < indent) break;
      if (l.indent > indent || !this.isSeqItem(l)) {
        if (l.indent === indent) break; // the map holding this list continues
        throw BAIL;
      }
      const after = l.text.slice(1);
      const pad = after.length - after.trimStart().length;
      const rest = after.trimStart();
      if (rest === "" || rest.startsWith("#")) {
        this.i++;
        const next = this.lines[this.i];
        out.push(next && next.indent > indent ? this.block(next.indent) : null);
      } else if (rest.startsWith("- ") || rest === "-") {
        throw BAIL;
      } else if (KEY_RE.test(rest)) {
        // `- key: value` opens a map whose keys line up with `key`.
        const inner = indent + 1 + pad;
        this.lines[this.i] = { indent: inner, text: rest };
        out.push(this.map(inner));
      } else {
        this.i++;
        out.push(inlineValue(rest));
        const next = this.lines[this.i];
        if (next && next.indent > indent) throw BAIL;
      }
    }
    return out;
  }
}

/** Parse `text` if it is in the plain subset; undefined means "use the yaml package". */
export function parseFastYaml(text: string): Record<string, unknown> | undefined {
  // Printable ASCII and newlines only. JavaScript's trim() strips Unicode whitespace that YAML keeps
  // (U+00A0, U+FEFF, U+2028/2029, U+3000, U+2000-200A, \v, \f), and tabs and CRs have their own
  // YAML rules: such text goes to `yaml`, which reads it exactly.
  if (/[^\x20-\x7e\n]/.test(text)) return undefined;
  const lines: Line[] = [];
  let first = true;
  for (const raw of text.split("\n")) {
    const trimmed = raw.trimStart();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const indent = raw.length - trimmed.length;
    if (indent === 0 && (raw.startsWith("---") || raw.startsWith("...") || raw.startsWith("%"))) {
      // `---` starts a document only followed by whitespace or the line's end (`---#x` is a key).
      if (first && /^---(?:[ ]+(?:#.*)?)?$/.test(raw)) {
        first = false;
        continue;
      }
      return undefined;
    }
    first = false;
    lines.push({ indent, text: trimmed.trimEnd() });
  }
  if (lines.length === 0 || lines[0]!.indent !== 0) return undefined;
  try {
    const b = new Block(lines);
    if (b.isSeqItem(lines[0]!)) return undefined;
    const out = b.map(0);
    return b.i === lines.length ? out : undefined;
  } catch (e) {
    if (e === BAIL) return undefined;
    throw e;
  }
}
