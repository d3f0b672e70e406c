// `qcvm export --to libvirt` and `qcvm import`, for real: the built CLI exports every shipped
// profile and example (and fixtures that use every mapping), libvirt's own validator
// (virt-xml-validate, Debian's libvirt-clients, with libvirt's RelaxNG schema) accepts each domain,
// and importing the domain gives the same normalized profile back.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { XMLParser } from "fast-xml-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOSTS_DIR, REPO } from "./helpers/host.js";
import { readProfile } from "../src/pipeline/read-profile.js";
import { formatDiagnostic } from "../src/core/diagnostics.js";
import { qcvm } from "./helpers/launch.js";
import type { Ran } from "./helpers/launch.js";
import { profileToRaw } from "../src/export/raw.js";
import { normalizeProfile } from "../src/normalize/normalize.js";
import { importDomain } from "../src/import/libvirt.js";
import { QCVM_XMLNS } from "../src/export/libvirt.js";
import type { Profile } from "../src/core/types.js";

const FIXTURES = join(REPO, "test/fixtures/export");
export const EXPORTED = [
  ...readdirSync(join(REPO, "profiles")).map((f) => join("profiles", f)),
  ...readdirSync(join(REPO, "examples"))
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => join("examples", f)),
  ...readdirSync(FIXTURES)
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => join("test/fixtures/export", f)),
]
  .filter((f) => f.endsWith(".yaml"))
  .sort();
const HOST = join(HOSTS_DIR, "epyc-2s4n");

