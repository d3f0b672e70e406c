// QEMU capability probe: ask the binary itself which QOM types and properties it has, so features
// are decided by detection (a distro backport or an out-of-tree series shows up) rather than by
// version numbers alone. Capabilities can be saved and loaded, so CI can dry-run for a host and a
// QEMU it is not on (`qcvm doctor --save caps.json`, then `--capabilities caps.json`).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError, describeFsError } from "../core/diagnostics.js";
import { run, start, which } from "../io/exec.js";
import type { ChildExit } from "../io/exec.js";
import { QmpClient, isQmpError } from "../vm/qmp.js";
import { bindQmpSocket } from "../vm/listen.js";
import { defaultProbePrefix, qemuEnvironment } from "../launch/privsep.js";
import type { QemuCapabilities } from "../core/types.js";

/** QOM types whose properties decide features (see FEATURES in src/probe/capabilities.ts). */
export const PROBED_TYPES = [
  "memory-backend-memfd",
  "memory-backend-ram",
  "memory-backend-file",
  "memory-backend-shm",
  "memory-backend-guest-memfd",
  "thread-context",
  "sev-guest",
  "sev-snp-guest",
  "tdx-guest",
  "igvm-cfg",
] as const;

const FILE_FORMAT = "qcvm-capabilities/v1";
const PROBE_TIMEOUT_MS = 20_000;

/** "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)" -> "7.2.22". */
export function parseQemuVersion(text: string): string | undefined {
  const m = /QEMU emulator version (\d+\.\d+(?:\.\d+)?)/.exec(text);
  return m?.[1];
}

async function resolveBinary(binary: string): Promise<string> {
  const path = await which(binary);
  if (!path) {
    const where = binary.includes("/") ? "not found or not executable" : "not found on PATH";
    throw new UserError(
      `QEMU binary \`${binary}\` ${where} (install qemu-system-x86, or name another with qemu.binary or doctor --qemu)`,
      "unavailable",
    );
  }
  return path;
}

/** How the probe runs QEMU: under launch's privilege drop (launch/privsep.ts), never as root
 *  unless asked. Without `prefix`, defaultProbePrefix: the QEMU user, else nobody. */
export interface ProbeOptions {
  workDir?: string;
  /** Exec prefix that drops privileges (setpriv ... --): QEMU then gets QMP as fd 3 (see below). */
  prefix?: readonly string[];
  /** QEMU's environment (launch's qemuEnvironment, the default). */
  env?: Record<string, string>;
}

