/**
 * adopt(fd): turn a received fd back into the Node object that fits it.
 *
 *   listening TCP or Unix socket  -> net.Server (already listening, 'listening' has fired)
 *   TCP or Unix connection, pipe  -> net.Socket (readable/writable as the fd allows)
 *   UDP socket                    -> dgram.Socket (bound, receiving)
 *   regular file, device, dir     -> fs FileHandle
 *
 * Ownership: adopt takes the fd whatever the outcome. On success the returned object owns it (closing the
 * object closes the fd); on failure the fd is closed before the error is thrown, so nothing leaks. The only
 * exceptions are argument errors (not an integer), which are thrown before anything happens.
 *
 * Adopting a socket puts it in nonblocking mode (libuv's uv_*_open does that, as for every Node socket);
 * it never makes a socket blocking.
 */
import dgram from 'node:dgram';
import type { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import type { FileHandle } from 'node:fs/promises';
import { batonError, checkFd } from './errors.js';
import { fileHandleParts } from './internals.js';
import { untilListening } from './listening.js';
import type { FdInfo } from './fd-info.js';
import { native } from './native.js';

export type Adopted = net.Server | net.Socket | dgram.Socket | FileHandle;

export interface AdoptOptions {
  /** For a listener: the backlog Node passes to listen(2) again (it only ever grows or shrinks the queue). */
  backlog?: number;
  /** For a connection: allow half-open (see net.Socket). */
  allowHalfOpen?: boolean;
  /** For a UDP socket: passed to dgram.createSocket (recvBufferSize, lookup, ...). */
  dgram?: Omit<dgram.SocketOptions, 'type'>;
}

/** Probe the fd and return the right object for it. */
export async function adopt(fd: number, options: AdoptOptions = {}): Promise<Adopted> {
  checkFd(fd);
  const info = probeOrClose(fd);
  if (info.socketType === 'seqpacket') {
    native.closeMany([fd]);
    throw unsupported(
      fd,
      info,
      'a listener, connection, pipe, UDP socket or file (a SOCK_SEQPACKET socket has no Node object; see ' +
        'FdChannel.fromFd)',
    );
  }
  switch (info.kind) {
    case 'tcp-listener':
    case 'unix-listener':
      return listenOn(fd, info, options);
    case 'tcp-connection':
    case 'unix-connection':
    case 'pipe':
      return socketOn(fd, info, options);
    case 'udp':
      return dgramOn(fd, info, options);
    case 'file':
    case 'char-device':
    case 'directory':
      return fileOn(fd);
    default:
      native.closeMany([fd]);
      throw unsupported(fd, info, 'a listener, connection, pipe, UDP socket or file');
  }
}

/** adopt(), insisting on a listening socket (TCP or Unix). */
export async function adoptServer(fd: number, options: AdoptOptions = {}): Promise<net.Server> {
  checkFd(fd);
  const info = probeOrClose(fd);
  if ((info.kind !== 'tcp-listener' && info.kind !== 'unix-listener') || info.socketType === 'seqpacket') {
    native.closeMany([fd]);
    throw unsupported(fd, info, 'a listening TCP or Unix socket');
  }
  return listenOn(fd, info, options);
}

/** adopt(), insisting on a connection (TCP, Unix, or a pipe). Synchronous: the socket is usable at once. */
export function adoptSocket(fd: number, options: AdoptOptions = {}): net.Socket {
  checkFd(fd);
  const info = probeOrClose(fd);
  if (
    (info.kind !== 'tcp-connection' && info.kind !== 'unix-connection' && info.kind !== 'pipe') ||
    info.socketType === 'seqpacket'
  ) {
    native.closeMany([fd]);
    throw unsupported(fd, info, 'a connected TCP or Unix socket, or a pipe');
  }
  return socketOn(fd, info, options);
}

/** adopt(), insisting on a UDP socket. */
export async function adoptDgram(fd: number, options: AdoptOptions = {}): Promise<dgram.Socket> {
  checkFd(fd);
  const info = probeOrClose(fd);
  if (info.kind !== 'udp') {
    native.closeMany([fd]);
    throw unsupported(fd, info, 'a UDP socket');
  }
  return dgramOn(fd, info, options);
}

/** adopt(), insisting on something that is not a socket (a file, a device, a directory). */
export async function adoptFile(fd: number): Promise<FileHandle> {
  checkFd(fd);
  const info = probeOrClose(fd);
  if (info.kind !== 'file' && info.kind !== 'char-device' && info.kind !== 'directory') {
    native.closeMany([fd]);
    throw unsupported(fd, info, 'a file');
  }
  return fileOn(fd);
}

function probeOrClose(fd: number): FdInfo {
  try {
    return native.probe(fd);
  } catch (err) {
    // EBADF: nothing to close. Anything else: the fd exists but cannot be examined; do not leak it.
    if ((err as NodeJS.ErrnoException).code !== 'EBADF') native.closeMany([fd]);
    throw err;
  }
}

function unsupported(fd: number, info: FdInfo, expected: string): Error {
  return batonError(
    'ERR_BATON_UNSUPPORTED_FD',
    `fd ${fd} is ${info.kind}${info.socketType ? ` (${info.family} ${info.socketType})` : ''}, expected ${expected}; ` +
      `it was closed`,
  );
}

async function listenOn(fd: number, info: FdInfo, options: AdoptOptions): Promise<net.Server> {
  const server = net.createServer();
  await untilListeningOrClose(fd, info, server, () => server.listen({ fd, backlog: options.backlog ?? 511 }));
  return server;
}

function socketOn(fd: number, info: FdInfo, options: AdoptOptions): net.Socket {
  try {
    return new net.Socket({
      fd,
      readable: info.accessMode !== 'w',
      writable: info.accessMode !== 'r',
      allowHalfOpen: options.allowHalfOpen ?? false,
    });
  } catch (err) {
    if (native.isOpen(fd)) native.closeMany([fd]);
    throw err;
  }
}

async function dgramOn(fd: number, info: FdInfo, options: AdoptOptions): Promise<dgram.Socket> {
  let socket: dgram.Socket;
  try {
    socket = dgram.createSocket({ ...options.dgram, type: info.family === 'IPv6' ? 'udp6' : 'udp4' });
  } catch (err) {
    native.closeMany([fd]);
    throw err;
  }
  const closeSocket = () => {
    try {
      socket.close();
    } catch {
      // not bound: nothing to close
    }
  };
  await untilListeningOrClose(fd, info, socket, () => socket.bind({ fd }), closeSocket);
  return socket;
}

/**
 * Make `server` (an http, https, http2 or net server the caller made) listen on the listening socket `fd`:
 * Node's server.listen({ fd, backlog }). Like adopt, it takes the fd whatever the outcome: on failure the fd
 * is closed, unless its number no longer names the socket probed here (Node closes its handle when listen
 * fails, and the number may be reused at once), so a failure never closes somebody else's fd.
 */
export async function listenOnFd(server: net.Server, fd: number, backlog = 511): Promise<void> {
  checkFd(fd);
  const info = probeOrClose(fd);
  await untilListeningOrClose(fd, info, server, () => server.listen({ fd, backlog }));
}

/** Bind the caller's UDP `socket` to the UDP socket `fd` (socket.bind({ fd })); the fd is taken as by
 * listenOnFd, and on failure closed only if it is still the socket probed here. */
export async function bindOnFd(socket: dgram.Socket, fd: number): Promise<void> {
  checkFd(fd);
  const info = probeOrClose(fd);
  await untilListeningOrClose(fd, info, socket, () => socket.bind({ fd }));
}

/** untilListening; on failure, run `cleanUp`, then close `fd` if Node has not already (without closing a
 * number that was reused meanwhile). */
async function untilListeningOrClose(
  fd: number,
  info: FdInfo,
  emitter: EventEmitter,
  start: () => void,
  cleanUp?: () => void,
): Promise<void> {
  try {
    await untilListening(emitter, start);
  } catch (err) {
    cleanUp?.();
    if (native.isOpen(fd) && sameSocket(fd, info)) native.closeMany([fd]);
    throw err;
  }
}

/** After an error, is `fd` still the socket we probed (and not a new file that reused the number)? */
function sameSocket(fd: number, info: FdInfo): boolean {
  try {
    return native.probe(fd).inode === info.inode;
  } catch {
    return false;
  }
}

/*
 * FileHandle from an fd: through Node's own classes when src/fd/internals.ts can reach them (the same open
 * file description), else by reopening the file through /proc/self/fd: the same file, but a new open file
 * description (its own offset) and a fresh permission check, which is why it is only the fallback.
 */
async function fileOn(fd: number): Promise<FileHandle> {
  const parts = await fileHandleParts();
  if (parts) {
    try {
      return new parts.Wrapper(new parts.Native(fd));
    } catch {
      // fall through to the reopen path
    }
  }
  try {
    const info = native.probe(fd);
    const { O_RDONLY, O_WRONLY, O_RDWR } = fs.constants;
    const flags = info.accessMode === 'r' ? O_RDONLY : info.accessMode === 'w' ? O_WRONLY : O_RDWR;
    const handle = await fs.promises.open(`/proc/self/fd/${fd}`, flags);
    return handle;
  } finally {
    native.closeMany([fd]);
  }
}
