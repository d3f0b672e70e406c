// Fakes for launch's seams, so its failure paths run without root, KVM or QEMU: a Runner that
// answers `which`, `run` (taskset, numactl) and `start` (QEMU) as a test scripts it, a fake QEMU
// that serves enough QMP for a launch (greeting, query-cpus-fast, cont, quit) on the socket qcvm
// passes it as fd 3 (the gmem stand-in's QMP is served by this process at the same path), and
// cgroup writes into a copied host tree that fail with an errno where a test says. Processes that
// stand in for QEMU are real (node, briefly or sleeping), so pids, /proc/<pid>/stat, signals and
// qemu.log behave as they do for QEMU.
import { execFileSync } from "node:child_process";
import {
  closeSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import type { Server, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execaRunner } from "../../src/io/exec.js";
import type { Child, RunOptions, RunResult, Runner, StartOptions } from "../../src/io/exec.js";
import type { CgroupFiles } from "../../src/vm/cgroup.js";
import { GMEM_LINK } from "../../src/launch/gmem-map.js";

export const REPO = join(import.meta.dirname, "..", "..");

/** What the fake QEMU does once started. */
export type QemuScript =
  | { kind: "exit"; code: number; stderr?: string }
  | { kind: "no-qmp" }
  | { kind: "qmp"; threads?: number[] }
  /** A paused confidential QEMU as pre-allocation sees one: test/helpers/gmem-vm.c (compiled to
   *  `standIn`) holding guest_memfds of these sizes, its stdin a FIFO the runner keeps open, and
   *  /proc/<pid> of it linked into the host tree `tree`, where launch reads QEMU's fds. memfd:
   *  memfds instead (a QEMU without guest_memfd: plain KVM, SEV). */
  | { kind: "gmem"; standIn: string; sizesMiB: number[]; tree: string; memfd?: boolean }
  | { kind: "no-pid"; code: string };

/** The QMP socket a launch binds in the VM directory (QEMU's cwd), for a test to serve itself. */
export function qmpPathOf(options: StartOptions): string {
  if (!options.cwd) throw new Error("fake QEMU started without the VM directory as its cwd");
  return join(options.cwd, "qmp.sock");
}

function greeting(): string {
  return `${JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: "fake" }, capabilities: [] } })}\r\n`;
}

/** A QMP server on `path` answering a launch's commands; `quit` ends the process behind it. */
function serveQmp(path: string, threads: number[], end: () => void): Server {
  const server = createServer((sock: Socket) => {
    sock.write(greeting());
    let buf = "";
    sock.on("data", (d) => {
      buf += d.toString();
      for (let nl = buf.indexOf("\n"); nl !== -1; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as { execute: string; id?: string };
        const ret =
          msg.execute === "query-cpus-fast"
            ? threads.map((tid, i) => ({ "cpu-index": i, "thread-id": tid }))
            : msg.execute === "query-status"
              ? { status: "running", running: true }
              : {};
        sock.write(`${JSON.stringify({ return: ret, id: msg.id })}\r\n`);
        if (msg.execute === "quit" || msg.execute === "system_powerdown") end();
      }
    });
    sock.on("error", () => undefined);
  });
  server.listen(path);
  return server;
}

/**
 * The program a fake QEMU runs (node -e): like QEMU launched by qcvm, it never opens a QMP socket
 * itself but accepts on the listening socket it inherited as fd 3 (`-chardev socket,fd=3,...`),
 * answering a launch's commands; `quit` and `system_powerdown` end it. Without fd 3 as a
 * listening socket, listen() fails and it exits 1, as QEMU would refuse the chardev.
 */
function qmpProgram(threads: number[] | undefined): string {
  const greeting = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: "fake" }, capabilities: [] } };
  return `
const net = require("node:net");
const threads = ${JSON.stringify(threads ?? null)} ?? [process.pid + 100000, process.pid + 100001];
const server = net.createServer((sock) => {
  sock.write(${JSON.stringify(JSON.stringify(greeting))} + "\\r\\n");
  let buf = "";
  sock.on("data", (d) => {
    buf += d.toString();
    for (let nl = buf.indexOf("\\n"); nl !== -1; nl = buf.indexOf("\\n")) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line);
      const ret =
        msg.execute === "query-cpus-fast"
          ? threads.map((tid, i) => ({ "cpu-index": i, "thread-id": tid }))
          : msg.execute === "query-status"
            ? { status: "running", running: true }
            : {};
      sock.write(JSON.stringify({ return: ret, id: msg.id }) + "\\r\\n");
      if (msg.execute === "quit" || msg.execute === "system_powerdown") process.exit(0);
    }
  });
  sock.on("error", () => undefined);
});
server.on("error", (e) => { process.stderr.write("fake QEMU: fd 3: " + e.message + "\\n"); process.exit(1); });
server.listen({ fd: 3 });
`;
}

