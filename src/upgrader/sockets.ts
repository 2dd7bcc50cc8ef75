/**
 * Binding and inheriting the sockets an Upgrader manages. Inherited fds go to Node through
 * `server.listen({ fd })` / `socket.bind({ fd })`; fresh Unix listeners are bound by the addon (see
 * native/channel.c: libuv would unlink the path of a pipe it bound when the old generation closes its copy).
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import type net from 'node:net';
import { native } from '../fd/native.js';

/** Listen on an fd we own; on failure the fd is closed. */
export function listenOnFd(server: net.Server, fd: number, backlog: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      if (native.isOpen(fd)) native.closeMany([fd]);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ fd, backlog });
  });
}

export function listenTcp(server: net.Server, host: string, port: number, backlog: number, ipv6Only: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ port, ...(host ? { host } : {}), backlog, ipv6Only, exclusive: true });
  });
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

export function bindDgramFd(socket: dgram.Socket, fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      socket.off('listening', onListening);
      if (native.isOpen(fd)) native.closeMany([fd]);
      reject(err);
    };
    const onListening = () => {
      socket.off('error', onError);
      resolve();
    };
    socket.once('error', onError);
    socket.once('listening', onListening);
    try {
      socket.bind({ fd });
    } catch (err) {
      onError(err as Error);
    }
  });
}

export function bindDgramFresh(socket: dgram.Socket, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      socket.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      socket.off('error', onError);
      resolve();
    };
    socket.once('error', onError);
    socket.once('listening', onListening);
    socket.bind({ port, ...(address ? { address } : {}), exclusive: true });
  });
}
