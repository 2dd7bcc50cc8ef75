/**
 * Socket options by name, on a borrowed fd (fdOf): getsockopt/setsockopt only, so the socket's blocking
 * mode and ownership never change.
 *
 *   getSockOpt(udp, 'SO_RCVBUF')            // 212992
 *   setSockOpt(udp, 'SO_RCVBUF', 4 << 20)   // Linux doubles it for bookkeeping: getSockOpt then says 8 MiB
 *   getSockOpt(conn, 'TCP_INFO').rtt        // microseconds
 *   setSockOpt(conn, 'SO_LINGER', { enabled: true, seconds: 0 })
 */
import { argRangeError, argTypeError } from './errors.js';
import { fdOf, type FdSource } from './fd-of.js';
import { native } from './native.js';

const C = native.constants;

type OptKind = 'int' | 'bool' | 'linger' | 'string' | 'tcpinfo';

interface OptSpec {
  level: number;
  name: number;
  kind: OptKind;
  readOnly?: boolean;
  /** The optname getsockopt reads, when it differs from the one setsockopt writes (the *FORCE options
   * are set-only in the kernel; they set the same buffer SO_RCVBUF/SO_SNDBUF report). */
  getName?: number;
}

// Generic so that each entry keeps its literal kind and readOnly: SockOptValue and WritableSockOptName
// below are computed from them.
function opt<K extends OptKind, R extends boolean = false>(
  level: number,
  name: number | undefined,
  kind: K,
  readOnly: R = false as R,
): OptSpec & { kind: K; readOnly: R } {
  return { level, name: name!, kind, readOnly };
}

/** Every option baton knows by name. */
const OPTIONS = {
  SO_RCVBUF: opt(C.SOL_SOCKET!, C.SO_RCVBUF, 'int'),
  SO_SNDBUF: opt(C.SOL_SOCKET!, C.SO_SNDBUF, 'int'),
  SO_RCVBUFFORCE: { ...opt(C.SOL_SOCKET!, C.SO_RCVBUFFORCE, 'int'), getName: C.SO_RCVBUF },
  SO_SNDBUFFORCE: { ...opt(C.SOL_SOCKET!, C.SO_SNDBUFFORCE, 'int'), getName: C.SO_SNDBUF },
  SO_REUSEADDR: opt(C.SOL_SOCKET!, C.SO_REUSEADDR, 'bool'),
  SO_REUSEPORT: opt(C.SOL_SOCKET!, C.SO_REUSEPORT, 'bool'),
  SO_KEEPALIVE: opt(C.SOL_SOCKET!, C.SO_KEEPALIVE, 'bool'),
  SO_LINGER: opt(C.SOL_SOCKET!, C.SO_LINGER, 'linger'),
  SO_RCVLOWAT: opt(C.SOL_SOCKET!, C.SO_RCVLOWAT, 'int'),
  SO_BINDTODEVICE: opt(C.SOL_SOCKET!, C.SO_BINDTODEVICE, 'string'),
  SO_BROADCAST: opt(C.SOL_SOCKET!, C.SO_BROADCAST, 'bool'),
  SO_PRIORITY: opt(C.SOL_SOCKET!, C.SO_PRIORITY, 'int'),
  SO_MARK: opt(C.SOL_SOCKET!, C.SO_MARK, 'int'),
  SO_TYPE: opt(C.SOL_SOCKET!, C.SO_TYPE, 'int', true),
  SO_DOMAIN: opt(C.SOL_SOCKET!, C.SO_DOMAIN, 'int', true),
  SO_ERROR: opt(C.SOL_SOCKET!, C.SO_ERROR, 'int', true),
  SO_ACCEPTCONN: opt(C.SOL_SOCKET!, C.SO_ACCEPTCONN, 'bool', true),
  TCP_NODELAY: opt(C.IPPROTO_TCP!, C.TCP_NODELAY, 'bool'),
  TCP_KEEPIDLE: opt(C.IPPROTO_TCP!, C.TCP_KEEPIDLE, 'int'),
  TCP_KEEPINTVL: opt(C.IPPROTO_TCP!, C.TCP_KEEPINTVL, 'int'),
  TCP_KEEPCNT: opt(C.IPPROTO_TCP!, C.TCP_KEEPCNT, 'int'),
  TCP_USER_TIMEOUT: opt(C.IPPROTO_TCP!, C.TCP_USER_TIMEOUT, 'int'),
  TCP_CONGESTION: opt(C.IPPROTO_TCP!, C.TCP_CONGESTION, 'string'),
  TCP_DEFER_ACCEPT: opt(C.IPPROTO_TCP!, C.TCP_DEFER_ACCEPT, 'int'),
  TCP_FASTOPEN: opt(C.IPPROTO_TCP!, C.TCP_FASTOPEN, 'int'),
  TCP_MAXSEG: opt(C.IPPROTO_TCP!, C.TCP_MAXSEG, 'int'),
  TCP_QUICKACK: opt(C.IPPROTO_TCP!, C.TCP_QUICKACK, 'bool'),
  TCP_CORK: opt(C.IPPROTO_TCP!, C.TCP_CORK, 'bool'),
  TCP_NOTSENT_LOWAT: opt(C.IPPROTO_TCP!, C.TCP_NOTSENT_LOWAT, 'int'),
  TCP_INFO: opt(C.IPPROTO_TCP!, C.TCP_INFO, 'tcpinfo', true),
  IP_TOS: opt(C.IPPROTO_IP!, C.IP_TOS, 'int'),
  IP_TTL: opt(C.IPPROTO_IP!, C.IP_TTL, 'int'),
  IP_MULTICAST_TTL: opt(C.IPPROTO_IP!, C.IP_MULTICAST_TTL, 'int'),
  IP_MULTICAST_LOOP: opt(C.IPPROTO_IP!, C.IP_MULTICAST_LOOP, 'bool'),
  IPV6_V6ONLY: opt(C.IPPROTO_IPV6!, C.IPV6_V6ONLY, 'bool'),
  IPV6_UNICAST_HOPS: opt(C.IPPROTO_IPV6!, C.IPV6_UNICAST_HOPS, 'int'),
  IPV6_TCLASS: opt(C.IPPROTO_IPV6!, C.IPV6_TCLASS, 'int'),
} satisfies Record<string, OptSpec>;

