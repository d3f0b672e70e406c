// `qcvm logs <name> [--list]`: print QEMU's log of a VM: the live one while a detached VM runs,
// else the newest of those `stop` kept (src/vm/logs.ts), so the log of a VM that died is still
// there after `qcvm status NAME || qcvm stop NAME`. Exit 0 printed; 1 no log for that name.
// --format json: {name, runDir, file, live, text}, or with --list {name, runDir, logs: [{file, live}]}.
import { UserError } from "../core/diagnostics.js";
import type { Outcome } from "../core/errors.js";
import type { LogsOptions } from "../cli/command-options.js";
import { findLog, listKeptLogs, readLogFile } from "../vm/logs.js";
import { requireVmName, resolveRunDir, vmPaths } from "../vm/paths.js";
import { existsSync } from "node:fs";
import { writeJson } from "./json-output.js";

export function run(o: LogsOptions): Promise<Outcome> {
  const runDir = resolveRunDir(o.runDir);
  const name = requireVmName(o.name);
  const json = o.format === "json";
  if (o.list) {
    const live = vmPaths(runDir, name).log;
    const all = [
      ...listKeptLogs(runDir, name).map((file) => ({ file, live: false })),
      ...(existsSync(live) ? [{ file: live, live: true }] : []),
    ];
    if (all.length === 0) throw noLog(runDir, name);
    if (json) writeJson({ name, runDir, logs: all });
    else process.stdout.write(`${all.map((l) => (l.live ? `${l.file} (live)` : l.file)).join("\n")}\n`);
    return Promise.resolve("ok");
  }
  const found = findLog(runDir, name);
  if (!found) throw noLog(runDir, name);
  const text = readLogFile(found.path);
  if (json) {
    writeJson({ name, runDir, file: found.path, live: found.live, text });
    return Promise.resolve("ok");
  }
  process.stderr.write(`qcvm: ${found.live ? "live log" : "kept log"} ${found.path}\n`);
  process.stdout.write(text.endsWith("\n") || text === "" ? text : `${text}\n`);
  return Promise.resolve("ok");
}

function noLog(runDir: string, name: string): UserError {
  return new UserError(
    `no log of \`${name}\` in ${runDir}: a VM launched in the foreground writes to its terminal, and a detached one's log is kept when it is stopped (--run-dir picks another run dir)`,
    "not-found",
  );
}
