// QMP client over a unix socket (docs/interop/qmp-spec.rst): read the greeting, negotiate
// capabilities, then send commands tagged with ids and route replies and asynchronous events.
// Command failures come back as values (QmpError), not exceptions, because callers such as the
// launcher and the probe routinely expect some commands to fail (a type that does not exist,
// `system_powerdown` on a guest that ignores it) and decide what that means themselves.
import { ToolFailure } from "../core/errors.js";
import { EventEmitter } from "node:events";
import { createConnection } from "node:net";
import type { Socket } from "node:net";

export interface QmpGreeting {
  QMP: {
    version: { qemu: { major: number; minor: number; micro: number }; package: string };
    capabilities: string[];
  };
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
  /** Arrival order on this connection, starting at 1 (see QmpClient.mark()). */
  seq: number;
}

/** An error reply from QEMU, or a local failure: class "Timeout", "Disconnected" or "ConnectFailed". */
export class QmpError extends ToolFailure {
  /** QEMU's error class ("GenericError", "CommandNotFound", ...) or a local one. */
  readonly class: string;
  constructor(
    cls: string,
    readonly desc: string,
    readonly command?: string,
  ) {
    super(`${command ? `${command}: ` : ""}${desc} (${cls})`);
    this.name = "QmpError";
    this.class = cls;
  }
}

export type QmpResult<T = unknown> = { return: T } | QmpError;

export function isQmpError(r: unknown): r is QmpError {
  return r instanceof QmpError;
}

export interface ConnectOptions {
  /** Keep retrying until the socket appears and accepts, up to this many ms (QEMU creates it). */
  timeoutMs?: number;
  retryMs?: number;
  /** Stop retrying early, e.g. when the QEMU process has exited. */
  signal?: AbortSignal;
}

interface Pending {
  command: string;
  resolve: (r: QmpResult) => void;
  timer?: NodeJS.Timeout;
}

interface Waiter {
  name: string;
  match?: (e: QmpEvent) => boolean;
  resolve: (e: QmpEvent) => void;
  reject: (e: QmpError) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;
// Enough history for "run a command, then look for the event it caused"; QEMU sends STOP before
// the reply to `stop`, so the event is already here when the caller gets the reply.
const EVENT_HISTORY = 256;

/**
 * Events: `on("event", (e: QmpEvent) => ...)`; `on("close", () => ...)` when the connection ends.
 */
export class QmpClient extends EventEmitter {
  private buffer = "";
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly waiters = new Set<Waiter>();
  private readonly history: QmpEvent[] = [];
  private eventSeq = 0;
  private closedFlag = false;
  /** Resolves when the socket has closed (QEMU quit, or close() was called). */
  readonly closed: Promise<void>;
  greeting!: QmpGreeting;

  private constructor(private readonly socket: Socket) {
    super();
    this.closed = new Promise((resolve) => {
      socket.on("close", () => {
        this.closedFlag = true;
        for (const [id, p] of this.pending) {
          if (p.timer) clearTimeout(p.timer);
          p.resolve(new QmpError("Disconnected", "QMP connection closed before the reply", p.command));
          this.pending.delete(id);
        }
        for (const w of this.waiters) {
          clearTimeout(w.timer);
          w.reject(new QmpError("Disconnected", `QMP connection closed while waiting for event ${w.name}`));
        }
        this.waiters.clear();
        this.emit("close");
        resolve();
      });
    });
    // Errors surface through "close" and the pending replies; an unhandled "error" would crash.
    socket.on("error", () => {});
  }

