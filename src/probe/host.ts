// Placeholder: host probe through an FsRoot.
import type { HostInfo } from "../types.js";

export function probeHost(root = "/"): HostInfo {
  return {
    root,
    kernel: "0.0.0",
    nodes: [],
    kvm: false,
    sev: false,
    sevEs: false,
    sevSnp: false,
    tdx: false,
    cgroup: { version: "none", v1Mounts: {}, controllers: [], systemd: false },
    numactl: { preferredMany: false, weightedInterleave: false },
    weightedInterleave: false,
    guestMemfdMempolicy: false,
  };
}
