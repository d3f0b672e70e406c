// `qcvm doctor --save-host DIR`: a host as a sysfs-shaped tree that `--host DIR` reads, so CI can
// plan and render against the real hosts of a fleet. The tree holds exactly the files the probe
// reads: probeHost() runs once through a recording FsRoot, and what it read is copied, byte for
// byte, with three exceptions:
//   - proc/mounts keeps only its cgroup and cgroup2 lines, the ones the probe uses (the rest names
//     this machine's disks and user mounts, nothing a repository of host trees should carry);
//   - dev/kvm is a plain file (the tree convention: the probe of a tree tests that it exists),
//     written when this host has KVM's device;
//   - numactl and the memory-policy test are programs, not files: their answers go to
//     qcvm/numactl-version and qcvm/mempolicy, the files a tree states them in (src/probe/host.ts).
// An empty directory the probe tested (run/systemd/system) gets a .keep, so git keeps it.
// Nothing is overwritten: DIR must be new or empty, and every file is created exclusively.
import { lstatSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { InternalError, UserError } from "../core/diagnostics.js";
import { FsRoot } from "../io/fsroot.js";
import { probeHost, probeHostAsync, probeMempolicy, readInterleaveWeights } from "./host.js";

/**
 * An FsRoot that remembers every path that answered: the bytes of each file read (as read: sysfs
 * counters move, and the tree must say what the probe saw), the directories listed or tested.
 */
export class RecordingFsRoot extends FsRoot {
  readonly seen = new Map<string, Buffer | "dir" | "file">();

  private note(p: string, what?: Buffer | "dir" | "file"): void {
    const rel = p.replace(/^\/+/, "");
    const prev = this.seen.get(rel);
    if (Buffer.isBuffer(prev)) return;
    this.seen.set(rel, what ?? (this.stat(rel)?.isDirectory() ? "dir" : "file"));
  }

  override read(p: string): string | undefined {
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.path(p));
    } catch {
      return undefined;
    }
    this.note(p, bytes);
    return bytes.toString("utf8").trim();
  }

  override exists(p: string): boolean {
    const e = super.exists(p);
    if (e) this.note(p);
    return e;
  }

  override list(p: string): string[] {
    const l = super.list(p);
    if (l.length > 0) this.note(p, "dir");
    return l;
  }
}

/** Refuse a DIR that is not new or empty (a slip of the argument must not mix two hosts). */
export function checkSaveHostTarget(dir: string): void {
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    return; // to be created
  }
  if (!st.isDirectory())
    throw new UserError(`--save-host ${dir}: exists and is not a directory; name a new directory`, "usage");
  if (readdirSync(dir).length > 0)
    throw new UserError(
      `--save-host ${dir}: the directory is not empty; not writing into it (name a new directory)`,
      "usage",
    );
}

/** The lines of /proc/mounts the cgroup probe reads. */
function cgroupMounts(text: string): string {
  const lines = text.split("\n").filter((l) => /^\S+\s+\S+\s+cgroup2?\s/.test(l));
  return lines.length > 0 ? `${lines.join("\n")}\n` : "";
}

/**
 * Write the host under `root` (normally /) as a tree at `dir`; returns the files written, relative
 * to `dir`, sorted.
 */
export async function saveHostTree(root: string, dir: string): Promise<string[]> {
  checkSaveHostTarget(dir);
  const fs = new RecordingFsRoot(root);
  const probed = probeHost(root, fs);
  readInterleaveWeights(root, fs);
  const host = await probeHostAsync(root);
  // Through a plain FsRoot: its seccomp check reads this process's proc/self/status, not the host's.
  const plain = new FsRoot(root);
  const nodes = probed.nodes.map((n) => n.id);
  const mempolicy = plain.isRealHost ? await probeMempolicy(plain, nodes) : host.mempolicy;

  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const put = (rel: string, content: string | Buffer) => {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), content, { flag: "wx", mode: 0o644 });
    written.push(rel);
  };
  const dirs: string[] = [];
  for (const [rel, what] of [...fs.seen].sort(([a], [b]) => a.localeCompare(b))) {
    if (rel === "dev/kvm" || rel.startsWith("qcvm/")) continue; // written below
    if (Buffer.isBuffer(what)) put(rel, rel === "proc/mounts" ? cgroupMounts(what.toString("utf8")) : what);
    else if (what === "dir") dirs.push(rel);
    // An existing file only tested for (not read) has no content the probe depends on.
    else put(rel, "");
  }
  for (const d of dirs) {
    mkdirSync(join(dir, d), { recursive: true });
    if (readdirSync(join(dir, d)).length === 0) put(`${d}/.keep`, "");
  }
  if (host.kvm) put("dev/kvm", "placeholder: a character device on the saved host; the probe only checks it exists\n");
  put("qcvm/numactl-version", `${host.numactl.version ?? "none"}\n`);
  put(
    "qcvm/mempolicy",
    mempolicy.allowed ? "allowed\n" : `denied: ${mempolicy.reason ?? "the host denies memory policies"}\n`,
  );
  // A tree that reads back as another host would plan wrongly, silently: compare before handing it out.
  const back = probeHost(dir);
  if (JSON.stringify(back.nodes) !== JSON.stringify(probed.nodes) || back.kernel !== probed.kernel)
    throw new InternalError(`--save-host ${dir}: the saved tree does not read back as the host it was saved from`);
  return written.sort();
}
