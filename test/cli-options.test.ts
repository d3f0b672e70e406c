// Every option and positional a command's yargs definition declares reaches its handler: each
// command's `options` conversion (src/cli/*-commands.ts) reads exactly the keys its builder
// defines. tsc checks the types of what is read; this checks nothing is left out, as --qemu-user
// once was (launch's handler copied fields one by one, and `qcvm launch --qemu-user` did nothing).
import { describe, expect, it } from "vitest";
import yargs from "yargs";
import { COMMANDS } from "../src/cli.js";
import type { Command } from "../src/cli/options.js";

const camel = (k: string) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The keys a command's builder defines (options and positionals), as its handler would read them. */
function definedKeys(c: Command): string[] {
  let keys: string[] = [];
  // No --help nor --version here: `help --help` would show help without building `help`. With a
  // callback yargs hands a failure (a missing positional) to it instead of printing it.
  void yargs()
    .exitProcess(false)
    .help(false)
    .version(false)
    .command(c.command, "", (y) => {
      const built = c.builder(y);
      keys = Object.keys((built as unknown as { getOptions(): { key: object } }).getOptions().key);
      return built;
    })
    .parse([c.name], {}, () => undefined);
  return [...new Set(keys.filter((k) => k !== "help" && k !== "version").map(camel))].sort();
}

/** The argv keys a command's conversion reads. */
function readKeys(c: Command): string[] {
  const read = new Set<string>();
  const argv = new Proxy(
    {},
    {
      get(_, key) {
        read.add(String(key));
        return key === "files" || key === "profiles" ? [] : "x";
      },
    },
  );
  c.options(argv as Parameters<Command["options"]>[0]);
  return [...read].sort();
}

describe("typed CLI options", () => {
  it("covers every command of qcvm --help", () => {
    expect(COMMANDS.map((c) => c.name)).toEqual([
      "validate",
      "render",
      "schema",
      "init",
      "plan",
      "doctor",
      "launch",
      "status",
      "stop",
      "stats",
      "logs",
      "console",
      "list",
      "help",
      "completion",
      "export",
      "import",
    ]);
  });

  it.each(COMMANDS.map((c) => [c.name, c] as const))(
    "%s: the handler's options carry every key the command line defines, and nothing else",
    (_, c) => {
      const defined = definedKeys(c);
      expect(defined.length).toBeGreaterThan(0);
      expect(readKeys(c)).toEqual(defined);
    },
  );

  it("launch carries --qemu-user, --dry-run and --run-dir under their camelCase names", () => {
    const launch = COMMANDS.find((c) => c.name === "launch")!;
    expect(readKeys(launch)).toEqual(expect.arrayContaining(["qemuUser", "dryRun", "runDir"]));
  });
});
