// Which files qcvm opens for QEMU and hands over as descriptors, and at which fd numbers: the one
// table both the renderer (`-add-fd fd=N,set=S` and `/dev/fdset/S` in place of the path) and the
// launcher (which opens them, in this order, into the child's fds) read. QEMU runs as an
// unprivileged user that cannot open the user's disk images, firmware variables or serial log,
// and qcvm never chowns or relabels them: it opens them itself (without following symlinks), so
// QEMU never resolves those paths at all. QEMU's /dev/fdset/S open dups the set's descriptor
// whose access mode (O_RDONLY/O_WRONLY/O_RDWR) matches the one it asks for (util/osdep.c
// qemu_open_internal; -add-fd since QEMU 1.3), so each file is opened with the mode QEMU will ask.
//
// fd 3 is QMP's listening socket (`-chardev socket,fd=3,server=on`): qcvm binds it in the VM's
// 0700 directory with umask 077, so only root can connect, and QEMU never creates it. The serial
// console socket of a detached `serial: stdio` guest (`socket:PATH`) is bound the same way, at the
// fd after the files: QEMU as the QEMU user could not create it in the caller's 0700 directory.
import type { Profile } from "../core/types.js";

/** The child's fd for QMP's listening socket. */
export const QMP_FD = 3;
/** The first fd of the files below; the fdset id is the fd (one descriptor per set). */
const FIRST_FILE_FD = 4;

export type PassedAccess = "read" | "read-write" | "append" | "write";

export interface PassedFile {
  /** The child's fd number, and the fdset id it is added to. */
  fd: number;
  /** The profile field that names the file, for messages. */
  field: string;
  path: string;
  access: PassedAccess;
  /** blob: read whole by a plain open() (-bios, -kernel, -initrd, igvm-cfg), which /dev/fdset
   *  does not serve: QEMU opens /proc/self/fd/N instead, the descriptor qcvm passed. */
  kind: "pflash" | "disk" | "serial" | "serial-device" | "blob";
}

/** Files the launcher opens for QEMU, in fd order: firmware and boot blobs, pflash code and
 *  vars, disks, the serial log. */
export function passedFiles(profile: Profile): PassedFile[] {
  const out: Array<Omit<PassedFile, "fd">> = [];
  const blob = (field: string, path: string | undefined) => {
    if (path !== undefined) out.push({ field, path, access: "read", kind: "blob" });
  };
  blob("firmware.bios", profile.firmware.bios);
  blob("firmware.igvm", profile.firmware.igvm);
  blob("boot.kernel", profile.boot.kernel);
  blob("boot.initrd", profile.boot.initrd);
  const pflash = profile.firmware.pflash;
  if (pflash) {
    out.push({ field: "firmware.pflash.code", path: pflash.code, access: "read", kind: "pflash" });
    if (pflash.vars !== undefined)
      out.push({ field: "firmware.pflash.vars", path: pflash.vars, access: "read-write", kind: "pflash" });
  }
  profile.disks.forEach((d, i) =>
    out.push({ field: `disks[${i}].path`, path: d.path, access: d.readOnly ? "read" : "read-write", kind: "disk" }),
  );
  const serial = profile.serial;
  if (serial.kind === "file") out.push({ field: "serial", path: serial.path, access: "append", kind: "serial" });
  // An existing FIFO or character device, opted into by name: written as is, never created.
  if (serial.kind === "device")
    out.push({ field: "serial", path: serial.path, access: "write", kind: "serial-device" });
  return out.map((f, i) => ({ ...f, fd: FIRST_FILE_FD + i }));
}

/**
 * What QEMU is given instead of the path: /dev/fdset/N for what QEMU opens through qemu_open
 * (block files, chardev files), /proc/self/fd/N for blobs loaded with a plain open(). The kernel
 * checks that reopen against the file's own mode (not the directories above it), so a blob must
 * be readable by the QEMU user by its mode; open-files.ts refuses one that is not, naming it.
 */
export function fdsetPath(f: PassedFile): string {
  return f.kind === "blob" ? `/proc/self/fd/${f.fd}` : `/dev/fdset/${f.fd}`;
}

/** `-add-fd` for every passed file QEMU opens by fdset: it adopts fd N into fdset N. */
export function addFdArgs(files: readonly PassedFile[]): string[] {
  return files.filter((f) => f.kind !== "blob").flatMap((f) => ["-add-fd", `fd=${f.fd},set=${f.fd}`]);
}

/** The child's fd for the serial console's listening socket (serial `socket:PATH`), if any. */
export function consoleFd(profile: Profile): number | undefined {
  return profile.serial.kind === "socket" ? FIRST_FILE_FD + passedFiles(profile).length : undefined;
}