export type SockOptName = keyof typeof OPTIONS;

/** SO_LINGER's value: with enabled and seconds 0, close() resets the connection. */
export interface Linger {
  enabled: boolean;
  seconds: number;
}

/** TCP_INFO, field names without the tcpi_ prefix. rtt, rttvar, rto, ato, rcv_rtt in µs; last_* in ms. */
export interface TcpInfo {
  stateName: string;
  state: number;
  ca_state: number;
  retransmits: number;
  probes: number;
  backoff: number;
  options: number;
  snd_wscale: number;
  rcv_wscale: number;
  rto: number;
  ato: number;
  snd_mss: number;
  rcv_mss: number;
  unacked: number;
  sacked: number;
  lost: number;
  retrans: number;
  fackets: number;
  last_data_sent: number;
  last_ack_sent: number;
  last_data_recv: number;
  last_ack_recv: number;
  pmtu: number;
  rcv_ssthresh: number;
  rtt: number;
  rttvar: number;
  snd_ssthresh: number;
  snd_cwnd: number;
  advmss: number;
  reordering: number;
  rcv_rtt: number;
  rcv_space: number;
  total_retrans: number;
}

type ValueOf<K extends OptKind> = K extends 'int'
  ? number
  : K extends 'bool'
    ? boolean
    : K extends 'linger'
      ? Linger
      : K extends 'string'
        ? string
        : TcpInfo;

/** The value type of each named option. */
export type SockOptValue<N extends SockOptName> = ValueOf<(typeof OPTIONS)[N]['kind']>;

/** Names of options that can be set. */
export type WritableSockOptName = {
  [N in SockOptName]: (typeof OPTIONS)[N] extends { readOnly: true } ? never : N;
}[SockOptName];

/** The names baton knows, for --help texts and validation messages. */
export const sockOptNames: readonly SockOptName[] = Object.freeze(Object.keys(OPTIONS) as SockOptName[]);

function spec(name: unknown): OptSpec {
  if (typeof name !== 'string') throw argTypeError('name', 'a socket option name such as "SO_RCVBUF"', name);
  // Own properties only: 'constructor', 'toString' and the like are not option names.
  const s = Object.hasOwn(OPTIONS, name) ? (OPTIONS as Record<string, OptSpec>)[name] : undefined;
  if (!s || s.name === undefined) {
    const err = new TypeError(
      `Unknown socket option ${JSON.stringify(name)}. Known: ${sockOptNames.join(', ')}; use ` +
        `getSockOptRaw/setSockOptRaw for others`,
    ) as TypeError & { code: string };
    err.code = 'ERR_BATON_UNKNOWN_SOCKOPT';
    throw err;
  }
  return s;
}

const STRING_MAX = 64;

