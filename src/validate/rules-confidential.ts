// Rules on confidential guests (SEV, SEV-ES, SEV-SNP, TDX): which properties belong to which
// type, the QEMU version each needs, policy and attribute bits, machine flags, firmware, and the
// size of blobs given inline (blobs given as files are checked by the host-check step).
import {
  BELONGS,
  BLOB_BYTES,
  blobsOf,
  foldAttributes,
  usesGuestMemfd,
  SEV_POLICY_FLAGS,
  SNP_POLICY_FLAGS,
  SNP_POLICY_RESERVED,
  TDX_ATTR_SEPT_VE_DISABLE,
  TDX_ATTRIBUTE_FLAGS,
  TDX_QEMU_ATTRIBUTES,
} from "../core/confidential.js";
import { needVersion } from "./rule-context.js";
import type { Rule } from "./rule-context.js";

// --- Confidential ----------------------------------------------------------------------------

// Which type has which property is core/confidential.ts's BELONGS. The normalized section has
// only its own type's fields, so this check reads what was written.
export const confidentialProperties: Rule = (ctx) => {
  const type = ctx.profile.confidential.type;
  const written = ctx.written("confidential");
  if (typeof written !== "object" || written === null) return;
  for (const key of Object.keys(written)) {
    const types = BELONGS[key];
    if (!types || types.includes(type)) continue;
    ctx.error(
      "confidential.property-type",
      `confidential.${key}`,
      `is a ${types.join("/")} property; confidential.type is ${type}`,
      {
        hint: types.length === 1 ? `set type: ${types[0]}, or remove ${key}` : `remove ${key}`,
      },
    );
  }
};

export const confidentialVersion: Rule = (ctx) => {
  const { confidential: c } = ctx.profile;
  if (c.type === "sev-snp") needVersion(ctx, "sev-snp-guest", "confidential.type", "SEV-SNP (sev-snp-guest)");
  if (c.type === "tdx") needVersion(ctx, "tdx-guest", "confidential.type", "TDX (tdx-guest)");
  if (c.type === "sev" || c.type === "sev-es") needVersion(ctx, "sev-guest", "confidential.type", "SEV (sev-guest)");
  if ((c.type === "sev" || c.type === "sev-es") && c.kernelHashes !== undefined)
    needVersion(ctx, "sev-kernel-hashes", "confidential.kernelHashes", "kernelHashes");
  if ((c.type === "sev" || c.type === "sev-es") && c.legacyVmType !== undefined)
    needVersion(ctx, "sev-legacy-vm-type", "confidential.legacyVmType", "legacyVmType");
  if (ctx.profile.firmware.igvm !== undefined)
    needVersion(ctx, "igvm", "firmware.igvm", "IGVM firmware (-machine igvm-cfg)");
};

export const sevCommon: Rule = (ctx) => {
  const c = ctx.profile.confidential;
  if (c.type === "none" || c.type === "tdx") return;
  const { type } = c;
  for (const k of ["cbitpos", "reducedPhysBits"] as const) {
    if (c[k] === undefined) {
      ctx.error("confidential.required", `confidential.${k}`, `is required for ${type}`, {
        hint:
          k === "cbitpos"
            ? "AMD EPYC: cbitpos: 51, from CPUID 0x8000001F EBX[5:0]"
            : "AMD EPYC: reducedPhysBits: 1, from CPUID 0x8000001F EBX[11:6]",
      });
    }
  }
};

