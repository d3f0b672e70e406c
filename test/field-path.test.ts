// The field-path module's readers and writers beyond parsePath: read-back of qcvm's own paths,
// rule-input patterns, the dotted form libvirt metadata keeps, and setting a value at a path.
import { describe, expect, it } from "vitest";
import {
  formatDotted,
  formatPath,
  overlapsPattern,
  parseDotted,
  readPath,
  setValueAt,
} from "../src/core/field-path.js";

describe("field paths", () => {
  it("readPath reads formatPath output back, whatever the keys are", () => {
    expect(readPath("numa.nodes[1].cpus")).toEqual(["numa", "nodes", 1, "cpus"]);
    expect(readPath(formatPath(["disks", 0, "bad key!"]))).toEqual(["disks", 0, "bad key!"]);
    expect(readPath("disks[*].path")).toEqual(["disks", "*", "path"]);
    expect(readPath("")).toEqual([]);
  });

  it("overlapsPattern: either is a prefix of the other, * matches one segment", () => {
    const p = readPath("disks[*].path");
    expect(overlapsPattern(["disks", 2, "path"], p)).toBe(true);
    expect(overlapsPattern(["disks"], p)).toBe(true);
    expect(overlapsPattern(["disks", 2, "path", "x"], p)).toBe(true);
    expect(overlapsPattern(["disks", 2, "format"], p)).toBe(false);
    expect(overlapsPattern(["numa", "nodes", 1], readPath("numa.nodes[1].cpus"))).toBe(true);
    expect(overlapsPattern(["numa", "nodes", 0], readPath("numa.nodes[1].cpus"))).toBe(false);
  });

  it("the dotted form round-trips, an index as a number", () => {
    expect(parseDotted("numa.nodes.0.policy")).toEqual(["numa", "nodes", 0, "policy"]);
    expect(formatDotted(["numa", "nodes", 0, "policy"])).toBe("numa.nodes.0.policy");
  });

  it("setValueAt creates objects and lists on the way, deletes on undefined", () => {
    const data: Record<string, unknown> = {};
    expect(setValueAt(data, ["numa", "nodes", 0, "policy"], "bind")).toBe(true);
    expect(data).toEqual({ numa: { nodes: [{ policy: "bind" }] } });
    setValueAt(data, ["numa", "nodes", 0], undefined);
    expect(data).toEqual({ numa: { nodes: [] } });
    setValueAt(data, ["absent", "x"], undefined);
    expect(data).toEqual({ numa: { nodes: [] } });
  });

  it("setValueAt refuses a path through a prototype", () => {
    const data: Record<string, unknown> = {};
    expect(setValueAt(data, ["__proto__", "polluted"], 1)).toBe(false);
    expect(setValueAt(data, ["constructor", "prototype", "polluted"], 1)).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(data)).toBe(Object.prototype);
  });
});
