// Every rule and schema message, exactly as a user sees it (file:line:col included), one fixture
// per outcome. A changed message is a reviewed diff here, never a regenerated one.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readProfile } from "../src/pipeline/read-profile.js";
import { formatDiagnostic } from "../src/core/diagnostics.js";
import { didYouMean, editDistance } from "../src/validate/schema.js";
import { RULES, runRules } from "../src/validate/rules.js";
import { loadProfileFile } from "../src/load/load.js";
import { normalizeProfile } from "../src/normalize/normalize.js";
import { generateValidator } from "../scripts/gen-validator.mjs";

const DIR = "test/fixtures/profiles";
// Hints name shipped files by absolute path, so they hold from any directory (issue 10 item 9).
const REFERENCE = join(import.meta.dirname, "..", "examples/reference.yaml");

async function messages(name: string, set?: string[]): Promise<string[]> {
  const r = await readProfile(`${DIR}/${name}`, { set });
  return [...r.errors, ...r.warnings].map(formatDiagnostic);
}

const EXPECTED: [string, string[]][] = [
  [
    "invalid-all-at-once.yaml",
    [
      "test/fixtures/profiles/invalid-all-at-once.yaml:6:3: cpu.modle: unknown field `modle` (did you mean `model`?)",
      'test/fixtures/profiles/invalid-all-at-once.yaml:10:14: memory.hugepages: the ram backend cannot use huge pages, got "2M" (use backend memfd with hugepages, or file on a hugetlbfs mount)',
      'test/fixtures/profiles/invalid-all-at-once.yaml:13:5: numa.nodes: vCPU 3 is in no node; every vCPU must be in exactly one node, got ["0-1","1-2"] (cpu.count is 4)',
      'test/fixtures/profiles/invalid-all-at-once.yaml:13:5: numa.nodes: node memory sums to 1536M but memory.size is 2G, got ["1G","512M"] (QEMU requires the nodes\' memory to add up to -m)',
      'test/fixtures/profiles/invalid-all-at-once.yaml:15:15: numa.nodes[0].policy: policy bind needs hostNodes, got "bind" (e.g. hostNodes: "0", or policy: default)',
      'test/fixtures/profiles/invalid-all-at-once.yaml:16:13: numa.nodes[1].cpus: vCPU 1 is already in numa.nodes[0], got "1-2" (each vCPU belongs to exactly one node)',
      'test/fixtures/profiles/invalid-all-at-once.yaml:20:9: confidential.type: TDX (tdx-guest) needs qemu.version >= 10.1, got "7.2" (set qemu.version: "10.1" or newer, and use a QEMU that new)',
      "test/fixtures/profiles/invalid-all-at-once.yaml:22:11: firmware.pflash: tdx cannot boot from pflash: guest_memfd has no read-only memory slots (use firmware.bios with an OVMF or TDVF build, or firmware.igvm)",
    ],
  ],
  [
    "invalid-api-version.yaml",
    ['test/fixtures/profiles/invalid-api-version.yaml:2:13: apiVersion: must be qcvm/v1, got "qcvm/v2"'],
  ],
  [
    "invalid-attributes-precision.yaml",
    [
      'test/fixtures/profiles/invalid-attributes-precision.yaml:8:15: confidential.attributes: is beyond 2^53 and was rounded when read as a number, got 9223372037123211000 (write it as a hex string ("0x8000000010000000") or as named flags)',
    ],
  ],
  [
    "invalid-base64-size.yaml",
    [
      "test/fixtures/profiles/invalid-base64-size.yaml:12:22: confidential.hostData.base64: must decode to 32 bytes, decodes to 33 (encode exactly 32 bytes: base64 -w0 FILE)",
    ],
  ],
  [
    "invalid-base64-text.yaml",
    [
      'test/fixtures/profiles/invalid-base64-text.yaml:12:22: confidential.hostData.base64: is not valid base64 (length must be a multiple of 4, padded with =), got "AAECAwQ"',
    ],
  ],
  [
    "invalid-blob-file.yaml",
    [
      'test/fixtures/profiles/invalid-blob-file.yaml:12:19: confidential.idBlock.file: must be 96 bytes, is 4096, got "blobs/id-auth.bin"',
      'test/fixtures/profiles/invalid-blob-file.yaml:13:18: confidential.idAuth.file: file does not exist, got "blobs/missing.bin" (paths are relative to the profile)',
    ],
  ],
  [
    "invalid-disk-missing.yaml",
    [
      'test/fixtures/profiles/invalid-disk-missing.yaml:5:11: disks[0].path: disk image does not exist (qcvm never creates disks), got "./no-such-disk.qcow2" (paths are relative to the profile; create the image first: qemu-img create -f qcow2 FILE SIZE)',
    ],
  ],
  [
    "invalid-written-paths.yaml",
    [
      'test/fixtures/profiles/invalid-written-paths.yaml:5:9: serial: is the profile itself too: QEMU would write the serial log over it, got "file:./invalid-written-paths.yaml" (give the serial log a file of its own)',
    ],
  ],
  [
    "invalid-distance-node.yaml",
    [
      "test/fixtures/profiles/invalid-distance-node.yaml:8:21: numa.distances[0].to: guest node 1 does not exist (numa.nodes has 1 node), got 1",
    ],
  ],
  [
    "invalid-distance-self.yaml",
    [
      "test/fixtures/profiles/invalid-distance-self.yaml:9:31: numa.distances[0].value: the distance from a node to itself must be 10, got 20",
      "test/fixtures/profiles/invalid-distance-self.yaml:10:31: numa.distances[1].value: distances between different nodes must be 11..255 (10 means local), got 10",
    ],
  ],
  [
    "invalid-distance-missing.yaml",
    [
      'test/fixtures/profiles/invalid-distance-missing.yaml:14:5: numa.distances: no distance for guest node pairs 0-2, 1-2: once any distance is given, QEMU needs one for every pair of nodes, got ["0-2","1-2"] (add e.g. {from: 0, to: 2, value: 20}, or remove numa.distances to let QEMU use its defaults)',
    ],
  ],
  [
    "invalid-duplicate-key.yaml",
    [
      "test/fixtures/profiles/invalid-duplicate-key.yaml:6:3: duplicate key `size` (each key may appear once in a mapping)",
    ],
  ],
  [
    "invalid-empty.yaml",
    [
      `test/fixtures/profiles/invalid-empty.yaml: profile is empty (start with \`apiVersion: qcvm/v1\`; \`qcvm init FILE\` writes a starter profile, and ${REFERENCE} shows every field)`,
    ],
  ],
  [
    "invalid-enum.yaml",
    [
      'test/fixtures/profiles/invalid-enum.yaml:6:11: memory.policy: must be one of default, bind, preferred, interleave, weighted-interleave, got "bnd" (did you mean `bind`?)',
    ],
  ],
  [
    "invalid-file-backend-path.yaml",
    [
      'test/fixtures/profiles/invalid-file-backend-path.yaml:5:12: memory.backend: the file backend needs memory.path, got "file" (e.g. path: /dev/hugepages)',
    ],
  ],
  [
    "invalid-file-or-base64.yaml",
    [
      "test/fixtures/profiles/invalid-file-or-base64.yaml:12:13: confidential.idBlock.bas64: unknown field `bas64` (did you mean `base64`?)",
    ],
  ],
  [
    "invalid-firmware-several.yaml",
    [
      'test/fixtures/profiles/invalid-firmware-several.yaml:6:11: firmware.pflash: conflicts with firmware.bios; give one firmware, got ["bios","pflash"]',
    ],
  ],
  [
    "invalid-host-nodes-default.yaml",
    [
      'test/fixtures/profiles/invalid-host-nodes-default.yaml:8:18: numa.nodes[0].hostNodes: must be empty with policy default, which sets no policy, got "0" (set policy: bind, preferred or interleave, or remove hostNodes)',
    ],
  ],
  [
    "invalid-host-nodes-required.yaml",
    [
      'test/fixtures/profiles/invalid-host-nodes-required.yaml:5:11: memory.policy: policy interleave needs hostNodes, got "interleave" (e.g. hostNodes: "0", or policy: default)',
    ],
  ],
  [
    "invalid-hugepage-multiple.yaml",
    [
      'test/fixtures/profiles/invalid-hugepage-multiple.yaml:10:15: numa.nodes[0].memory: must be a multiple of the 1G huge page size, got "1536M"',
      'test/fixtures/profiles/invalid-hugepage-multiple.yaml:12:15: numa.nodes[1].memory: must be a multiple of the 1G huge page size, got "1536M"',
    ],
  ],
  [
    "invalid-hugepages-ram.yaml",
    [
      'test/fixtures/profiles/invalid-hugepages-ram.yaml:6:14: memory.hugepages: the ram backend cannot use huge pages, got "2M" (use backend memfd with hugepages, or file on a hugetlbfs mount)',
    ],
  ],
  [
    "invalid-igvm-old-qemu.yaml",
    [
      'test/fixtures/profiles/invalid-igvm-old-qemu.yaml:11:9: firmware.igvm: IGVM firmware (-machine igvm-cfg) needs qemu.version >= 10.1, got "9.1" (set qemu.version: "10.1" or newer, and use a QEMU that new)',
    ],
  ],
  [
    "invalid-kernel-hashes-old-qemu.yaml",
    [
      'test/fixtures/profiles/invalid-kernel-hashes-old-qemu.yaml:10:17: confidential.kernelHashes: kernelHashes needs qemu.version >= 6.2, got "6.1" (set qemu.version: "6.2" or newer, and use a QEMU that new)',
    ],
  ],
  [
    "invalid-legacy-vm-type-old-qemu.yaml",
    [
      'test/fixtures/profiles/invalid-legacy-vm-type-old-qemu.yaml:10:17: confidential.legacyVmType: legacyVmType needs qemu.version >= 9.1, got "9.0" (set qemu.version: "9.1" or newer, and use a QEMU that new)',
    ],
  ],
  [
    "invalid-missing-api-version.yaml",
    [
      "test/fixtures/profiles/invalid-missing-api-version.yaml:1:1: apiVersion: missing required field `apiVersion` (add `apiVersion: qcvm/v1`)",
    ],
  ],
  [
    "invalid-Name-From-File.yaml",
    [
      "test/fixtures/profiles/invalid-Name-From-File.yaml:3:1: name: is missing, and the file name is not a valid VM name (add name: with lowercase letters, digits and '-', or rename the file)",
    ],
  ],
  [
    "invalid-network-ifname.yaml",
    [
      'test/fixtures/profiles/invalid-network-ifname.yaml:6:11: network.ifname: only tap networks have an ifname, got "user"',
    ],
  ],
  [
    "invalid-name.yaml",
    [
      "test/fixtures/profiles/invalid-name.yaml:3:7: name: must be lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters, got \"My_VM\" (e.g. snp-2node)",
    ],
  ],
  [
    "invalid-node-list.yaml",
    [
      'test/fixtures/profiles/invalid-node-list.yaml:5:14: memory.hostNodes: must be a list of ids: "0-3,6" or [0, 1], got "0..3"',
    ],
  ],
  [
    "invalid-not-a-map.yaml",
    [
      `test/fixtures/profiles/invalid-not-a-map.yaml:2:1: profile must be a YAML mapping of fields, got [{"apiVersion":"qcvm/v1"}] (start with \`apiVersion: qcvm/v1\`; \`qcvm init FILE\` writes a starter profile, and ${REFERENCE} shows every field)`,
    ],
  ],
  [
    "invalid-numa-cpus-missing.yaml",
    [
      'test/fixtures/profiles/invalid-numa-cpus-missing.yaml:10:5: numa.nodes: vCPUs 2-3 are in no node; every vCPU must be in exactly one node, got ["0","1"] (cpu.count is 4)',
    ],
  ],
  [
    "invalid-numa-cpus-overlap.yaml",
    [
      'test/fixtures/profiles/invalid-numa-cpus-overlap.yaml:12:13: numa.nodes[1].cpus: vCPU 2 is already in numa.nodes[0], got "2-3" (each vCPU belongs to exactly one node)',
    ],
  ],
  [
    "invalid-numa-cpus-range.yaml",
    [
      'test/fixtures/profiles/invalid-numa-cpus-range.yaml:10:13: numa.nodes[1].cpus: vCPU 2 does not exist (the guest has 2 vCPUs, 0-1), got "1-2" (raise cpu.count or fix the list)',
    ],
  ],
  [
    "invalid-numa-memory-sum.yaml",
    [
      'test/fixtures/profiles/invalid-numa-memory-sum.yaml:8:5: numa.nodes: node memory sums to 1536M but memory.size is 2G, got ["1G","512M"] (QEMU requires the nodes\' memory to add up to -m)',
    ],
  ],
  [
    "invalid-policy-flag.yaml",
    [
      'test/fixtures/profiles/invalid-policy-flag.yaml:8:19: confidential.policy[1]: is not a sev policy flag; sev flags: nodbg, noks, es, nosend, domain, sev, got "smt"',
    ],
  ],
  [
    "invalid-prealloc-reserve.yaml",
    [
      "test/fixtures/profiles/invalid-prealloc-reserve.yaml:7:12: memory.reserve: reserve: false cannot go with prealloc: true; QEMU refuses 'prealloc=on' with 'reserve=off', got false (drop reserve (preallocated memory is reserved anyway), or turn prealloc off)",
    ],
  ],
  [
    "invalid-property-none.yaml",
    [
      "test/fixtures/profiles/invalid-property-none.yaml:5:12: confidential.cbitpos: is a sev/sev-es/sev-snp property; confidential.type is none (remove cbitpos)",
    ],
  ],
  [
    "invalid-property-type.yaml",
    [
      "test/fixtures/profiles/invalid-property-type.yaml:8:12: confidential.idBlock: is a sev-snp property; confidential.type is sev (set type: sev-snp, or remove idBlock)",
    ],
  ],
  [
    "invalid-sept-ve-conflict.yaml",
    [
      "test/fixtures/profiles/invalid-sept-ve-conflict.yaml:9:18: confidential.septVeDisable: contradicts attributes bit 28 (sept-ve-disable), which is set, got false (give one of them)",
    ],
  ],
  [
    "invalid-sev-es-irqchip.yaml",
    [
      'test/fixtures/profiles/invalid-sev-es-irqchip.yaml:5:18: machine.kernelIrqchip: sev-es needs the in-kernel irqchip, got "off" (use on or split)',
    ],
  ],
  [
    "invalid-sev-es-policy.yaml",
    [
      "test/fixtures/profiles/invalid-sev-es-policy.yaml:8:11: confidential.policy: sev-es needs policy bit 0x4 (es), got 1 (use 0x5, or leave policy out: the sev-es default is 0x5)",
    ],
  ],
  [
    "invalid-sev-es-smm.yaml",
    [
      'test/fixtures/profiles/invalid-sev-es-smm.yaml:5:8: machine.smm: sev-es guests cannot have SMM, got "on" (use off, or leave it out)',
    ],
  ],
  [
    "invalid-sev-missing-cbitpos.yaml",
    [
      "test/fixtures/profiles/invalid-sev-missing-cbitpos.yaml:4:1: confidential.cbitpos: is required for sev (AMD EPYC: cbitpos: 51, from CPUID 0x8000001F EBX[5:0])",
      "test/fixtures/profiles/invalid-sev-missing-cbitpos.yaml:4:1: confidential.reducedPhysBits: is required for sev (AMD EPYC: reducedPhysBits: 1, from CPUID 0x8000001F EBX[11:6])",
    ],
  ],
  [
    "invalid-sev-policy-es.yaml",
    [
      'test/fixtures/profiles/invalid-sev-policy-es.yaml:8:11: confidential.policy: policy bit 0x4 (es) makes this an SEV-ES guest, got ["nodbg","es"] (use type: sev-es)',
    ],
  ],
  [
    "invalid-size.yaml",
    [
      'test/fixtures/profiles/invalid-size.yaml:5:9: memory.size: must be a size: a number of bytes, or a number with K, M, G or T (KiB, MiB, GiB, TiB), got "8GB" (e.g. 512M, 64G, 1T)',
    ],
  ],
  [
    "invalid-snp-old-qemu.yaml",
    [
      'test/fixtures/profiles/invalid-snp-old-qemu.yaml:7:9: confidential.type: SEV-SNP (sev-snp-guest) needs qemu.version >= 9.1, got "8.2" (set qemu.version: "9.1" or newer, and use a QEMU that new)',
    ],
  ],
  [
    "invalid-snp-pflash.yaml",
    [
      "test/fixtures/profiles/invalid-snp-pflash.yaml:11:11: firmware.pflash: sev-snp cannot boot from pflash: guest_memfd has no read-only memory slots (use firmware.bios with an OVMF or TDVF build, or firmware.igvm)",
    ],
  ],
  [
    "invalid-snp-no-firmware.yaml",
    [
      "test/fixtures/profiles/invalid-snp-no-firmware.yaml:7:9: confidential.type: SEV-SNP guests need firmware built for them; without it QEMU loads SeaBIOS, which cannot start a sev-snp guest (set firmware.bios to an OVMF build with SEV-SNP support (e.g. /usr/share/ovmf/OVMF.amdsev.fd), or firmware.igvm)",
    ],
  ],
  [
    "invalid-tdx-no-firmware.yaml",
    [
      "test/fixtures/profiles/invalid-tdx-no-firmware.yaml:8:11: firmware: TDX guests need firmware built for them; without it QEMU loads SeaBIOS, which cannot start a tdx guest (set firmware.bios to a TDVF build (an OVMF for TDX, e.g. /usr/share/ovmf/OVMF.inteltdx.fd))",
    ],
  ],
  [
    "invalid-snp-policy-reserved.yaml",
    [
      "test/fixtures/profiles/invalid-snp-policy-reserved.yaml:10:11: confidential.policy: SEV-SNP policy bit 17 (reserved) must be 1, got 65536 (use 0x30000)",
    ],
  ],
  [
    "invalid-socket.yaml",
    [
      "test/fixtures/profiles/invalid-socket.yaml:8:3: confidential.quoteGenerationSocket.port: missing required field `port`",
    ],
  ],
  [
    "invalid-tcg-confidential.yaml",
    [
      'test/fixtures/profiles/invalid-tcg-confidential.yaml:5:10: machine.accel: confidential guests (sev) need KVM, got "tcg" (use accel kvm on a host with the hardware, or confidential.type none)',
    ],
  ],
  [
    "invalid-tdx-attributes.yaml",
    [
      'test/fixtures/profiles/invalid-tdx-attributes.yaml:8:15: confidential.attributes: sets TD attribute bits QEMU refuses (0x1: debug); QEMU accepts only sept-ve-disable (bit 28), pks (bit 30) and perfmon (bit 63), got ["debug","sept-ve-disable"] (remove debug: upstream QEMU cannot launch a debug TD)',
    ],
  ],
  [
    "invalid-tdx-cpu-model.yaml",
    [
      'test/fixtures/profiles/invalid-tdx-cpu-model.yaml:7:10: cpu.model: TDX guests need cpu.model host (or max): QEMU refuses a named CPU model for a TD, got "SapphireRapids" (use host; the TDX module decides the guest\'s CPUID)',
    ],
  ],
  [
    "invalid-tdx-irqchip.yaml",
    [
      'test/fixtures/profiles/invalid-tdx-irqchip.yaml:7:18: machine.kernelIrqchip: TDX needs kernelIrqchip split, got "on" (use split, or leave it out)',
    ],
  ],
  [
    "invalid-tdx-old-qemu.yaml",
    [
      'test/fixtures/profiles/invalid-tdx-old-qemu.yaml:7:9: confidential.type: TDX (tdx-guest) needs qemu.version >= 10.1, got "9.2" (set qemu.version: "10.1" or newer, and use a QEMU that new)',
    ],
  ],
  [
    "invalid-tdx-pflash.yaml",
    [
      "test/fixtures/profiles/invalid-tdx-pflash.yaml:10:5: firmware.pflash: tdx cannot boot from pflash: guest_memfd has no read-only memory slots (use firmware.bios with an OVMF or TDVF build, or firmware.igvm)",
    ],
  ],
  [
    "invalid-tdx-pic.yaml",
    [
      'test/fixtures/profiles/invalid-tdx-pic.yaml:7:8: machine.pic: TDX guests cannot have the legacy PIC, got "on" (use off, or leave it out)',
    ],
  ],
  [
    "invalid-tdx-smm.yaml",
    [
      'test/fixtures/profiles/invalid-tdx-smm.yaml:7:8: machine.smm: TDX guests cannot have SMM, got "on" (use off, or leave it out)',
    ],
  ],
  [
    "invalid-topology.yaml",
    [
      "test/fixtures/profiles/invalid-topology.yaml:5:10: cpu.count: count must equal sockets * dies * cores * threads (2 * 1 * 2 * 1 = 4), got 6 (give count alone, or the topology alone, or make them agree)",
    ],
  ],
  [
    "invalid-type.yaml",
    ['test/fixtures/profiles/invalid-type.yaml:5:10: cpu.count: must be a whole number, got "two"'],
  ],
  [
    "invalid-unknown-field-far.yaml",
    [
      "test/fixtures/profiles/invalid-unknown-field-far.yaml:5:3: network.bridge: unknown field `bridge` (known fields: type, ifname, mac, model)",
    ],
  ],
  [
    "invalid-unknown-field.yaml",
    [
      "test/fixtures/profiles/invalid-unknown-field.yaml:5:3: memory.sizee: unknown field `sizee` (did you mean `size`?)",
    ],
  ],
  [
    "invalid-version-float.yaml",
    ["test/fixtures/profiles/invalid-version-float.yaml:5:12: qemu.version: must be a string, got 9.1 (quote it)"],
  ],
  [
    "invalid-weights-nodes.yaml",
    [
      'test/fixtures/profiles/invalid-weights-nodes.yaml:7:12: memory.weights: weights name host node 2, which is not in hostNodes, got {"0":2,"2":1} (hostNodes is 0-1)',
    ],
  ],
  [
    "invalid-weights-policy.yaml",
    [
      'test/fixtures/profiles/invalid-weights-policy.yaml:7:12: memory.weights: weights need policy weighted-interleave, got "interleave"',
    ],
  ],
  [
    "invalid-yaml-syntax.yaml",
    [
      "test/fixtures/profiles/invalid-yaml-syntax.yaml:6:1: bad indentation: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ],
  ],
  [
    "warning-extra-args.yaml",
    [
      'test/fixtures/profiles/warning-extra-args.yaml:4:13: warning: extraArgs[0]: qcvm already renders -m from memory.size; the two will conflict, got "-m" (set memory.size instead)',
      // A reused rendered id is an error now: invalid-extra-args-id.yaml.
    ],
  ],
  [
    "warning-host-tcg.yaml",
    [
      'test/fixtures/profiles/warning-host-tcg.yaml:7:10: warning: cpu.model: host is a KVM-only CPU model; with accel tcg QEMU refuses it, got "host" (use max, or leave cpu.model out: tcg defaults to max)',
    ],
  ],
  [
    "warning-prealloc-snp.yaml",
    [
      "test/fixtures/profiles/warning-prealloc-snp.yaml:13:13: warning: memory.prealloc: with sev-snp the guest's private memory is in guest_memfd; prealloc pins a second, shared copy of all 1G besides it (double the footprint), got true (leave prealloc off for sev-snp and tdx)",
    ],
  ],
  // Hostile input (issue 9): one fixture per class, exact messages.
  [
    "invalid-proto-key.yaml",
    [
      "test/fixtures/profiles/invalid-proto-key.yaml:4:1: __proto__: `__proto__` is not allowed as a key (qcvm refuses __proto__, constructor and prototype at any depth) (remove it: no profile field has that name)",
      "test/fixtures/profiles/invalid-proto-key.yaml:7:3: memory.constructor: `constructor` is not allowed as a key (qcvm refuses __proto__, constructor and prototype at any depth) (remove it: no profile field has that name)",
      "test/fixtures/profiles/invalid-proto-key.yaml:8:7: cpu.prototype: `prototype` is not allowed as a key (qcvm refuses __proto__, constructor and prototype at any depth) (remove it: no profile field has that name)",
    ],
  ],
  [
    "invalid-proto-base.yaml",
    [
      "test/fixtures/profiles/extends/bases/proto.yaml:2:1: __proto__: `__proto__` is not allowed as a key (qcvm refuses __proto__, constructor and prototype at any depth) (remove it: no profile field has that name)",
    ],
  ],
  [
    "invalid-extends-outside.yaml",
    [
      "test/fixtures/profiles/invalid-extends-outside.yaml:4:10: extends: base profile /etc/passwd is outside the repository (root: .) (bases must be in the top profile's repository (its git root, else its directory); --root DIR widens that)",
    ],
  ],
  [
    "invalid-extends-not-profile.yaml",
    [
      "test/fixtures/profiles/invalid-extends-not-profile.yaml:4:10: extends: base profile test/fixtures/profiles/extends/not-a-profile.txt is not a qcvm profile: no `apiVersion: qcvm/v1` line (extends: names qcvm profiles (apiVersion: qcvm/v1); the file's content is not shown)",
    ],
  ],
  [
    "invalid-alias-values.yaml",
    [
      "test/fixtures/profiles/invalid-alias-values.yaml:2:1: holds more than 50000 values (aliases counted each time they are used) (a profile has a few hundred values; write them out, or share them through extends: base profiles)",
    ],
  ],
  [
    "invalid-too-many-items.yaml",
    [
      "test/fixtures/profiles/invalid-too-many-items.yaml: has over 20000 lines and list or map items; profiles are limited to 20000 (a profile has a few hundred; is this the right file?)",
    ],
  ],
  [
    "invalid-nesting.yaml",
    [
      "test/fixtures/profiles/invalid-nesting.yaml:4:1: k1: nested more than 64 levels deep (a profile nests a few levels; is this the right file?)",
    ],
  ],
  [
    "invalid-many-errors.yaml",
    [
      "test/fixtures/profiles/invalid-many-errors.yaml:5:3: memory.unknown1: unknown field `unknown1` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:6:3: memory.unknown2: unknown field `unknown2` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:7:3: memory.unknown3: unknown field `unknown3` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:8:3: memory.unknown4: unknown field `unknown4` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:9:3: memory.unknown5: unknown field `unknown5` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:10:3: memory.unknown6: unknown field `unknown6` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:11:3: memory.unknown7: unknown field `unknown7` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:12:3: memory.unknown8: unknown field `unknown8` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:13:3: memory.unknown9: unknown field `unknown9` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:14:3: memory.unknown10: unknown field `unknown10` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:15:3: memory.unknown11: unknown field `unknown11` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:16:3: memory.unknown12: unknown field `unknown12` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:17:3: memory.unknown13: unknown field `unknown13` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:18:3: memory.unknown14: unknown field `unknown14` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:19:3: memory.unknown15: unknown field `unknown15` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:20:3: memory.unknown16: unknown field `unknown16` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:21:3: memory.unknown17: unknown field `unknown17` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:22:3: memory.unknown18: unknown field `unknown18` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:23:3: memory.unknown19: unknown field `unknown19` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:24:3: memory.unknown20: unknown field `unknown20` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:25:3: memory.unknown21: unknown field `unknown21` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:26:3: memory.unknown22: unknown field `unknown22` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:27:3: memory.unknown23: unknown field `unknown23` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:28:3: memory.unknown24: unknown field `unknown24` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:29:3: memory.unknown25: unknown field `unknown25` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:30:3: memory.unknown26: unknown field `unknown26` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:31:3: memory.unknown27: unknown field `unknown27` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:32:3: memory.unknown28: unknown field `unknown28` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:33:3: memory.unknown29: unknown field `unknown29` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:34:3: memory.unknown30: unknown field `unknown30` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:35:3: memory.unknown31: unknown field `unknown31` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:36:3: memory.unknown32: unknown field `unknown32` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:37:3: memory.unknown33: unknown field `unknown33` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:38:3: memory.unknown34: unknown field `unknown34` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:39:3: memory.unknown35: unknown field `unknown35` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:40:3: memory.unknown36: unknown field `unknown36` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:41:3: memory.unknown37: unknown field `unknown37` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:42:3: memory.unknown38: unknown field `unknown38` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:43:3: memory.unknown39: unknown field `unknown39` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:44:3: memory.unknown40: unknown field `unknown40` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:45:3: memory.unknown41: unknown field `unknown41` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:46:3: memory.unknown42: unknown field `unknown42` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:47:3: memory.unknown43: unknown field `unknown43` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:48:3: memory.unknown44: unknown field `unknown44` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:49:3: memory.unknown45: unknown field `unknown45` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:50:3: memory.unknown46: unknown field `unknown46` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:51:3: memory.unknown47: unknown field `unknown47` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:52:3: memory.unknown48: unknown field `unknown48` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:53:3: memory.unknown49: unknown field `unknown49` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml:54:3: memory.unknown50: unknown field `unknown50` (known fields: size, backend, path, share, hugepages, prealloc, preallocThreads, reserve, hostNodes, policy, weights)",
      "test/fixtures/profiles/invalid-many-errors.yaml: and 10 more errors (only the first 50 are shown) (fix these and validate again)",
    ],
  ],
  [
    "invalid-size-zero.yaml",
    [
      "test/fixtures/profiles/invalid-size-zero.yaml:5:9: memory.size: must be more than 0 (QEMU would silently use its default for -m 0), got 0",
    ],
  ],
  [
    "invalid-size-huge.yaml",
    [
      'test/fixtures/profiles/invalid-size-huge.yaml:6:9: memory.size: is more than 4096T, the most an x86-64 guest can address, got "99999999T" (is the unit right?)',
      "test/fixtures/profiles/invalid-size-huge.yaml:9:25: numa.nodes[0].memory: is beyond 2^53 and cannot be read exactly, got 9007199254740992 (write it with a unit: e.g. 64G)",
    ],
  ],
  [
    "invalid-size-unaligned.yaml",
    [
      "test/fixtures/profiles/invalid-size-unaligned.yaml:6:9: memory.size: must be a multiple of 8K: QEMU rounds guest memory up to 8 KiB, and the NUMA nodes no longer add up, got 1000000 (nearest valid sizes: 976K or 984K)",
      "test/fixtures/profiles/invalid-size-unaligned.yaml:9:25: numa.nodes[0].memory: must be a multiple of 8K: QEMU rounds guest memory up to 8 KiB, and the NUMA nodes no longer add up, got 500000 (nearest valid sizes: 488K or 496K)",
      "test/fixtures/profiles/invalid-size-unaligned.yaml:10:25: numa.nodes[1].memory: must be a multiple of 8K: QEMU rounds guest memory up to 8 KiB, and the NUMA nodes no longer add up, got 500000 (nearest valid sizes: 488K or 496K)",
    ],
  ],
  [
    "invalid-tag.yaml",
    [
      "test/fixtures/profiles/invalid-tag.yaml:3:12: tag !foo is not allowed: profiles use YAML's core schema (remove the tag; only !!str, !!int, !!float, !!bool, !!null, !!map and !!seq are accepted)",
      "test/fixtures/profiles/invalid-tag.yaml:5:25: tag !!js/function is not allowed: profiles use YAML's core schema (remove the tag; only !!str, !!int, !!float, !!bool, !!null, !!map and !!seq are accepted)",
      "test/fixtures/profiles/invalid-tag.yaml:6:18: tag !!set is not allowed: profiles use YAML's core schema (remove the tag; only !!str, !!int, !!float, !!bool, !!null, !!map and !!seq are accepted)",
    ],
  ],
  [
    "invalid-flow-dash.yaml",
    [
      "test/fixtures/profiles/invalid-flow-dash.yaml:4:13: implicit keys must be on one line: Implicit keys of flow sequence pairs need to be on a single line",
      "test/fixtures/profiles/invalid-flow-dash.yaml:4:13: YAML syntax error: Block collections are not allowed within flow collections",
      "test/fixtures/profiles/invalid-flow-dash.yaml:4:15: missing character: Missing , or : between flow sequence items",
    ],
  ],
  [
    "invalid-unicode-space.yaml",
    ['test/fixtures/profiles/invalid-unicode-space.yaml:5:10: cpu.count: must be a whole number, got "2\\u00a0"'],
  ],
  [
    "invalid-path-control.yaml",
    [
      'test/fixtures/profiles/invalid-path-control.yaml:5:11: boot.kernel: contains a control character (a newline, tab or NUL): no file name QEMU can take, got "/boot/vmlinuz\\nmalicious" (remove it; file names in profiles are plain text)',
      'test/fixtures/profiles/invalid-path-control.yaml:7:12: disks[0].path: contains a control character (a newline, tab or NUL): no file name QEMU can take, got "disk\\u0000.img" (remove it; file names in profiles are plain text)',
    ],
  ],
  [
    "invalid-extra-args-control.yaml",
    [
      'test/fixtures/profiles/invalid-extra-args-control.yaml:5:5: extraArgs[0]: -monitor adds a monitor, a way into the VM from outside qcvm, got "-monitor stdio" (remove it, or set qemu.allowControlArgs: true to allow it (launch then warns))',
      'test/fixtures/profiles/invalid-extra-args-control.yaml:7:5: extraArgs[2]: -chardev adds a socket character device, a way into the VM from outside qcvm, got "-chardev socket,id=m0,path=/tmp/m0,server=on,wait=off" (remove it, or set qemu.allowControlArgs: true to allow it (launch then warns))',
      'test/fixtures/profiles/invalid-extra-args-control.yaml:9:5: extraArgs[4]: -mon adds a monitor, a way into the VM from outside qcvm, got "-mon chardev=m0" (remove it, or set qemu.allowControlArgs: true to allow it (launch then warns))',
      'test/fixtures/profiles/invalid-extra-args-control.yaml:11:5: extraArgs[6]: -gdb adds a gdb stub, a way into the VM from outside qcvm, got "--gdb tcp::1234" (remove it, or set qemu.allowControlArgs: true to allow it (launch then warns))',
      'test/fixtures/profiles/invalid-extra-args-control.yaml:13:5: extraArgs[8]: -incoming adds an incoming migration, a way into the VM from outside qcvm, got "-incoming tcp:0:4444" (remove it, or set qemu.allowControlArgs: true to allow it (launch then warns))',
      'test/fixtures/profiles/invalid-extra-args-control.yaml:15:5: extraArgs[10]: -vnc adds a VNC server, a way into the VM from outside qcvm, got "-vnc :0" (remove it, or set qemu.allowControlArgs: true to allow it (launch then warns))',
      'test/fixtures/profiles/invalid-extra-args-control.yaml:17:5: extraArgs[12]: -serial adds a tcp serial port, a way into the VM from outside qcvm, got "-serial tcp::4445,server=on" (remove it, or set qemu.allowControlArgs: true to allow it (launch then warns))',
    ],
  ],
  [
    "invalid-extra-args-id.yaml",
    [
      'test/fixtures/profiles/invalid-extra-args-id.yaml:4:22: extraArgs[1]: object id mem0 may clash with an object qcvm creates, got "memory-backend-ram,id=mem0,size=1G" (pick another id)',
      'test/fixtures/profiles/invalid-extra-args-id.yaml:4:69: extraArgs[3]: id net0 is one qcvm renders; QEMU refuses two with the same id, got "user,id=net0" (pick another id)',
    ],
  ],
  [
    "warning-extra-args-allowed.yaml",
    [
      'test/fixtures/profiles/warning-extra-args-allowed.yaml:6:13: warning: extraArgs[0]: qcvm already renders -qmp from qmp; the two will conflict, got "-qmp" (set qmp instead)',
      'test/fixtures/profiles/warning-extra-args-allowed.yaml:6:13: warning: extraArgs[0]: -qmp adds a QMP monitor, a way into the VM from outside qcvm; allowed by qemu.allowControlArgs, got "-qmp unix:/run/vm/qmp.sock,server=on,wait=off"',
    ],
  ],
];

describe("invalid and warning fixtures", () => {
  it.each(EXPECTED)("%s", async (name, expected) => {
    expect(await messages(name)).toEqual(expected);
  });

  it("covers every invalid-* and warning-* fixture in the directory", () => {
    const onDisk = readdirSync(DIR)
      .filter((f) => /^(invalid|warning)-.*\.yaml$/.test(f))
      .sort();
    expect(EXPECTED.map(([f]) => f).sort()).toEqual(onDisk);
  });

  it("keeps warnings apart from errors", async () => {
    const r = await readProfile(`${DIR}/warning-prealloc-snp.yaml`);
    expect(r.errors).toEqual([]);
    expect(r.warnings.map((w) => [w.severity, w.code])).toEqual([["warning", "memory.prealloc-guest-memfd"]]);
    expect(r.profile).toBeDefined();
  });

  it("gives every diagnostic a code, path, message and position", async () => {
    for (const [name] of EXPECTED) {
      const r = await readProfile(`${DIR}/${name}`);
      for (const d of [...r.errors, ...r.warnings]) {
        expect(d.code, `${name}: ${d.message}`).toMatch(/^[a-z0-9-]+\.[a-z0-9-]+$/);
        // An error in a base is reported in the base (a fixture's own base, under extends/).
        if (name === "invalid-proto-base.yaml") expect(d.file, name).toBe(`${DIR}/extends/bases/proto.yaml`);
        else expect(d.file, name).toBe(`${DIR}/${name}`);
        // No position exists for these: the file is empty, or refused before it is parsed (or the
        // line says "and N more", about the file).
        const whole = ["invalid-empty.yaml", "invalid-too-many-items.yaml"].includes(name) || d.code === "report.more";
        if (!whole) expect(d.line, `${name}: ${d.message}`).toBeGreaterThan(0);
      }
    }
  });
});

describe("valid fixtures", () => {
  const valid = readdirSync(DIR).filter((f) => f.startsWith("valid-"));
  it.each(valid)("%s has no errors and no warnings", async (name) => {
    const r = await readProfile(`${DIR}/${name}`);
    expect([...r.errors, ...r.warnings].map(formatDiagnostic)).toEqual([]);
    expect(r.profile?.apiVersion).toBe("qcvm/v1");
  });
});

describe("rules", () => {
  it("each report something for at least one fixture (no dead rules)", async () => {
    const fixtures = readdirSync(DIR).filter((f) => /^(invalid|warning)-.*\.yaml$/.test(f));
    const loaded = await Promise.all(fixtures.map(async (f) => ({ f, l: await loadProfileFile(`${DIR}/${f}`) })));
    const silent = RULES.filter((rule) =>
      loaded.every(({ f, l }) => {
        if (!l.raw) return true;
        const r = runRules(l.raw, normalizeProfile(l.raw, `${DIR}/${f}`), l.locate, [rule]);
        return r.errors.length + r.warnings.length === 0;
      }),
    );
    expect(silent.map((r) => r.name)).toEqual([]);
  });

  it("report an unreadable file as a diagnostic, not an exception", async () => {
    const r = await readProfile(`${DIR}/no-such-profile.yaml`);
    expect(r.errors.map(formatDiagnostic)).toEqual([
      `${DIR}/no-such-profile.yaml: cannot read file: no such file (check the path: it is relative to the current directory)`,
    ]);
    expect(r.profile).toBeUndefined();
  });

  it("report a directory given as a profile", async () => {
    const r = await readProfile(DIR);
    expect(r.errors.map((e) => e.code)).toEqual(["load.read"]);
  });
});

describe("did you mean", () => {
  it.each([
    ["sizee", ["size", "backend"], "size"],
    ["modle", ["model", "count"], "model"],
    ["hostnodes", ["hostNodes", "policy"], "hostNodes"],
    ["bnd", ["bind", "default", "preferred"], "bind"],
    ["bridge", ["type", "ifname", "mac", "model"], undefined],
  ])("%s -> %s", (word, candidates, expected) => {
    expect(didYouMean(word, candidates)).toBe(expected);
  });

  it("counts a swap of neighbours as one edit", () => {
    expect(editDistance("modle", "model")).toBe(1);
    expect(editDistance("size", "sizee")).toBe(1);
    expect(editDistance("abc", "xyz")).toBe(3);
  });
});

describe("generated validator", () => {
  it("is what scripts/gen-validator.mjs makes from the schema today (no drift)", () => {
    const committed = readFileSync("src/generated/profile-validator.js", "utf8");
    expect(committed === generateValidator(), "run: node scripts/gen-validator.mjs").toBe(true);
  });

  it("needs no ajv at run time", () => {
    expect(readFileSync("src/generated/profile-validator.js", "utf8")).not.toMatch(/require\(|from "ajv/);
  });
});