export const guestPolicy: Rule = (ctx) => {
  const c = ctx.profile.confidential;
  // tdx-guest has no policy word (and a plain guest no object): confidentialProperties says so.
  if (c.type === "none" || c.type === "tdx") return;
  const { type, policy } = c;
  const written = ctx.written("confidential.policy");
  if (written === undefined || policy === undefined) {
    return;
  }
  if (Array.isArray(written)) {
    const names = type === "sev-snp" ? SNP_POLICY_FLAGS : SEV_POLICY_FLAGS;
    written.forEach((f, i) => {
      if (!(String(f) in names)) {
        ctx.error(
          "confidential.policy-flag",
          `confidential.policy[${i}]`,
          `is not a ${type} policy flag; ${type} flags: ${Object.keys(names).join(", ")}`,
          { got: f },
        );
      }
    });
  }
  const numeric =
    typeof written === "string" ? BigInt(written) : typeof written === "number" ? BigInt(written) : undefined;
  if (numeric !== undefined) {
    const limit = type === "sev-snp" ? 1n << 64n : 1n << 32n;
    if (numeric >= limit || (type === "sev-snp" && numeric > BigInt(Number.MAX_SAFE_INTEGER))) {
      ctx.error(
        "confidential.policy-range",
        "confidential.policy",
        type === "sev-snp" ? "sets bits qcvm does not know (above bit 52)" : "must fit in 32 bits",
        { got: written },
      );
      return;
    }
  }
  if (type === "sev-es" && (policy & SEV_POLICY_FLAGS.es!) === 0) {
    ctx.error("confidential.sev-es-policy", "confidential.policy", "sev-es needs policy bit 0x4 (es)", {
      got: written,
      hint: Array.isArray(written)
        ? "add es to the list"
        : `use 0x${(policy | 0x4).toString(16)}, or leave policy out: the sev-es default is 0x5`,
    });
  }
  if (type === "sev" && (policy & SEV_POLICY_FLAGS.es!) !== 0) {
    ctx.error("confidential.sev-policy-es", "confidential.policy", "policy bit 0x4 (es) makes this an SEV-ES guest", {
      got: written,
      hint: "use type: sev-es",
    });
  }
  if (type === "sev-snp" && numeric !== undefined && (Number(numeric) & SNP_POLICY_RESERVED) === 0) {
    ctx.error("confidential.snp-policy-reserved", "confidential.policy", "SEV-SNP policy bit 17 (reserved) must be 1", {
      got: written,
      hint: `use 0x${(Number(numeric) | SNP_POLICY_RESERVED).toString(16)}`,
    });
  }
};

export const attributes: Rule = (ctx) => {
  const written = ctx.written("confidential.attributes");
  if (typeof written === "number" && !Number.isSafeInteger(written)) {
    ctx.error(
      "confidential.attributes-precision",
      "confidential.attributes",
      "is beyond 2^53 and was rounded when read as a number",
      {
        got: written,
        hint: 'write it as a hex string ("0x8000000010000000") or as named flags',
      },
    );
  }
  const c = ctx.profile.confidential;
  if (c.type === "tdx" && c.attributes !== undefined && (c.attributes & ~TDX_QEMU_ATTRIBUTES) !== 0n) {
    const extra = c.attributes & ~TDX_QEMU_ATTRIBUTES;
    const names = Object.entries(TDX_ATTRIBUTE_FLAGS)
      .filter(([, bit]) => (extra & bit) !== 0n)
      .map(([n]) => n);
    ctx.error(
      "confidential.attributes-unsupported",
      "confidential.attributes",
      `sets TD attribute bits QEMU refuses (0x${extra.toString(16)}${names.length > 0 ? `: ${names.join(", ")}` : ""}); QEMU accepts only sept-ve-disable (bit 28), pks (bit 30) and perfmon (bit 63)`,
      {
        got: written,
        hint: names.includes("debug") ? "remove debug: upstream QEMU cannot launch a debug TD" : "remove those bits",
      },
    );
  }
  // Read as written, so that on sev, sev-es and sev-snp (whose section has neither field) the
  // contradiction is reported besides each field's confidentialProperties error, as before the
  // union; a plain guest's section was never read for it.
  if (c.type === "none") return;
  const bits = foldAttributes(written);
  const septVeDisable = ctx.written("confidential.septVeDisable");
  if (bits !== undefined && typeof septVeDisable === "boolean") {
    const bit = (bits & TDX_ATTR_SEPT_VE_DISABLE) !== 0n;
    if (bit !== septVeDisable) {
      ctx.error(
        "confidential.sept-ve-conflict",
        "confidential.septVeDisable",
        `contradicts attributes bit 28 (sept-ve-disable), which is ${bit ? "set" : "clear"}`,
        {
          got: septVeDisable,
          hint: "give one of them",
        },
      );
    }
  }
};

