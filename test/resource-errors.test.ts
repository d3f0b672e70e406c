// Issue 8 finding 7: a full run dir gave "internal error ... This is a bug in qcvm", exit 70, and
// left locks/*.lock.tmp-* behind. Resource errors anywhere in launch are user errors naming the
// path, with nothing left behind. The run dir is a tiny tmpfs (mounted here, so root is needed),
// filled so the lock write fails, or so the lock fits and state.json does not.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { builtinCapabilities } from "../src/probe/capabilities.js";
import { saveCapabilities } from "../src/probe/qemu.js";
import { KVM_2NODE, qcvm, vmName, AS_ROOT, QEMU_USER_READY } from "./helpers/launch.js";

const ROOT = AS_ROOT;
const READY = ROOT && QEMU_USER_READY;
const PAGE = 4096;

const base = mkdtempSync(join(tmpdir(), "qcvm-enospc-"));
const mnt = join(base, "mnt");
const caps = join(base, "caps.json");

/** Mount the tiny tmpfs now (root only); why not, when it cannot be (a container without CAP_SYS_ADMIN). */
const mountProblem = ((): string | undefined => {
  if (!READY) return undefined;
  execFileSync("mkdir", ["-p", mnt]);
  const m = spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", mnt], { encoding: "utf8" });
  return m.status === 0 ? undefined : `cannot mount a tmpfs here: ${m.stderr.trim()}`;
})();

/** Fill the tmpfs to the last byte, then give back `pages` pages (tmpfs counts whole pages). */
function fillLeaving(pages: number): void {
  const filler = join(mnt, "filler");
  rmSync(filler, { force: true });
  const fd = openSync(filler, "w");
  const chunk = Buffer.alloc(PAGE, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOSPC") throw e;
  } finally {
    closeSync(fd);
  }
  const size = statSync(filler).size;
  execFileSync("truncate", ["-s", String(Math.max(0, size - pages * PAGE)), filler]);
}

/** Everything in the run dir but the filler: what the launch left. */
function left(runDir: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string) => {
    for (const f of readdirSync(dir, { withFileTypes: true })) {
      if (rel === "" && f.name === "filler") continue;
      out.push(join(rel, f.name));
      if (f.isDirectory()) walk(join(dir, f.name), join(rel, f.name));
    }
  };
  walk(runDir, "");
  return out.sort();
}

describe.skipIf(!READY || mountProblem !== undefined)(
  `ENOSPC in the run dir (needs root: a tiny tmpfs is mounted, and QEMU drops to qcvm-qemu)${mountProblem ? `: ${mountProblem}` : ""}`,
  () => {
    beforeAll(() => saveCapabilities(builtinCapabilities("7.2"), caps));
    afterAll(() => {
      spawnSync("umount", [mnt]);
      rmSync(base, { recursive: true, force: true });
    });

    const launch = (name: string) =>
      qcvm(["launch", KVM_2NODE, "--detach", "--capabilities", caps, "--set", `name=${name}`, "--run-dir", mnt]);

    it("no room for the name lock: a user error naming it (exit 1, not 70), and no temp file left", async () => {
      fillLeaving(0);
      const name = vmName("nospace-lock");
      const r = await launch(name);
      expect(r.stderr).not.toContain("internal error");
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        `qcvm: cannot write ${join(mnt, "locks", `vm-${name}.lock`)}: no space left on the device (ENOSPC); nothing of this launch was left behind`,
      );
      expect(left(mnt).filter((f) => f.includes(name) || f.includes(".tmp"))).toEqual([]);
    });

    it("room for the lock but not for state.json: undone, the lock and VM directory removed", async () => {
      // One page: the lock's file takes it, so the state file (written before QEMU starts) cannot.
      fillLeaving(1);
      const name = vmName("nospace-state");
      const r = await launch(name);
      expect(r.stderr).not.toContain("internal error");
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(
          `qcvm: cannot write ${join(mnt, name, "state.json").replaceAll("/", "\\/")}: no space left on the device \\(ENOSPC\\)`,
        ),
      );
      expect(left(mnt).filter((f) => f.includes(name) || f.includes(".tmp"))).toEqual([]);
      for (const cg of [`/sys/fs/cgroup/cpuset/qcvm/${name}`, `/sys/fs/cgroup/qcvm/${name}`])
        expect(existsSync(cg), cg).toBe(false);
    });
  },
);
