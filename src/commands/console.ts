// `qcvm console <name>`: attach this terminal to a running VM's serial port, as `virsh console`
// does; Ctrl-] detaches (the guest runs on). A detached launch with `serial: stdio` renders the
// port as a unix socket in the VM's 0700 directory (console.sock); `serial: pty` is reached
// through the pty QEMU names over QMP (query-chardev). The terminal is put in raw mode, so every
// key (Ctrl-C too) goes to the guest, and restored however the session ends.
// Exit 0 detached or the VM stopped; 1 no such VM, not running, or no console to attach to.
import { connect } from "node:net";
import type { Socket } from "node:net";
import { closeSync, constants, fstatSync, lstatSync, openSync, writeFileSync, rmSync, readFileSync } from "node:fs";
import { ReadStream } from "node:tty";
import { createReadStream, createWriteStream } from "node:fs";
import type { Readable, Writable } from "node:stream";
import { join } from "node:path";
import { UserError } from "../core/diagnostics.js";
import type { Outcome } from "../core/errors.js";
import type { ConsoleOptions } from "../cli/command-options.js";
import { inspectVm } from "../vm/inspect.js";
import { requireVmName, resolveRunDir } from "../vm/paths.js";
import { isProcessAlive, selfIdentity } from "../vm/process.js";
import type { VmState } from "../vm/state.js";

/** Ctrl-]: the byte a terminal sends for it (GS, 0x1d), as virsh, telnet and QEMU's own mux use. */
export const DETACH_BYTE = 0x1d;

/** The console socket of a VM launched with --detach and `serial: stdio` (see launch.ts). */
export function consoleSocketPath(vmDir: string): string {
  return join(vmDir, "console.sock");
}

interface Endpoint {
  input: Readable;
  output: Writable;
  close: () => void;
  what: string;
}

function euid(): number {
  return process.geteuid?.() ?? 0;
}

async function openSocket(path: string): Promise<Endpoint> {
  const st = lstatSync(path);
  // Only a socket this user owns, in the VM's own directory: never a symlink to someone else's.
  if (!st.isSocket() || st.uid !== euid()) throw new UserError(`${path} is not a console socket of this user's`);
  const sock: Socket = await new Promise((resolve, reject) => {
    const s = connect(path);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
  return { input: sock, output: sock, close: () => sock.destroy(), what: path };
}

/** The pty QEMU opened for serial0, from QMP (`pty:/dev/pts/N`). */
async function ptyOf(state: VmState): Promise<string | undefined> {
  const { QmpClient, isQmpError } = await import("../vm/qmp.js");
  const client = await QmpClient.connect(state.qmp, { timeoutMs: 3000 });
  try {
    const r = await client.execute<Array<{ label: string; filename: string }>>("query-chardev", undefined, {
      timeoutMs: 3000,
    });
    if (isQmpError(r)) return undefined;
    const serial = r.return.find((c) => c.label === "serial0" || c.label === "compat_monitor0") ?? r.return[0];
    const m = /^pty:(\/dev\/pts\/\d+)$/.exec(serial?.filename ?? "");
    return m?.[1];
  } finally {
    if (!client.isClosed) await client.close();
  }
}

function openPty(path: string): Endpoint {
  const fd = openSync(path, constants.O_RDWR | constants.O_NOCTTY | constants.O_NOFOLLOW);
  if (!fstatSync(fd).isCharacterDevice()) {
    closeSync(fd);
    throw new UserError(`${path} is not a terminal`);
  }
  const input = createReadStream("", { fd, autoClose: false });
  const output = createWriteStream("", { fd, autoClose: false });
  return {
    input,
    output,
    close: () => {
      input.destroy();
      output.destroy();
      closeSync(fd);
    },
    what: path,
  };
}

/** One console session per VM: a second reader would get half of the guest's output. */
function takeConsoleLock(vmDir: string, name: string): () => void {
  const file = join(vmDir, "console.lock");
  const me = selfIdentity();
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, JSON.stringify(me), { flag: "wx", mode: 0o600 });
      return () => rmSync(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      let holder: { pid: number; startTime: string } | undefined;
      try {
        holder = JSON.parse(readFileSync(file, "utf8")) as typeof holder;
      } catch {
        holder = undefined;
      }
      if (holder && isProcessAlive(holder.pid, holder.startTime))
        throw new UserError(`\`${name}\`'s console is in use by qcvm pid ${holder.pid} (detach it with Ctrl-])`);
      rmSync(file, { force: true }); // the session that held it died
    }
  }
  throw new UserError(`cannot take \`${name}\`'s console lock ${file}`);
}

