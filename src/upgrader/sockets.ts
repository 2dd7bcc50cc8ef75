/**
 * Binding and inheriting the sockets an Upgrader manages. Inherited fds go to Node through
 * `server.listen({ fd })` / `socket.bind({ fd })`; fresh Unix listeners are bound by the addon (see
 * native/channel.c: libuv would unlink the path of a pipe it bound when the old generation closes its copy).
 */
import type dgram from 'node:dgram';
import fs from 'node:fs';
import type net from 'node:net';
import { untilListening } from '../fd/listening.js';
import { native } from '../fd/native.js';

/** Node closes its handle, and with it the fd, when listen/bind fails; make sure, without double-closing. */
async function ownedFd(fd: number, attempt: Promise<void>): Promise<void> {
  try {
    await attempt;
  } catch (err) {
    if (native.isOpen(fd)) native.closeMany([fd]);
    throw err;
  }
}

/** Listen on an fd we own; on failure the fd is closed. */
export function listenOnFd(server: net.Server, fd: number, backlog: number): Promise<void> {
  return ownedFd(fd, untilListening(server, () => server.listen({ fd, backlog })));
}

export function listenTcp(server: net.Server, host: string, port: number, backlog: number, ipv6Only: boolean): Promise<void> {
  return untilListening(server, () => server.listen({ port, ...(host ? { host } : {}), backlog, ipv6Only, exclusive: true }));
}

/** A fresh Unix stream listener at `path` with `mode`; a stale socket file is replaced, a live one is EADDRINUSE. */
export function bindUnix(path: string, backlog: number, mode: number): number {
  const fd = native.listen(path, backlog, true);
  try {
    if (mode !== 0o600) fs.chmodSync(path, mode);
  } catch (err) {
    native.closeMany([fd]);
    throw err;
  }
  return fd;
}

/** Bind a UDP socket to an fd we own; on failure the fd is closed. */
export function bindDgramFd(socket: dgram.Socket, fd: number): Promise<void> {
  return ownedFd(fd, untilListening(socket, () => socket.bind({ fd })));
}

export function bindDgramFresh(socket: dgram.Socket, address: string, port: number): Promise<void> {
  return untilListening(socket, () => socket.bind({ port, ...(address ? { address } : {}), exclusive: true }));
}
