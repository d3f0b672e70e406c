// No data loss through a profile (issue 8): every path QEMU will write (writable disks, pflash
// vars, the serial file, memory.path, the QMP socket) must differ from every other and from every
// file the profile reads (the profile itself, read-only disks, firmware, kernel, initrd, blobs).
// Found on QEMU 7.2: `serial: file:<the VM's own disk>` truncated the image to 0 bytes; the
// profile as its own serial file was truncated; `memory.path` on a disk image with share: true
// let guest RAM overwrite it. Files are compared by absolute path and, when they exist, by device
// and inode, so two spellings (a symlink, `..`) of one file still collide.
import { statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Profile } from "../core/types.js";
import { BLOB_FIELDS } from "../core/confidential.js";
import type { Rule } from "./rule-context.js";

interface Use {
  field: string;
  path: string;
  writes: boolean;
  what: string;
}

/** The files a profile makes QEMU read or write, with the field that names each; `written` reads
 *  the profile as written (RuleContext.written). */
export function fileUses(profile: Profile, written: (path: string) => unknown): Use[] {
  const base = dirname(profile.file);
  const abs = (p: string) => resolve(base, p);
  const uses: Use[] = [{ field: "", path: profile.file, writes: false, what: "the profile itself" }];
  const add = (field: string, path: string | undefined, writes: boolean, what: string) => {
    if (path !== undefined && path !== "") uses.push({ field, path: abs(path), writes, what });
  };
  profile.disks.forEach((d, i) =>
    add(`disks[${i}].path`, d.path, !d.readOnly, d.readOnly ? "a read-only disk" : "a writable disk"),
  );
  const fw = profile.firmware;
  add("firmware.bios", fw.bios, false, "the firmware");
  add("firmware.igvm", fw.igvm, false, "the IGVM firmware");
  add("firmware.pflash.code", fw.pflash?.code, false, "the pflash code");
  add("firmware.pflash.vars", fw.pflash?.vars, true, "the pflash variables");
  add("boot.kernel", profile.boot.kernel, false, "the kernel");
  add("boot.initrd", profile.boot.initrd, false, "the initrd");
  // The section's files as written, whatever its type: one of another type never reaches QEMU (the
  // rules report it), but it is still the user's file, not to be written over.
  if (profile.confidential.type !== "none") {
    const text = (path: string) => {
      const v = written(path);
      return typeof v === "string" ? v : undefined;
    };
    for (const key of ["dhCertFile", "sessionFile"] as const)
      add(`confidential.${key}`, text(`confidential.${key}`), false, "a SEV file");
    for (const key of BLOB_FIELDS)
      add(`confidential.${key}.file`, text(`confidential.${key}.file`), false, "a confidential-guest blob");
  }
  const serial = profile.serial;
  if (serial.kind === "file") add("serial", serial.path, true, "the serial log");
  if (serial.kind === "device") add("serial", serial.path, true, "the serial device");
  if (profile.memory.backend === "file" && profile.memory.path !== undefined && !isDirectory(abs(profile.memory.path)))
    add("memory.path", profile.memory.path, true, "the guest memory file");
  add("qmp", profile.qmp, true, "the QMP socket");
  return uses;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function identity(path: string): string {
  try {
    const st = statSync(path);
    return `inode ${st.dev}:${st.ino}`;
  } catch {
    return `path ${path}`;
  }
}

/** A written path that is also another written or read path: an error on the later field. */
export const writtenPaths: Rule = (ctx) => {
  const uses = fileUses(ctx.profile, (path) => ctx.written(path));
  // Nothing written, nothing to overwrite: no file is looked at.
  if (!uses.some((u) => u.writes)) return;
  const keys = uses.map((u) => identity(u.path));
  for (let j = 0; j < uses.length; j++) {
    for (let i = 0; i < j; i++) {
      const a = uses[i]!;
      const b = uses[j]!;
      if (!(a.writes || b.writes) || keys[i] !== keys[j]) continue;
      const writer = b.writes ? b : a;
      const other = writer === b ? a : b;
      ctx.error(
        "paths.collision",
        writer.field,
        `is ${other.what}${other.field ? ` (${other.field})` : ""} too: QEMU would write ${writer.what} over it`,
        { got: ctx.written(writer.field) ?? writer.path, hint: `give ${writer.what} a file of its own` },
      );
      break;
    }
  }
};
