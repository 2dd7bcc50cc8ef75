/**
 * What an fd is: kind, address family, addresses, blocking mode. Read-only (fstat, fcntl F_GETFL/F_GETFD,
 * getsockopt, getsockname, getpeername): probing never changes the fd.
 */
import { fdOf, type FdSource } from './fd-of.js';
import { native, type NativeAddress } from './native.js';

export type FdKind =
  | 'tcp-listener'
  | 'tcp-connection'
  | 'udp'
  | 'unix-listener'
  | 'unix-connection'
  | 'unix-dgram'
  | 'file'
  | 'pipe'
  | 'char-device'
  | 'directory'
  | 'other';

export type FdAddress = NativeAddress;

export interface FdInfo {
  fd: number;
  kind: FdKind;
  /** Socket address family, or null for a non-socket. */
  family: 'IPv4' | 'IPv6' | 'unix' | 'other' | null;
  socketType: 'stream' | 'dgram' | 'seqpacket' | 'other' | null;
  listening: boolean;
  local: FdAddress | null;
  remote: FdAddress | null;
  /** O_NONBLOCK on the open file description (shared by every dup of it). */
  nonblocking: boolean;
  /** FD_CLOEXEC on this fd. */
  cloexec: boolean;
  accessMode: 'r' | 'w' | 'rw';
  inode: number;
  /** st_size (meaningful for files). */
  size: number;
}

export function probe(source: FdSource): FdInfo {
  return native.probe(fdOf(source)) as FdInfo;
}
