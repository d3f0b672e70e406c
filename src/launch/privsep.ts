// Privilege separation for QEMU, as libvirt does it (DOMAIN.md "libvirt's security defaults"):
// qcvm keeps root for what needs it (cgroups, vCPU pinning, opening the user's files, QMP), and
// QEMU, which parses guest-controlled data all day, runs as a dedicated unprivileged user.
//
// How the drop is done: util-linux `setpriv` as an exec prefix (it is already a dependency:
// taskset is util-linux too). The parent (qcvm) decides everything; setpriv sets the real,
// effective and saved uid and gid, replaces the supplementary groups with exactly [kvm], clears
// the inheritable and bounding capability sets, sets no_new_privs, and execs the rest of the argv
// (numactl, then QEMU), so QEMU keeps the pid qcvm spawned and never held root. Not Node's spawn
// `uid`/`gid`: libuv then calls setgroups(0, NULL), so QEMU would lose the kvm group and could not
// open /dev/kvm, and Node has no way to set no_new_privs. Not QEMU's own `-runas` (or 9.1's
// `-run-with user=`): QEMU would start as root and drop later, and under `-sandbox
// elevateprivileges=deny` its setgid dies of SIGSYS (found on QEMU 7.2 here).
//
// QEMU as root happens only when asked by name (`--qemu-user root` or `qemu.user: root`); it
// still gets no_new_privs and the sandbox. A non-root qcvm cannot switch users: QEMU runs as the
// caller, with no_new_privs.
import { FsRoot } from "../io/fsroot.js";
import { UserError } from "../core/diagnostics.js";

/** The system user QEMU runs as when nothing else is asked (README: "Running as root"). */
export const DEFAULT_QEMU_USER = "qcvm-qemu";

/** How to create the default user, as doctor and the README say it (Debian's adduser/useradd). */
export const CREATE_QEMU_USER =
  "groupadd --system kvm 2>/dev/null; useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --groups kvm qcvm-qemu";

/** Who QEMU runs as. */
export interface QemuIdentity {
  /** The name asked for, or the caller's uid as text when qcvm is not root. */
  user: string;
  uid: number;
  gid: number;
  /** Supplementary groups QEMU keeps: exactly the kvm group when the host has one. */
  groups: number[];
  groupNames: string[];
  /** QEMU keeps qcvm's own identity: qcvm is not root, or root was asked for by name. */
  keepsCaller: boolean;
  /** Names only (a dry run for another host): never resolved, never run. */
  symbolic?: boolean;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

function parseColonFile(text: string | undefined): string[][] {
  return (text ?? "")
    .split("\n")
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => l.split(":"));
}

function findUser(fs: FsRoot, name: string): PasswdEntry | undefined {
  for (const f of parseColonFile(fs.read("etc/passwd"))) {
    if (f[0] === name && f.length >= 4) return { name, uid: Number(f[2]), gid: Number(f[3]) };
  }
  return undefined;
}

function findGroup(fs: FsRoot, name: string): number | undefined {
  for (const f of parseColonFile(fs.read("etc/group"))) if (f[0] === name && f.length >= 3) return Number(f[2]);
  return undefined;
}

/** The QEMU user's name: --qemu-user, else the profile's qemu.user, else the default. */
export function chooseQemuUser(cli: unknown, profile: string | undefined): string {
  if (typeof cli === "string" && cli !== "") return cli;
  return profile ?? DEFAULT_QEMU_USER;
}

/**
 * Resolve who QEMU runs as. Reads /etc/passwd and /etc/group through `fs` (a fixture host in
 * tests); names only, never NSS, so what the dry run shows is what runs.
 */
export function resolveQemuIdentity(
  name: string,
  fs = new FsRoot("/"),
  callerUid = process.getuid?.() ?? 0,
): QemuIdentity {
  const kvm = findGroup(fs, "kvm");
  if (callerUid !== 0) {
    return {
      user: `uid ${callerUid}`,
      uid: callerUid,
      gid: process.getgid?.() ?? callerUid,
      groups: [],
      groupNames: [],
      keepsCaller: true,
    };
  }
  if (name === "root") return { user: "root", uid: 0, gid: 0, groups: [], groupNames: [], keepsCaller: true };
  const u = findUser(fs, name);
  if (!u) {
    throw new UserError(
      `QEMU user \`${name}\` does not exist: qcvm runs QEMU as an unprivileged user. Create it (as root: ${CREATE_QEMU_USER}), ` +
        "pick another with --qemu-user NAME or qemu.user, or run QEMU as root with --qemu-user root",
    );
  }
  if (u.uid === 0 || u.gid === 0) {
    throw new UserError(
      `QEMU user \`${name}\` has uid or gid 0, which is root by another name: use an unprivileged user, or say --qemu-user root`,
    );
  }
  return {
    user: name,
    uid: u.uid,
    gid: u.gid,
    groups: kvm === undefined ? [] : [kvm],
    groupNames: kvm === undefined ? [] : ["kvm"],
    keepsCaller: false,
  };
}

/** An identity by name only (uid -1), for a dry run of another host: shown, never run. */
export function symbolicIdentity(user: string): QemuIdentity {
  return { user, uid: -1, gid: -1, groups: [], groupNames: ["kvm"], keepsCaller: user === "root", symbolic: true };
}

