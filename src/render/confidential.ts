// The confidential-guest object of the argv (-object sev-guest / sev-snp-guest / tdx-guest): one
// function per confidential type, each rendering only that type's properties. Called by renderArgv()
// (render.ts), whose Renderer carries the profile, plan, capabilities and collected diagnostics.
import { invariant } from "../core/diagnostics.js";
import { CONFIDENTIAL, SEV_POLICY_ES, TDX_ATTR_SEPT_VE_DISABLE } from "../core/confidential.js";
import type { FileOrBase64, SevGuest, SevSnpGuest, SocketAddress, TdxGuest } from "../core/types.js";
import { hex } from "./qemu-opts.js";
import type { JsonValue } from "./qemu-opts.js";
import { gmemBackend } from "./memory.js";
import { RENDER_IDS } from "./ids.js";
import type { Renderer } from "./render.js";

const p = "confidential";

/** The -object of the profile's confidential type; none for a plain guest. */
export function confidentialArgs(r: Renderer): string[] {
  const c = r.profile.confidential;
  switch (c.type) {
    case "none":
      return [];
    case "sev":
    case "sev-es":
      return sevArgs(r, c);
    case "sev-snp":
      return snpArgs(r, c);
    case "tdx":
      return tdxArgs(r, c);
  }
}

/** SEV and SEV-ES: sev-guest, with the ES policy bit for sev-es. */
function sevArgs(r: Renderer, c: SevGuest): string[] {
  const { type } = c;
  if (!r.need("sev-guest", `${p}.type`)) return [];
  if (c.kernelHashes) r.need("sev-kernel-hashes", `${p}.kernelHashes`);
  if (c.legacyVmType !== undefined) r.need("sev-legacy-vm-type", `${p}.legacyVmType`);
  requireAmd(c);
  // sev-es means the ES policy bit; without it the guest would silently launch as plain SEV.
  // Defaults are QEMU's: 0x1 (NODBG), plus ES for sev-es.
  const base = c.policy ?? CONFIDENTIAL.sev.defaultPolicy!;
  const policy = type === "sev-es" ? base | SEV_POLICY_ES : base;
  return [
    "-object",
    r.opts(p, CONFIDENTIAL[type].qomType, [
      ["id", RENDER_IDS.sev],
      ["cbitpos", c.cbitpos, `${p}.cbitpos`],
      ["reduced-phys-bits", c.reducedPhysBits, `${p}.reducedPhysBits`],
      ["policy", hex(policy), `${p}.policy`],
      ["handle", c.handle, `${p}.handle`],
      ["dh-cert-file", c.dhCertFile, `${p}.dhCertFile`],
      ["session-file", c.sessionFile, `${p}.sessionFile`],
      ["kernel-hashes", c.kernelHashes ? true : undefined],
      // Both values are rendered: QEMU's default is auto (OnOffAuto since 9.1.0, target/i386/
      // sev.c), which keeps the legacy KVM_SEV_INIT unless another option needs INIT2, so
      // `false` must say off to get the KVM_SEV_INIT2 VM type (and its measurement).
      ["legacy-vm-type", c.legacyVmType],
    ]),
  ];
}

/** SEV-SNP: sev-snp-guest. */
function snpArgs(r: Renderer, c: SevSnpGuest): string[] {
  if (!r.need("sev-snp-guest", `${p}.type`)) return [];
  requireAmd(c);
  return [
    "-object",
    r.opts(p, CONFIDENTIAL["sev-snp"].qomType, [
      ["id", RENDER_IDS.snp],
      ["cbitpos", c.cbitpos, `${p}.cbitpos`],
      ["reduced-phys-bits", c.reducedPhysBits, `${p}.reducedPhysBits`],
      ["policy", hex(c.policy ?? CONFIDENTIAL["sev-snp"].defaultPolicy!), `${p}.policy`],
      [
        "guest-visible-workarounds",
        base64(`${p}.guestVisibleWorkarounds`, c.guestVisibleWorkarounds),
        `${p}.guestVisibleWorkarounds`,
      ],
      ["id-block", base64(`${p}.idBlock`, c.idBlock), `${p}.idBlock`],
      ["id-auth", base64(`${p}.idAuth`, c.idAuth), `${p}.idAuth`],
      ["author-key-enabled", c.authorKeyEnabled ? true : undefined],
      ["host-data", base64(`${p}.hostData`, c.hostData), `${p}.hostData`],
      ["vcek-disabled", c.vcekDisabled ? true : undefined],
      ["kernel-hashes", c.kernelHashes ? true : undefined],
      // Private pages converted in place, so the guest_memfd policy covers them (out of tree).
      [
        "convert-in-place",
        gmemBackend(r)?.convertInPlace && r.need("snp-convert-in-place", `${p}.type`) ? true : undefined,
      ],
    ]),
  ];
}

