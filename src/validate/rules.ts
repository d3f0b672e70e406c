// Semantic rules: what the schema cannot say. Each rule is a small function (rules-memory.ts,
// rules-confidential.ts, extra-args.ts, and the two below) reading the normalized profile and the
// raw one; RULES lists them with the fields each reads, so that a profile with schema errors still
// gets every rule whose inputs passed the schema (read-profile.ts). Files on the host are checked
// apart, in host-check.ts. Version gates read FEATURES in capabilities.ts.
import { BLOB_BYTES } from "../core/confidential.js";
import type { Rule } from "./rule-context.js";
import { extraArgs } from "./extra-args.js";
import * as M from "./rules-memory.js";
import * as C from "./rules-confidential.js";

export { runRules } from "./rule-context.js";
export type { Rule, RuleContext } from "./rule-context.js";

const network: Rule = (ctx) => {
  const { network: n } = ctx.profile;
  if (n.ifname !== undefined && n.type !== "tap")
    ctx.error("network.ifname", "network.ifname", "only tap networks have an ifname", { got: n.type });
  if (n.type === "none" && n.mac !== undefined) {
    ctx.warn("network.unused", "network.mac", "has no effect with network type none", {
      got: n.mac,
      hint: "set network.type: user or tap",
    });
  }
};

/** Fields holding a path QEMU or qcvm opens. A control character in one (a newline, a NUL) cannot
 *  reach QEMU intact, so it is refused here, at its position, not later by the renderer. Read
 *  from what was written, so it runs whatever else in the profile is wrong. */
function pathFields(written: unknown): string[] {
  const out = ["memory.path", "firmware.bios", "firmware.pflash.code", "firmware.pflash.vars", "firmware.igvm"];
  out.push("boot.kernel", "boot.initrd", "qmp", "serial", "confidential.dhCertFile", "confidential.sessionFile");
  out.push("confidential.quoteGenerationSocket.path", ...Object.keys(BLOB_BYTES).map((k) => `confidential.${k}.file`));
  const disks = Array.isArray(written) ? written.length : 0;
  for (let i = 0; i < disks; i++) out.push(`disks[${i}].path`);
  return out;
}

const pathCharacters: Rule = (ctx) => {
  for (const path of pathFields(ctx.written("disks"))) {
    const v = ctx.written(path);
    // eslint-disable-next-line no-control-regex -- control characters are what this looks for
    if (typeof v === "string" && /[\x00-\x1f\x7f]/.test(v))
      ctx.error(
        "path.control-character",
        path,
        "contains a control character (a newline, tab or NUL): no file name QEMU can take",
        {
          got: v,
          hint: "remove it; file names in profiles are plain text",
        },
      );
  }
};

/**
 * Every rule with the fields it reads (a `*` stands for any list index). When the schema reports
 * an error at or inside one of them, or above it, the rule does not run: its input would be a
 * guess. Every other rule runs, so one run reports every problem (issue 10 item 4).
 */
export const RULE_INPUTS: ReadonlyMap<Rule, readonly string[]> = new Map<Rule, readonly string[]>([
  [M.name, ["name"]],
  [M.cpuTopology, ["cpu"]],
  [M.cpuModel, ["machine.accel", "cpu.model", "confidential.type"]],
  [M.numaCpus, ["numa.nodes", "cpu"]],
  [M.numaMemory, ["memory.size", "numa.nodes"]],
  [M.placement, ["memory", "numa.nodes"]],
  [M.distances, ["numa"]],
  [M.sizes, ["memory.size", "numa.nodes"]],
  [M.hugepages, ["memory", "numa.nodes"]],
  [M.prealloc, ["memory", "confidential.type", "qemu.version"]],
  [C.confidentialProperties, ["confidential"]],
  [C.confidentialVersion, ["confidential", "firmware.igvm", "qemu.version"]],
  [C.sevCommon, ["confidential"]],
  [C.guestPolicy, ["confidential"]],
  [C.attributes, ["confidential"]],
  [C.machineFlags, ["confidential.type", "machine", "cpu.model"]],
  [C.firmware, ["firmware", "confidential.type"]],
  [C.firmwareRequired, ["firmware", "confidential.type"]],
  [C.blobs, ["confidential"]],
  [network, ["network"]],
  [pathCharacters, []],
  [extraArgs, ["extraArgs", "qemu.allowControlArgs"]],
]);

export const RULES: readonly Rule[] = [...RULE_INPUTS.keys()];
