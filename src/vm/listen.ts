// A listening unix socket qcvm binds and hands QEMU as a descriptor (`-chardev socket,fd=N,
// server=on`): QMP's and the serial console's at launch, and the capability probe's. QEMU runs as
// an unprivileged user that cannot create a socket in the caller's 0700 directory, and a socket
// qcvm binds under umask 077 is 0600 whatever the caller's umask. Bound at a temporary name and
// renamed into place: Node unlinks a unix server's path when it closes it, and qcvm closes its
// copy once QEMU holds the descriptor.
import { chmodSync, renameSync, rmSync } from "node:fs";
import net from "node:net";
import { basename, dirname, join } from "node:path";
import { UserError, resourceError } from "../core/diagnostics.js";

/** A bound QMP socket: its descriptor for QEMU, and close() for qcvm's copy. */
export interface QmpListener {
  fd: number;
  close(): void;
}

/**
 * Bind QMP's listening socket at `path` with mode 0600 (umask 077 around the bind), under a
 * temporary name renamed into place. The directory must already be trusted (0700, the caller's).
 */
export async function bindQmpSocket(path: string, what = "QMP socket"): Promise<QmpListener> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  rmSync(tmp, { force: true });
  const server = net.createServer();
  // Node accepts on a listening server as soon as it listens; a connection in the few ms before
  // QEMU takes over (only root can reach the 0700 dir) is closed at once.
  server.on("connection", (s) => s.destroy());
  const old = process.umask(0o077);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(tmp, () => resolve());
    });
  } catch (e) {
    throw (
      resourceError(e, path) ??
      new UserError(`cannot create the ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`)
    );
  } finally {
    process.umask(old);
  }
  // bind() makes it 0777 & ~umask = 0700; connecting needs write permission, so 0600 says the same
  // with no meaningless x bits (the directory is 0700 anyway).
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) {
    server.close();
    throw new Error("cannot get the QMP socket's descriptor from Node");
  }
  return { fd, close: () => void server.close() };
}
