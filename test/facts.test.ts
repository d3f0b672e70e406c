// One owner per fact: the confidential-type table and the host-support table are what every other
// module reads, so plan and doctor cannot disagree about a host, and the QEMU feature table cannot
// drift from the confidential types.
import { describe, expect, it } from "vitest";
import { CONFIDENTIAL, GUEST_MEMFD_TYPES, usesGuestMemfd } from "../src/core/confidential.js";
import { confidentialHostSupport } from "../src/core/host-support.js";
import { FEATURES, builtinCapabilities, featureGap, missingFeatureMessage } from "../src/probe/capabilities.js";
import { olderQemuWarning } from "../src/pipeline/context.js";
import type { QemuCapabilities } from "../src/core/types.js";
import { planPlacement } from "../src/plan/plan.js";
import { diagnoseHost, diagnoseQemu, summarize } from "../src/commands/doctor.js";
import { isRealHost, FsRoot } from "../src/io/fsroot.js";
import { HOSTS_DIR, fixtureHost, loadProfile } from "./helpers/host.js";

describe("confidential-type table", () => {
  it("says which types keep private memory in guest_memfd (require_guest_memfd)", () => {
    expect(["none", "sev", "sev-es", "sev-snp", "tdx"].map((t) => usesGuestMemfd(t as never))).toEqual([
      false,
      false,
      false,
      true,
      true,
    ]);
    expect(GUEST_MEMFD_TYPES).toEqual(["sev-snp", "tdx"]);
  });

  it("is where the QEMU feature table takes the object types and versions from", () => {
    expect(FEATURES["sev-guest"]).toMatchObject({ type: CONFIDENTIAL.sev.qomType, since: "2.12" });
    expect(FEATURES["sev-snp-guest"]).toMatchObject({ type: "sev-snp-guest", since: "9.1" });
    expect(FEATURES["tdx-guest"]).toMatchObject({ type: "tdx-guest", since: "10.1" });
  });
});

describe("host-support table: plan and doctor agree", () => {
  // An SNP-capable EPYC whose kernel is one release short of KVM's SNP host support (Linux 6.11).
  const host = { ...fixtureHost("epyc-2s4n"), kernel: "6.10.0" };

  it("an SNP host on Linux 6.10: plan refuses, doctor says SEV-SNP is missing, for the same reason", async () => {
    expect(host.sevSnp).toBe(true);
    const verdict = confidentialHostSupport("sev-snp", host);
    expect(verdict.ok).toBe(false);
    expect(verdict.missing).toEqual(["SEV-SNP host support needs Linux >= 6.11, this host runs 6.10.0"]);

    const profile = await loadProfile("snp-1node.yaml");
    const plan = planPlacement(profile, host, builtinCapabilities("9.1"));
    const err = plan.errors.find((d) => d.code === "host.confidential");
    expect(err?.message).toContain("SEV-SNP host support needs Linux >= 6.11");

    const snp = diagnoseHost(host).find((f) => f.item === "SEV-SNP");
    expect(snp?.status).toBe("missing");
    const together = summarize(host, builtinCapabilities("9.1")).find((f) => f.item === "confidential.type sev-snp");
    expect(together?.status).toBe("missing");
    expect(together?.detail).toBe("the host cannot");
  });

  it("the same host on Linux 6.11: both say yes", async () => {
    const ok = { ...host, kernel: "6.11.0" };
    const plan = planPlacement(await loadProfile("snp-1node.yaml"), ok, builtinCapabilities("9.1"));
    expect(plan.errors.map((d) => d.code)).not.toContain("host.confidential");
    expect(diagnoseHost(ok).find((f) => f.item === "SEV-SNP")?.status).toBe("ok");
  });
});

describe("real host or fixture: one answer on the filesystem seam", () => {
  it("is true for / only", () => {
    expect(isRealHost("/")).toBe(true);
    expect(isRealHost("/./")).toBe(true);
    expect(isRealHost(HOSTS_DIR)).toBe(false);
    expect(new FsRoot(`${HOSTS_DIR}/epyc-2s4n`).isRealHost).toBe(false);
  });
});

describe("installed vs target QEMU (issue 10 item 5)", () => {
  // Debian's QEMU 11.1 is built without IGVM: `-machine q35,help` lists no igvm-cfg.
  const debian111 = (): QemuCapabilities => {
    const caps = builtinCapabilities("11.1.3");
    return {
      ...caps,
      source: "probe",
      binary: "/usr/bin/qemu-system-x86_64",
      types: caps.types.filter((t) => t !== "igvm-cfg"),
    };
  };

  it("tells 'this build lacks X' apart from 'X needs QEMU >= v'", () => {
    expect(featureGap(debian111(), "igvm")).toBe("built-without");
    expect(missingFeatureMessage(debian111(), "igvm")).toBe(
      "-machine igvm-cfg= (IGVM firmware): QEMU 11.1.3 (probe, /usr/bin/qemu-system-x86_64) was built without it (upstream QEMU has it since 10.1)",
    );
    const igvm = diagnoseQemu(debian111()).find((f) => f.item === "igvm")!;
    expect(igvm.rulesOut).toContain("this QEMU 11.1.3 build lacks it (upstream QEMU has it since 10.1)");
    expect(igvm.rulesOut).not.toContain("needs QEMU >= 10.1");
    expect(featureGap(builtinCapabilities("9.1"), "igvm")).toBe("needs-version");
    expect(featureGap(builtinCapabilities("9.1"), "guest-memfd-backend")).toBe("unreleased");
  });

  it("a message about a probed QEMU names its binary", () => {
    const caps = { ...builtinCapabilities("9.0"), source: "probe" as const, binary: "/opt/q/bin/qemu" };
    expect(missingFeatureMessage(caps, "sev-snp-guest")).toBe(
      "sev-snp-guest (SEV-SNP, guest_memfd private memory) needs QEMU >= 9.1; target QEMU is 9.0 (probe, /opt/q/bin/qemu)",
    );
  });

  it("a profile targeting a newer QEMU than the binary warns, naming binary and version", async () => {
    const profile = await loadProfile("snp-1node.yaml", ["qemu.version=10.1"]);
    const caps = { ...builtinCapabilities("9.2.0"), source: "probe" as const, binary: "/usr/bin/qemu-system-x86_64" };
    const w = olderQemuWarning(profile, caps);
    expect(w?.code).toBe("qemu.version-newer");
    expect(w?.message).toBe(
      "targets QEMU 10.1, but /usr/bin/qemu-system-x86_64 is QEMU 9.2.0: what needs a newer QEMU will fail at start",
    );
    expect(olderQemuWarning(profile, { ...caps, version: "10.1.2" })).toBeUndefined();
    expect(olderQemuWarning(profile, builtinCapabilities("9.2"))).toBeUndefined();
  });
});
