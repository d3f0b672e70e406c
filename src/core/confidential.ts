// The confidential-type table: for sev, sev-es, sev-snp and tdx, the one place that says which QEMU
// object carries it (and since which QEMU), whether its private memory lives in guest_memfd, its
// guest-policy flags and defaults (and how a written policy folds to a number), which properties it
// has (BELONGS, tied by tsc to the Confidential union in types.ts), and the sizes of the binary
// blobs it takes. normalize, rules, plan, render, doctor and the commands import these facts;
// none of them restates one.
// Sources: ../shared/DOMAIN.md, QEMU qapi/qom.json, target/i386/sev.c, target/i386/kvm/tdx.c.
import type { Confidential, ConfidentialType, FileOrBase64, SevSnpGuest, TdxGuest } from "./types.js";

export type ConfidentialKind = Exclude<ConfidentialType, "none">;

export interface ConfidentialFacts {
  /** What people call it: "SEV-SNP". */
  label: string;
  /** The QOM type of the confidential-guest-support object. */
  qomType: "sev-guest" | "sev-snp-guest" | "tdx-guest";
  /** First upstream QEMU with that type. */
  qemuSince: string;
  /** The id qcvm gives the object (never derived from profile text). */
  objectId: string;
  /**
   * The object sets require_guest_memfd, so every RAMBlock gets a guest_memfd for private memory:
   * sev-snp-guest (QEMU 9.1) and tdx-guest (QEMU 10.1) do; sev-guest (SEV, SEV-ES) does not, and
   * encrypts guest memory in place in the backend.
   */
  guestMemfd: boolean;
  /** The thread that populates private memory at launch, for reasons ("SNP launch update"). */
  populate?: string;
  /** QEMU's default guest policy (number); undefined where the type has none. */
  defaultPolicy?: number;
  /** Named guest-policy bits, when the type has a policy word. */
  policyFlags?: Readonly<Record<string, number>>;
}

/** SEV / SEV-ES guest policy bits (AMD SEV API, GUEST_POLICY). */
export const SEV_POLICY_FLAGS: Readonly<Record<string, number>> = {
  nodbg: 0x1,
  noks: 0x2,
  es: 0x4,
  nosend: 0x8,
  domain: 0x10,
  sev: 0x20,
};

/** SEV-ES is requested by this guest policy bit (AMD SEV API, "ES"). */
export const SEV_POLICY_ES = 0x4;

/** SEV-SNP guest policy bits (SNP firmware ABI, GUEST_POLICY). Bit 17 is reserved and must be 1. */
export const SNP_POLICY_RESERVED = 1 << 17;
export const SNP_POLICY_FLAGS: Readonly<Record<string, number>> = {
  smt: 2 ** 16,
  "migrate-ma": 2 ** 18,
  debug: 2 ** 19,
  "single-socket": 2 ** 20,
  "cxl-allow": 2 ** 21,
  "mem-aes-256-xts": 2 ** 22,
  "rapl-dis": 2 ** 23,
  "ciphertext-hiding": 2 ** 24,
  "page-swap-disable": 2 ** 25,
};

/** TDX TD attributes (bit 63 is beyond 2^53, hence bigint). */
export const TDX_ATTRIBUTE_FLAGS: Readonly<Record<string, bigint>> = {
  debug: 1n << 0n,
  "sept-ve-disable": 1n << 28n,
  pks: 1n << 30n,
  perfmon: 1n << 63n,
};

/** TDX TD attribute bit 28, SEPT_VE_DISABLE (Intel TDX module ABI). */
export const TDX_ATTR_SEPT_VE_DISABLE = TDX_ATTRIBUTE_FLAGS["sept-ve-disable"]!;

/**
 * TD attribute bits QEMU lets a profile set (target/i386/kvm/tdx.c TDX_SUPPORTED_TD_ATTRS, QEMU
 * 10.1 through master of 2026-02): any other bit, debug (bit 0) included, makes tdx_validate_attributes
 * fail "Some QEMU unsupported TD attribute bits being requested".
 */
export const TDX_QEMU_ATTRIBUTES = (1n << 28n) | (1n << 30n) | (1n << 63n);