/** Read a socket option by name. */
export function getSockOpt<N extends SockOptName>(source: FdSource, name: N): SockOptValue<N>;
export function getSockOpt(source: FdSource, name: string): unknown;
export function getSockOpt(source: FdSource, name: string): unknown {
  const s = spec(name);
  const fd = fdOf(source);
  switch (s.kind) {
    case 'int':
      return native.getsockoptInt(fd, s.level, s.getName ?? s.name);
    case 'bool':
      return native.getsockoptInt(fd, s.level, s.name) !== 0;
    case 'linger': {
      const b = native.getsockoptRaw(fd, s.level, s.name, 8);
      return { enabled: b.readInt32LE(0) !== 0, seconds: b.readInt32LE(4) };
    }
    case 'string': {
      const b = native.getsockoptRaw(fd, s.level, s.name, STRING_MAX);
      const nul = b.indexOf(0);
      return b.toString('utf8', 0, nul < 0 ? b.length : nul);
    }
    case 'tcpinfo':
      return native.tcpInfo(fd);
  }
}

/** Set a socket option by name. Throws TypeError/RangeError for a wrong value before any syscall. */
export function setSockOpt<N extends WritableSockOptName>(source: FdSource, name: N, value: SockOptValue<N>): void;
/** A name only known at run time. (Never a known name: those must match the typed overload above, so a
 * wrong value type or a read-only option is a compile-time error and not just a run-time TypeError.) */
export function setSockOpt<S extends string>(
  source: FdSource,
  name: S & (S extends SockOptName ? never : unknown),
  value: unknown,
): void;
export function setSockOpt(source: FdSource, name: string, value: unknown): void {
  const s = spec(name);
  if (s.readOnly) {
    const err = new TypeError(`Socket option ${name} is read-only`) as TypeError & { code: string };
    err.code = 'ERR_BATON_READ_ONLY_SOCKOPT';
    throw err;
  }
  let apply: (fd: number) => void;
  switch (s.kind) {
    case 'int': {
      const v = checkInt32(value, name);
      apply = (fd) => native.setsockoptInt(fd, s.level, s.name, v);
      break;
    }
    case 'bool': {
      if (typeof value !== 'boolean') throw argTypeError('value', `a boolean for ${name}`, value);
      apply = (fd) => native.setsockoptInt(fd, s.level, s.name, value ? 1 : 0);
      break;
    }
    case 'linger': {
      const l = value as Linger;
      if (typeof l !== 'object' || l === null || typeof l.enabled !== 'boolean') {
        throw argTypeError('value', 'an object { enabled: boolean, seconds: number } for SO_LINGER', value);
      }
      const seconds = checkInt32(l.seconds, 'SO_LINGER seconds');
      if (seconds < 0) throw argRangeError('value.seconds', '>= 0', seconds);
      const b = Buffer.alloc(8);
      b.writeInt32LE(l.enabled ? 1 : 0, 0);
      b.writeInt32LE(seconds, 4);
      apply = (fd) => native.setsockoptRaw(fd, s.level, s.name, b);
      break;
    }
    case 'string': {
      if (typeof value !== 'string') throw argTypeError('value', `a string for ${name}`, value);
      const b = Buffer.from(value);
      if (b.length >= STRING_MAX || b.includes(0))
        throw argRangeError('value', `a name shorter than ${STRING_MAX} bytes without NUL`, value);
      apply = (fd) => native.setsockoptRaw(fd, s.level, s.name, b);
      break;
    }
    default:
      throw new TypeError(`Socket option ${name} cannot be set`);
  }
  apply(fdOf(source));
}

/** getsockopt with any level and optname; returns the bytes the kernel wrote (at most `length`). */
export function getSockOptRaw(source: FdSource, level: number, optname: number, length = 256): Buffer {
  checkInt32(level, 'level', 'level');
  checkInt32(optname, 'optname', 'optname');
  if (typeof length !== 'number' || !Number.isInteger(length)) throw argTypeError('length', 'an integer', length);
  if (length < 0 || length > 65536) throw argRangeError('length', 'an integer from 0 to 65536', length);
  return native.getsockoptRaw(fdOf(source), level, optname, length);
}

/** setsockopt with any level and optname and the value's bytes as the kernel expects them. */
export function setSockOptRaw(source: FdSource, level: number, optname: number, value: Buffer): void {
  checkInt32(level, 'level', 'level');
  checkInt32(optname, 'optname', 'optname');
  if (!Buffer.isBuffer(value)) throw argTypeError('value', 'a Buffer', value);
  native.setsockoptRaw(fdOf(source), level, optname, value);
}

function checkInt32(v: unknown, name: string, arg = 'value'): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw argTypeError(arg, `an integer for ${name}`, v);
  if (v < -0x80000000 || v > 0x7fffffff) throw argRangeError(arg, `a 32-bit integer for ${name}`, v);
  return v;
}
