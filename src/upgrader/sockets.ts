/**
 * Binding and inheriting the sockets an Upgrader manages. Inherited fds go to Node through
 * `server.listen({ fd })` / `socket.bind({ fd })`; fresh Unix listeners are bound by the addon (see
 * native/channel.c: libuv would unlink the path of a pipe it bound when the old generation closes its copy).
 */
import type dgram from 'node:dgram';
import fs from 'node:fs';
import type net from 'node:net';
import { closeFds, listenUnix } from '../fd/fds.js';
import { untilListening } from '../fd/listening.js';

/** Listen on / bind to an fd we own; on failure the fd is closed, but only while its number still names the
 * socket (fd/adopt checks the inode), so a failure never closes a number that was reused meanwhile. */
export { listenOnFd, bindOnFd as bindDgramFd } from '../fd/adopt.js';

export function listenTcp(
  server: net.Server,
  host: string,
  port: number,
  backlog: number,
  ipv6Only: boolean,
): Promise<void> {
  return untilListening(server, () =>
    server.listen({ port, ...(host ? { host } : {}), backlog, ipv6Only, exclusive: true }),
  );
}

/** A fresh Unix stream listener at `path` with `mode`; a stale socket file is replaced, a live one is EADDRINUSE. */
export function bindUnix(path: string, backlog: number, mode: number): number {
  const fd = listenUnix(path, backlog);
  try {
    if (mode !== 0o600) fs.chmodSync(path, mode);
  } catch (err) {
    closeFds([fd]);
    throw err;
  }
  return fd;
}

export function bindDgramFresh(socket: dgram.Socket, address: string, port: number): Promise<void> {
  return untilListening(socket, () => socket.bind({ port, ...(address ? { address } : {}), exclusive: true }));
}
