// Starting a real QEMU paused with a QMP socket, and running one to its first error, for tests
// that check what QEMU itself makes of a rendered command line (test/matrix/*). Every QEMU
// started here is killed by `stopAll()` (call it in afterEach).
import { spawn } from "./exec.js";
import { QmpClient } from "../../src/vm/qmp.js";

export interface Started {
  client: QmpClient;
  exited: Promise<{ exitCode?: number; stderr?: unknown }>;
  kill: AbortController;
}

const cleanups: Array<() => Promise<void> | void> = [];

/** Kill what start() started, newest first. */
export async function stopAll(): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c();
}

/** Start `argv` (which must carry `-qmp unix:SOCK,server=on,wait=off`) and connect to SOCK. */
export async function startQemu(argv: string[], sock: string): Promise<Started> {
  const kill = new AbortController();
  // The subprocess is also a promise that settles when QEMU exits: kept as `exited`.
  const exited: Started["exited"] = spawn(argv, { stdio: ["ignore", "ignore", "pipe"], cancelSignal: kill.signal });
  const gone = new AbortController();
  void exited.then(() => gone.abort());
  cleanups.push(async () => {
    kill.abort();
    await exited;
  });
  let client: QmpClient;
  try {
    client = await QmpClient.connect(sock, { timeoutMs: 30_000, signal: gone.signal });
  } catch (e) {
    const r = await Promise.race([exited, new Promise<undefined>((res) => setTimeout(res, 100))]);
    throw new Error(
      `QEMU did not come up: ${String(e)}\n${String((r?.stderr as string | undefined) ?? "")}\nargv: ${JSON.stringify(argv)}`,
      { cause: e },
    );
  }
  cleanups.push(() => client.close());
  return { client, exited, kill };
}

/** Quit over QMP and wait for the exit; returns QEMU's exit code and stderr. */
export async function quitQemu(s: Started): Promise<{ reply: unknown; exitCode?: number; stderr: string }> {
  const reply = await s.client.quit();
  const done = await s.exited;
  return { reply, exitCode: done.exitCode, stderr: String((done.stderr as string | undefined) ?? "") };
}

/** Run `argv` to its end (at most `timeoutMs`): exit code and stderr. */
export async function runToExit(argv: string[], timeoutMs = 30_000): Promise<{ exitCode?: number; stderr: string }> {
  const r = (await spawn(argv, { stdio: ["ignore", "ignore", "pipe"], timeout: timeoutMs, reject: false })) as {
    exitCode?: number;
    stderr?: unknown;
    timedOut?: boolean;
  };
  if (r.timedOut) throw new Error(`still running after ${timeoutMs} ms: ${JSON.stringify(argv)}`);
  return { exitCode: r.exitCode, stderr: String((r.stderr as string | undefined) ?? "") };
}
