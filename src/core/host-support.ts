// The host-support table: which Linux release and which kvm module flag each confidential type
// and each placement lever needs on the host. `plan` (host errors) and `doctor` (host findings
// and the summary) both read it, so they cannot disagree about a host.
// Versions are first releases (../shared/DOMAIN.md; Linux virt/kvm, arch/x86/kvm).
import { CONFIDENTIAL } from "./confidential.js";
import type { ConfidentialKind } from "./confidential.js";
import { compareVersions } from "./versions.js";
import type { HostInfo } from "./types.js";

/** Linux releases the host checks gate on. */
export const KERNEL = {
  /** pidfd_open and pidfd_getfd: another process's fd (guest-memfd-prealloc takes QEMU's). */
  pidfdGetfd: "5.6",
  /** MPOL_PREFERRED_MANY: preferred over several nodes. */
  preferredMany: "5.15",
  /** KVM guest_memfd, where SEV-SNP and TDX keep private memory. */
  guestMemfd: "6.8",
  /** MPOL_WEIGHTED_INTERLEAVE, with weights in /sys/kernel/mm/mempolicy/weighted_interleave. */
  weightedInterleave: "6.9",
  /** KVM_SEV_INIT2 (the VM type sev-guest uses unless legacy-vm-type is on). */
  sevInit2: "6.10",
  /** SEV-SNP host support in KVM. */
  snpHost: "6.11",
  /** TDX host support in KVM. */
  tdxHost: "6.16",
  /** NUMA mempolicy stored on a guest_memfd (mbind on its mmap). */
  guestMemfdMempolicy: "6.19",
} as const;

/** numactl releases with the options the planner uses. */
export const NUMACTL = {
  preferredMany: "2.0.15",
  weightedInterleave: "2.0.19",
} as const;

export const kernelAtLeast = (host: HostInfo, v: string): boolean => compareVersions(host.kernel, v) >= 0;

interface HostNeeds {
  /** The kvm module parameter that says the firmware and module enable the type. */
  flag: { file: string; get: (h: HostInfo) => boolean };
  /** The first Linux with host support, when newer than KVM itself. */
  kernel?: { version: string; what: string };
  /** What a host needs, in words, for hints. */
  hint: string;
}

export const CONFIDENTIAL_HOST: Readonly<Record<ConfidentialKind, HostNeeds>> = {
  sev: {
    flag: { file: "/sys/module/kvm_amd/parameters/sev", get: (h) => h.sev },
    hint: "an AMD EPYC host with SEV enabled in firmware and kvm_amd sev=1",
  },
  "sev-es": {
    flag: { file: "/sys/module/kvm_amd/parameters/sev_es", get: (h) => h.sevEs },
    hint: "an AMD EPYC host with SEV-ES enabled in firmware and kvm_amd sev_es=1",
  },
  "sev-snp": {
    flag: { file: "/sys/module/kvm_amd/parameters/sev_snp", get: (h) => h.sevSnp },
    kernel: { version: KERNEL.snpHost, what: "SEV-SNP host support" },
    hint: `an AMD EPYC (Milan or later) host with SNP enabled in firmware, Linux >= ${KERNEL.snpHost} and kvm_amd sev_snp=1`,
  },
  tdx: {
    flag: { file: "/sys/module/kvm_intel/parameters/tdx", get: (h) => h.tdx },
    kernel: { version: KERNEL.tdxHost, what: "TDX host support" },
    hint: `an Intel Xeon host with TDX enabled in firmware, Linux >= ${KERNEL.tdxHost} and kvm_intel tdx=1`,
  },
};

export interface HostVerdict {
  ok: boolean;
  /** What is missing, each a short clause: "/sys/module/kvm_amd/parameters/sev_snp is not Y". */
  missing: string[];
  /** What was found, for doctor: "kvm_amd sev_snp=Y, kernel 6.10". */
  found: string;
  /** What the host needs, short: "kvm_amd sev_snp=Y and Linux >= 6.11". */
  requires: string;
  hint: string;
}

/** Can this host run a guest of this confidential type (KVM itself aside)? */
export function confidentialHostSupport(type: ConfidentialKind, host: HostInfo): HostVerdict {
  const needs = CONFIDENTIAL_HOST[type];
  const missing: string[] = [];
  const flag = needs.flag.get(host);
  if (!flag) missing.push(`${needs.flag.file} is not Y`);
  if (needs.kernel && !kernelAtLeast(host, needs.kernel.version))
    missing.push(`${needs.kernel.what} needs Linux >= ${needs.kernel.version}, this host runs ${host.kernel}`);
  const [module, , param] = needs.flag.file.split("/").slice(-3);
  const found = `${module} ${param}=${flag ? "Y" : "N or absent"}${needs.kernel ? `, kernel ${host.kernel}` : ""}`;
  const requires = `${module} ${param}=Y${needs.kernel ? ` and Linux >= ${needs.kernel.version}` : ""}`;
  return { ok: missing.length === 0, missing, found, requires, hint: needs.hint };
}

/** The confidential types, in table order, with their labels (for doctor's rows). */
export const CONFIDENTIAL_KINDS = Object.keys(CONFIDENTIAL) as ConfidentialKind[];

/**
 * Can guest-memfd-prealloc take QEMU's guest_memfd on this host? It needs pidfd_getfd (Linux
 * 5.6), and Yama's kernel.yama.ptrace_scope 3 forbids every ptrace attach, pidfd_getfd included.
 * Root and seccomp are launch-time facts (doctor checks them live; launch falls back and says
 * what was lost). `missing`: what is not there, for plan; `found`: what is, for doctor.
 */
export function pidfdGetfdSupport(host: HostInfo): { ok: boolean; missing: string[]; found: string } {
  const missing: string[] = [];
  if (!kernelAtLeast(host, KERNEL.pidfdGetfd))
    missing.push(`Linux ${host.kernel} has no pidfd_getfd (Linux ${KERNEL.pidfdGetfd}) to take QEMU's guest_memfd`);
  const yama = host.ptraceScope;
  if (yama !== undefined && yama >= 3)
    missing.push("Yama kernel.yama.ptrace_scope is 3, which forbids every ptrace attach, pidfd_getfd included");
  const found = `kernel ${host.kernel}, ${yama === undefined ? "no Yama" : `Yama ptrace_scope ${yama}`}`;
  return { ok: missing.length === 0, missing, found };
}
