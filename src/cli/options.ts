// The options and help lines several commands share, and the command-line error type: yargs
// definitions in src/cli/*-commands.ts and src/cli.ts build on these.
import type { Argv } from "yargs";
import { resolveHostArg } from "../io/package-dir.js";

/** A command line yargs or a check of qcvm's refuses: exit 2, with the help of the command typed. */
export class UsageError extends Error {}

/** What a command's yargs handler is: src/cli.ts's dispatch("name"). */
export type Dispatch = (name: string) => (args: Record<string, unknown>) => Promise<void>;

export function hostOptions(y: Argv) {
  return y
    .option("host", {
      type: "string",
      describe:
        "Read host topology from this directory (shaped like /, with sys/ and proc/; qcvm doctor --save-host writes one) instead of /, or a tree qcvm ships, by name (epyc-2s4n)",
      coerce: (v: unknown): string => resolveHostArg(Array.isArray(v) ? String(v.at(-1)) : String(v)),
    })
    .option("capabilities", {
      type: "string",
      describe: "QEMU capabilities saved by `qcvm doctor --save` (otherwise the profile's target version decides)",
    });
}

/** How validate, render and plan read a profile: where its bases may live, and the host check. */
export function readOptions(y: Argv) {
  return y
    .option("root", {
      type: "string",
      requiresArg: true,
      describe: "extends: bases must be under DIR (default: the profile's git root, else its directory)",
    })
    .option("host-check", {
      type: "boolean",
      default: true,
      describe:
        "Check that every file QEMU opens (kernel, initrd, firmware, disks, blob files) exists; --no-host-check for a repository validated without its images",
    });
}

export function setOptions(y: Argv) {
  return y
    .option("set", {
      // Not `array: true`: an array option takes every word after it, so `--set a=1 vm.yaml` took
      // the profile as a second override. Repeated, a string option still collects a list.
      type: "string",
      describe: "Override a profile field: --set memory.size=8G (repeatable; applied after extends:, before defaults)",
      coerce: (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : [String(v)]),
    })
    .check((argv) => {
      // A bare `--set` (or `--set=`) would silently override nothing.
      if (Array.isArray(argv.set) && argv.set.some((s) => s === ""))
        throw new UsageError("--set needs path=value, e.g. --set memory.size=8G");
      return true;
    });
}

/**
 * A number of seconds. Taken as a string and converted here: yargs' own `number` type turns
 * `--timeout abc` into NaN, and the message could then only say "got NaN".
 */
export function secondsOption(name: string, describe: string, dflt: number, min: "zero" | "positive") {
  return {
    describe,
    default: dflt,
    requiresArg: true,
    coerce: (v: unknown): number => {
      const text = Array.isArray(v) ? String(v.at(-1)) : String(v);
      const n = text.trim() === "" ? NaN : Number(text);
      if (!Number.isFinite(n) || (min === "zero" ? n < 0 : n <= 0)) {
        const what = min === "zero" ? "a number of seconds >= 0" : "a positive number of seconds";
        throw new UsageError(`--${name} must be ${what}, got ${JSON.stringify(text)}`);
      }
      return n;
    },
  } as const;
}

/** One line of help per command: what its exit codes mean (every command: 2 usage, 70 internal error). */
export function exitCodes(text: string): string {
  return `Exit codes: ${text}; 2 usage error; 70 internal error (a bug in qcvm).`;
}

export const RUN_DIR = "Runtime state directory (default $QCVM_RUN_DIR, /run/qcvm as root, else $XDG_RUNTIME_DIR/qcvm)";