export const machineFlags: Rule = (ctx) => {
  const { confidential, machine } = ctx.profile;
  if (confidential.type === "tdx") {
    // tdx_cpu_instance_init (target/i386/kvm/tdx.c, QEMU 10.1): "Named cpu model is not supported
    // for TDX yet!" and exit. Only models without a CPUID definition (host, max) get through.
    const model = ctx.profile.cpu.model;
    if (model !== "host" && model !== "max") {
      ctx.error(
        "tdx.cpu-model",
        ctx.has("cpu.model") ? "cpu.model" : "cpu",
        "TDX guests need cpu.model host (or max): QEMU refuses a named CPU model for a TD",
        {
          got: model,
          hint: "use host; the TDX module decides the guest's CPUID",
        },
      );
    }
    if (ctx.has("machine.kernelIrqchip") && machine.kernelIrqchip !== "split") {
      ctx.error("tdx.irqchip", "machine.kernelIrqchip", "TDX needs kernelIrqchip split", {
        got: machine.kernelIrqchip,
        hint: "use split, or leave it out",
      });
    }
    if (machine.smm === "on")
      ctx.error("tdx.smm", "machine.smm", "TDX guests cannot have SMM", {
        got: "on",
        hint: "use off, or leave it out",
      });
    if (machine.pic === "on")
      ctx.error("tdx.pic", "machine.pic", "TDX guests cannot have the legacy PIC", {
        got: "on",
        hint: "use off, or leave it out",
      });
  }
  if (confidential.type === "sev-es" || confidential.type === "sev-snp") {
    if (machine.kernelIrqchip === "off") {
      ctx.error("sev-es.irqchip", "machine.kernelIrqchip", `${confidential.type} needs the in-kernel irqchip`, {
        got: "off",
        hint: "use on or split",
      });
    }
    if (machine.smm === "on")
      ctx.error("sev-es.smm", "machine.smm", `${confidential.type} guests cannot have SMM`, {
        got: "on",
        hint: "use off, or leave it out",
      });
  }
};

export const firmware: Rule = (ctx) => {
  const { confidential, firmware: fw } = ctx.profile;
  const given = (["bios", "pflash", "igvm"] as const).filter((k) => fw[k] !== undefined);
  if (given.length > 1) {
    ctx.error("firmware.several", `firmware.${given[1]}`, `conflicts with firmware.${given[0]}; give one firmware`, {
      got: given,
    });
  }
  if (usesGuestMemfd(confidential.type) && fw.pflash !== undefined) {
    ctx.error(
      "firmware.pflash-private",
      "firmware.pflash",
      `${confidential.type} cannot boot from pflash: guest_memfd has no read-only memory slots`,
      {
        hint: "use firmware.bios with an OVMF or TDVF build, or firmware.igvm",
      },
    );
  }
};

/** SEV-SNP and TDX guests boot only from firmware built for them: without firmware QEMU loads
 *  SeaBIOS, which cannot start a confidential guest, and the launch fails in the guest. */
export const firmwareRequired: Rule = (ctx) => {
  const { confidential, firmware: fw } = ctx.profile;
  if (confidential.type !== "sev-snp" && confidential.type !== "tdx") return;
  if (fw.bios !== undefined || fw.igvm !== undefined || fw.pflash !== undefined) return;
  const snp = confidential.type === "sev-snp";
  ctx.error(
    "firmware.required",
    ctx.has("firmware") ? "firmware" : "confidential.type",
    `${snp ? "SEV-SNP" : "TDX"} guests need firmware built for them; without it QEMU loads SeaBIOS, which cannot start a ${confidential.type} guest`,
    {
      hint: snp
        ? "set firmware.bios to an OVMF build with SEV-SNP support (e.g. /usr/share/ovmf/OVMF.amdsev.fd), or firmware.igvm"
        : "set firmware.bios to a TDVF build (an OVMF for TDX, e.g. /usr/share/ovmf/OVMF.inteltdx.fd)",
    },
  );
};

function base64Bytes(text: string): number | undefined {
  const clean = text.replace(/\s+/g, "");
  if (clean.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(clean)) return undefined;
  return Buffer.from(clean, "base64").length;
}

export const blobs: Rule = (ctx) => {
  // Only the type's own blobs: a property of another type is reported as such; its contents do
  // not matter then.
  for (const { field, blob: v } of blobsOf(ctx.profile.confidential)) {
    if (v.base64 !== undefined) {
      const bytes = BLOB_BYTES[field];
      const n = base64Bytes(v.base64);
      if (n === undefined) {
        ctx.error(
          "confidential.base64",
          `confidential.${field}.base64`,
          "is not valid base64 (length must be a multiple of 4, padded with =)",
          { got: v.base64 },
        );
      } else if (n !== bytes) {
        ctx.error(
          "confidential.blob-size",
          `confidential.${field}.base64`,
          `must decode to ${bytes} bytes, decodes to ${n}`,
          {
            hint: `encode exactly ${bytes} bytes: base64 -w0 FILE`,
          },
        );
      }
    }
    // A blob given as a file is read by qcvm at launch: host-check.ts checks it is there and its size.
  }
};