/** Probe `binary`: --version, then QMP on a paused `-machine none` instance that is quit at once. */
export async function probeQemu(binary: string, options: ProbeOptions = {}): Promise<QemuCapabilities> {
  const path = await resolveBinary(binary);
  // Never as root unless asked: the caller's drop, else the default one (launch/privsep.ts).
  const prefix = options.prefix ?? defaultProbePrefix();
  const env = { env: options.env ?? qemuEnvironment("/nonexistent") };
  const v = await run([...prefix, path, "--version"], { timeoutMs: PROBE_TIMEOUT_MS, ...env }).catch((e: Error) => {
    throw new UserError(`cannot run QEMU binary \`${binary}\`: ${e.message}`, "unavailable");
  });
  const version = parseQemuVersion(v.stdout);
  if (v.exitCode !== 0 || !version) {
    throw new UserError(
      `\`${binary} --version\` did not print a QEMU version (exit ${v.exitCode}): ${(v.stdout + v.stderr).trim().split("\n")[0]!.slice(0, 200)}`,
      "unavailable",
    );
  }

  const dir = mkdtempSync(join(options.workDir ?? tmpdir(), "qcvm-probe-"));
  const sock = join(dir, "qmp.sock");
  const base = [path, "-machine", "none", "-S", "-nodefaults", "-no-user-config", "-display", "none"];
  // Dropped to the QEMU user, QEMU cannot create a socket in qcvm's 0700 temp dir: qcvm binds it
  // and passes it as fd 3, as launch does (vm/listen.ts).
  const listener = prefix.length > 0 ? await bindQmpSocket(sock) : undefined;
  // The child's `exited` settles when QEMU exits; until then QEMU runs and we talk QMP to it.
  let qemu: ReturnType<typeof start>;
  try {
    qemu = start(
      listener
        ? [
            ...prefix,
            ...base,
            "-chardev",
            "socket,id=qmp0,fd=3,server=on,wait=off",
            "-mon",
            "chardev=qmp0,mode=control",
          ]
        : [...base, "-qmp", `unix:${sock},server=on,wait=off`],
      { output: "ignore", captureStderr: true, ...env, ...(listener ? { fds: [listener.fd] } : {}) },
    );
  } finally {
    listener?.close();
  }
  const died = new AbortController();
  let exitInfo: ChildExit | undefined;
  void qemu.exited.then((r) => {
    exitInfo = r;
    died.abort(
      r.code !== undefined
        ? `QEMU could not start: ${r.code}`
        : `QEMU exited with status ${r.exitCode ?? "?"}${r.stderr ? `: ${r.stderr.trim()}` : ""}`,
    );
  });

  let client: QmpClient | undefined;
  try {
    client = await QmpClient.connect(sock, { timeoutMs: PROBE_TIMEOUT_MS, signal: died.signal });
    const listed = await client.execute<{ name: string }[]>("qom-list-types", undefined, {
      timeoutMs: PROBE_TIMEOUT_MS,
    });
    if (isQmpError(listed))
      throw new UserError(`probing ${binary}: qom-list-types failed: ${listed.message}`, "unavailable");
    const types = [...new Set(listed.return.map((t) => t.name))].sort();
    const properties: Record<string, string[]> = {};
    for (const type of PROBED_TYPES) {
      if (!types.includes(type)) continue;
      const props = await client.execute<{ name: string }[]>("qom-list-properties", { typename: type });
      if (isQmpError(props))
        throw new UserError(`probing ${binary}: qom-list-properties ${type} failed: ${props.message}`, "unavailable");
      properties[type] = [...new Set(props.return.map((p) => p.name))].sort();
    }
    await client.quit(5000);
    return { source: "probe", binary: path, version, types, properties };
  } catch (e) {
    if (e instanceof UserError) throw e;
    // A QEMU that exits at start-up closes the socket it was handed before it greets: give its
    // exit a moment to land, so the message is QEMU's own words, not a socket error.
    if (!died.signal.aborted) await Promise.race([qemu.exited, new Promise((r) => setTimeout(r, 2000).unref())]);
    const why = died.signal.aborted ? String(died.signal.reason) : (e as Error).message;
    throw new UserError(`probing ${binary} over QMP failed: ${why}`, "unavailable");
  } finally {
    if (client && !client.isClosed) await client.close();
    if (!exitInfo) qemu.kill();
    await qemu.exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Write capabilities as JSON for `--capabilities FILE`. */
export function saveCapabilities(caps: QemuCapabilities, file: string): void {
  const out = {
    format: FILE_FORMAT,
    version: caps.version,
    ...(caps.binary ? { binary: caps.binary } : {}),
    probedFrom: caps.source,
    types: caps.types,
    properties: caps.properties,
  };
  try {
    writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  } catch (e) {
    throw new UserError(`cannot write capabilities to ${file}: ${describeFsError(e)}`);
  }
}

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === "string");

/** Read a file written by saveCapabilities(); a bad file is a UserError naming the file and field. */
export function loadCapabilities(file: string): QemuCapabilities {
  const fix = `save a fresh one with: qcvm doctor --save ${file}`;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new UserError(`${file}: cannot read capabilities file: ${describeFsError(e)} (${fix})`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: not a capabilities file: invalid JSON: ${(e as Error).message} (${fix})`);
  }
  const bad = (path: string, what: string, got: unknown) => {
    const shown = JSON.stringify(got);
    return new UserError(
      `${file}: ${path}: ${what}, got ${shown === undefined ? "nothing" : shown.length > 60 ? `${shown.slice(0, 57)}...` : shown} (${fix})`,
    );
  };
  if (typeof data !== "object" || data === null || Array.isArray(data))
    throw bad("(document)", "must be a JSON object", data);
  const d = data as Record<string, unknown>;
  if (d.format !== undefined && d.format !== FILE_FORMAT) throw bad("format", `must be "${FILE_FORMAT}"`, d.format);
  if (typeof d.version !== "string" || !/^\d+\.\d+(\.\d+)?$/.test(d.version)) {
    throw bad("version", 'must be a QEMU version such as "9.1.0"', d.version);
  }
  if (!isStringArray(d.types)) throw bad("types", "must be an array of QOM type names", d.types);
  if (typeof d.properties !== "object" || d.properties === null || Array.isArray(d.properties)) {
    throw bad("properties", "must be an object of QOM type -> property names", d.properties);
  }
  const properties: Record<string, string[]> = {};
  for (const [type, props] of Object.entries(d.properties as Record<string, unknown>)) {
    if (!isStringArray(props)) throw bad(`properties.${type}`, "must be an array of property names", props);
    properties[type] = props;
  }
  if (d.binary !== undefined && typeof d.binary !== "string") throw bad("binary", "must be a path", d.binary);
  return {
    source: "file",
    ...(typeof d.binary === "string" ? { binary: d.binary } : {}),
    version: d.version,
    types: d.types,
    properties,
  };
}
