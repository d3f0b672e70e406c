// The QMP client against the real QEMU on this machine (-machine none: no KVM needed).
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "./helpers/exec.js";
import { QmpClient, QmpError, isQmpError } from "../src/vm/qmp.js";

// exec.spawn()'s promise settles when the process exits (execa's subprocess is a thenable), so
// it is kept as the "exited" promise; the AbortController is how the test kills QEMU.
interface Qemu {
  exited: ReturnType<typeof spawn>;
  kill: AbortController;
  exitCode?: number;
}

let dir: string;
let sock: string;
let qemu: Qemu | undefined;

function startQemu(): Qemu {
  const kill = new AbortController();
  const q: Qemu = {
    kill,
    exited: spawn(
      [
        "qemu-system-x86_64",
        "-machine",
        "none",
        "-S",
        "-display",
        "none",
        "-nodefaults",
        "-qmp",
        `unix:${sock},server=on,wait=off`,
      ],
      { stdio: "ignore", cancelSignal: kill.signal },
    ),
  };
  void q.exited.then((r) => (q.exitCode = (r as unknown as { exitCode?: number }).exitCode ?? -1));
  return q;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "qcvm-qmp-"));
  sock = join(dir, "qmp.sock");
});

afterEach(async () => {
  if (qemu) {
    qemu.kill.abort();
    await qemu.exited;
  }
  qemu = undefined;
  rmSync(dir, { recursive: true, force: true });
});

describe("QmpClient with real QEMU", () => {
  it("connects before the socket exists, negotiates, runs commands and reports errors as values", async () => {
    // Connect first: the client must keep retrying while QEMU starts and creates the socket.
    const connecting = QmpClient.connect(sock, { timeoutMs: 20_000 });
    qemu = startQemu();
    const c = await connecting;

    expect(c.greeting.QMP.version.qemu.major).toBeGreaterThanOrEqual(7);
    expect(c.version).toMatch(/^\d+\.\d+\.\d+$/);

    const v = await c.execute<{ qemu: { major: number; minor: number } }>("query-version");
    expect(isQmpError(v)).toBe(false);
    if (!isQmpError(v))
      expect(`${v.return.qemu.major}.${v.return.qemu.minor}`).toBe(c.version.split(".").slice(0, 2).join("."));

    const bad = await c.execute("qcvm-no-such-command");
    expect(bad).toBeInstanceOf(QmpError);
    expect((bad as QmpError).class).toBe("CommandNotFound");
    expect((bad as QmpError).desc).toContain("qcvm-no-such-command");

    const badArg = await c.execute("qom-list-properties", { typename: "qcvm-no-such-type" });
    // QEMU 7.2 says DeviceNotFound for an unknown type; either way the type is named.
    expect(isQmpError(badArg) && badArg.class).toMatch(/^(DeviceNotFound|GenericError)$/);
    expect((badArg as QmpError).desc).toContain("qcvm-no-such-type");

    await expect(c.command("qcvm-no-such-command")).rejects.toThrow(/CommandNotFound/);
    await expect(c.command<{ running: boolean }>("query-status")).resolves.toMatchObject({ running: false });

    await c.close();
    expect(c.isClosed).toBe(true);
    expect(isQmpError(await c.execute("query-status"))).toBe(true);
  });

  it("routes events: cont -> RESUME, stop -> STOP, quit -> SHUTDOWN and close", async () => {
    qemu = startQemu();
    const c = await QmpClient.connect(sock, { timeoutMs: 20_000 });

    const resumed = c.waitForEvent("RESUME", 10_000);
    expect(isQmpError(await c.execute("cont"))).toBe(false);
    expect((await resumed).event).toBe("RESUME");

    // QEMU sends STOP before its reply to `stop`: a mark taken before the command still finds it.
    const m = c.mark();
    await c.execute("stop");
    const stop = await c.waitForEvent("STOP", 10_000, { since: m });
    expect(stop.seq).toBeGreaterThan(m);
    expect(stop.timestamp.seconds).toBeGreaterThan(0);

    const seen: string[] = [];
    c.on("event", (e: { event: string }) => seen.push(e.event));
    const shutdown = c.waitForEvent("SHUTDOWN", 10_000);
    expect(isQmpError(await c.quit())).toBe(false);
    expect((await shutdown).data).toMatchObject({ guest: false });
    expect(seen).toContain("SHUTDOWN");
    expect(c.isClosed).toBe(true);
    await qemu.exited;
    expect(qemu.exitCode).toBe(0);
  });

  it("a waitForEvent that never comes times out with a QmpError", async () => {
    qemu = startQemu();
    const c = await QmpClient.connect(sock, { timeoutMs: 20_000 });
    const err = await c.waitForEvent("RESET", 200).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect((err as QmpError).class).toBe("Timeout");
    await c.quit();
  });

  it("gives up with ConnectFailed when nothing creates the socket", async () => {
    const err = await QmpClient.connect(sock, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect((err as QmpError).class).toBe("ConnectFailed");
    expect((err as Error).message).toContain(sock);
  });

  it("stops retrying when aborted (the QEMU process died)", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort("qemu exited with status 1"), 100);
    const err = await QmpClient.connect(sock, { timeoutMs: 20_000, signal: ac.signal }).catch((e: unknown) => e);
    expect((err as QmpError).class).toBe("ConnectFailed");
    expect((err as Error).message).toContain("qemu exited with status 1");
  });
});

// A QMP peer that greets and negotiates but never answers anything else: the only way to see
// a command timeout, since real QEMU answers everything promptly.
describe("QmpClient timeouts", () => {
  it("a command without a reply resolves to a Timeout error value, and a late reply is dropped", async () => {
    const server = createServer((s) => {
      s.write(
        '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\r\n',
      );
      s.on("data", (d) => {
        const lines = String(d).split("\n").filter(Boolean);
        for (const line of lines) {
          const msg = JSON.parse(line) as { execute: string; id: string };
          if (msg.execute === "qmp_capabilities") s.write(`{"return": {}, "id": "${msg.id}"}\r\n`);
          if (msg.execute === "slow")
            setTimeout(() => s.write(`{"return": {"late": true}, "id": "${msg.id}"}\r\n`), 400);
        }
      });
    });
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const c = await QmpClient.connect(sock, { timeoutMs: 5000 });
      expect(c.version).toBe("7.2.0");
      const r = await c.execute("slow", undefined, { timeoutMs: 100 });
      expect(isQmpError(r) && r.class).toBe("Timeout");
      expect((r as QmpError).command).toBe("slow");
      await new Promise((res) => setTimeout(res, 500));
      const pending = await c.execute("never", undefined, { timeoutMs: 50 });
      expect(isQmpError(pending) && pending.class).toBe("Timeout");
      await c.close();
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it("a command pending when the peer hangs up resolves to Disconnected", async () => {
    const server = createServer((s) => {
      s.write(
        '{"QMP": {"version": {"qemu": {"micro": 1, "minor": 0, "major": 9}, "package": ""}, "capabilities": []}}\r\n',
      );
      s.on("data", (d) => {
        const msg = JSON.parse(String(d).split("\n")[0]!) as { execute: string; id: string };
        if (msg.execute === "qmp_capabilities") s.write(`{"return": {}, "id": "${msg.id}"}\r\n`);
        else s.destroy();
      });
    });
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const c = await QmpClient.connect(sock, { timeoutMs: 5000 });
      const r = await c.execute("query-status", undefined, { timeoutMs: 5000 });
      expect(isQmpError(r) && r.class).toBe("Disconnected");
      await c.closed;
      await expect(c.waitForEvent("STOP", 1000)).rejects.toThrow(/closed/);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
