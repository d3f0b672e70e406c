// Which guest_memfd is which guest node's (src/launch/gmem-map.ts): tables over what /proc shows.
import { describe, expect, it } from "vitest";
import { mapGuestMemfds } from "../src/launch/gmem-map.js";
import type { BackendFile, GmemFile } from "../src/launch/gmem-map.js";
import { modeFor, sliceNodes } from "../src/launch/prealloc.js";
import { MPOL } from "../src/io/native.js";

const MiB = 2 ** 20;
const file = (fd: number, ino: number, mib: number): GmemFile => ({ fd, ino, sizeBytes: mib * MiB });
const backend = (guestNode: number, mib: number, policy: BackendFile["policy"], hostNodes: number[]): BackendFile => ({
  guestNode,
  sizeBytes: mib * MiB,
  policy,
  hostNodes,
});

describe("mapGuestMemfds", () => {
  it("no guest_memfd at all: nothing to pre-allocate (plain KVM, SEV)", () => {
    const m = mapGuestMemfds([], [backend(0, 512, "bind", [0])]);
    expect(m.kind).toBe("none");
    expect(m.kind === "none" && m.reason).toMatch(/nothing to pre-allocate/);
  });

  it("backends in creation order, firmware after them keeps the default", () => {
    const m = mapGuestMemfds(
      [file(12, 300, 4), file(10, 100, 2048), file(11, 200, 1024)],
      [backend(0, 2048, "bind", [0]), backend(1, 1024, "bind", [1])],
    );
    expect(m.kind).toBe("mapped");
    if (m.kind !== "mapped") throw new Error(`not mapped: ${JSON.stringify(m)}`);
    expect(m.files.map((f) => [f.backend.guestNode, f.file.fd])).toEqual([
      [0, 10],
      [1, 11],
    ]);
    expect(m.firmware.map((f) => f.fd)).toEqual([12]);
    expect(m.notes.join("\n")).toMatch(/firmware RAMBlocks such as pc.bios\) keep the default policy/);
  });

  it("distinct sizes with fd order disturbed: inode order is used, and said", () => {
    const m = mapGuestMemfds(
      [file(5, 100, 64), file(4, 101, 128)],
      [backend(0, 64, "bind", [0]), backend(1, 128, "bind", [1])],
    );
    expect(m.kind === "mapped" && m.files.map((f) => f.file.fd)).toEqual([5, 4]);
    expect(m.kind === "mapped" && m.notes[0]).toMatch(/fd order does not match.*inode order does/);
  });

  it("inode order disturbed (per-CPU inode batches): fd order is used", () => {
    const m = mapGuestMemfds(
      [file(4, 2000, 64), file(5, 1000, 128)],
      [backend(0, 64, "bind", [0]), backend(1, 128, "bind", [1])],
    );
    expect(m.kind === "mapped" && m.files.map((f) => f.file.fd)).toEqual([4, 5]);
  });

  it("two files of one size in opposite orders by inode and fd, placed differently: ambiguous", () => {
    const m = mapGuestMemfds(
      [file(5, 100, 64), file(4, 101, 64)],
      [backend(0, 64, "bind", [0]), backend(1, 64, "bind", [1])],
    );
    expect(m.kind).toBe("refused");
    expect(m.kind === "refused" && m.reason).toBe(
      "guest nodes 0 and 1 both have 64 MiB backends with different placement, and QEMU's two 64 MiB guest_memfd files (fd 5 and 4) are in one order by inode and the other by fd: which is which is ambiguous",
    );
  });

  it("the same disorder is harmless when both backends want the same placement", () => {
    const m = mapGuestMemfds(
      [file(5, 100, 64), file(4, 101, 64)],
      [backend(0, 64, "interleave", [0, 1]), backend(1, 64, "interleave", [0, 1])],
    );
    expect(m.kind).toBe("mapped");
  });

  it("fewer files than backends, or sizes that do not line up: refused, saying what was seen", () => {
    const fewer = mapGuestMemfds([file(4, 1, 64)], [backend(0, 64, "bind", [0]), backend(1, 64, "bind", [1])]);
    expect(fewer.kind === "refused" && fewer.reason).toMatch(
      /1 guest_memfd file\(s\) \(64 MiB\) for 2 memory backends/,
    );
    const odd = mapGuestMemfds([file(4, 1, 4), file(5, 2, 64)], [backend(0, 64, "bind", [0])]);
    expect(odd.kind === "refused" && odd.reason).toMatch(
      /in creation order, are 4 MiB, 64 MiB; .* 64 MiB: they do not line up/,
    );
  });
});

describe("modeFor and sliceNodes", () => {
  it.each([
    ["bind", [0], MPOL.BIND],
    ["interleave", [0, 1], MPOL.INTERLEAVE],
    ["preferred", [1], MPOL.PREFERRED],
    ["preferred", [0, 1], MPOL.PREFERRED_MANY],
    ["weighted-interleave", [0, 1], MPOL.WEIGHTED_INTERLEAVE],
  ] as const)("%s over %j is mode %i", (policy, nodes, mode) => {
    expect(modeFor(backend(0, 64, policy, [...nodes]))?.mode).toBe(mode);
  });

  it("policy default is not pre-allocated", () => {
    expect(modeFor(backend(0, 64, "default", []))).toBeUndefined();
  });

  it("splits a large node over several workers, every node gets one, slices cover each file exactly", () => {
    const sizes = [6144 * MiB, 1024 * MiB];
    const parts = sliceNodes(sizes, 8);
    expect(parts[0]!.length).toBe(7);
    expect(parts[1]!.length).toBe(1);
    parts.forEach((p, i) => {
      expect(p.reduce((a, s) => a + s.length, 0)).toBe(sizes[i]);
      p.forEach((s, k) => expect(s.offset).toBe(k === 0 ? 0 : p[k - 1]!.offset + p[k - 1]!.length));
    });
    expect(sliceNodes([64 * MiB], 1)).toEqual([[{ offset: 0, length: 64 * MiB }]]);
  });
});
