// A libvirtd of the test's own, started by hand (no systemd): Debian's libvirt-daemon with the
// QEMU driver, in a private mount namespace whose /etc/libvirt, /run/libvirt, /var/lib/libvirt,
// /var/cache/libvirt and /var/log/libvirt are directories of the test (bind mounts that vanish with
// the daemon), so it clashes with nothing on the host and leaves nothing behind. Its socket is in
// the test's directory too. QEMU runs as libvirt-qemu:kvm (libvirt's compiled-in default user
// must exist for the QEMU driver to start at all; Debian's libvirt-daemon-system would create it),
// with no security driver (no AppArmor here) and without virtlogd (stdio_handler = "file").
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, rmdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Libvirtd {
  dir: string;
  uri: string;
  virsh(args: string[]): { code: number; stdout: string; stderr: string };
  stop(): Promise<void>;
}

const MOUNTED = ["/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt"];

function has(cmd: string): boolean {
  return spawnSync("sh", ["-c", 'command -v "$1"', "sh", cmd], { stdio: "ignore" }).status === 0;
}

/** Why this machine cannot run the test's libvirtd, or undefined when it can. */
export function libvirtdUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (libvirtd's QEMU driver, mount namespaces)";
  for (const cmd of ["libvirtd", "virsh", "unshare", "qemu-system-x86_64"])
    if (!has(cmd))
      return `${cmd} is not installed (.ci/run installs libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients)`;
  return undefined;
}

/** libvirt's default QEMU user and group (Debian: libvirt-qemu), made as libvirt-daemon-system would. */
function ensureQemuUser(): void {
  if (spawnSync("getent", ["group", "libvirt-qemu"]).status !== 0) spawnSync("groupadd", ["--system", "libvirt-qemu"]);
  if (spawnSync("id", ["libvirt-qemu"], { stdio: "ignore" }).status !== 0)
    spawnSync("useradd", [
      "--system",
      "--no-create-home",
      "--home-dir",
      "/var/lib/libvirt",
      "--shell",
      "/usr/sbin/nologin",
      "-g",
      "kvm",
      "libvirt-qemu",
    ]);
}

/** The `machine` partitions libvirt makes in each cgroup hierarchy (it leaves them when it stops). */
function machinePartitions(): string[] {
  const root = "/sys/fs/cgroup";
  const dirs = existsSync(join(root, "cgroup.procs")) ? [root] : readdirSync(root).map((d) => join(root, d));
  return dirs.map((d) => join(d, "machine")).filter((d) => existsSync(d));
}

export async function startLibvirtd(): Promise<Libvirtd> {
  ensureQemuUser();
  const before = new Set(machinePartitions());
  const dir = mkdtempSync(join(tmpdir(), "qcvm-libvirtd-"));
  const sub = (n: string) => {
    const d = join(dir, n);
    mkdirSync(d, { recursive: true });
    return d;
  };
  const dirs = ["etc", "run", "lib", "cache", "log"].map(sub);
  const sock = sub("sock");
  const conf = [
    `unix_sock_dir = "${sock}"`,
    'unix_sock_rw_perms = "0700"',
    'auth_unix_rw = "none"',
    'auth_unix_ro = "none"',
    'log_outputs = "3:stderr"',
    "",
  ].join("\n");
  writeFileSync(join(dir, "libvirtd.conf"), conf);
  writeFileSync(join(dirs[0]!, "libvirtd.conf"), conf);
  writeFileSync(
    join(dirs[0]!, "qemu.conf"),
    ['user = "libvirt-qemu"', 'group = "kvm"', 'security_driver = "none"', 'stdio_handler = "file"', ""].join("\n"),
  );
  // The mount points must exist on the host for a bind mount (the package would create them).
  for (const m of MOUNTED) if (!existsSync(m)) mkdirSync(m, { recursive: true });
  // A fixed script; every path is a positional parameter, never part of the script text.
  const script =
    'mount --bind "$1" /etc/libvirt && mount --bind "$2" /run/libvirt && mount --bind "$3" /var/lib/libvirt && ' +
    'mount --bind "$4" /var/cache/libvirt && mount --bind "$5" /var/log/libvirt && ' +
    'exec libvirtd --config "$6" --pid-file "$7"';
  const child: ChildProcess = spawn(
    "unshare",
    [
      "--mount",
      "--propagation",
      "private",
      "--",
      "sh",
      "-c",
      script,
      "sh",
      ...dirs,
      join(dir, "libvirtd.conf"),
      join(dir, "libvirtd.pid"),
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  child.stderr?.on("data", (d) => (log += String(d)));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const uri = `qemu+unix:///system?socket=${join(sock, "libvirt-sock")}`;
  const virsh = (args: string[]) => {
    const r = spawnSync("virsh", ["-c", uri, ...args], { encoding: "utf8", timeout: 60_000 });
    return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
  };
  const deadline = Date.now() + 30_000;
  while (virsh(["version"]).code !== 0) {
    if (child.exitCode !== null || Date.now() > deadline) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`libvirtd did not start:\n${log.split("\n").slice(-15).join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    dir,
    uri,
    virsh,
    async stop() {
      for (const name of virsh(["list", "--name"]).stdout.split("\n").filter(Boolean)) virsh(["destroy", name]);
      child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
      // Ours to remove only if this daemon made them, and only once empty (rmdir refuses otherwise).
      for (const d of machinePartitions().filter((p) => !before.has(p))) {
        try {
          rmdirSync(d);
        } catch {
          // still in use: left as it is
        }
      }
    },
  };
}

/** Words of a POSIX shell command line as virsh domxml-to-native prints it (single quotes only). */
export function shellWords(line: string): string[] {
  const out: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      word = (word ?? "") + line.slice(i + 1, end);
      i = end;
    } else if (c === "\\" && i + 1 < line.length) {
      word = (word ?? "") + line[++i];
    } else if (/\s/.test(c)) {
      if (word !== undefined) out.push(word);
      word = undefined;
    } else word = (word ?? "") + c;
  }
  if (word !== undefined) out.push(word);
  return out;
}