export class FakeRunner implements Runner {
  readonly ran: string[][] = [];
  readonly started: string[][] = [];
  /** The options each start() had (fds, env, cwd), in the same order. */
  readonly startOptions: StartOptions[] = [];
  readonly servers: Server[] = [];
  readonly children: Child[] = [];

  constructor(
    readonly script: {
      qemu: QemuScript;
      /** Programs that are "installed" (any other name is missing). */
      installed?: string[];
      /** Answers for run(); default: exit 0, no output. */
      run?: (argv: readonly string[]) => RunResult | undefined;
    },
  ) {}

  async which(program: string): Promise<string | undefined> {
    const installed = this.script.installed ?? ["qemu-system-x86_64", "numactl", "taskset"];
    return installed.includes(program) ? `/usr/bin/${program}` : undefined;
  }

  async run(argv: readonly string[], _options?: RunOptions): Promise<RunResult> {
    this.ran.push([...argv]);
    return this.script.run?.(argv) ?? { command: [...argv], exitCode: 0, stdout: "", stderr: "" };
  }

  start(argv: readonly string[], options: StartOptions = {}): Child {
    this.started.push([...argv]);
    this.startOptions.push(options);
    const q = this.script.qemu;
    if (q.kind === "no-pid") {
      return {
        pid: undefined,
        exited: Promise.resolve({ code: q.code }),
        kill: () => undefined,
        unref: () => undefined,
      };
    }
    if (q.kind === "gmem") {
      // QEMU is the start with a monitor; anything else (the pre-allocation helper) runs for real.
      if (!argv.includes("-mon")) return execaRunner.start(argv, options);
      return this.startGmem(q, options);
    }
    // A real process stands in for QEMU, with qcvm's stdio, fds, environment and directory (so
    // its words reach qemu.log and it serves QMP on the socket qcvm bound).
    const body =
      q.kind === "exit"
        ? `process.stderr.write(${JSON.stringify(q.stderr ?? "")}); process.exit(${q.code})`
        : q.kind === "qmp"
          ? qmpProgram(q.threads)
          : "setInterval(() => {}, 1000)";
    const child = execaRunner.start([process.execPath, "-e", body], options);
    this.children.push(child);
    return child;
  }

  private startGmem(q: Extract<QemuScript, { kind: "gmem" }>, options: StartOptions): Child {
    const dir = mkdtempSync(join(tmpdir(), "qcvm-fake-gmem-"));
    const fifo = join(dir, "stdin");
    execFileSync("mkfifo", [fifo]);
    // O_RDWR on a FIFO does not block: the stand-in's read end opens at once, and sees EOF (and
    // exits) when this end is closed.
    const keep = openSync(fifo, "r+");
    const sizes = q.sizesMiB.map(String);
    const flags = q.memfd ? ["--memfd"] : [];
    const child = execaRunner.start(
      ["sh", "-c", 'f=$1; shift; exec "$0" "$@" < "$f"', q.standIn, fifo, ...flags, ...sizes],
      {
        output: "ignore",
      },
    );
    this.children.push(child);
    const pid = child.pid!;
    symlinkSync(`/proc/${pid}`, join(q.tree, "proc", String(pid)));
    // QMP answers once the stand-in holds every file, as QEMU's monitor comes up after its
    // RAMBlocks: launch retries the connection until then.
    const isFile = (link: string) => (q.memfd ? link.startsWith("/memfd:gmem-vm") : link === GMEM_LINK);
    const gmemCount = () => {
      try {
        return readdirSync(`/proc/${pid}/fd`).filter((n) => isFile(readlinkSync(`/proc/${pid}/fd/${n}`))).length;
      } catch {
        return 0;
      }
    };
    let server: Server | undefined;
    const t0 = Date.now();
    const poll = setInterval(() => {
      const waiting = gmemCount() < sizes.length && Date.now() - t0 < 10_000;
      if (waiting) return; // poll again: the stand-in has not made its guest_memfds yet
      clearInterval(poll);
      // The stand-in does not take qcvm's listening socket (fd 3): this process serves QMP in its
      // place, at the same path (qcvm's socket, closed once QEMU "holds" it, is replaced).
      const path = qmpPathOf(options);
      rmSync(path, { force: true });
      server = serveQmp(path, [pid + 100_000, pid + 100_001], () => child.kill("SIGTERM"));
      this.servers.push(server);
    }, 5);
    void child.exited.then(() => {
      clearInterval(poll);
      server?.close();
      closeSync(keep);
      rmSync(dir, { recursive: true, force: true });
      rmSync(join(q.tree, "proc", String(pid)), { force: true });
    });
    return child;
  }

