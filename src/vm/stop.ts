// Stopping QEMU, gentlest first (qcvm stop, and the foreground launcher on SIGINT/SIGTERM):
// ACPI powerdown over QMP, then `quit`, then SIGTERM without QMP, then SIGKILL.
import { existsSync } from "node:fs";
import { UserError } from "../core/diagnostics.js";
import { isProcessAlive } from "./process.js";
import { QmpClient, isQmpError } from "./qmp.js";
import type { VmState } from "./state.js";

/** How long `quit` and SIGTERM get before SIGKILL, and SIGKILL before we give up waiting. */
const QUIT_TIMEOUT_MS = 5_000;
const POLL_MS = 20;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitGone(pid: number, startTime: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!isProcessAlive(pid, startTime)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(POLL_MS);
  }
}

function signal(pid: number, startTime: string, sig: NodeJS.Signals, member: (pid: number) => boolean): void {
  if (!isProcessAlive(pid, startTime) || !member(pid)) return;
  try {
    process.kill(pid, sig);
  } catch {
    // exited meanwhile
  }
}

/** Run one QMP command on a fresh connection; false when QMP cannot be reached. */
async function qmpOnce(socket: string, command: "system_powerdown" | "quit"): Promise<boolean> {
  if (!existsSync(socket)) return false;
  let client;
  try {
    client = await QmpClient.connect(socket, { timeoutMs: 3000 });
  } catch {
    return false;
  }
  const r =
    command === "quit"
      ? await client.quit(QUIT_TIMEOUT_MS)
      : await client.execute(command, undefined, { timeoutMs: 3000 });
  if (!client.isClosed) await client.close();
  return !isQmpError(r);
}

export type StopOutcome = "powered down" | "quit" | "terminated" | "killed" | "was not running";

/** Bring QEMU down, gentlest first. */
export async function stopQemu(
  s: Pick<VmState, "pid" | "pidStartTime" | "qmp">,
  options: { force: boolean; timeoutMs: number; member?: (pid: number) => boolean },
  note: (msg: string) => void = () => {},
): Promise<StopOutcome> {
  const { pid, pidStartTime: st } = s;
  const member = options.member ?? (() => true);
  if (!isProcessAlive(pid, st)) return "was not running";
  // state.json and locks are files: what they name is signalled only when it is the VM's QEMU,
  // a member of the VM's cgroup (issue 8: a forged state.json made root kill another process).
  if (!member(pid)) {
    note(`pid ${pid} named in the VM's files is not in the VM's cgroup: not signalling it`);
    return "was not running";
  }
  if (!options.force) {
    if (await qmpOnce(s.qmp, "system_powerdown")) {
      note(`asked the guest to power down; waiting up to ${options.timeoutMs / 1000} s`);
      if (await waitGone(pid, st, options.timeoutMs)) return "powered down";
      note("the guest did not power down in time: quitting QEMU");
    }
  }
  if (await qmpOnce(s.qmp, "quit")) {
    if (await waitGone(pid, st, QUIT_TIMEOUT_MS)) return "quit";
  } else {
    // No QMP (socket gone, QEMU hung): QEMU treats SIGTERM as a request to quit.
    signal(pid, st, "SIGTERM", member);
    if (await waitGone(pid, st, QUIT_TIMEOUT_MS)) return "terminated";
  }
  signal(pid, st, "SIGKILL", member);
  if (await waitGone(pid, st, QUIT_TIMEOUT_MS)) return "killed";
  throw new UserError(`pid ${pid} survived SIGKILL (stuck in the kernel, state D?); nothing was cleaned up, try again`);
}
