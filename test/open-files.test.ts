// The files qcvm opens for QEMU (issue 8, findings 2 and 4): a serial log is only ever a file qcvm
// made, never written through a symlink an attacker planted; the QMP socket is 0600 whatever the
// caller's umask. The attacker is a real unprivileged uid (setpriv) where the test runs as root.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  constants,
  fstatSync,
  openSync,
  readSync,
  symlinkSync,
  writeSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  SERIAL_HEADER,
  bindQmpSocket,
  openPassedFiles,
  openSerialDevice,
  openSerialLog,
} from "../src/launch/open-files.js";
import type { PassedFile } from "../src/render/passed-fds.js";

const ROOT = process.getuid?.() === 0;
const base = mkdtempSync(join(tmpdir(), "qcvm-open-"));
chmodSync(base, 0o755);
afterAll(() => rmSync(base, { recursive: true, force: true }));

const serial = (path: string): PassedFile => ({ fd: 4, field: "serial", path, access: "append", kind: "serial" });

function withUmask<T>(mask: number, fn: () => T): T {
  const old = process.umask(mask);
  try {
    return fn();
  } finally {
    process.umask(old);
  }
}

describe("the serial log", () => {
  it("is created 0600 with qcvm's header, whatever the umask", () => {
    const path = join(base, "new.log");
    const fd = withUmask(0, () => openSerialLog(serial(path)));
    expect(fstatSync(fd).mode & 0o777).toBe(0o600);
    closeSync(fd);
    expect(readFileSync(path, "utf8")).toBe(SERIAL_HEADER);
  });

  it("that qcvm made before is truncated and reused", () => {
    const path = join(base, "again.log");
    writeFileSync(path, `${SERIAL_HEADER}old boot messages\n`, { mode: 0o600 });
    closeSync(openSerialLog(serial(path)));
    expect(readFileSync(path, "utf8")).toBe(SERIAL_HEADER);
  });

  it("refuses a file qcvm did not make, and leaves it as it was", () => {
    const path = join(base, "notes.txt");
    writeFileSync(path, "the user's notes");
    expect(() => openSerialLog(serial(path))).toThrow("exists and is not a serial log qcvm made");
    expect(readFileSync(path, "utf8")).toBe("the user's notes");
  });

  it("refuses a FIFO", () => {
    const path = join(base, "fifo");
    execFileSync("mkfifo", [path]);
    expect(() => openSerialLog(serial(path))).toThrow("exists and is not a regular file");
  });

  it.skipIf(!ROOT)("never truncates through a symlink an unprivileged user planted (needs root for setpriv)", () => {
    const shared = join(base, "shared");
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    const victim = join(base, "root-owned");
    writeFileSync(victim, "root's data");
    const path = join(shared, "serial.log");
    execFileSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", "ln", "-s", victim, path]);
    expect(() => openSerialLog(serial(path))).toThrow("is a symbolic link, which qcvm never writes through");
    expect(readFileSync(victim, "utf8")).toBe("root's data");
  });
});

describe("disk images", () => {
  it("are opened with the access QEMU asks for, never created", () => {
    const img = join(base, "disk.raw");
    writeFileSync(img, "data");
    const files: PassedFile[] = [
      { fd: 4, field: "disks[0].path", path: img, access: "read", kind: "disk" },
      { fd: 5, field: "disks[1].path", path: img, access: "read-write", kind: "disk" },
    ];
    const opened = openPassedFiles(files);
    expect([...opened.fds.keys()]).toEqual([4, 5]);
    opened.close();
    expect(() =>
      openPassedFiles([{ fd: 4, field: "disks[0].path", path: join(base, "none.raw"), access: "read", kind: "disk" }]),
    ).toThrow(`cannot give QEMU disks[0].path ${join(base, "none.raw")}: no such file (qcvm never creates it)`);
    expect(() => statSync(join(base, "none.raw"))).toThrow();
    expect(readFileSync(img, "utf8")).toBe("data");
  });
});

describe("serial: device:PATH, the explicit opt-in for a FIFO or device", () => {
  const device = (path: string): PassedFile => ({
    fd: 4,
    field: "serial",
    path,
    access: "write",
    kind: "serial-device",
  });

  it("file: refuses a FIFO (no log is ever written into one by accident), naming the opt-in", () => {
    const fifo = join(base, "refused.fifo");
    execFileSync("mkfifo", [fifo]);
    expect(() => openSerialLog(serial(fifo))).toThrow(
      `cannot give QEMU serial ${fifo}: exists and is not a regular file: a FIFO or device is written only when the profile names it serial: device:PATH`,
    );
  });

  it("device: opens an existing FIFO write-only without waiting for a reader; what QEMU writes reaches it", () => {
    const fifo = join(base, "console.fifo");
    execFileSync("mkfifo", [fifo]);
    const fd = openSerialDevice(device(fifo));
    try {
      // The mode QEMU's file chardev asks /dev/fdset for: O_WRONLY, nothing else of the access mode.
      const flags = parseInt(/^flags:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))![1]!, 8);
      expect(flags & 0o3).toBe(0o1);
      expect(fstatSync(fd).isFIFO()).toBe(true);
      // A reader attached now gets what is written to the descriptor (as QEMU would write it).
      const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
      writeSync(fd, "guest says hi\n");
      const buf = Buffer.alloc(64);
      expect(buf.toString("utf8", 0, readSync(reader, buf))).toBe("guest says hi\n");
      closeSync(reader);
    } finally {
      closeSync(fd);
    }
  });

  it("device: opens a character device, and refuses a regular file, a symlink or a missing path", () => {
    closeSync(openSerialDevice(device("/dev/null")));
    const log = join(base, "plain.log");
    writeFileSync(log, "mine");
    expect(() => openSerialDevice(device(log))).toThrow("is not a FIFO or character device");
    expect(readFileSync(log, "utf8")).toBe("mine");
    const link = join(base, "null-link");
    symlinkSync("/dev/null", link);
    expect(() => openSerialDevice(device(link))).toThrow("is a symbolic link, which qcvm never writes through");
    expect(() => openSerialDevice(device(join(base, "nope.fifo")))).toThrow("no such FIFO or device");
  });
});

describe("the QMP socket", () => {
  it("is 0600 with umask 000 and accepts on the descriptor qcvm hands over", async () => {
    const dir = join(base, "vm");
    mkdirSync(dir, { mode: 0o700 });
    const path = join(dir, "qmp.sock");
    const old = process.umask(0);
    let listener;
    try {
      listener = await bindQmpSocket(path);
    } finally {
      process.umask(old);
    }
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(path).isSocket()).toBe(true);
    expect(fstatSync(listener.fd).isSocket()).toBe(true);
    listener.close();
    // Closing qcvm's copy removes only its temporary name, never the socket QEMU will serve.
    await new Promise((r) => setTimeout(r, 20));
    expect(statSync(path).isSocket()).toBe(true);
  });
});
