// guest-memfd-prealloc in the plan: what launch allocates before `cont` (the guest nodes whose
// private memory levers.ts gave that mechanism), what it is expected to cost, and the error when a
// profile asks for it (placement.private: prealloc) and the planner could not choose it. Pure.
import { diag } from "../core/diagnostics.js";
import { preallocMissing } from "./levers.js";
import { isPlaced } from "./model.js";
import type { Ctx } from "./model.js";
import type { Diagnostic, PlanNode, PreallocPlan } from "../core/types.js";

/** Expected guest-memfd-prealloc rate, for the launch cost a plan states. DOMAIN.md measured
 *  4.5 to 10 GiB/s for one fallocate on a 2-CPU Linux 6.18 host; bench/run.mjs measures qcvm's
 *  (`npm run bench -- --only prealloc`). The low end, rounded down, so the cost is not understated. */
export const PREALLOC_BYTES_PER_SECOND = 4 * 2 ** 30;
const PREALLOC_RATE_SOURCE = "the rate measured on a 2-CPU Linux 6.18 host; npm run bench measures this one";

/** Why guest-memfd-prealloc was not chosen for a profile that asked for it. */
function whyNot(ctx: Ctx): string {
  const type = ctx.profile.confidential.type;
  if (!ctx.guestMemfd) return `a ${type === "none" ? "plain KVM" : type} guest has no guest_memfd to pre-allocate`;
  if (!ctx.nodes.some(isPlaced)) return "no guest node asks for placement (every policy is default)";
  return preallocMissing(ctx).join("; ");
}

/** What guest-memfd-prealloc allocates before `cont` and what it costs; with placement.private:
 *  prealloc, an error (a warning for a guest without guest_memfd) when the plan could not choose it. */
export function preallocPlan(ctx: Ctx, nodes: PlanNode[], sink: { errors: Diagnostic[]; warnings: Diagnostic[] }) {
  const chosen = nodes.filter((n) => n.private.mechanism === "guest-memfd-prealloc");
  if (ctx.profile.placement.private === "prealloc" && chosen.length === 0) {
    const severity = ctx.guestMemfd ? "error" : "warning";
    (ctx.guestMemfd ? sink.errors : sink.warnings).push(
      diag(severity, "placement.private", "placement.private", `guest-memfd-prealloc cannot be used: ${whyNot(ctx)}`, {
        got: "prealloc",
        hint: ctx.guestMemfd
          ? "set placement.private: auto to take the best lever this host has"
          : "drop placement.private",
      }),
    );
  }
  if (chosen.length === 0) return undefined;
  const bytes = chosen.reduce((a, n) => a + n.sizeBytes, 0);
  const plan: PreallocPlan = {
    guestNodes: chosen.map((n) => n.guestNode),
    bytes,
    bytesPerSecond: PREALLOC_BYTES_PER_SECOND,
    rateSource: PREALLOC_RATE_SOURCE,
    seconds: bytes / PREALLOC_BYTES_PER_SECOND,
  };
  return plan;
}
