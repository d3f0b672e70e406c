// yargs definitions of logs and console (launch, status, stop and stats are in src/cli.ts).
import type { Argv } from "yargs";
import { RUN_DIR, exitCodes } from "./options.js";
import type { Dispatch } from "./options.js";

export function consoleCommands(y: Argv, dispatch: Dispatch): Argv {
  return y
    .command(
      "logs <name>",
      "Print QEMU's log of a VM: the live one while it runs detached, else the last one stop kept",
      (y) =>
        y
          .positional("name", { type: "string", describe: "The VM (running or not)" })
          .option("list", { type: "boolean", default: false, describe: "List the kept logs (oldest first)" })
          .option("run-dir", { type: "string", describe: RUN_DIR })
          .example("$0 logs kvm-2node", "What QEMU printed, also after the VM died and was stopped")
          .example("$0 logs kvm-2node --list", "Every log kept for that name (the last 5 runs)")
          .epilog(exitCodes("0 log printed; 1 no log for that name")),
      dispatch("logs"),
    )
    .command(
      "console <name>",
      "Attach this terminal to a running VM's serial console; Ctrl-] detaches",
      (y) =>
        y
          .positional("name", { type: "string", describe: "A running VM with a serial port" })
          .option("run-dir", { type: "string", describe: RUN_DIR })
          .example("$0 console kvm-1node", "launched with --detach and serial: stdio (or serial: pty)")
          .epilog(
            exitCodes(
              "0 detached (Ctrl-]) or the VM stopped; 1 no such VM, not running, console in use, or no serial port to attach to",
            ),
          ),
      dispatch("console"),
    );
}
