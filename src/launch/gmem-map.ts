// Which of QEMU's guest_memfd files holds which guest node's private memory. QEMU creates one
// guest_memfd per RAMBlock (ram_block_add, QEMU 9.1; KVM_CREATE_GUEST_MEMFD, Linux 6.8) and
// names none of them: /proc/<pid>/fd/N only says `anon_inode:[kvm-gmem]`. What qcvm knows:
//   - order: memory backends are created first, in command-line order (qemu_create_late_backends,
//     after the accelerator, so the KVM VM exists), then the board's firmware RAMBlocks (pc.bios,
//     pc.rom: pc_memory_init); the renderer writes one backend per guest node in node order.
//     Creation order shows in two imperfect ways: inode numbers (get_next_ino: increasing, but
//     handed out in per-CPU batches, so a thread that changes CPU can go backwards) and fd numbers
//     (lowest free: an fd QEMU closed earlier is reused).
//   - size: each backend's file is exactly the backend's size (stat on the /proc link says it).
// The rule: take the inode order, else the fd order, whose first files have the backends' sizes;
// the files after them are firmware (they keep the default policy). Two files of one size whose
// backends want different placements must be in the same order both ways, or which is which is
// not known: no pre-allocation then, said in words. Pure: the reading is listGuestMemfds'.
import { FsRoot } from "../io/fsroot.js";
import { formatList } from "../core/lists.js";
import type { MemPolicy, PlanNode } from "../core/types.js";

/** One guest_memfd QEMU holds, as /proc shows it. */
export interface GmemFile {
  /** QEMU's fd number. */
  fd: number;
  ino: number;
  sizeBytes: number;
}

/** One rendered memory backend (one per guest node). */
export interface BackendFile {
  guestNode: number;
  sizeBytes: number;
  policy: MemPolicy;
  hostNodes: number[];
  weights?: Record<number, number>;
}

export type GmemMapping =
  | { kind: "none"; reason: string }
  | { kind: "mapped"; files: { backend: BackendFile; file: GmemFile }[]; firmware: GmemFile[]; notes: string[] }
  | { kind: "refused"; reason: string };

export const GMEM_LINK = "anon_inode:[kvm-gmem]";

/** QEMU's guest_memfd files, read through FsRoot (/proc/<pid>/fd/N links and their stat). */
export function listGuestMemfds(fs: FsRoot, pid: number): GmemFile[] {
  const out: GmemFile[] = [];
  for (const name of fs.list(`proc/${pid}/fd`)) {
    const fd = Number(name);
    if (!Number.isInteger(fd)) continue;
    if (fs.readlink(`proc/${pid}/fd/${name}`) !== GMEM_LINK) continue;
    const st = fs.stat(`proc/${pid}/fd/${name}`);
    if (st) out.push({ fd, ino: st.ino, sizeBytes: st.size });
  }
  return out;
}

/** The backends the renderer writes: one per plan node, in node order. */
export function backendsOf(nodes: readonly PlanNode[]): BackendFile[] {
  return nodes.map((n) => {
    const b: BackendFile = { guestNode: n.guestNode, sizeBytes: n.sizeBytes, policy: n.policy, hostNodes: n.hostNodes };
    if (n.weights) b.weights = n.weights;
    return b;
  });
}

const MiB = 2 ** 20;
const sizeText = (b: number) => (b % MiB === 0 ? `${b / MiB} MiB` : `${b} bytes`);
const placementKey = (b: BackendFile) =>
  `${b.policy}:${formatList(b.hostNodes)}:${JSON.stringify(Object.entries(b.weights ?? {}))}`;

function matchesSizes(order: GmemFile[], backends: readonly BackendFile[]): boolean {
  return backends.every((b, i) => order[i]?.sizeBytes === b.sizeBytes);
}

/** Map QEMU's guest_memfd files to the backends, or say why not. */
export function mapGuestMemfds(files: readonly GmemFile[], backends: readonly BackendFile[]): GmemMapping {
  if (files.length === 0) {
    return {
      kind: "none",
      reason:
        "QEMU holds no guest_memfd (only SEV-SNP and TDX guests have private memory in one): nothing to pre-allocate",
    };
  }
  const sizes = (fs: readonly { sizeBytes: number }[]) => fs.map((f) => sizeText(f.sizeBytes)).join(", ");
  if (files.length < backends.length) {
    return {
      kind: "refused",
      reason: `QEMU holds ${files.length} guest_memfd file(s) (${sizes(files)}) for ${backends.length} memory backends (${sizes(backends)}): not one per backend as expected`,
    };
  }
  const byIno = [...files].sort((a, b) => a.ino - b.ino);
  const byFd = [...files].sort((a, b) => a.fd - b.fd);
  const inoOk = matchesSizes(byIno, backends);
  const fdOk = matchesSizes(byFd, backends);
  if (!inoOk && !fdOk) {
    return {
      kind: "refused",
      reason: `QEMU's guest_memfd files, in creation order, are ${sizes(byIno)}; the memory backends, in order, are ${sizes(backends)}: they do not line up, so which file is which node's is not known`,
    };
  }
  const order = inoOk ? byIno : byFd;
  const notes: string[] = [];
  if (!inoOk) notes.push("inode order does not match the backends' sizes; fd order does and is used");
  else if (!fdOk)
    notes.push("fd order does not match the backends' sizes (an fd was reused); inode order does and is used");
  // Same size, different placement: both orders must agree on which comes first.
  const posIno = new Map(byIno.map((f, i) => [f, i]));
  const posFd = new Map(byFd.map((f, i) => [f, i]));
  for (let i = 0; i < backends.length; i++) {
    for (let j = i + 1; j < backends.length; j++) {
      const [a, b] = [backends[i]!, backends[j]!];
      if (a.sizeBytes !== b.sizeBytes || placementKey(a) === placementKey(b)) continue;
      const [fa, fb] = [order[i]!, order[j]!];
      if (posIno.get(fa)! < posIno.get(fb)! !== posFd.get(fa)! < posFd.get(fb)!) {
        return {
          kind: "refused",
          reason: `guest nodes ${a.guestNode} and ${b.guestNode} both have ${sizeText(a.sizeBytes)} backends with different placement, and QEMU's two ${sizeText(a.sizeBytes)} guest_memfd files (fd ${fa.fd} and ${fb.fd}) are in one order by inode and the other by fd: which is which is ambiguous`,
        };
      }
    }
  }
  const firmware = order.slice(backends.length);
  if (firmware.length > 0) {
    notes.push(
      `${firmware.length} more guest_memfd file(s) after the backends (${sizes(firmware)}: firmware RAMBlocks such as pc.bios) keep the default policy`,
    );
  }
  return { kind: "mapped", files: backends.map((backend, i) => ({ backend, file: order[i]! })), firmware, notes };
}