/** The exec prefix that drops to `id` (setpriv execs the rest: the pid stays QEMU's). */
export function privsepPrefix(id: QemuIdentity): string[] {
  if (id.symbolic) return symbolicPrefix(id.user);
  if (id.keepsCaller) return ["setpriv", "--no-new-privs", "--"];
  return [
    "setpriv",
    `--reuid=${id.uid}`,
    `--regid=${id.gid}`,
    id.groups.length ? `--groups=${id.groups.join(",")}` : "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
    "--no-new-privs",
    "--",
  ];
}

/** The same prefix by name, for `render`, which reads no host: what launch as root would run. */
export function symbolicPrefix(user: string): string[] {
  if (user === "root") return ["setpriv", "--no-new-privs", "--"];
  return [
    "setpriv",
    `--reuid=${user}`,
    `--regid=${user}`,
    "--groups=kvm",
    "--inh-caps=-all",
    "--bounding-set=-all",
    "--no-new-privs",
    "--",
  ];
}

/** QEMU's whole environment (libvirt's choice): nothing of qcvm's caller leaks in. */
export function qemuEnvironment(vmDir: string): Record<string, string> {
  return { LC_ALL: "C", PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: vmDir };
}

/** Files QEMU creates get 0600 and directories 0700, whatever the caller's umask. */
export const QEMU_UMASK = 0o077;

/** One line for the dry run and render: who QEMU runs as and how. */
export function describeIdentity(id: QemuIdentity): string {
  if (id.symbolic)
    return `QEMU runs as ${id.user} (resolved on the host that launches), groups kvm, no capabilities, no_new_privs`;
  if (id.keepsCaller && id.uid === 0) return "QEMU runs as root (asked by name), no_new_privs";
  if (id.keepsCaller) return `QEMU runs as the caller (${id.user}: qcvm is not root), no_new_privs`;
  return `QEMU runs as ${id.user} (uid ${id.uid}, gid ${id.gid}, groups ${id.groupNames.join(",") || "none"}), no capabilities, no_new_privs`;
}

/**
 * Why QEMU as `id` cannot open /dev/kvm read-write, or undefined when it can: the device must be
 * the user's, or its group one of the user's groups with rw, or rw for others. Debian's udev rule
 * makes it root:kvm 0660.
 */
export function kvmAccessProblem(
  id: QemuIdentity,
  dev: { uid: number; gid: number; mode: number } | undefined,
): string | undefined {
  if (!dev || id.uid === 0) return undefined;
  const rw = (shift: number) => ((dev.mode >> shift) & 0o6) === 0o6;
  if (dev.uid === id.uid && rw(6)) return undefined;
  if ((dev.gid === id.gid || id.groups.includes(dev.gid)) && rw(3)) return undefined;
  if (rw(0)) return undefined;
  return (
    `QEMU user ${id.user} cannot open /dev/kvm (owner ${dev.uid}, group ${dev.gid}, mode 0${(dev.mode & 0o777).toString(8)}): ` +
    "make it root:kvm 0660 as Debian's udev rule does (chgrp kvm /dev/kvm && chmod 0660 /dev/kvm; " +
    'persist with KERNEL=="kvm", GROUP="kvm", MODE="0660" in /etc/udev/rules.d/65-kvm.rules) and put the user in the kvm group'
  );
}

/**
 * Doctor's view of the default QEMU user on a real host: does it exist, is it root-free, and can
 * it open /dev/kvm. `dev` is /dev/kvm's stat (undefined without KVM).
 */
export function checkQemuUser(
  fs: FsRoot,
  dev: { uid: number; gid: number; mode: number } | undefined,
  user = DEFAULT_QEMU_USER,
): { ok: boolean; detail: string; fix?: string } {
  let id: QemuIdentity;
  try {
    id = resolveQemuIdentity(user, fs, 0);
  } catch {
    return { ok: false, detail: `no user ${user}`, fix: `create it as root: ${CREATE_QEMU_USER}` };
  }
  const problem = kvmAccessProblem(id, dev);
  const who = `${user} (uid ${id.uid}, groups ${id.groupNames.join(",") || "none"})`;
  if (problem) return { ok: false, detail: `${who}; ${problem}`, fix: "see the detail" };
  if (id.groups.length === 0)
    return {
      ok: false,
      detail: `${who}; the host has no kvm group`,
      fix: "groupadd --system kvm, then usermod -aG kvm",
    };
  return { ok: true, detail: `${who}${dev ? ", can open /dev/kvm" : ""}` };
}

/**
 * Who a capability probe's QEMU runs as when the caller named no one (doctor, render --probe): as
 * root, the default QEMU user if it exists, else nobody (uid 65534, no groups: `-machine none`
 * needs no KVM); never root. Any other caller keeps its identity, with no_new_privs.
 */
export function defaultProbePrefix(fs = new FsRoot("/")): string[] {
  try {
    return privsepPrefix(resolveQemuIdentity(DEFAULT_QEMU_USER, fs));
  } catch {
    return privsepPrefix({
      user: "nobody",
      uid: 65534,
      gid: 65534,
      groups: [],
      groupNames: [],
      keepsCaller: false,
    });
  }
}
