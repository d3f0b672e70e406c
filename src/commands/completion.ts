// `qcvm completion [bash|zsh|fish]`: print a shell completion script. The scripts are yargs' own
// (so completion knows every command, option and choice that --help does): each asks
// `qcvm --get-yargs-completions WORDS...` at every Tab. yargs picks its template from $SHELL when
// its parser is built, so the shell asked for is put in SHELL for the one parser made here.
import type { Outcome } from "../core/errors.js";
import type { CompletionOptions } from "../cli/command-options.js";
import yargs from "yargs";
import { basename } from "node:path";
import { UserError } from "../core/diagnostics.js";

export const SHELLS = ["bash", "zsh", "fish"] as const;
export type Shell = (typeof SHELLS)[number];

/** The shell named, else the login shell ($SHELL) when it is one of ours, else bash. */
export function pickShell(named: string | undefined, env: NodeJS.ProcessEnv = process.env): Shell {
  if (typeof named === "string") {
    if ((SHELLS as readonly string[]).includes(named)) return named as Shell;
    throw new UserError(`no completion for shell \`${named}\`: choose bash, zsh or fish`, "usage");
  }
  const login = basename(env.SHELL ?? "");
  return (SHELLS as readonly string[]).includes(login) ? (login as Shell) : "bash";
}

/** yargs' completion script for `shell`, for a program called `qcvm` on PATH. */
export function completionScript(shell: Shell): string {
  const saved = { SHELL: process.env.SHELL, ZSH_NAME: process.env.ZSH_NAME };
  process.env.SHELL = `/bin/${shell}`;
  delete process.env.ZSH_NAME;
  let out = "";
  try {
    const y = yargs([]).scriptName("qcvm").completion("completion", false);
    // showCompletionScript writes through yargs' logger (console.log): catch it as text.
    const log = console.log;
    console.log = (...parts: unknown[]) => {
      out += `${parts.map(String).join(" ")}\n`;
    };
    try {
      y.showCompletionScript();
    } finally {
      console.log = log;
    }
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  return out;
}

export function run(o: CompletionOptions): Promise<Outcome> {
  process.stdout.write(completionScript(pickShell(o.shell)));
  return Promise.resolve("ok");
}