/** TDX: tdx-guest, in JSON form when it has a quote-generation socket (a structure). */
function tdxArgs(r: Renderer, c: TdxGuest): string[] {
  if (!r.need("tdx-guest", `${p}.type`)) return [];
  // sept-ve-disable is a setter for bit 28 of attributes, and QEMU applies -object
  // properties in no defined order, so both at once would race. Fold it into attributes.
  // QEMU's own default sets the bit; `septVeDisable: false` must therefore be explicit.
  let attributes = c.attributes;
  let septVeDisable = c.septVeDisable;
  if (attributes !== undefined && septVeDisable !== undefined) {
    attributes = septVeDisable ? attributes | TDX_ATTR_SEPT_VE_DISABLE : attributes & ~TDX_ATTR_SEPT_VE_DISABLE;
    septVeDisable = undefined;
  }
  const props = {
    attributes,
    "sept-ve-disable": septVeDisable,
    mrconfigid: base64(`${p}.mrconfigid`, c.mrconfigid),
    mrowner: base64(`${p}.mrowner`, c.mrowner),
    mrownerconfig: base64(`${p}.mrownerconfig`, c.mrownerconfig),
  };
  const qgs = c.quoteGenerationSocket;
  if (qgs) {
    // quote-generation-socket is a SocketAddress (a structure): only the JSON form has it.
    const socket = socketAddress(r, `${p}.quoteGenerationSocket`, qgs);
    return [
      "-object",
      r.json(p, CONFIDENTIAL.tdx.qomType, RENDER_IDS.tdx, { ...props, "quote-generation-socket": socket }),
    ];
  }
  return [
    "-object",
    r.opts(p, CONFIDENTIAL.tdx.qomType, [
      ["id", RENDER_IDS.tdx],
      ["attributes", attributes !== undefined ? hex(attributes) : undefined, `${p}.attributes`],
      ["sept-ve-disable", septVeDisable, `${p}.septVeDisable`],
      ["mrconfigid", props.mrconfigid, `${p}.mrconfigid`],
      ["mrowner", props.mrowner, `${p}.mrowner`],
      ["mrownerconfig", props.mrownerconfig, `${p}.mrownerconfig`],
    ]),
  ];
}

/** cbitpos and reducedPhysBits are required by the rules (confidential.required) before a render. */
function requireAmd(c: SevGuest | SevSnpGuest): void {
  invariant(c.cbitpos !== undefined && c.reducedPhysBits !== undefined, `${c.type} without cbitpos/reducedPhysBits`);
}

function base64(path: string, v: FileOrBase64 | undefined): string | undefined {
  if (v === undefined) return undefined;
  invariant(v.base64 !== undefined, `${path} was not read into base64: call inlineProfileFiles() before renderArgv()`);
  return v.base64;
}

function socketAddress(r: Renderer, path: string, s: SocketAddress): JsonValue {
  // The schema's socketAddress requires path (unix) and cid and port (vsock).
  if (s.type === "unix") {
    invariant(s.path !== undefined, `${path}: a unix socket without a path`);
    return { type: "unix", path: r.word(`${path}.path`, s.path) };
  }
  invariant(s.cid !== undefined && s.port !== undefined, `${path}: a vsock socket without cid or port`);
  // VsockSocketAddress carries cid and port as strings (qapi/sockets.json).
  return { type: "vsock", cid: String(s.cid ?? ""), port: String(s.port ?? "") };
}
