import { describe, expect, it } from "vitest";
import { QemuValueError, escapeOptValue, formatJsonObject, formatOpts, hex } from "../src/render/qemu-opts.js";

describe("escapeOptValue", () => {
  it.each([
    ["plain", "plain"],
    ["a,share=off", "a,,share=off"],
    [",,", ",,,,"],
    ["=x=", "=x="],
    ["", ""],
  ])("%j -> %j", (value, escaped) => {
    expect(escapeOptValue(value)).toBe(escaped);
  });

  it.each([["a\nb"], ["a\rb"], ["a\0b"]])("refuses %j", (value) => {
    expect(() => escapeOptValue(value)).toThrow(QemuValueError);
  });
});

describe("formatOpts", () => {
  it("escapes the head and every string value, renders booleans as on/off, skips undefined", () => {
    expect(
      formatOpts("memory-backend-file", [
        ["id", "mem0"],
        ["mem-path", "/a,b"],
        ["share", true],
        ["prealloc", false],
        ["reserve", undefined],
      ]),
    ).toBe("memory-backend-file,id=mem0,mem-path=/a,,b,share=on,prealloc=off");
  });

  it("renders lists as repeated keys with ranges", () => {
    expect(formatOpts("node", [["cpus", { list: [5, 0, 1, 2, 7, 8] }]])).toBe("node,cpus=0-2,cpus=5,cpus=7-8");
  });

  it("reports which entry holds a value it cannot take", () => {
    try {
      formatOpts("x", [
        ["a", "ok"],
        ["b", "bad\n"],
      ]);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(QemuValueError);
      expect((e as QemuValueError).index).toBe(1);
      expect((e as QemuValueError).reason).toBe("contains a line break");
    }
  });

  it("never takes a key from outside (keys are qcvm's constants)", () => {
    expect(() => formatOpts(undefined, [["a,b", "x"]])).toThrow(/bad key/);
  });
});

describe("formatJsonObject", () => {
  it("writes bigints as exact integers and drops undefined properties", () => {
    expect(
      formatJsonObject("tdx-guest", "tdx0", { attributes: (1n << 63n) + 1n, mrowner: undefined, x: { a: [1, "b"] } }),
    ).toBe('{"qom-type":"tdx-guest","id":"tdx0","attributes":9223372036854775809,"x":{"a":[1,"b"]}}');
  });
});

describe("hex", () => {
  it.each([
    [0x30000, "0x30000"],
    [1n << 63n, "0x8000000000000000"],
  ])("%s -> %s", (n, text) => {
    expect(hex(n)).toBe(text);
  });
});