export const CONFIDENTIAL: Readonly<Record<ConfidentialKind, ConfidentialFacts>> = {
  sev: {
    label: "SEV",
    qomType: "sev-guest",
    qemuSince: "2.12",
    objectId: "sev0",
    guestMemfd: false,
    defaultPolicy: 0x1,
    policyFlags: SEV_POLICY_FLAGS,
  },
  "sev-es": {
    label: "SEV-ES",
    qomType: "sev-guest",
    qemuSince: "2.12",
    objectId: "sev0",
    guestMemfd: false,
    defaultPolicy: 0x1 | SEV_POLICY_ES,
    policyFlags: SEV_POLICY_FLAGS,
  },
  "sev-snp": {
    label: "SEV-SNP",
    qomType: "sev-snp-guest",
    qemuSince: "9.1",
    objectId: "snp0",
    guestMemfd: true,
    populate: "SNP launch update",
    defaultPolicy: 0x30000,
    policyFlags: SNP_POLICY_FLAGS,
  },
  tdx: {
    label: "TDX",
    qomType: "tdx-guest",
    qemuSince: "10.1",
    objectId: "tdx0",
    guestMemfd: true,
    populate: "TDX init-mem-region",
  },
};

/** The facts for a type, or undefined for a plain guest. */
export function confidentialFacts(type: ConfidentialType): ConfidentialFacts | undefined {
  return type === "none" ? undefined : CONFIDENTIAL[type];
}

/** Only SEV-SNP (QEMU 9.1) and TDX (QEMU 10.1) set require_guest_memfd; sev-guest does not. */
export function usesGuestMemfd(type: ConfidentialType): boolean {
  return confidentialFacts(type)?.guestMemfd ?? false;
}

/** The types whose private memory is in guest_memfd, for messages and rules. */
export const GUEST_MEMFD_TYPES: readonly ConfidentialKind[] = (Object.keys(CONFIDENTIAL) as ConfidentialKind[]).filter(
  (t) => CONFIDENTIAL[t].guestMemfd,
);

/** QEMU's default guest policy for a type (sev 0x1, sev-es 0x5, sev-snp 0x30000). */
export const DEFAULT_GUEST_POLICY: Readonly<Record<ConfidentialType, number | undefined>> = {
  none: undefined,
  sev: CONFIDENTIAL.sev.defaultPolicy,
  "sev-es": CONFIDENTIAL["sev-es"].defaultPolicy,
  "sev-snp": CONFIDENTIAL["sev-snp"].defaultPolicy,
  tdx: undefined,
};

/** Policy word as written (number, "0x..", or flag names) -> number; names are per confidential type. */
export function foldPolicy(value: unknown, type: ConfidentialType): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value === "string") return Number(BigInt(value));
  if (Array.isArray(value)) {
    if (type === "sev-snp") {
      return value.reduce<number>((acc, f) => acc + (SNP_POLICY_FLAGS[String(f)] ?? 0), SNP_POLICY_RESERVED);
    }
    return value.reduce<number>((acc, f) => acc | (SEV_POLICY_FLAGS[String(f)] ?? 0), 0);
  }
  return undefined;
}

/** TD attributes as written -> exact 64-bit value. */
export function foldAttributes(value: unknown): bigint | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) ? BigInt(value) : undefined;
  if (typeof value === "string") return BigInt(value);
  if (Array.isArray(value)) return value.reduce<bigint>((acc, f) => acc | (TDX_ATTRIBUTE_FLAGS[String(f)] ?? 0n), 0n);
  return undefined;
}

/** The variant a type builds: SevGuest for sev and sev-es, SevSnpGuest for sev-snp, and so on. */
export type VariantOf<T extends ConfidentialType> = Confidential extends infer C
  ? C extends { type: infer U }
    ? T extends U
      ? C
      : never
    : never
  : never;

type KeysOfEach<C> = C extends unknown ? keyof C : never;
/** Every property some confidential type has. */
export type ConfidentialProperty = Exclude<KeysOfEach<Confidential>, "type">;
type TypesWith<K> = { [T in ConfidentialKind]: K extends keyof VariantOf<T> ? T : never }[ConfidentialKind];