  /** Connect to QEMU's QMP socket at `path`, retrying until it exists, and negotiate capabilities. */
  static async connect(path: string, options: ConnectOptions = {}): Promise<QmpClient> {
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    const retryMs = options.retryMs ?? 25;
    let lastError: string;
    for (;;) {
      if (options.signal?.aborted) {
        throw new QmpError(
          "ConnectFailed",
          `gave up connecting to ${path}: ${String(options.signal.reason ?? "aborted")}`,
        );
      }
      try {
        const socket = await openSocket(path);
        const client = new QmpClient(socket);
        await client.handshake(path, Math.max(deadline - Date.now(), 1000));
        return client;
      } catch (e) {
        if (e instanceof QmpError) throw e;
        const err = e as NodeJS.ErrnoException;
        // ENOENT: QEMU has not created the socket yet; ECONNREFUSED: created but not listening.
        if (err.code !== "ENOENT" && err.code !== "ECONNREFUSED") {
          throw new QmpError("ConnectFailed", `cannot connect to QMP socket ${path}: ${err.code ?? err.message}`);
        }
        lastError = err.code;
      }
      if (Date.now() >= deadline) {
        throw new QmpError(
          "ConnectFailed",
          `QMP socket ${path} not ready after ${options.timeoutMs ?? 10_000} ms (${lastError})`,
        );
      }
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }

  private handshake(path: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
        reject(new QmpError("Timeout", `no QMP greeting on ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      const onClose = () => {
        clearTimeout(timer);
        reject(new QmpError("Disconnected", "QMP connection closed before the greeting"));
      };
      this.socket.once("close", onClose);
      let greeted = false;
      this.socket.setEncoding("utf8");
      this.socket.on("data", (chunk: string) => {
        this.buffer += chunk;
        for (let nl = this.buffer.indexOf("\n"); nl >= 0; nl = this.buffer.indexOf("\n")) {
          const line = this.buffer.slice(0, nl).trim();
          this.buffer = this.buffer.slice(nl + 1);
          if (!line) continue;
          let msg: Record<string, unknown>;
          try {
            msg = JSON.parse(line) as Record<string, unknown>;
          } catch {
            continue; // Not QMP: ignore rather than kill the connection.
          }
          if (!greeted && "QMP" in msg) {
            greeted = true;
            this.greeting = msg as unknown as QmpGreeting;
            void this.execute("qmp_capabilities", undefined, { timeoutMs }).then((r) => {
              clearTimeout(timer);
              this.socket.off("close", onClose);
              if (isQmpError(r)) reject(r);
              else resolve();
            });
          } else {
            this.dispatch(msg);
          }
        }
      });
    });
  }

  private dispatch(msg: Record<string, unknown>): void {
    if (typeof msg.event === "string") {
      const ev = { ...(msg as unknown as Omit<QmpEvent, "seq">), seq: ++this.eventSeq };
      this.history.push(ev);
      if (this.history.length > EVENT_HISTORY) this.history.shift();
      for (const w of [...this.waiters]) {
        if (w.name === ev.event && (!w.match || w.match(ev))) {
          clearTimeout(w.timer);
          this.waiters.delete(w);
          w.resolve(ev);
        }
      }
      this.emit("event", ev);
      return;
    }
    const id = typeof msg.id === "string" ? msg.id : undefined;
    const p = id ? this.pending.get(id) : undefined;
    if (!p || !id) return; // A reply to a command that timed out, or one we did not send.
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    if (msg.error && typeof msg.error === "object") {
      const e = msg.error as { class?: string; desc?: string };
      p.resolve(new QmpError(e.class ?? "GenericError", e.desc ?? "unknown error", p.command));
    } else {
      p.resolve({ return: msg.return });
    }
  }

  /** Run a command; resolves to `{return}` or a QmpError (QEMU's error, a timeout, a disconnect). */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<QmpResult<T>> {
    if (this.closedFlag) return Promise.resolve(new QmpError("Disconnected", "QMP connection is closed", command));
    const id = `qcvm-${this.nextId++}`;
    return new Promise<QmpResult<T>>((resolve) => {
      const timeoutMs = options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
      const p: Pending = { command, resolve: resolve as (r: QmpResult) => void };
      p.timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(new QmpError("Timeout", `no reply within ${timeoutMs} ms`, command));
      }, timeoutMs);
      this.pending.set(id, p);
      this.socket.write(
        `${JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id })}\n`,
      );
    });
  }

  /** execute() for callers that treat any failure as fatal: throws the QmpError. */
  async command<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    const r = await this.execute<T>(command, args, options);
    if (isQmpError(r)) throw r;
    return r.return;
  }

  /** The current event sequence number: pass it as `since` to see events that arrive after now. */
  mark(): number {
    return this.eventSeq;
  }

  /** Events received so far (the most recent 256). */
  events(): readonly QmpEvent[] {
    return this.history;
  }

  /**
   * Wait for event `name`. With `since` (a mark()), an event already received after that mark
   * counts, so `const m = c.mark(); await c.execute("stop"); await c.waitForEvent("STOP", 5000, {since: m})`
   * cannot miss an event QEMU sent before its reply. Rejects with a QmpError on timeout or close.
   */
  waitForEvent(
    name: string,
    timeoutMs: number,
    options: { since?: number; match?: (e: QmpEvent) => boolean } = {},
  ): Promise<QmpEvent> {
    if (options.since !== undefined) {
      const seen = this.history.find(
        (e) => e.seq > options.since! && e.event === name && (!options.match || options.match(e)),
      );
      if (seen) return Promise.resolve(seen);
    }
    if (this.closedFlag) {
      return Promise.reject(new QmpError("Disconnected", `QMP connection is closed; event ${name} will not come`));
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        name,
        match: options.match,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(w);
          reject(new QmpError("Timeout", `no ${name} event within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.add(w);
    });
  }

  /** "7.2.0" from the greeting. */
  get version(): string {
    const v = this.greeting.QMP.version.qemu;
    return `${v.major}.${v.minor}.${v.micro}`;
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  /** Close our end; QEMU keeps running. */
  async close(): Promise<void> {
    if (!this.closedFlag) this.socket.end();
    const t = setTimeout(() => this.socket.destroy(), 1000);
    await this.closed;
    clearTimeout(t);
  }

  /** Ask QEMU to exit and wait until it has closed the connection. */
  async quit(timeoutMs = 10_000): Promise<QmpResult<unknown>> {
    const r = await this.execute("quit", undefined, { timeoutMs });
    // QEMU may close the socket before its reply arrives: that is a successful quit too.
    if (isQmpError(r) && r.class !== "Disconnected") return r;
    const t = setTimeout(() => this.socket.destroy(), timeoutMs);
    await this.closed;
    clearTimeout(t);
    return { return: {} };
  }
}

function openSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ path });
    const onError = (e: Error) => {
      s.destroy();
      reject(e);
    };
    s.once("error", onError);
    s.once("connect", () => {
      s.off("error", onError);
      resolve(s);
    });
  });
}
