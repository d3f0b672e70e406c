// qcvm used from outside its repository (issue 10 item 9): the built bin run from a scratch
// directory, as from an installed package. Host trees ship in examples/hosts/ and are named by
// `--host NAME`; hints name shipped files by absolute path; `doctor --save-host DIR` writes this
// host as a tree that `--host DIR` reads back; `qcvm init` writes profiles whose $schema resolves
// anywhere. (test/pack.test.ts runs the packed tarball itself.)
import { describe, expect, it } from "vitest";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { basename, join, relative } from "node:path";
import { probeHost, probeHostAsync, readInterleaveWeights } from "../src/probe/host.js";
import { RecordingFsRoot } from "../src/probe/save-host.js";

const REPO = join(import.meta.dirname, "..");
const BIN = join(REPO, "bin", "qcvm.js");
const scratch = () => mkdtempSync(join(tmpdir(), "qcvm-package-"));

function qcvm(cwd: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every file under `dir`, relative to it, sorted. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else out.push(relative(dir, join(d, e.name)));
    }
  };
  walk(dir);
  return out.sort();
}

/** A plan without the free-memory figures, which move between two probes of a live host. */
function withoutFree(planJson: string): unknown {
  return JSON.parse(planJson, (k, v: unknown) => (k === "freeBytes" || k === "memFreeBytes" ? undefined : v));
}

describe("--host NAME: the host trees qcvm ships", () => {
  const profile = join(REPO, "profiles/snp-2node.yaml");

  it("a bare name is the tree in examples/hosts/, from any directory", () => {
    const cwd = scratch();
    const byName = qcvm(cwd, "plan", profile, "--host", "epyc-2s4n", "--format", "json");
    const byPath = qcvm(cwd, "plan", profile, "--host", join(REPO, "examples/hosts/epyc-2s4n"), "--format", "json");
    expect(byName.code, byName.stderr).toBe(0);
    expect(byName.stdout).toBe(byPath.stdout);
    expect(JSON.parse(byName.stdout).nodes).toHaveLength(2);
  });

  it("a directory of that name in the cwd wins over the shipped tree", () => {
    const cwd = scratch();
    cpSync(join(REPO, "examples/hosts/single-node"), join(cwd, "epyc-2s4n"), { recursive: true });
    const local = qcvm(cwd, "plan", profile, "--host", "epyc-2s4n", "--format", "json");
    const single = qcvm(cwd, "plan", profile, "--host", join(REPO, "examples/hosts/single-node"), "--format", "json");
    expect(local.stdout).toBe(single.stdout);
    expect(local.stdout).not.toBe(
      qcvm(cwd, "plan", profile, "--host", join(REPO, "examples/hosts/epyc-2s4n"), "--format", "json").stdout,
    );
  });

  it("an unknown name is refused with the shipped names and an absolute path", () => {
    const r = qcvm(scratch(), "plan", profile, "--host", "no-such-host");
    expect(r.code).toBe(2);
    const m = / or name one qcvm ships in (\/\S+): (.*)\)$/m.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    expect(existsSync(m![1]!.replace(/:$/, ""))).toBe(true);
    expect(m![2]!.split(", ")).toEqual(readdirSync(join(REPO, "examples/hosts")).sort());
  });
});

describe("hints from outside the repository", () => {
  it("name shipped files by absolute paths that exist", () => {
    const cwd = scratch();
    writeFileSync(join(cwd, "empty.yaml"), "");
    const r = qcvm(cwd, "validate", "empty.yaml");
    expect(r.code).toBe(1);
    const m = /qcvm init FILE` writes a starter profile, and (\S+) shows every field/.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    expect(m![1]!.startsWith("/")).toBe(true);
    expect(readFileSync(m![1]!, "utf8")).toContain("apiVersion: qcvm/v1");
  });

  it("help examples name shipped hosts by name (they run in any directory)", () => {
    for (const cmd of ["render", "plan", "export"]) {
      const help = qcvm(scratch(), cmd, "--help").stdout.replace(/\s+/g, " ");
      expect(help, cmd).toMatch(/--host (\S+ )*?epyc-2s4n/); // (a long example wraps)
      expect(help, cmd).not.toMatch(/--host (test|examples)\//);
    }
  });
});

describe("qcvm doctor --save-host DIR", () => {
  it("writes exactly the files the probe reads, and --host DIR reads back this host", async () => {
    const dir = join(scratch(), "hosts", "this-host");
    const r = qcvm(REPO, "doctor", "--save-host", dir, "--format", "json");
    // Exit 2 only when QEMU cannot be probed; the tree is written either way.
    expect([0, 2], r.stderr).toContain(r.code);
    const written = filesUnder(dir);
    expect(r.stderr).toContain(`qcvm: saved this host (${written.length} files) to ${dir} (use with --host ${dir})`);

    // Probing the tree (as plan does) reads every file in it (a .keep stands for a directory the
    // probe tests).
    const fs = new RecordingFsRoot(dir);
    probeHost(dir, fs);
    readInterleaveWeights(dir, fs);
    const read = new Set(fs.seen.keys());
    for (const f of written) {
      const used = read.has(f) || (f.endsWith("/.keep") && read.has(f.slice(0, -"/.keep".length)));
      expect(used, `${f} is in the tree but the probe does not read it`).toBe(true);
    }
    expect(written).toContain("proc/sys/kernel/osrelease");
    expect(written).toContain("sys/devices/system/node/online");
    // Only the cgroup lines of /proc/mounts: the others name this machine's disks.
    for (const line of readFileSync(join(dir, "proc/mounts"), "utf8").trim().split("\n"))
      expect(line).toMatch(/^\S+ \S+ cgroup2? /);

    // The tree is this host: same kernel, nodes, cgroups, KVM modules, numactl, weighted interleave.
    const live = await probeHostAsync("/");
    const saved = probeHost(dir);
    const facts = (h: typeof live) => ({
      kernel: h.kernel,
      nodes: h.nodes.map((n) => ({ ...n, memFreeBytes: 0 })),
      kvm: h.kvm,
      sev: [h.sev, h.sevEs, h.sevSnp, h.tdx],
      cgroup: h.cgroup,
      numactl: h.numactl,
      weightedInterleave: h.weightedInterleave,
    });
    expect(facts(saved)).toEqual(facts(live));

    // And plans there as here.
    const kvm = join(REPO, "profiles/kvm-1node.yaml");
    const here = qcvm(REPO, "plan", kvm, "--format", "json");
    const there = qcvm(REPO, "plan", kvm, "--host", dir, "--format", "json");
    expect(there.code).toBe(here.code);
    expect(withoutFree(there.stdout)).toEqual(withoutFree(here.stdout));
  });

  it("refuses a directory that is not empty, and writes nothing into it", () => {
    const dir = scratch();
    mkdirSync(join(dir, "mine"));
    writeFileSync(join(dir, "mine", "notes.txt"), "keep me\n");
    const r = qcvm(REPO, "doctor", "--save-host", join(dir, "mine"));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--save-host ${join(dir, "mine")}: the directory is not empty; not writing into it`);
    expect(r.stdout).toBe(""); // refused before probing
    expect(filesUnder(join(dir, "mine"))).toEqual(["notes.txt"]);
  });
});

