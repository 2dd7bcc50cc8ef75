/**
 * Sockets that join an SO_REUSEPORT group: one per worker, so that the kernel spreads new connections (and UDP
 * flows) over the workers by a hash of the 4-tuple (docs/workers.md). Node 20 cannot set SO_REUSEPORT before
 * bind(), so native/reuseport.c makes the socket; the result is a plain fd (nonblocking, close-on-exec) that
 * listenOnFd / bindOnFd or adopt() turn into a server, or that goes to another process over an FdChannel.
 */
import net from 'node:net';
import { argRangeError, argTypeError } from './errors.js';
import { native } from './native.js';

export interface ReusePortOptions {
  /** 'tcp': a listening stream socket; 'udp': a bound datagram socket. */
  type: 'tcp' | 'udp';
  /** An IP address (IPv4, or IPv6 with an optional %scope). '' or absent: every address, '::' (dual stack)
   * where the host has IPv6, else '0.0.0.0' — as Node does for listen() without a host. */
  host?: string;
  /** 0 picks a free port; bind the group's other sockets to the port this one reports. */
  port: number;
  /** listen(2)'s backlog for TCP (default 511, Node's). */
  backlog?: number;
  /** For an IPv6 address: IPV6_V6ONLY (default false: dual stack, as Node). */
  ipv6Only?: boolean;
  /**
   * For a group's first socket (default false): fail with EADDRINUSE if anything holds host:port already — even a
   * reuseport socket of this uid, which this one would otherwise join silently, sharing its connections with
   * another service (what a plain listen() refuses). The check is a bind without SO_REUSEPORT just before.
   */
  exclusive?: boolean;
}

export interface ReusePortSocket {
  /** Yours to close (closeFds), or to hand to listenOnFd / bindOnFd / adopt, which then own it. */
  fd: number;
  family: 'IPv4' | 'IPv6';
  address: string;
  port: number;
}

const DEFAULT_BACKLOG = 511;

/**
 * A new socket in the SO_REUSEPORT group of host:port (SO_REUSEADDR too for TCP). Throws the syscall's error
 * (`code` its errno name, `syscall`: socket, setsockopt, bind or listen) with nothing left open: EADDRINUSE when
 * a socket without SO_REUSEPORT (or of another uid) holds the port. TypeError/RangeError for bad options.
 */
export function bindReusePort(options: ReusePortOptions): ReusePortSocket {
  if (typeof options !== 'object' || options === null) throw argTypeError('options', 'an object', options);
  const { type, host = '', port, backlog = DEFAULT_BACKLOG, ipv6Only = false, exclusive = false } = options;
  if (type !== 'tcp' && type !== 'udp') throw argTypeError('options.type', "'tcp' or 'udp'", type);
  if (typeof host !== 'string') throw argTypeError('options.host', 'an IP address string', host);
  if (host !== '' && net.isIP(host.replace(/%.*$/, '')) === 0) {
    throw argTypeError('options.host', 'an IPv4 or IPv6 address (resolve names first)', host);
  }
  if (typeof port !== 'number' || !Number.isInteger(port)) throw argTypeError('options.port', 'an integer', port);
  if (port < 0 || port > 65535) throw argRangeError('options.port', '>= 0 and <= 65535', port);
  if (typeof backlog !== 'number' || !Number.isInteger(backlog)) {
    throw argTypeError('options.backlog', 'an integer', backlog);
  }
  if (backlog < 0 || backlog > 0x7fffffff) throw argRangeError('options.backlog', '>= 0', backlog);
  if (typeof ipv6Only !== 'boolean') throw argTypeError('options.ipv6Only', 'a boolean', ipv6Only);
  if (typeof exclusive !== 'boolean') throw argTypeError('options.exclusive', 'a boolean', exclusive);
  const stream = type === 'tcp';
  let fd: number;
  if (host !== '') fd = native.bindReusePort(stream, host, port, backlog, ipv6Only, exclusive);
  else {
    try {
      fd = native.bindReusePort(stream, '::', port, backlog, ipv6Only, exclusive);
    } catch (err) {
      // No IPv6 on this host (a container without it): every IPv4 address, as Node falls back.
      if ((err as NodeJS.ErrnoException).code !== 'EAFNOSUPPORT') throw err;
      fd = native.bindReusePort(stream, '0.0.0.0', port, backlog, false, exclusive);
    }
  }
  let local: ReturnType<typeof native.probe>['local'];
  try {
    local = native.probe(fd).local;
  } catch (err) {
    native.closeMany([fd]);
    throw err;
  }
  if (!local || (local.family !== 'IPv4' && local.family !== 'IPv6')) {
    native.closeMany([fd]); // cannot happen: the addon bound an IP socket
    throw new Error(`bindReusePort: fd ${fd} has no IP address`);
  }
  return { fd, family: local.family, address: local.address, port: local.port };
}
