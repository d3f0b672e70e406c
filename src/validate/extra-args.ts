// extraArgs: QEMU options a profile adds by hand. They are the one way a profile value becomes a
// QEMU option, so a profile from an untrusted repository could open a control channel into the VM
// (a monitor on a socket in /tmp, a gdb stub, an incoming migration, a VNC server). Those are
// errors unless the profile opts in by name (`qemu.allowControlArgs: true`), and then a warning
// (launch prints it). An id qcvm renders itself, reused, is an error: QEMU refuses duplicate ids.
import type { Rule, RuleContext } from "./rules.js";

/** Options qcvm renders itself; the same option in extraArgs would conflict or silently win. */
const RENDERED_OPTIONS: Record<string, string> = {
  "-m": "memory.size",
  "-smp": "cpu",
  "-machine": "machine",
  "-M": "machine",
  "-numa": "numa.nodes",
  "-cpu": "cpu.model",
  "-accel": "machine.accel",
  "-enable-kvm": "machine.accel",
  "-bios": "firmware.bios",
  "-kernel": "boot.kernel",
  "-initrd": "boot.initrd",
  "-append": "boot.cmdline",
  "-qmp": "qmp",
  "-name": "name",
};

/** Ids the renderer generates (RENDER_IDS in render/render.ts: mem0, tc0, snp0, disk0, ...; a test
 *  keeps the two in step). */
export const RENDERED_ID = /^(mem|ram|tc|sev|snp|tdx|cgs|igvm|net|scsi|serial|disk|pflash)[0-9]*$/;

/** Options that open a way into the running VM from outside qcvm, whatever their value. */
const CONTROL_OPTIONS: Record<string, string> = {
  "-monitor": "a monitor",
  "-qmp": "a QMP monitor",
  "-qmp-pretty": "a QMP monitor",
  "-mon": "a monitor",
  "-gdb": "a gdb stub",
  "-s": "a gdb stub (on tcp::1234)",
  "-incoming": "an incoming migration",
  "-vnc": "a VNC server",
  "-spice": "a SPICE server",
  "-readconfig": "options read from a file (any of these)",
  "-plugin": "a plugin loaded into QEMU",
};

/** chardev backends that reach outside the QEMU process (qapi/char.json ChardevBackend). */
const OUTSIDE_CHARDEVS = new Set([
  "socket",
  "udp",
  "pty",
  "pipe",
  "serial",
  "tty",
  "parallel",
  "parport",
  "spicevmc",
  "spiceport",
  "dbus",
]);
/** Character-device shorthands (-serial tcp::4444, -parallel pty...) that do the same. */
const OUTSIDE_SHORTHAND = /^(tcp:|telnet:|tn3270:|websocket:|udp:|unix:|mon:|pty|pipe:|chardev:|\/dev\/)/;
const SHORTHAND_OPTIONS = new Set(["-serial", "-parallel", "-virtioconsole", "-debugcon"]);

/** What a control option adds, or undefined when `opt value` opens nothing. */
function controlOf(opt: string, value: string | undefined): string | undefined {
  if (opt in CONTROL_OPTIONS) return CONTROL_OPTIONS[opt];
  if (value === undefined) return undefined;
  if (opt === "-chardev") {
    const backend = value.split(",")[0]!;
    return OUTSIDE_CHARDEVS.has(backend) ? `a ${backend} character device` : undefined;
  }
  if (SHORTHAND_OPTIONS.has(opt) && OUTSIDE_SHORTHAND.test(value))
    return `a ${value.split(":")[0]} ${opt.slice(1)} port`;
  if (opt === "-display" && /^(vnc|spice-app)|vnc=/.test(value)) return "a remote display";
  return undefined;
}

function idOf(value: string): string | undefined {
  return /(?:^|,)id=([^,]+)/.exec(value)?.[1] ?? /"id"\s*:\s*"([^"]+)"/.exec(value)?.[1];
}

function checkControl(ctx: RuleContext, i: number, opt: string, value: string | undefined): void {
  const what = controlOf(opt, value);
  if (what === undefined) return;
  const got = value === undefined ? ctx.profile.extraArgs[i] : `${ctx.profile.extraArgs[i]} ${value}`;
  if (ctx.profile.qemu.allowControlArgs)
    ctx.warn(
      "extra-args.control-allowed",
      `extraArgs[${i}]`,
      `${opt} adds ${what}, a way into the VM from outside qcvm; allowed by qemu.allowControlArgs`,
      {
        got,
      },
    );
  else
    ctx.error("extra-args.control", `extraArgs[${i}]`, `${opt} adds ${what}, a way into the VM from outside qcvm`, {
      got,
      hint: "remove it, or set qemu.allowControlArgs: true to allow it (launch then warns)",
    });
}

export const extraArgs: Rule = (ctx) => {
  const args = ctx.profile.extraArgs;
  args.forEach((a, i) => {
    if (!a.startsWith("-")) return;
    // QEMU takes -opt and --opt alike.
    // `-monitor=stdio` is no QEMU spelling, but it must not slip past the table either.
    const opt = (a.startsWith("--") ? a.slice(1) : a).replace(/=.*$/, "");
    const value = args[i + 1];
    if (opt in RENDERED_OPTIONS) {
      ctx.warn(
        "extra-args.duplicate",
        `extraArgs[${i}]`,
        `qcvm already renders ${opt} from ${RENDERED_OPTIONS[opt]}; the two will conflict`,
        {
          got: a,
          hint: `set ${RENDERED_OPTIONS[opt]} instead`,
        },
      );
    }
    checkControl(ctx, i, opt, value);
    const id = value === undefined ? undefined : idOf(value);
    if (id && RENDERED_ID.test(id)) {
      const message =
        opt === "-object"
          ? `object id ${id} may clash with an object qcvm creates`
          : `id ${id} is one qcvm renders; QEMU refuses two with the same id`;
      ctx.error("extra-args.object-id", `extraArgs[${i + 1}]`, message, { got: value, hint: "pick another id" });
    }
  });
};
