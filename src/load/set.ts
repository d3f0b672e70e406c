// `--set path=value` overrides, applied to the merged data. The value is YAML, read like a profile
// (same options, same safe data: no prototype keys, no tags outside the core schema); the path may
// not name __proto__, constructor or prototype. Problems are diagnostics at the file `--set`.
import { resolve } from "node:path";
import { parseDocument } from "yaml";
import { diag } from "../core/diagnostics.js";
import { formatPath, parsePath } from "../core/field-path.js";
import type { Segment } from "../core/field-path.js";
import { FORBIDDEN_KEYS, isMap, newMap, toProfileData } from "./data.js";
import type { Data, DataMap, DataProblem } from "./data.js";
import { YAML_OPTIONS } from "./positions.js";
import { mapPathFields } from "../normalize/normalize.js";
import { coerceSetValue } from "./set-coerce.js";
import type { Diagnostic } from "../core/types.js";

/** The pseudo file name of diagnostics about --set overrides. */
export const SET_FILE = "--set";

function parseValue(expr: string, text: string, path: Segment[], errors: Diagnostic[]): Data | undefined {
  const doc = parseDocument(text, YAML_OPTIONS);
  const bad = doc.errors[0] ?? doc.warnings[0];
  if (bad) {
    errors.push(
      diag("error", "set.value", formatPath(path), `value is not YAML: ${bad.message.split("\n")[0]}`, {
        file: SET_FILE,
        got: text,
        hint: "quote it, or write a flow list/map: [0, 1], {base64: ...}",
      }),
    );
    return undefined;
  }
  const problems: DataProblem[] = [];
  const value = toProfileData(doc.toJS({ maxAliasCount: 100 }), problems);
  if (problems.length > 0) {
    for (const p of problems)
      errors.push(diag("error", "set.value", formatPath(path), `value: ${p.message}`, { file: SET_FILE, got: expr }));
    return undefined;
  }
  return value;
}

/** Walk to the parent of the last segment, creating missing maps; a message when it cannot. */
function parentOf(data: DataMap, path: Segment[]): { cur: unknown; bad?: string } {
  let cur: unknown = data;
  for (let i = 0; i < path.length - 1; i++) {
    const seg = path[i]!;
    const next = path[i + 1]!;
    if (typeof seg === "number") {
      if (!Array.isArray(cur) || seg >= cur.length) {
        const why = Array.isArray(cur) ? `the list has ${cur.length} item${cur.length === 1 ? "" : "s"}` : "not a list";
        return { cur, bad: `${formatPath(path.slice(0, i + 1))} does not exist (${why})` };
      }
    } else if (!isMap(cur)) {
      return { cur, bad: `${formatPath(path.slice(0, i))} is not a mapping` };
    } else if (cur[seg] === undefined || cur[seg] === null) {
      if (typeof next === "number") {
        // An unset list takes its first item, as a set list takes its next (docs/profile.md).
        if (next !== 0)
          return {
            cur,
            bad: `${formatPath(path.slice(0, i + 1))} is not set, so it has no item ${next} (start with [0])`,
          };
        cur[seg] = [];
      } else cur[seg] = newMap();
    }
    cur = (cur as Record<string, unknown>)[seg as never];
  }
  return { cur };
}

function setAt(data: DataMap, path: Segment[], value: Data): string | undefined {
  const { cur, bad } = parentOf(data, path);
  if (bad) return bad;
  const last = path.at(-1)!;
  if (typeof last === "number") {
    if (!Array.isArray(cur) || last > cur.length) return `${formatPath(path)} does not exist`;
    if (value === null) cur.splice(last, 1);
    else cur[last] = value;
  } else if (!isMap(cur)) {
    return `${formatPath(path.slice(0, -1))} is not a mapping`;
  } else if (value === null) {
    // `--set path=null` (or `path=`) removes the field: back to the base's or built-in default.
    delete cur[last];
  } else {
    cur[last] = value;
  }
  return undefined;
}

/** Apply `--set path=value` to the merged data; returns the paths set (for locating). */
export function applySets(data: DataMap, sets: readonly string[], errors: Diagnostic[]): Segment[][] {
  const applied: Segment[][] = [];
  for (const expr of sets) {
    const eq = expr.indexOf("=");
    const pathText = eq === -1 ? expr : expr.slice(0, eq);
    const path = parsePath(pathText.trim());
    if (eq === -1 || !path) {
      errors.push(
        diag("error", "set.syntax", pathText, eq === -1 ? "--set needs path=value" : "is not a field path", {
          file: SET_FILE,
          got: expr,
          hint: "e.g. --set memory.size=8G or --set numa.nodes[1].hostNodes=2-3",
        }),
      );
      continue;
    }
    const forbidden = path.find((s) => typeof s === "string" && FORBIDDEN_KEYS.has(s));
    if (forbidden !== undefined) {
      errors.push(
        diag(
          "error",
          "set.path",
          formatPath(path),
          `cannot set: \`${forbidden}\` is not allowed as a key (qcvm refuses __proto__, constructor and prototype at any depth)`,
          {
            file: SET_FILE,
            got: expr,
          },
        ),
      );
      continue;
    }
    const parsed = parseValue(expr, expr.slice(eq + 1), path, errors);
    if (parsed === undefined) continue;
    // The schema's type decides what a scalar is: `qemu.version=9.1` is the string "9.1".
    const value = coerceSetValue(path, parsed, expr.slice(eq + 1)) as Data;
    const bad = setAt(data, path, value);
    if (bad) {
      errors.push(diag("error", "set.path", formatPath(path), `cannot set: ${bad}`, { file: SET_FILE, got: expr }));
      continue;
    }
    // A path given on the command line is relative to where the command runs.
    mapPathFields(data, (p, field) => (path.every((seg, i) => field[i] === seg) ? resolve(p) : p));
    applied.push(path);
  }
  return applied;
}