describe("qcvm init", () => {
  const SCHEMA = join(REPO, "schemas/profile.schema.json");
  const schemaLine = (text: string) => /^# yaml-language-server: \$schema=(.*)$/m.exec(text)?.[1];
  const fill = (cwd: string, file: string) => {
    const r = qcvm(cwd, "validate", file, "--fill", "--format", "json");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const p = (JSON.parse(r.stdout) as { files: { profile: Record<string, unknown> }[] }).files[0]!.profile;
    return { ...p, name: undefined, file: undefined };
  };

  it("writes a starter that validates, named after its file, its $schema the shipped file by absolute path", () => {
    const cwd = scratch();
    const r = qcvm(cwd, "init", "web1");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("qcvm: wrote web1.yaml; next: qcvm validate web1.yaml\n");
    const text = readFileSync(join(cwd, "web1.yaml"), "utf8");
    expect(text).toMatch(/^name: web1$/m);
    // Absolute, so it resolves wherever the profile is saved or moved to on this machine.
    expect(schemaLine(text)).toBe(SCHEMA);
    expect(qcvm(cwd, "validate", "web1.yaml", "--strict").code).toBe(0);
  });

  it("never overwrites: an existing file, or a symlink in its place, is refused and left as it was", () => {
    const cwd = scratch();
    writeFileSync(join(cwd, "mine.yaml"), "# my notes\n");
    const r = qcvm(cwd, "init", "mine.yaml");
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("qcvm: mine.yaml exists; qcvm init never overwrites a file\n");
    expect(readFileSync(join(cwd, "mine.yaml"), "utf8")).toBe("# my notes\n");
    symlinkSync(join(cwd, "elsewhere.yaml"), join(cwd, "link.yaml"));
    expect(qcvm(cwd, "init", "link.yaml").code).toBe(2);
    expect(existsSync(join(cwd, "elsewhere.yaml"))).toBe(false); // not written through the link
  });

  it("refuses a file name that is not a VM name, and a --from that names nothing", () => {
    const cwd = scratch();
    expect(qcvm(cwd, "init", "Web_1").stderr).toContain("`Web_1` is not a VM name");
    const r = qcvm(cwd, "init", "web1", "--from", "no-such-profile");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`not a profile qcvm ships (in ${join(REPO, "profiles")} or ${join(REPO, "examples")})`);
    expect(readdirSync(cwd)).toEqual([]);
  });

  const shipped = [
    ...readdirSync(join(REPO, "profiles")).map((f) => `profiles/${f}`),
    ...readdirSync(join(REPO, "examples")).map((f) => `examples/${f}`),
  ].filter((f) => f.endsWith(".yaml") && !f.includes("base-"));
  it.each(shipped)("--from %s by name: a copy that fills to the same profile, renamed", (rel) => {
    const cwd = scratch();
    const name = basename(rel, ".yaml");
    const r = qcvm(cwd, "init", "vms/copy", "--from", name);
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(join(cwd, "vms/copy.yaml"), "utf8");
    expect(text).toMatch(/^name: copy( #.*)?$/m);
    expect(schemaLine(text)).toBe(SCHEMA);
    expect(text).not.toMatch(/^extends:/m); // bases merged in: their relative paths would not resolve here
    expect(fill(cwd, "vms/copy.yaml")).toEqual(fill(REPO, rel));
  });
});
