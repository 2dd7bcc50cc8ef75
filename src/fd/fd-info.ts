/**
 * What probe() reports about an fd (the public FdInfo), and exactly what the addon's probe returns
 * (native/probe.c builds these fields and kinds): one definition for both, so the binding's type cannot drift
 * from the public one. Its own module because both probe.ts and the binding (native.ts) name it, and probe.ts
 * imports native.ts.
 */
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

/** A socket address. */
export type FdAddress =
  | { family: 'IPv4' | 'IPv6'; address: string; port: number; scopeId?: number }
  | { family: 'unix'; path: string }
  | { family: 'other'; familyNumber: number };

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
