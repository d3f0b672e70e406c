// Who QEMU runs as (issue 8, finding 3): the identity comes from /etc/passwd and /etc/group (a
// fixture root here), and the setpriv prefix really drops to it (run below, as root).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FsRoot } from "../src/io/fsroot.js";
import {
  CREATE_QEMU_USER,
  checkQemuUser,
  chooseQemuUser,
  kvmAccessProblem,
  privsepPrefix,
  resolveQemuIdentity,
  symbolicPrefix,
} from "../src/launch/privsep.js";

const root = mkdtempSync(join(tmpdir(), "qcvm-privsep-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, "etc"));
writeFileSync(
  join(root, "etc/passwd"),
  "root:x:0:0:root:/root:/bin/bash\nqcvm-qemu:x:990:990::/nonexistent:/usr/sbin/nologin\ntoor:x:0:0::/:/bin/sh\n",
);
writeFileSync(join(root, "etc/group"), "root:x:0:\nkvm:x:993:qcvm-qemu\nqcvm-qemu:x:990:\n");
const fs = new FsRoot(root);

describe("the QEMU user", () => {
  it("is --qemu-user, else qemu.user, else qcvm-qemu", () => {
    expect(chooseQemuUser("alice", "bob")).toBe("alice");
    expect(chooseQemuUser(undefined, "bob")).toBe("bob");
    expect(chooseQemuUser(undefined, undefined)).toBe("qcvm-qemu");
  });

  it("resolves to its uid, its primary group, and exactly the kvm group", () => {
    const id = resolveQemuIdentity("qcvm-qemu", fs, 0);
    expect(id).toEqual({
      user: "qcvm-qemu",
      uid: 990,
      gid: 990,
      groups: [993],
      groupNames: ["kvm"],
      keepsCaller: false,
    });
    expect(privsepPrefix(id)).toEqual([
      "setpriv",
      "--reuid=990",
      "--regid=990",
      "--groups=993",
      "--inh-caps=-all",
      "--bounding-set=-all",
      "--no-new-privs",
      "--",
    ]);
  });

  it("is root only when asked by name; uid 0 under another name is refused", () => {
    expect(privsepPrefix(resolveQemuIdentity("root", fs, 0))).toEqual(["setpriv", "--no-new-privs", "--"]);
    expect(() => resolveQemuIdentity("toor", fs, 0)).toThrow("has uid or gid 0, which is root by another name");
  });

  it("that is missing is an error that says how to create it", () => {
    expect(() => resolveQemuIdentity("nobody-here", fs, 0)).toThrow(
      `QEMU user \`nobody-here\` does not exist: qcvm runs QEMU as an unprivileged user. Create it (as root: ${CREATE_QEMU_USER})`,
    );
  });

  it("is the caller when qcvm is not root (it cannot switch), still with no_new_privs", () => {
    const id = resolveQemuIdentity("qcvm-qemu", fs, 1000);
    expect(id.keepsCaller).toBe(true);
    expect(privsepPrefix(id)).toEqual(["setpriv", "--no-new-privs", "--"]);
  });

  it("render shows the same drop by name", () => {
    expect(symbolicPrefix("qcvm-qemu")).toContain("--reuid=qcvm-qemu");
    expect(symbolicPrefix("root")).toEqual(["setpriv", "--no-new-privs", "--"]);
  });
});

describe("/dev/kvm for the QEMU user", () => {
  const id = resolveQemuIdentity("qcvm-qemu", fs, 0);
  it("is fine as root:kvm 0660 (Debian's udev rule)", () => {
    expect(kvmAccessProblem(id, { uid: 0, gid: 993, mode: 0o20660 })).toBeUndefined();
  });
  it("is a problem as root:root 0600, with the fix", () => {
    expect(kvmAccessProblem(id, { uid: 0, gid: 0, mode: 0o20600 })).toContain(
      "QEMU user qcvm-qemu cannot open /dev/kvm (owner 0, group 0, mode 0600): make it root:kvm 0660",
    );
  });
});

describe.skipIf(process.getuid?.() !== 0)("the setpriv prefix, run for real (needs root)", () => {
  it("leaves a non-root uid, only the given group, no capabilities and NoNewPrivs 1", () => {
    const prefix = privsepPrefix({
      user: "nobody",
      uid: 65534,
      gid: 65534,
      groups: [65533],
      groupNames: ["x"],
      keepsCaller: false,
    });
    const status = execFileSync(prefix[0]!, [...prefix.slice(1), "cat", "/proc/self/status"], { encoding: "utf8" });
    expect(status).toMatch(/^Uid:\t65534\t65534\t65534\t65534$/m);
    expect(status).toMatch(/^Gid:\t65534\t65534\t65534\t65534$/m);
    expect(status).toMatch(/^Groups:\t65533 ?$/m);
    expect(status).toMatch(/^CapEff:\t0+$/m);
    expect(status).toMatch(/^CapBnd:\t0+$/m);
    expect(status).toMatch(/^NoNewPrivs:\t1$/m);
  });
});

describe("doctor's QEMU user check", () => {
  it("says how to create a missing user", () => {
    const r = checkQemuUser(new FsRoot(join(root, "nowhere")), undefined);
    expect(r).toEqual({ ok: false, detail: "no user qcvm-qemu", fix: `create it as root: ${CREATE_QEMU_USER}` });
  });
  it("says when /dev/kvm is not group-accessible to it, and passes with root:kvm 0660", () => {
    expect(checkQemuUser(fs, { uid: 0, gid: 0, mode: 0o20600 }).ok).toBe(false);
    expect(checkQemuUser(fs, { uid: 0, gid: 0, mode: 0o20600 }).detail).toContain("make it root:kvm 0660");
    expect(checkQemuUser(fs, { uid: 0, gid: 993, mode: 0o20660 })).toEqual({
      ok: true,
      detail: "qcvm-qemu (uid 990, groups kvm), can open /dev/kvm",
    });
  });
});