  /** Stop whatever is still running (a test's afterEach). */
  async close(): Promise<void> {
    for (const s of this.servers) s.close();
    for (const c of this.children) c.kill("SIGKILL");
    await Promise.all(this.children.map((c) => c.exited));
  }
}

/** The host tree's qcvm-qemu user (uid and gid 990) and kvm group (993). */
export const FAKE_QEMU_USER = {
  uid: 990,
  gid: 990,
  kvm: 993,
  passwd: "qcvm-qemu:x:990:990::/nonexistent:/usr/sbin/nologin",
  group: "kvm:x:993:qcvm-qemu\nqcvm-qemu:x:990:",
};

/**
 * A copy of a fixture host (examples/hosts/NAME) to launch on: cgroup v2 with cpuset and
 * memory, two nodes, no systemd. The cgroup mount's own control files are made as cgroupfs has them.
 */
export function makeHostTree(fixture = "cgroup2-only"): { root: string; remove: () => void } {
  const root = mkdtempSync(join(tmpdir(), "qcvm-fake-host-"));
  cpSync(join(REPO, "examples/hosts", fixture), root, { recursive: true });
  const cg = join(root, "sys/fs/cgroup");
  for (const f of ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"]) writeFileSync(join(cg, f), "");
  writeFileSync(join(cg, "cpuset.cpus.effective"), "0-7");
  writeFileSync(join(cg, "cpuset.mems.effective"), "0-1");
  mkdirSync(join(root, "proc/self"), { recursive: true });
  writeFileSync(join(root, "proc/self/cgroup"), "0::/\n");
  // The QEMU user a root qcvm drops to (launch/privsep.ts), as CREATE_QEMU_USER makes it.
  mkdirSync(join(root, "etc"), { recursive: true });
  writeFileSync(join(root, "etc/passwd"), `root:x:0:0:root:/root:/bin/sh\n${FAKE_QEMU_USER.passwd}\n`);
  writeFileSync(join(root, "etc/group"), `root:x:0:\n${FAKE_QEMU_USER.group}\n`);

  return { root, remove: () => rmSync(root, { recursive: true, force: true }) };
}

/** An errno as node's fs raises it. */
function errnoError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: ${syscall} '${path}'`) as NodeJS.ErrnoException;
  e.code = code;
  e.syscall = syscall;
  e.path = path;
  return e;
}

/**
 * cgroup writes into the tree as cgroupfs takes them (mkdir makes the control files), except
 * where `deny(path)` names an errno: then that write or mkdir fails with it (EACCES in a
 * container that does not delegate cgroups).
 */
export function fakeCgroupFiles(deny: (path: string, op: "mkdir" | "write") => string | undefined): CgroupFiles & {
  writes: Array<[string, string]>;
} {
  const writes: Array<[string, string]> = [];
  return {
    writes,
    mkdir(dir) {
      const code = deny(dir, "mkdir");
      if (code) throw errnoError(code, "mkdir", dir);
      mkdirSync(dir);
      for (const f of ["cgroup.procs", "cgroup.threads", "cgroup.type", "cgroup.subtree_control", "tasks"])
        writeFileSync(join(dir, f), "");
    },
    write(file, value) {
      const code = deny(file, "write");
      if (code) throw errnoError(code, "open", file);
      writes.push([file, value]);
      writeFileSync(file, value);
    },
    rmdir(dir) {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