function has(cmd: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const VALIDATOR = has("virt-xml-validate") && has("xmllint");
const SCHEMA_VERSION = VALIDATOR ? execFileSync("virsh", ["--version"], { encoding: "utf8" }).trim() : "none";
// A newer libvirt (trixie-backports) in a root of its own, made by scripts/libvirt-trixie.sh.
const TRIXIE = join(process.env.QCVM_MATRIX_CACHE ?? "/var/cache/qcvm-matrix", "libvirt-trixie");
const TRIXIE_VERSION = existsSync(join(TRIXIE, "ready"))
  ? readFileSync(join(TRIXIE, "ready"), "utf8").trim()
  : undefined;
const NO_TRIXIE =
  TRIXIE_VERSION === undefined
    ? "(no trixie libvirt root: run scripts/libvirt-trixie.sh once, which fetches libvirt-clients from trixie-backports)"
    : process.getuid?.() !== 0
      ? "(needs root: chroot)"
      : undefined;

/** virt-xml-validate of the trixie root (its own schema), the file passed under the root's /var/tmp. */
function validateTrixie(xml: string, name: string): { ok: boolean; out: string } {
  const dir = join(TRIXIE, "root/var/tmp/qcvm-export-test");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.xml`), xml);
  const r = spawnSync(
    "unshare",
    [
      "--mount",
      "--propagation",
      "private",
      "--",
      "chroot",
      join(TRIXIE, "root"),
      "virt-xml-validate",
      `/var/tmp/qcvm-export-test/${name}.xml`,
      "domain",
    ],
    { encoding: "utf8" },
  );
  rmSync(join(dir, `${name}.xml`), { force: true });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

/** Comparable form: bigint as hex, no `file` (the import is read from another path). */
function comparable(p: Profile): unknown {
  const { file: _file, ...rest } = p;
  return JSON.parse(JSON.stringify(rest, (_k, v: unknown) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v)));
}

const tmp = mkdtempSync(join(tmpdir(), "qcvm-export-libvirt-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** libvirt 9.0's schema predates sev-snp and tdx: validate those domains without launchSecurity. */
function withoutLaunchSecurity(xml: string): string {
  return xml.replace(/\n\s*<launchSecurity[\s\S]*<\/launchSecurity>/, "");
}

function validate(xml: string, name: string): { ok: boolean; out: string } {
  const file = join(tmp, `${name}.xml`);
  writeFileSync(file, xml);
  const r = spawnSync("virt-xml-validate", [file, "domain"], { encoding: "utf8" });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

/** A profile by absolute path (or relative to the repository), normalized. */
async function loadProfile(file: string): Promise<Profile> {
  // The fixture names a kernel of another host: what is compared here is the profile, not the host.
  const loaded = await readProfile(file.startsWith("/") ? file : join(REPO, file), { hostCheck: false });
  if (!loaded.profile) throw new Error(`${file} is not valid:\n${loaded.errors.map(formatDiagnostic).join("\n")}`);
  return loaded.profile;
}

describe.each(EXPORTED)("export --to libvirt %s", (file) => {
  let exp: Ran;
  let guestMemfdType: boolean;
  beforeAll(async () => {
    exp = await qcvm(["export", join(REPO, file), "--to", "libvirt", "--host", HOST]);
    guestMemfdType = /<launchSecurity type="(sev-snp|tdx)"/.test(exp.stdout);
  });

  it("prints a domain on stdout and the libvirt version and losses on stderr", () => {
    expect(exp.stderr).not.toMatch(/internal error/);
    expect(exp.code).toBe(0);
    expect(exp.stdout).toMatch(/^<domain type="(kvm|qemu)"[^>]*>\n {2}<!-- Exported by qcvm/);
    expect(exp.stderr).toMatch(/needs libvirt >= \d+\.\d+\.\d+/);
    const floor = /<launchSecurity type="tdx"/.test(exp.stdout)
      ? "11.6.0"
      : /<launchSecurity type="sev-snp"/.test(exp.stdout)
        ? "10.5.0"
        : "9.0.0";
    expect(exp.stdout).toContain(`Needs libvirt >= ${floor}`);
    if (guestMemfdType) expect(exp.stderr).toMatch(/private \(guest_memfd\) memory: /);
  });

  it.skipIf(!VALIDATOR)(`virt-xml-validate (libvirt ${SCHEMA_VERSION} schema) accepts it`, () => {
    const name = file.replace(/[/.]/g, "_");
    if (!guestMemfdType) {
      const r = validate(exp.stdout, name);
      expect(r.out).toMatch(/validates/);
      expect(r.ok).toBe(true);
      return;
    }
    // 9.0 knows launchSecurity sev and s390-pv only: the whole domain fails, and the same domain
    // without that one element passes, so launchSecurity is the only thing 9.0 cannot check.
    const whole = validate(exp.stdout, name);
    if (whole.ok) {
      // A newer libvirt's schema (trixie's) checks the whole of it.
      expect(whole.out).toMatch(/validates/);
    } else {
      expect(whole.out).toMatch(/fails to validate/);
      const rest = validate(withoutLaunchSecurity(exp.stdout), `${name}-rest`);
      expect(rest.out).toMatch(/validates/);
    }
  });

  it.skipIf(NO_TRIXIE !== undefined)(
    `virt-xml-validate of libvirt ${TRIXIE_VERSION ?? "from trixie-backports"} accepts all of it, launchSecurity included ${NO_TRIXIE ?? ""}`,
    () => {
      const r = validateTrixie(exp.stdout, file.replace(/[/.]/g, "_"));
      expect(r.out).toMatch(/validates/);
      expect(r.ok).toBe(true);
    },
  );

  it("imports back to the same profile (export then import is the identity)", async () => {
    const xmlFile = join(tmp, `${file.replace(/[/.]/g, "_")}.xml`);
    writeFileSync(xmlFile, exp.stdout);
    const imp = await qcvm(["import", xmlFile]);
    expect(imp.stderr).not.toMatch(/internal error|not valid/);
    expect(imp.code).toBe(0);
    const yamlFile = join(tmp, `${file.replace(/[/.]/g, "_")}.yaml`);
    writeFileSync(yamlFile, imp.stdout);
    expect(comparable(await loadProfile(yamlFile))).toEqual(comparable(await loadProfile(join(REPO, file))));
  });
});

describe.skipIf(NO_TRIXIE !== undefined)(`libvirt ${TRIXIE_VERSION ?? ""} schema ${NO_TRIXIE ?? ""}`, () => {
  it("refuses a launchSecurity it does not define (the check is not vacuous)", async () => {
    const r = await qcvm(["export", join(REPO, "profiles/tdx-2node.yaml"), "--to", "libvirt", "--host", HOST]);
    const broken = r.stdout.replace('<launchSecurity type="tdx">', '<launchSecurity type="tdx-ng">');
    expect(broken).not.toBe(r.stdout);
    const v = validateTrixie(broken, "broken");
    expect(v.ok).toBe(false);
    expect(v.out).toMatch(/fails to validate/);
  });
});

describe("the profile <-> raw round trip export relies on", () => {
  it.each(EXPORTED)("normalize(profileToRaw(p)) is p: %s", async (file) => {
    const p = await loadProfile(join(REPO, file));
    expect(comparable(normalizeProfile(profileToRaw(p), p.file))).toEqual(comparable(p));
  });
});

describe("what export writes in libvirt's own elements", () => {
  const parse = (xml: string) =>
    new XMLParser({
      ignoreAttributes: false,
      attributeNamePrefix: "",
      parseAttributeValue: false,
      parseTagValue: false,
    }).parse(xml) as {
      domain: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test reads a parsed tree
    };

  it("snp-2node: one cell per guest node, restrictive memnodes (qcvm's plan pre-allocates private memory per node, vCPU cgroups after), vcpupin, sev-snp", async () => {
    const r = await qcvm(["export", join(REPO, "profiles/snp-2node.yaml"), "--to", "libvirt", "--host", HOST]);
    const d = parse(r.stdout).domain;
    expect(d.cpu.numa.cell.map((c: Record<string, string>) => [c.id, c.cpus, c.memory])).toEqual([
      ["0", "0-3", "4194304"],
      ["1", "4-7", "4194304"],
    ]);
    expect(d.numatune.memory).toEqual({ mode: "restrictive", nodeset: "0-1" });
    expect(d.numatune.memnode).toEqual([
      { cellid: "0", mode: "restrictive", nodeset: "0" },
      { cellid: "1", mode: "restrictive", nodeset: "1" },
    ]);
    expect(d.cputune.vcpupin).toHaveLength(8);
    expect(d.launchSecurity).toMatchObject({
      type: "sev-snp",
      cbitpos: "51",
      reducedPhysBits: "1",
      policy: "0x00030000",
    });
    expect(d.memoryBacking).toMatchObject({ source: { type: "memfd" }, access: { mode: "shared" } });
    expect(r.stderr).toMatch(/restrictive mode gives each vCPU thread its cell's cpuset.mems/);
    // The plan's grade is exact-at-launch (guest-memfd-prealloc): what libvirt loses is said once.
    expect(r.stderr).toContain(
      "qcvm pre-allocates each guest node's private memory on its host nodes before the guest starts (guest-memfd-prealloc, exact-at-launch); libvirt cannot",
    );
    expect(r.stderr).not.toContain("no pre-allocation of private memory per guest node");
    expect(r.stderr).not.toContain("placement.private");
  });

  it("restrictive for both per-node private mechanisms (vcpu-cpuset, guest-memfd-prealloc), strict for the others", async () => {
    const { RESTRICTIVE_MECHANISMS, usesRestrictive } = await import("../src/export/libvirt.js");
    expect([...RESTRICTIVE_MECHANISMS].sort()).toEqual(["guest-memfd-prealloc", "vcpu-cpuset"]);
    const on = await qcvm([
      "export",
      join(REPO, "profiles/snp-2node.yaml"),
      "--to",
      "libvirt",
      "--host",
      HOST,
      "--set",
      "placement.private=on-demand",
    ]);
    const d = parse(on.stdout).domain;
    expect(d.numatune.memory).toEqual({ mode: "restrictive", nodeset: "0-1" });
    expect(on.stderr).toContain("no pre-allocation of private memory per guest node");
    const vcpuCgroup = { name: "vcpu-node0", cpus: [0], mems: [0], tasks: { vcpus: [0] } };
    const plan = (mechanism: string, cgroups: unknown[] = [vcpuCgroup]) =>
      ({ guestMemfd: true, nodes: [{ private: { mechanism } }], launch: { cgroups } }) as unknown as Parameters<
        typeof usesRestrictive
      >[0];
    expect(usesRestrictive(plan("guest-memfd-prealloc"))).toBe(true);
    expect(usesRestrictive(plan("process-mempolicy"))).toBe(false);
    expect(usesRestrictive(plan("guest-memfd-mempolicy"))).toBe(false);
    // Pre-allocation where the host gives no cpuset controller: no vCPU cpusets in the plan, so
    // restrictive would place nothing; strict keeps the backend policy (scripts/test-hosts.sh cgroup2).
    expect(usesRestrictive(plan("guest-memfd-prealloc", []))).toBe(false);
    expect(usesRestrictive(plan("guest-memfd-prealloc", [{ ...vcpuCgroup, name: "", tasks: "process" }]))).toBe(false);
  });

  it("kvm-everything: escaping, disks, tap NIC, hugepages, weighted interleave kept in metadata and named as lost", async () => {
    const r = await qcvm(["export", join(FIXTURES, "kvm-everything.yaml"), "--to", "libvirt", "--host", HOST]);
    expect(r.stdout).toContain("disk&amp;1.qcow2");
    expect(r.stdout).toContain("&quot;quoted &amp; &lt;escaped&gt;&quot; 100%");
    const d = parse(r.stdout).domain;
    expect(d.devices.disk[1]).toMatchObject({ target: { bus: "scsi" }, readonly: "" });
    expect(d.devices.interface).toMatchObject({
      type: "ethernet",
      target: { dev: "tap-qcvm0" },
      model: { type: "e1000e" },
    });
    expect(d.memoryBacking.hugepages.page).toEqual({ size: "2048", unit: "KiB" });
    expect(d.memoryBacking.allocation).toEqual({ mode: "immediate", threads: "2" });
    expect(d.numatune.memnode[0]).toEqual({ cellid: "0", mode: "interleave", nodeset: "0-1" });
    expect(d["qemu:commandline"]["qemu:arg"]).toEqual([{ value: "-device" }, { value: "pvpanic" }]);
    expect(r.stderr).toMatch(/weighted interleave: libvirt has no such mode/);
    expect(r.stderr).toMatch(/kept in <metadata> for qcvm import only: .*numa\.nodes\.0\.policy/);
  });

  it("snp-blobs: blobs read from files go into launchSecurity as base64", async () => {
    const r = await qcvm(["export", join(FIXTURES, "snp-blobs.yaml"), "--to", "libvirt", "--host", HOST]);
    const ls = parse(r.stdout).domain.launchSecurity;
    expect(Buffer.from(String(ls.idAuth), "base64")).toHaveLength(4096);
    expect(ls).toMatchObject({ authorKey: "yes", vcek: "no", kernelHashes: "yes" });
  });
});

describe("import reports what it does not take", () => {
  it("a libvirt-made domain: unknown elements named by path, the profile still valid", async () => {
    const xml = `<domain type='kvm'>
  <name>web1</name>
  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
  <memory unit='MiB'>1024</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <clock offset='utc'/>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <video><model type='vga'/></video>
  </devices>
</domain>`;
    const r = importDomain(xml);
    expect([...r.notImported].sort()).toEqual([
      "/domain/clock/@offset",
      "/domain/devices/video/model/@type",
      "/domain/os/boot/@dev",
      "/domain/uuid",
    ]);
    expect(r.raw).toMatchObject({
      name: "web1",
      memory: { size: "1G", backend: "ram", share: false },
      cpu: { count: 2 },
    });
    const file = join(tmp, "web1.xml");
    writeFileSync(file, xml);
    const cli = await qcvm(["import", file]);
    expect(cli.code).toBe(0);
    expect(cli.stderr).toContain("qcvm:   /domain/devices/video/model/@type");
  });

  it("a qcvm:field path through __proto__ is refused by name, and no prototype changes", () => {
    const xml = `<domain type='kvm'>
  <name>p1</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>1</vcpu>
  <metadata><qcvm:profile xmlns:qcvm='${QCVM_XMLNS}'><qcvm:field path='__proto__.polluted'>true</qcvm:field></qcvm:profile></metadata>
</domain>`;
    expect(() => importDomain(xml)).toThrow(/qcvm:field.*"__proto__\.polluted" names no profile field/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("XML that is not a domain fails with exit 1 and says why", async () => {
    const file = join(tmp, "not-a-domain.xml");
    writeFileSync(file, "<network><name>x</name></network>");
    const r = await qcvm(["import", file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a libvirt domain: the root element is not <domain>/);
    expect(existsSync(file)).toBe(true);
  });
});

describe("README", () => {
  it("shows what the libvirt export of snp-2node prints, as it prints it", async () => {
    const readme = readFileSync(join(REPO, "README.md"), "utf8");
    const cmd = "qcvm export profiles/snp-2node.yaml --to libvirt --host epyc-2s4n > snp-2node.xml";
    const block = readme.slice(readme.indexOf(`$ ${cmd}\n`) + cmd.length + 3);
    const shown = block.slice(0, block.indexOf("\n$ ") + 1);
    const r = await qcvm(["export", "profiles/snp-2node.yaml", "--to", "libvirt", "--host", "epyc-2s4n"]);
    expect(shown).toBe(r.stderr);
  });
});
