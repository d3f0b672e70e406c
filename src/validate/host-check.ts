// The host-check step: every file QEMU (or qcvm at launch) will open is there and is what it must
// be: the kernel, initrd, firmware (bios, pflash code and vars, IGVM), the disks, and the blobs
// given as files (at their exact size). The rules (rules.ts) never touch the filesystem; this
// step does, and `--no-host-check` switches it off for a repository validated without its images
// (CI on a pull request). Launch always runs it.
import { statSync } from "node:fs";
import type { Stats } from "node:fs";
import { BLOB_BYTES, blobsOf } from "../core/confidential.js";
import type { Rule, RuleContext } from "./rule-context.js";
import { writtenPaths } from "./written-paths.js";

function statOf(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

// eslint-disable-next-line no-control-regex -- control characters are what this looks for
const CONTROL = /[\x00-\x1f\x7f]/;

function bare(bios: string | undefined): string | undefined {
  return bios?.includes("/") ? bios : undefined;
}

/** Files QEMU opens at start, each a regular file. */
const OPENED: readonly { path: string; what: string; get: (ctx: RuleContext) => string | undefined }[] = [
  { path: "boot.kernel", what: "kernel", get: (c) => c.profile.boot.kernel },
  { path: "boot.initrd", what: "initrd", get: (c) => c.profile.boot.initrd },
  // A bare bios name (`OVMF.fd`) is QEMU's to find in its own firmware directories, which depend
  // on the binary: QEMU itself reports it at start.
  { path: "firmware.bios", what: "firmware", get: (c) => bare(c.profile.firmware.bios) },
  { path: "firmware.pflash.code", what: "firmware code", get: (c) => c.profile.firmware.pflash?.code },
  { path: "firmware.pflash.vars", what: "firmware variable store", get: (c) => c.profile.firmware.pflash?.vars },
  { path: "firmware.igvm", what: "IGVM file", get: (c) => c.profile.firmware.igvm },
];

const bootFiles: Rule = (ctx) => {
  for (const f of OPENED) {
    const file = f.get(ctx);
    // A control character in the path is reported by the rules (path.control-character).
    if (file === undefined || CONTROL.test(file)) continue;
    const st = statOf(file);
    if (st?.isFile()) continue;
    ctx.error("file.missing", f.path, st ? `${f.what} is not a regular file` : `${f.what} file does not exist`, {
      got: ctx.written(f.path),
      hint: "paths are relative to the profile; --no-host-check skips this check where the files are elsewhere",
    });
  }
};

const disks: Rule = (ctx) => {
  ctx.profile.disks.forEach((d, i) => {
    if (CONTROL.test(d.path)) return;
    const st = statOf(d.path);
    if (st?.isFile() || st?.isBlockDevice()) return;
    ctx.error(
      "disk.missing",
      `disks[${i}].path`,
      st ? "disk image is neither a file nor a block device" : "disk image does not exist (qcvm never creates disks)",
      {
        got: ctx.written(`disks[${i}].path`),
        hint: `paths are relative to the profile; create the image first: qemu-img create -f ${d.format ?? "qcow2"} FILE SIZE`,
      },
    );
  });
};

const blobFiles: Rule = (ctx) => {
  // Only the type's own blobs: one of another type is reported by the rules and never read.
  for (const { field: key, blob: v } of blobsOf(ctx.profile.confidential)) {
    if (v.file === undefined) continue;
    const bytes = BLOB_BYTES[key];
    const st = statOf(v.file);
    const size = st?.isFile() ? st.size : undefined;
    if (size === undefined) {
      ctx.error("confidential.file-missing", `confidential.${key}.file`, "file does not exist", {
        got: ctx.written(`confidential.${key}.file`),
        hint: "paths are relative to the profile",
      });
    } else if (size !== bytes) {
      ctx.error("confidential.blob-size", `confidential.${key}.file`, `must be ${bytes} bytes, is ${size}`, {
        got: ctx.written(`confidential.${key}.file`),
      });
    }
  }
};

/** The host checks with the fields each reads, as RULE_INPUTS in rules.ts. */
export const HOST_CHECK_INPUTS: ReadonlyMap<Rule, readonly string[]> = new Map<Rule, readonly string[]>([
  [bootFiles, ["boot", "firmware"]],
  [disks, ["disks[*].path"]],
  [blobFiles, ["confidential"]],
  // Paths QEMU writes, against each other and the files the profile reads, by path and inode.
  [writtenPaths, ["disks", "firmware", "boot", "serial", "memory", "qmp", "confidential"]],
]);

export const HOST_CHECKS: readonly Rule[] = [...HOST_CHECK_INPUTS.keys()];
