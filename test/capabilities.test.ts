// The first QEMU release of every feature qcvm gates on, each checked against QEMU's sources
// (qapi/qom.json "Since:", the commit that added it) and, for 7.2, the real binary here. A gate
// that is too late refuses profiles a user's QEMU can run; one too early renders argv it refuses.
import { describe, expect, it } from "vitest";
import { FEATURES, builtinCapabilities, hasFeature } from "../src/probe/capabilities.js";
import type { Feature } from "../src/probe/capabilities.js";

const FIRST_RELEASE: [Feature, string, string][] = [
  ["machine-memory-backend", "5.0", "-machine memory-backend= (hw/core/machine.c)"],
  ["prealloc-threads", "5.0", "MemoryBackendProperties prealloc-threads, since 5.0"],
  ["reserve", "6.1", "MemoryBackendProperties reserve, since 6.1"],
  ["sev-kernel-hashes", "6.2", "SevGuestProperties kernel-hashes, since 6.2"],
  ["thread-context", "7.2", "ThreadContextProperties, since 7.2"],
  ["prealloc-context", "7.2", "MemoryBackendProperties prealloc-context, since 7.2"],
  ["preferred-many", "8.0", "hostmem: Honor multiple preferred nodes if possible (merged 2023-01-02)"],
  ["sev-snp-guest", "9.1", "SevSnpGuestProperties, since 9.1"],
  ["sev-legacy-vm-type", "9.1", "SevGuestProperties legacy-vm-type, since 9.1"],
  ["memory-backend-shm", "9.1", "MemoryBackendShmProperties, since 9.1"],
  ["tdx-guest", "10.1", "TdxGuestProperties, since 10.1"],
  ["igvm", "10.1", "IgvmCfgProperties, since 10.1"],
];

describe("built-in capabilities follow each feature's first QEMU release", () => {
  it.each(FIRST_RELEASE)("%s is in QEMU %s (%s)", (feature, since) => {
    expect(FEATURES[feature].since).toBe(since);
    const [major, minor] = since.split(".").map(Number) as [number, number];
    const before = minor > 0 ? `${major}.${minor - 1}` : `${major - 1}.2`;
    expect(hasFeature(builtinCapabilities(since), feature)).toBe(true);
    expect(hasFeature(builtinCapabilities(before), feature)).toBe(false);
  });
});
