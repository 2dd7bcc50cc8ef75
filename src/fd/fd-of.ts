/**
 * Borrowing the fd behind a Node object — without side effects.
 *
 * Go's conn.File() dups the fd and puts the socket in blocking mode, after which Close() can hang on a
 * pending read. fdOf() does none of that: it reads the number libuv already has. No dup, no fcntl, no
 * change of ownership; the object stays in charge of its fd and closing the object closes it. The number is
 * valid only while the object is open, so use it synchronously (withFd) or take an owned copy (dupFd).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { FileHandle } from 'node:fs/promises';
import { argTypeError, checkFd } from './errors.js';
import { dgramHandleOf, handleOf } from './internals.js';
import { native } from './native.js';

/** Anything baton can take an fd from. http/https/http2 servers are net.Servers; TLS sockets are net.Sockets. */
export type FdSource = number | net.Server | net.Socket | dgram.Socket | FileHandle;

function isFileHandle(x: unknown): x is FileHandle {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as FileHandle).fd === 'number' &&
    typeof (x as FileHandle).close === 'function' &&
    typeof (x as FileHandle).stat === 'function' &&
    (x as object).constructor?.name === 'FileHandle'
  );
}

function notOpen(what: string): TypeError {
  const err = new TypeError(what) as TypeError & { code: string };
  err.code = 'ERR_BATON_NOT_OPEN';
  return err;
}

/**
 * The fd of a net.Server (and http/https/http2 servers), net.Socket (and TLS sockets), dgram.Socket or
 * fs FileHandle, borrowed: no dup, no change of blocking mode, no ownership taken. A number is checked and
 * returned as is. Throws a TypeError (code ERR_BATON_NOT_OPEN) for an object that has no open fd.
 */
export function fdOf(source: FdSource): number {
  if (typeof source === 'number') return checkFd(source);
  let fd: number | undefined;
  if (source instanceof net.Server) {
    const handle = handleOf(source);
    if (!handle) throw notOpen('the server is not listening (it has no fd yet, or was closed)');
    fd = handle.fd;
  } else if (source instanceof net.Socket) {
    const handle = handleOf(source);
    if (!handle) throw notOpen('the socket is closed or not connected (it has no fd)');
    fd = handle.fd ?? handle._parent?.fd;
  } else if (source instanceof dgram.Socket) {
    const handle = dgramHandleOf(source);
    if (!handle) throw notOpen('the UDP socket is closed');
    fd = handle.fd;
    if (typeof fd === 'number' && fd < 0) throw notOpen('the UDP socket is not bound yet (it has no fd until bind)');
  } else if (isFileHandle(source)) {
    fd = source.fd;
    if (fd < 0) throw notOpen('the FileHandle is closed');
  } else {
    throw argTypeError('source', 'a file descriptor, net.Server, net.Socket, dgram.Socket or FileHandle', source);
  }
  if (typeof fd !== 'number' || fd < 0) throw notOpen('the object has no open file descriptor');
  return fd;
}

/** An owned, close-on-exec duplicate of the object's fd. Close it yourself (fs.closeSync). Like every dup it
 * shares the open file description, and baton never changes its O_NONBLOCK flag. */
export function dupFd(source: FdSource): number {
  return native.dup(fdOf(source));
}

/**
 * Run `fn` against the raw fd, synchronously (Go's SyscallConn().Control): the object cannot be closed
 * while fn runs, so the fd is valid for exactly that long. Returns what fn returns.
 */
export function withFd<T>(source: FdSource, fn: (fd: number) => T): T {
  if (typeof fn !== 'function') throw argTypeError('fn', 'a function', fn);
  return fn(fdOf(source));
}