/** Which confidential types have each property (the QEMU object's, qapi/qom.json). `satisfies`
 *  ties it to the union: a key the union lacks, or a type whose variant lacks the key, fails tsc. */
const PROPERTY_TYPES = {
  cbitpos: ["sev", "sev-es", "sev-snp"],
  reducedPhysBits: ["sev", "sev-es", "sev-snp"],
  policy: ["sev", "sev-es", "sev-snp"],
  kernelHashes: ["sev", "sev-es", "sev-snp"],
  handle: ["sev", "sev-es"],
  dhCertFile: ["sev", "sev-es"],
  sessionFile: ["sev", "sev-es"],
  legacyVmType: ["sev", "sev-es"],
  guestVisibleWorkarounds: ["sev-snp"],
  idBlock: ["sev-snp"],
  idAuth: ["sev-snp"],
  authorKeyEnabled: ["sev-snp"],
  hostData: ["sev-snp"],
  vcekDisabled: ["sev-snp"],
  attributes: ["tdx"],
  septVeDisable: ["tdx"],
  mrconfigid: ["tdx"],
  mrowner: ["tdx"],
  mrownerconfig: ["tdx"],
  quoteGenerationSocket: ["tdx"],
} as const satisfies { readonly [K in ConfidentialProperty]: readonly TypesWith<K>[] };

/** The same table, looked up by a key as written (a key no type has is undefined). */
export const BELONGS: Readonly<Partial<Record<string, readonly ConfidentialType[]>>> = PROPERTY_TYPES;

/**
 * Binary blobs a profile gives as a file or base64, and the exact size QEMU takes for each
 * (sev-snp-guest: guest-visible-workarounds 16 B, id-block 96 B, id-auth 4096 B, host-data 32 B;
 * tdx-guest: mrconfigid, mrowner, mrownerconfig, each a SHA-384 digest of 48 B).
 */
export const SNP_BLOB_FIELDS = [
  "guestVisibleWorkarounds",
  "idBlock",
  "idAuth",
  "hostData",
] as const satisfies ReadonlyArray<keyof SevSnpGuest>;
export const TDX_BLOB_FIELDS = ["mrconfigid", "mrowner", "mrownerconfig"] as const satisfies ReadonlyArray<
  keyof TdxGuest
>;
export const BLOB_FIELDS = [...SNP_BLOB_FIELDS, ...TDX_BLOB_FIELDS] as const;
export type BlobField = (typeof BLOB_FIELDS)[number];

export const BLOB_BYTES: Readonly<Record<BlobField, number>> = {
  guestVisibleWorkarounds: 16,
  idBlock: 96,
  idAuth: 4096,
  hostData: 32,
  mrconfigid: 48,
  mrowner: 48,
  mrownerconfig: 48,
};

/** The blobs the section's object takes and the profile gives, in BLOB_FIELDS order. */
export function blobsOf(c: Confidential): { field: BlobField; blob: FileOrBase64 }[] {
  const out: { field: BlobField; blob: FileOrBase64 }[] = [];
  if (c.type === "sev-snp")
    for (const field of SNP_BLOB_FIELDS) {
      const blob = c[field];
      if (blob !== undefined) out.push({ field, blob });
    }
  if (c.type === "tdx")
    for (const field of TDX_BLOB_FIELDS) {
      const blob = c[field];
      if (blob !== undefined) out.push({ field, blob });
    }
  return out;
}

/** A copy of the section with every blob it has passed through `fn` (the others as they are). */
export function mapBlobs(c: Confidential, fn: (field: BlobField, blob: FileOrBase64) => FileOrBase64): Confidential {
  if (c.type === "sev-snp") {
    const out = { ...c };
    for (const field of SNP_BLOB_FIELDS) {
      const blob = c[field];
      if (blob !== undefined) out[field] = fn(field, blob);
    }
    return out;
  }
  if (c.type === "tdx") {
    const out = { ...c };
    for (const field of TDX_BLOB_FIELDS) {
      const blob = c[field];
      if (blob !== undefined) out[field] = fn(field, blob);
    }
    return out;
  }
  return c;
}