async function endpointFor(state: VmState, name: string): Promise<Endpoint> {
  const sock = consoleSocketPath(state.dir);
  let hasSocket: boolean;
  try {
    hasSocket = lstatSync(sock).isSocket();
  } catch {
    hasSocket = false;
  }
  if (hasSocket) return openSocket(sock);
  const serial = serialOf(state);
  if (serial === "pty") {
    const pty = await ptyOf(state);
    if (pty) return openPty(pty);
    throw new UserError(`\`${name}\` has serial: pty, but QEMU names no pty for it (query-chardev)`);
  }
  const why =
    serial === "none" || serial === undefined
      ? "it has no serial port (serial: none)"
      : serial.startsWith("file:")
        ? `its serial port writes to ${serial.slice(5)} (read that file)`
        : "its serial port went to the terminal it was launched from (serial: stdio in the foreground)";
  throw new UserError(
    `\`${name}\` has no console: ${why}; launch it with serial: stdio and --detach (or serial: pty) for one`,
  );
}

/** The serial setting the VM was launched with, from its argv (`-serial X` or a chardev). */
function serialOf(state: VmState): string | undefined {
  const i = state.argv.indexOf("-serial");
  if (i === -1) return "none";
  const v = state.argv[i + 1] ?? "";
  if (v === "pty" || v === "stdio") return v;
  const file = state.argv.find((a) => a.startsWith("file,id=serial0,path="));
  return file ? `file:${file.slice("file,id=serial0,path=".length)}` : v;
}

/** Copy the terminal to the guest and back until Ctrl-], the end of input, or the VM going away. */
function session(ep: Endpoint, stdin: Readable, stdout: Writable): Promise<"detached" | "closed"> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (how: "detached" | "closed") => {
      if (done) return;
      done = true;
      stdin.off("data", onKey);
      stdin.off("end", onEnd);
      ep.output.off("error", onClosed);
      resolve(how);
    };
    const onKey = (chunk: Buffer) => {
      const at = chunk.indexOf(DETACH_BYTE);
      if (at !== -1) {
        if (at > 0) ep.output.write(chunk.subarray(0, at));
        finish("detached");
        return;
      }
      ep.output.write(chunk);
    };
    const onEnd = () => finish("detached");
    const onClosed = () => finish("closed");
    stdin.on("data", onKey);
    stdin.on("end", onEnd);
    ep.input.on("data", (d: Buffer) => stdout.write(d));
    ep.input.on("end", onClosed);
    ep.input.on("close", onClosed);
    ep.input.on("error", onClosed);
    ep.output.on("error", onClosed);
  });
}

export async function run(o: ConsoleOptions): Promise<Outcome> {
  const runDir = resolveRunDir(o.runDir);
  const name = requireVmName(o.name);
  const found = inspectVm(runDir, name);
  if (!found)
    throw new UserError(
      `no VM named \`${name}\` in ${runDir} (qcvm status lists them; --run-dir picks another run dir)`,
      "not-found",
    );
  const state = found.state;
  if (found.condition === "not yours" || !state)
    throw new UserError(found.reason ?? `\`${name}\` has no readable state`, "failed");
  if (found.condition !== "running" && found.condition !== "starting")
    throw new UserError(
      `\`${name}\` is not running (${found.condition}${found.reason ? `: ${found.reason}` : ""}; qcvm logs ${name} shows what it printed)`,
      "not-found",
    );
  const release = takeConsoleLock(state.dir, name);
  const tty = process.stdin instanceof ReadStream && process.stdin.isTTY;
  let ep: Endpoint | undefined;
  let raw = false;
  try {
    ep = await endpointFor(state, name);
    process.stderr.write(`Connected to \`${name}\` (${ep.what}). Escape character is ^] (Ctrl-])\n`);
    if (tty) raw = (process.stdin as ReadStream).setRawMode(true).isRaw;
    process.stdin.resume();
    const how = await session(ep, process.stdin, process.stdout);
    restore(raw);
    raw = false;
    // On a new line: the guest may have left the cursor anywhere.
    process.stderr.write(
      how === "detached" ? `\nqcvm: detached from \`${name}\`\n` : `\nqcvm: \`${name}\`'s console closed\n`,
    );
    return "ok";
  } finally {
    restore(raw);
    process.stdin.pause();
    ep?.close();
    release();
  }
}

function restore(raw: boolean): void {
  if (raw) (process.stdin as ReadStream).setRawMode(false);
}
