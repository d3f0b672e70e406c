// Paths under the run dir: where the run dir is, which names a VM may have, each VM's directory
// and its files, and creating them (mode 0700 for a VM's directory: its QMP socket is full control).
import { chmodSync, existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { checkTrustedDir, ensureTrustedSubdir } from "./trust.js";
import { UserError, describeFsError } from "../core/diagnostics.js";
import { VM_NAME } from "../core/vm-name.js";

/** Where VM state lives: $QCVM_RUN_DIR, else /run/qcvm as root, else $XDG_RUNTIME_DIR/qcvm. */
export function defaultRunDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.QCVM_RUN_DIR) return resolve(env.QCVM_RUN_DIR);
  if (process.getuid?.() === 0) return "/run/qcvm";
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "qcvm");
  throw new UserError(
    "no runtime directory: not root and XDG_RUNTIME_DIR is unset (pass --run-dir DIR or set QCVM_RUN_DIR)",
  );
}

/** The run dir a command uses: --run-dir wins, then the default. */
export function resolveRunDir(arg: string | undefined): string {
  return arg !== undefined && arg !== "" ? resolve(arg) : defaultRunDir();
}

/** Subdirectories of the run dir that qcvm keeps for itself: a VM by one of these names would
 *  replace them (createVmDir empties its directory, stop removes it). */
export const RESERVED_VM_NAMES: readonly string[] = ["locks", "caps", "logs"];

/** Why `name` cannot name a VM directory, or undefined when it can. */
export function vmNameProblem(name: string): string | undefined {
  if (RESERVED_VM_NAMES.includes(name))
    return `\`${name}\` cannot be a VM name: the run dir keeps qcvm's ${name} under that name`;
  if (!VM_NAME.test(name)) {
    return `${JSON.stringify(name)} is not a VM name: names are lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters`;
  }
  return undefined;
}

/** A VM name given on the command line (status, stop, stats): checked before any path is built from it. */
export function requireVmName(name: string): string {
  const problem = vmNameProblem(name);
  if (problem) throw new UserError(`${problem} (qcvm status lists the VMs)`, "usage");
  return name;
}

export function vmDir(runDir: string, name: string): string {
  // The name becomes a directory that launch empties and stop removes recursively: `..`, `/x` or
  // `locks` would point those at something that is not this VM's.
  const problem = vmNameProblem(name);
  if (problem) throw new UserError(`${problem} (rename the VM: \`name:\` in the profile, or --set name=...)`);
  return join(runDir, name);
}

/** The files of one VM's runtime directory. */
export function vmPaths(runDir: string, name: string) {
  const dir = vmDir(runDir, name);
  return {
    dir,
    qmp: join(dir, "qmp.sock"),
    pidfile: join(dir, "qemu.pid"),
    log: join(dir, "qemu.log"),
    state: join(dir, "state.json"),
    /** The serial port of a detached `serial: stdio` VM, for `qcvm console`. */
    console: join(dir, "console.sock"),
  };
}

/**
 * mkdir -p. Not mkdirSync's `recursive`: on Node 20-24 it loops forever, at full CPU, when mkdir
 * answers ENOENT although the parent exists, as /proc and /proc/self do (`--run-dir /proc/x` hung
 * qcvm). Here an ENOENT with the parent present is that file system's refusal, and is thrown.
 */
export function makeDirs(dir: string, mode: number): void {
  try {
    mkdirSync(dir, { mode });
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST" && statSync(dir).isDirectory()) return;
    if (code !== "ENOENT") throw e;
    const parent = dirname(dir);
    if (parent === dir || existsSync(parent)) throw e;
  }
  makeDirs(dirname(dir), mode);
  try {
    mkdirSync(dir, { mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST" || !statSync(dir).isDirectory()) throw e;
  }
}

/** Create the run dir (0755: other users' qcvm status may list it) if missing. */
export function ensureRunDir(runDir: string): void {
  try {
    makeDirs(runDir, 0o755);
  } catch (e) {
    throw new UserError(
      `cannot create the run dir ${runDir}: ${describeFsError(e)} (pass --run-dir DIR, or set QCVM_RUN_DIR, to a directory you can write)`,
    );
  }
  trustRunDir(runDir);
}

/**
 * Refuse a run dir another user could write into (vm/trust.ts): qcvm acts, as root, on what it
 * finds there. Root's run dir is trusted by every user (status lists root's VMs as "not yours").
 */
export function trustRunDir(runDir: string): void {
  checkTrustedDir(runDir, "run dir", { allowRoot: true });
}

/**
 * Create a VM's runtime directory, mode 0700: the QMP socket in it is full control of the VM.
 * The caller holds the VM name lock, so leftovers here are from a dead run and are removed.
 */
export function createVmDir(runDir: string, name: string): string {
  ensureRunDir(runDir);
  const dir = vmDir(runDir, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o700 });
  // mkdir's mode is filtered by the umask; the socket's safety must not depend on it.
  chmodSync(dir, 0o700);
  // What was made is a real directory of the caller's (not a link someone swapped in).
  ensureTrustedSubdir(dir, 0o700, "VM directory");
  return dir;
}

export function removeVmDir(runDir: string, name: string): void {
  rmSync(vmDir(runDir, name), { recursive: true, force: true });
}
