// A minimal XML well-formedness check for SVG output (no XML parser among the dependencies):
// one root element, tags nest and close, attributes quoted and unique, `<` never in text or
// values, `&` only as an entity reference. Throws with the offset of the first problem.
const ENTITY = /^&(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/;

function checkText(text: string, at: number): void {
  if (text.includes("<")) throw new Error(`stray '<' at ${at}`);
  for (let i = text.indexOf("&"); i !== -1; i = text.indexOf("&", i + 1)) {
    if (!ENTITY.test(text.slice(i))) throw new Error(`bare '&' at ${at + i}: ${text.slice(i, i + 12)}`);
  }
}

export interface XmlSummary {
  root: string;
  elements: number;
  /** Element names in document order. */
  names: string[];
  /** Text content of every <text> and <title> element, entities decoded. */
  texts: string[];
}

export function checkXml(doc: string): XmlSummary {
  let body = doc.replace(/^\uFEFF/, "");
  // Prolog and misc: XML declaration, processing instructions, comments, one DOCTYPE.
  body = body.replace(/<\?[\s\S]*?\?>/g, (m) => " ".repeat(m.length));
  body = body.replace(/<!--[\s\S]*?-->/g, (m) => " ".repeat(m.length));
  body = body.replace(/<!DOCTYPE[^>[]*(\[[\s\S]*?\])?\s*>/g, (m) => " ".repeat(m.length));
  body = body.replace(/<!\[CDATA\[[\s\S]*?\]\]>/g, (m) => " ".repeat(m.length));
  const tag = /<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_][\w:.-]*\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/g;
  const stack: string[] = [];
  const names: string[] = [];
  const texts: string[] = [];
  let root: string | undefined;
  let last = 0;
  let textStart = -1;
  for (let m = tag.exec(body); m; m = tag.exec(body)) {
    const between = body.slice(last, m.index);
    if (stack.length === 0 && between.trim() !== "") throw new Error(`content outside the root element at ${last}`);
    checkText(between, last);
    const [, close, name, attrs, selfClose] = m;
    if (close) {
      if (attrs!.trim() !== "" || selfClose) throw new Error(`malformed end tag </${name}> at ${m.index}`);
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> at ${m.index} closes <${open ?? "nothing"}>`);
      if ((name === "text" || name === "title") && textStart >= 0) {
        texts.push(
          body
            .slice(textStart, m.index)
            .replace(/<[^>]*>/g, "")
            .replace(/&lt;/g, "<")
            .replace(/&gt;/g, ">")
            .replace(/&quot;/g, '"')
            .replace(/&apos;/g, "'")
            .replace(/&#x([0-9a-fA-F]+);/g, (_, h: string) => String.fromCodePoint(Number.parseInt(h, 16)))
            .replace(/&#([0-9]+);/g, (_, d: string) => String.fromCodePoint(Number(d)))
            .replace(/&amp;/g, "&"),
        );
        textStart = -1;
      }
    } else {
      if (stack.length === 0) {
        if (root !== undefined) throw new Error(`second root element <${name}> at ${m.index}`);
        root = name;
      }
      const seen = new Set<string>();
      for (const a of attrs!.matchAll(/([A-Za-z_][\w:.-]*)\s*=\s*("([^"]*)"|'([^']*)')/g)) {
        if (seen.has(a[1]!)) throw new Error(`duplicate attribute ${a[1]} on <${name}> at ${m.index}`);
        seen.add(a[1]!);
        checkText(a[3] ?? a[4] ?? "", m.index);
      }
      names.push(name!);
      if (!selfClose) {
        stack.push(name!);
        if (name === "text" || name === "title") textStart = m.index + m[0].length;
      }
    }
    last = m.index + m[0].length;
  }
  const rest = body.slice(last);
  if (rest.trim() !== "") throw new Error(`content after the root element at ${last}: ${rest.trim().slice(0, 40)}`);
  if (stack.length > 0) throw new Error(`unclosed <${stack.join("> <")}>`);
  if (root === undefined) throw new Error("no root element");
  return { root, elements: names.length, names, texts };
}
