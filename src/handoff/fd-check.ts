/**
 * Is an inherited fd what the inventory says it is? The serving side (a same-uid process, possibly a rogue
 * or a buggy one) labels each fd it hands over; before baton adopts one — and so before ready() — the fd
 * itself is asked (fstat, SO_TYPE, SO_ACCEPTCONN, SO_DOMAIN: src/fd/probe.ts). Without the check a file or a
 * UDP socket labelled as a TCP listener failed only later, as a bare `listen EINVAL` after ready() was sent.
 */
import net from 'node:net';
import { batonError, type BatonError } from '../fd/errors.js';
import { probe, type FdInfo } from '../fd/probe.js';
import { formatAddress, type InventoryEntry } from './messages.js';

/** What an entry of each kind must be: probe's kind, and the address family when the entry's says. */
function expected(entry: InventoryEntry): { kind: FdInfo['kind']; family: FdInfo['family'] | null; what: string } {
  const addr = entry.address;
  const ipFamily = 'host' in addr ? (net.isIPv6(addr.host) ? 'IPv6' : net.isIPv4(addr.host) ? 'IPv4' : null) : null;
  switch (entry.kind) {
    case 'tcp':
      return { kind: 'tcp-listener', family: ipFamily, what: 'a listening TCP socket' };
    case 'udp4':
      return { kind: 'udp', family: 'IPv4', what: 'an IPv4 UDP socket' };
    case 'udp6':
      return { kind: 'udp', family: 'IPv6', what: 'an IPv6 UDP socket' };
    case 'unix':
    case 'control':
      return { kind: 'unix-listener', family: 'unix', what: 'a listening Unix stream socket' };
  }
}

function describe(info: FdInfo): string {
  const family = info.family && info.family !== 'unix' ? ` (${info.family})` : '';
  const l = info.local;
  let where = '';
  if (l && 'path' in l) where = ` bound to ${l.path || '(unnamed)'}`;
  else if (l && 'port' in l) where = ` bound to ${formatAddress({ host: l.address, port: l.port })}`;
  return `${info.kind}${family}${where}`;
}

/** null when `fd` is what `entry` says; otherwise an ERR_BATON_INHERITED_FD_MISMATCH naming both. */
export function inheritedFdMismatch(entry: InventoryEntry, fd: number): BatonError | null {
  const want = expected(entry);
  let info: FdInfo;
  try {
    info = probe(fd);
  } catch (err) {
    return mismatch(entry, fd, want.what, `not an open fd (${(err as Error).message})`);
  }
  if (info.kind !== want.kind) return mismatch(entry, fd, want.what, describe(info));
  if (want.family && info.family !== want.family) return mismatch(entry, fd, want.what, describe(info));
  return null;
}

function mismatch(entry: InventoryEntry, fd: number, want: string, got: string): BatonError {
  return batonError(
    'ERR_BATON_INHERITED_FD_MISMATCH',
    `inherited socket '${entry.name}' (inventory: ${entry.kind} ${formatAddress(entry.address)}) should be ${want}, ` +
      `but fd ${fd} is a ${got}; the serving side handed over something else — not adopted`,
    { syscall: 'getsockopt', entry: entry.name },
  );
}
