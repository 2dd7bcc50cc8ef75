/**
 * Owned fds, as numbers: make a channel pair, check, close, grow the fd table ahead of them, and a fresh Unix
 * stream listener. This is what the layers above src/fd use instead of the addon (src/fd/native.ts), which
 * nothing outside src/fd imports (test/layering.test.ts checks it).
 */
import { argTypeError, checkFd } from './errors.js';
import { native } from './native.js';

/** A connected AF_UNIX SOCK_SEQPACKET pair, both ends nonblocking and close-on-exec: an FdChannel's two
 * ends (FdChannel.fromFd), e.g. one kept and one sent to another process. Both are yours to close. */
export function socketpair(): [number, number] {
  return native.socketpair();
}

/** Whether `fd` names an open file in this process (fcntl F_GETFD; changes nothing). */
export function isOpen(fd: number): boolean {
  return native.isOpen(checkFd(fd));
}

/** Close fds you own (received from an FdChannel, or from dupFd); ignores fds that are already closed. */
export function closeFds(fds: readonly number[]): void {
  if (!Array.isArray(fds)) throw argTypeError('fds', 'an array of file descriptors', fds);
  // Validate all before closing any: the addon would truncate 3.5 to 3 and close an fd nobody named.
  for (let i = 0; i < fds.length; i++) {
    const fd: unknown = fds[i];
    if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) checkFd(fd, `fds[${i}]`);
  }
  native.closeMany(fds);
}

/**
 * Make this process's fd table cover fd number `minFd`, on a threadpool thread (a dup at or above it, closed at
 * once; the kernel never shrinks a table). Each time the kernel grows a table itself it doubles it and, in any
 * multithreaded process, waits an RCU grace period — 7-22 ms here, in the thread that needed the fd: for a
 * generation receiving 10,000 connections, 7 waits on its event loop. Grown ahead, that is one wait, off the
 * loop (see native/fdutil.c). `viaFd`: any open fd of yours (its copy is what is made and closed). Rejects with
 * the errno Error: EINVAL when `minFd` is at or above RLIMIT_NOFILE, EMFILE when no fd at or above it is free.
 */
export function growFdTable(viaFd: number, minFd: number): Promise<void> {
  return native.growFdTable(checkFd(viaFd, 'viaFd'), checkFd(minFd, 'minFd'));
}

/**
 * A fresh AF_UNIX SOCK_STREAM listener at `path`, mode 0600, nonblocking and close-on-exec; a stale socket
 * file is replaced, a live one is EADDRINUSE, a path that is not a socket is never removed. Bound here and
 * not by libuv because libuv unlinks the path of a pipe it bound when its handle closes: the old
 * generation's close would remove the file the new one serves on (see native/channel.c).
 */
export function listenUnix(path: string, backlog: number): number {
  return native.listen(path, backlog, true);
}
