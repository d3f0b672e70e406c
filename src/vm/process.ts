// Process identity: a pid alone does not identify a process (pids are reused), so qcvm records a
// pid's start time (field 22 of /proc/<pid>/stat, read through FsRoot) and a process counts as the
// same one only while both match.
import { FsRoot } from "../io/fsroot.js";

/** The real /proc: process identity is about processes on this machine, never a fixture tree's. */
const HOST = new FsRoot("/");

/** Parsed /proc/<pid>/stat fields we use: start time (field 22) and state (field 3). */
export function readProcStat(pid: number, fs: FsRoot = HOST): { startTime: string; state: string } | undefined {
  const text = fs.read(`proc/${pid}/stat`);
  if (text === undefined) return undefined;
  // comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = rest[0];
  const startTime = rest[22 - 3];
  if (!state || !startTime) return undefined;
  return { startTime, state };
}

/** Start time of a live process, undefined when there is none (zombies count as gone). */
export function pidStartTime(pid: number): string | undefined {
  const st = readProcStat(pid);
  if (!st || st.state === "Z" || st.state === "X") return undefined;
  return st.startTime;
}

/** The process `pid` still exists and is the same process (start time matches, not a zombie). */
export function isProcessAlive(pid: number, startTime: string): boolean {
  return pid > 0 && pidStartTime(pid) === startTime;
}

/** The VM's QEMU is running: pid exists and was not reused since launch. */
export function isAlive(state: { pid: number; pidStartTime: string }): boolean {
  return isProcessAlive(state.pid, state.pidStartTime);
}

/** This process's own identity, for locks and the supervisor field. */
export function selfIdentity(): { pid: number; startTime: string } {
  const startTime = pidStartTime(process.pid);
  if (!startTime) throw new Error("cannot read /proc/self/stat");
  return { pid: process.pid, startTime };
}
