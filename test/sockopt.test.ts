/**
 * getSockOpt / setSockOpt by name, and the raw forms: every known name reads on a fitting socket, the
 * writable ones round-trip, TCP_INFO decodes, and every misuse fails the documented way (TypeError,
 * RangeError, or the kernel's errno with the syscall) before or at the syscall. None of it changes the
 * socket's blocking mode, and no fd is leaked.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { before, test } from 'node:test';
import {
  fdOf,
  getSockOpt,
  getSockOptRaw,
  setSockOpt,
  setSockOptRaw,
  sockOptNames,
  type SockOptName,
  type FdSource,
} from '../src/index.js';
import { native } from '../src/fd/native.js';
import { expectFdsBackTo, fdCount, fdinfoFlags, O_NONBLOCK, within } from './helpers.js';
import {
  bindUdp,
  closeDgram,
  closeServer,
  connectedPair,
  destroySocket,
  ipv6Available,
  NO_IPV6,
  throwsCode,
  warmUp,
} from './fd-helpers.js';

before(warmUp);

const C = native.constants;

/** The value type of every option baton knows, and which socket to read it on. */
const EXPECTED: Record<
  SockOptName,
  { kind: 'int' | 'bool' | 'linger' | 'string' | 'tcpinfo'; on: 'tcp' | 'udp' | 'tcp6' | 'listener' }
> = {
  SO_RCVBUF: { kind: 'int', on: 'tcp' },
  SO_SNDBUF: { kind: 'int', on: 'tcp' },
  SO_RCVBUFFORCE: { kind: 'int', on: 'tcp' },
  SO_SNDBUFFORCE: { kind: 'int', on: 'tcp' },
  SO_REUSEADDR: { kind: 'bool', on: 'listener' },
  SO_REUSEPORT: { kind: 'bool', on: 'listener' },
  SO_KEEPALIVE: { kind: 'bool', on: 'tcp' },
  SO_LINGER: { kind: 'linger', on: 'tcp' },
  SO_RCVLOWAT: { kind: 'int', on: 'tcp' },
  SO_BINDTODEVICE: { kind: 'string', on: 'tcp' },
  SO_BROADCAST: { kind: 'bool', on: 'udp' },
  SO_PRIORITY: { kind: 'int', on: 'tcp' },
  SO_MARK: { kind: 'int', on: 'tcp' },
  SO_TYPE: { kind: 'int', on: 'tcp' },
  SO_DOMAIN: { kind: 'int', on: 'tcp' },
  SO_ERROR: { kind: 'int', on: 'tcp' },
  SO_ACCEPTCONN: { kind: 'bool', on: 'listener' },
  TCP_NODELAY: { kind: 'bool', on: 'tcp' },
  TCP_KEEPIDLE: { kind: 'int', on: 'tcp' },
  TCP_KEEPINTVL: { kind: 'int', on: 'tcp' },
  TCP_KEEPCNT: { kind: 'int', on: 'tcp' },
  TCP_USER_TIMEOUT: { kind: 'int', on: 'tcp' },
  TCP_CONGESTION: { kind: 'string', on: 'tcp' },
  TCP_DEFER_ACCEPT: { kind: 'int', on: 'listener' },
  TCP_FASTOPEN: { kind: 'int', on: 'listener' },
  TCP_MAXSEG: { kind: 'int', on: 'tcp' },
  TCP_QUICKACK: { kind: 'bool', on: 'tcp' },
  TCP_CORK: { kind: 'bool', on: 'tcp' },
  TCP_NOTSENT_LOWAT: { kind: 'int', on: 'tcp' },
  TCP_INFO: { kind: 'tcpinfo', on: 'tcp' },
  IP_TOS: { kind: 'int', on: 'tcp' },
  IP_TTL: { kind: 'int', on: 'tcp' },
  IP_MULTICAST_TTL: { kind: 'int', on: 'udp' },
  IP_MULTICAST_LOOP: { kind: 'bool', on: 'udp' },
  IPV6_V6ONLY: { kind: 'bool', on: 'tcp6' },
  IPV6_UNICAST_HOPS: { kind: 'int', on: 'tcp6' },
  IPV6_TCLASS: { kind: 'int', on: 'tcp6' },
};

const READ_ONLY: SockOptName[] = ['SO_TYPE', 'SO_DOMAIN', 'SO_ERROR', 'SO_ACCEPTCONN', 'TCP_INFO'];

const TCP_INFO_FIELDS = [
  'state',
  'ca_state',
  'retransmits',
  'probes',
  'backoff',
  'options',
  'snd_wscale',
  'rcv_wscale',
  'rto',
  'ato',
  'snd_mss',
  'rcv_mss',
  'unacked',
  'sacked',
  'lost',
  'retrans',
  'fackets',
  'last_data_sent',
  'last_ack_sent',
  'last_data_recv',
  'last_ack_recv',
  'pmtu',
  'rcv_ssthresh',
  'rtt',
  'rttvar',
  'snd_ssthresh',
  'snd_cwnd',
  'advmss',
  'reordering',
  'rcv_rtt',
  'rcv_space',
  'total_retrans',
];

function sysctl(name: string): string {
  return fs.readFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, 'utf8').trim();
}

/** Run `fn`; if the kernel says EPERM (no capability in this container), skip the rest with a reason. */
function unlessEperm(t: { diagnostic(msg: string): void }, what: string, fn: () => void): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if ((err as { code?: string }).code !== 'EPERM') throw err;
    t.diagnostic(`${what} not checked: EPERM (this process lacks the capability)`);
    return false;
  }
}

const NOT_SUPPORTED = ['ENOPROTOOPT', 'EOPNOTSUPP', 'ENOTSUP'];

test('sockOptNames is the documented set, and every name reads on a fitting socket with the right value type', async (t) => {
  const baseline = fdCount();
  assert.deepEqual([...sockOptNames].sort(), Object.keys(EXPECTED).sort());
  assert.ok(Object.isFrozen(sockOptNames));
  const { client, accepted, server } = await connectedPair(t);
  const udp = await bindUdp(t);
  const v6 = (await ipv6Available()) ? await connectedPair(t, '::1') : null;
  if (!v6) t.diagnostic(`IPV6_* options not read: ${NO_IPV6}`);
  const sockets: Record<string, FdSource | undefined> = { tcp: client, udp, listener: server, tcp6: v6?.client };
  for (const name of sockOptNames) {
    const { kind, on } = EXPECTED[name];
    const source = sockets[on];
    if (!source) continue;
    const value: unknown = getSockOpt(source, name);
    switch (kind) {
      case 'int':
        assert.ok(Number.isInteger(value), `${name}: an integer, got ${String(value)}`);
        break;
      case 'bool':
        assert.equal(typeof value, 'boolean', name);
        break;
      case 'linger':
        assert.deepEqual(Object.keys(value as object).sort(), ['enabled', 'seconds'], name);
        assert.equal(typeof (value as { enabled: unknown }).enabled, 'boolean');
        assert.ok(Number.isInteger((value as { seconds: unknown }).seconds));
        break;
      case 'string':
        assert.equal(typeof value, 'string', name);
        break;
      case 'tcpinfo':
        assert.equal(typeof value, 'object', name);
        break;
    }
  }
  // Values the kernel fixes, so these reads are checked for what they say and not only their type.
  assert.equal(getSockOpt(client, 'SO_TYPE'), C.SOCK_STREAM);
  assert.equal(getSockOpt(udp, 'SO_TYPE'), C.SOCK_DGRAM);
  assert.equal(getSockOpt(client, 'SO_DOMAIN'), C.AF_INET);
  if (v6) assert.equal(getSockOpt(v6.client, 'SO_DOMAIN'), C.AF_INET6);
  assert.equal(getSockOpt(server, 'SO_ACCEPTCONN'), true);
  assert.equal(getSockOpt(accepted, 'SO_ACCEPTCONN'), false);
  assert.equal(getSockOpt(client, 'SO_ERROR'), 0);
  assert.equal(getSockOpt(server, 'SO_REUSEADDR'), true, 'Node sets SO_REUSEADDR on its listeners');
  assert.equal(getSockOpt(client, 'SO_LINGER').enabled, false);
  assert.equal(getSockOpt(client, 'SO_BINDTODEVICE'), '');
  assert.equal(getSockOpt(client, 'IP_TTL'), Number(sysctl('net.ipv4.ip_default_ttl')));
  assert.ok(
    sysctl('net.ipv4.tcp_available_congestion_control').split(/\s+/).includes(getSockOpt(client, 'TCP_CONGESTION')),
  );
  // The *FORCE options are set-only in the kernel; reading them reads the buffer size they set.
  assert.equal(getSockOpt(client, 'SO_RCVBUFFORCE'), getSockOpt(client, 'SO_RCVBUF'));
  assert.equal(getSockOpt(client, 'SO_SNDBUFFORCE'), getSockOpt(client, 'SO_SNDBUF'));

  await destroySocket(client);
  await destroySocket(accepted);
  await closeServer(server);
  await closeDgram(udp);
  if (v6) {
    await destroySocket(v6.client);
    await destroySocket(v6.accepted);
    await closeServer(v6.server);
  }
  await expectFdsBackTo(baseline, 'reading every option');
});

test('writable options round-trip; the socket stays nonblocking and closes promptly; no fd leak', async (t) => {
  const baseline = fdCount();
  const { client, accepted, server } = await connectedPair(t);
  const udp = await bindUdp(t);
  const connFlags = fdinfoFlags(fdOf(client));

  const roundTrip = (source: FdSource, name: SockOptName, value: unknown, expected: unknown = value) => {
    setSockOpt(source, name as string, value);
    assert.deepEqual(getSockOpt(source, name), expected, `${name} set to ${JSON.stringify(value)}`);
  };

  // Linux doubles the buffer sizes (half is bookkeeping), capped by rmem_max/wmem_max.
  const rmem = Number(sysctl('net.core.rmem_max'));
  const wmem = Number(sysctl('net.core.wmem_max'));
  roundTrip(client, 'SO_RCVBUF', 65536, 2 * Math.min(65536, rmem));
  roundTrip(client, 'SO_SNDBUF', 65536, 2 * Math.min(65536, wmem));
  roundTrip(udp, 'SO_RCVBUF', 32768, 2 * Math.min(32768, rmem));
  // The FORCE variants ignore the caps, but need CAP_NET_ADMIN.
  const big = rmem + 4096;
  unlessEperm(t, 'SO_RCVBUFFORCE', () => roundTrip(udp, 'SO_RCVBUFFORCE', big, 2 * big));
  unlessEperm(t, 'SO_SNDBUFFORCE', () => roundTrip(udp, 'SO_SNDBUFFORCE', wmem + 4096, 2 * (wmem + 4096)));

  for (const [source, name] of [
    [server, 'SO_REUSEADDR'],
    [server, 'SO_REUSEPORT'],
    [client, 'SO_KEEPALIVE'],
    [udp, 'SO_BROADCAST'],
    [client, 'TCP_NODELAY'],
    [client, 'TCP_CORK'],
    [client, 'TCP_QUICKACK'],
    [udp, 'IP_MULTICAST_LOOP'],
  ] as const) {
    const initial = getSockOpt(source, name) as boolean;
    roundTrip(source, name, !initial);
    roundTrip(source, name, initial);
  }
  roundTrip(client, 'TCP_NODELAY', false); // Node turns it on for its sockets by default; leave it off here

  roundTrip(client, 'SO_LINGER', { enabled: true, seconds: 7 });
  setSockOpt(client, 'SO_LINGER', { enabled: false, seconds: 0 });
  assert.equal(getSockOpt(client, 'SO_LINGER').enabled, false, 'SO_LINGER off (the kernel keeps the old seconds)');
  roundTrip(client, 'SO_RCVLOWAT', 10);
  roundTrip(client, 'SO_RCVLOWAT', 1);
  roundTrip(client, 'SO_PRIORITY', 3);
  unlessEperm(t, 'SO_MARK', () => roundTrip(client, 'SO_MARK', 42));
  roundTrip(client, 'TCP_KEEPIDLE', 33);
  roundTrip(client, 'TCP_KEEPINTVL', 11);
  roundTrip(client, 'TCP_KEEPCNT', 4);
  roundTrip(client, 'TCP_USER_TIMEOUT', 1234);
  roundTrip(client, 'TCP_NOTSENT_LOWAT', 16384);
  roundTrip(server, 'TCP_DEFER_ACCEPT', 3); // kept as retransmissions: 1 + 2 seconds reads back as 3
  roundTrip(server, 'TCP_FASTOPEN', 5);
  roundTrip(server, 'TCP_MAXSEG', 1200); // a listener reports the user MSS
  roundTrip(client, 'IP_TOS', 0x10);
  roundTrip(client, 'IP_TTL', 33);
  roundTrip(udp, 'IP_MULTICAST_TTL', 5);

  const available = sysctl('net.ipv4.tcp_available_congestion_control').split(/\s+/);
  const current = getSockOpt(client, 'TCP_CONGESTION');
  const other = ['reno', 'cubic', ...available].find((n) => n !== current && available.includes(n));
  if (other) {
    roundTrip(client, 'TCP_CONGESTION', other);
    roundTrip(client, 'TCP_CONGESTION', current);
  } else t.diagnostic(`TCP_CONGESTION change not checked: only ${current} is available`);

  // SO_BINDTODEVICE needs CAP_NET_RAW; the connection is over loopback, so binding it to lo is harmless.
  if (unlessEperm(t, 'SO_BINDTODEVICE', () => roundTrip(client, 'SO_BINDTODEVICE', 'lo')))
    roundTrip(client, 'SO_BINDTODEVICE', '');

  if (await ipv6Available()) {
    const v6 = await connectedPair(t, '::1');
    roundTrip(v6.client, 'IPV6_UNICAST_HOPS', 20);
    roundTrip(v6.client, 'IPV6_TCLASS', 0x20);
    assert.equal(typeof getSockOpt(v6.client, 'IPV6_V6ONLY'), 'boolean');
    // IPV6_V6ONLY can only change before bind(2); every socket Node hands out is bound, so the kernel refuses.
    const err = throwsCode(() => setSockOpt(v6.client, 'IPV6_V6ONLY', true), Error, 'EINVAL');
    assert.equal(err.syscall, 'setsockopt');
    await destroySocket(v6.client);
    await destroySocket(v6.accepted);
    await closeServer(v6.server);
  } else t.diagnostic(`IPV6_* options not set: ${NO_IPV6}`);

  // None of it touched O_NONBLOCK; the connection still works and closes promptly.
  assert.equal(fdinfoFlags(fdOf(client)), connFlags);
  assert.ok(connFlags & O_NONBLOCK);
  assert.ok(fdinfoFlags(fdOf(server)) & O_NONBLOCK);
  const got = within(
    new Promise<string>((resolve) => accepted.once('data', (d) => resolve(String(d)))),
    5000,
    'data after all the options',
  );
  client.write('after options');
  assert.equal(await got, 'after options');
  const closed = new Promise((resolve) => client.once('close', resolve));
  client.end();
  accepted.end();
  accepted.resume();
  client.resume();
  await within(closed, 5000, 'the connection to close after end()');
  await destroySocket(accepted);
  await closeServer(server);
  await closeDgram(udp);
  await expectFdsBackTo(baseline, 'setting every writable option');
});

test('TCP_INFO decodes: ESTABLISHED on a connection, LISTEN on a listener', async (t) => {
  const { client, server } = await connectedPair(t);
  const info = getSockOpt(client, 'TCP_INFO');
  assert.equal(info.stateName, 'ESTABLISHED');
  assert.equal(info.state, 1);
  for (const f of TCP_INFO_FIELDS)
    assert.equal(typeof (info as unknown as Record<string, unknown>)[f], 'number', `TCP_INFO.${f}`);
  assert.ok(info.snd_mss > 0, 'an established connection has an MSS');
  assert.ok(info.rto > 0);
  const l = getSockOpt(server, 'TCP_INFO');
  assert.equal(l.stateName, 'LISTEN');
  assert.equal(l.state, 10);
});

test('argument errors: read-only, unknown names, wrong value types, out of range; checked before any syscall', async (t) => {
  const { client, server } = await connectedPair(t);
  for (const name of READ_ONLY) {
    throwsCode(() => setSockOpt(client, name as string, 0), TypeError, 'ERR_BATON_READ_ONLY_SOCKOPT');
  }
  // Unknown names, including the names every object has.
  for (const name of [
    'SO_NOPE',
    'so_rcvbuf',
    '',
    'constructor',
    'toString',
    'hasOwnProperty',
    '__proto__',
    'valueOf',
  ]) {
    throwsCode(() => getSockOpt(client, name), TypeError, 'ERR_BATON_UNKNOWN_SOCKOPT');
    throwsCode(() => setSockOpt(client, name, 1), TypeError, 'ERR_BATON_UNKNOWN_SOCKOPT');
  }
  throwsCode(() => getSockOpt(client, 42 as unknown as string), TypeError, 'ERR_INVALID_ARG_TYPE');

  const rcvbuf = getSockOpt(client, 'SO_RCVBUF');
  const wrongType: Array<[string, unknown]> = [
    ['SO_RCVBUF', true], // bool for int
    ['SO_RCVBUF', '65536'], // string for int
    ['SO_RCVBUF', 1.5],
    ['SO_RCVBUF', null],
    ['TCP_NODELAY', 1], // number for bool
    ['TCP_NODELAY', 'true'],
    ['SO_LINGER', { enabled: true }], // missing seconds
    ['SO_LINGER', { seconds: 1 }], // missing enabled
    ['SO_LINGER', { enabled: 1, seconds: 1 }],
    ['SO_LINGER', null],
    ['SO_LINGER', 5],
    ['TCP_CONGESTION', 5],
  ];
  for (const [name, value] of wrongType) {
    throwsCode(() => setSockOpt(client, name, value), TypeError, 'ERR_INVALID_ARG_TYPE');
  }
  const outOfRange: Array<[string, unknown]> = [
    ['SO_RCVBUF', 2 ** 31],
    ['SO_RCVBUF', -(2 ** 31) - 1],
    ['SO_LINGER', { enabled: true, seconds: -1 }],
    ['SO_LINGER', { enabled: true, seconds: 2 ** 31 }],
    ['TCP_CONGESTION', 'x'.repeat(64)],
    ['TCP_CONGESTION', 'cub\0ic'],
  ];
  for (const [name, value] of outOfRange) {
    throwsCode(() => setSockOpt(client, name, value), RangeError, 'ERR_OUT_OF_RANGE');
  }
  assert.equal(getSockOpt(client, 'SO_RCVBUF'), rcvbuf, 'no failed set reached the socket');
  assert.equal(getSockOpt(client, 'SO_LINGER').enabled, false);

  await closeServer(server);
  throwsCode(() => getSockOpt(server, 'SO_RCVBUF'), TypeError, 'ERR_BATON_NOT_OPEN');
  throwsCode(() => setSockOpt(server, 'SO_RCVBUF', 4096), TypeError, 'ERR_BATON_NOT_OPEN');

  // The types say the same (these lines fail to compile if they stop being errors).
  // @ts-expect-error TCP_INFO is read-only
  throwsCode(() => setSockOpt(client, 'TCP_INFO', {}), TypeError, 'ERR_BATON_READ_ONLY_SOCKOPT');
  // @ts-expect-error SO_RCVBUF takes a number
  throwsCode(() => setSockOpt(client, 'SO_RCVBUF', true), TypeError, 'ERR_INVALID_ARG_TYPE');
  // @ts-expect-error TCP_NODELAY takes a boolean
  throwsCode(() => setSockOpt(client, 'TCP_NODELAY', 1), TypeError, 'ERR_INVALID_ARG_TYPE');
  const stateName: string = getSockOpt(client, 'TCP_INFO').stateName;
  const nodelay: boolean = getSockOpt(client, 'TCP_NODELAY');
  const linger: number = getSockOpt(client, 'SO_LINGER').seconds;
  assert.equal(typeof stateName + typeof nodelay + typeof linger, 'stringbooleannumber');
});

test('kernel refusals are Errors with the errno code and the syscall', async (t) => {
  const baseline = fdCount();
  const udp = await bindUdp(t);
  const { client, accepted, server } = await connectedPair(t);
  const check = (fn: () => unknown, syscall: string, codes: string[], what: string) => {
    let caught: (Error & { code?: string; syscall?: string; errno?: number }) | undefined;
    try {
      fn();
    } catch (err) {
      caught = err as typeof caught;
    }
    assert.ok(caught instanceof Error, `${what}: expected an Error`);
    assert.ok(codes.includes(caught.code!), `${what}: code ${caught.code} is one of ${codes.join(', ')}`);
    assert.equal(caught.syscall, syscall, what);
    assert.ok(typeof caught.errno === 'number' && caught.errno < 0, `${what}: errno is negative, as in Node`);
  };
  check(() => setSockOpt(udp, 'TCP_NODELAY', true), 'setsockopt', NOT_SUPPORTED, 'TCP_NODELAY on UDP (set)');
  check(() => getSockOpt(udp, 'TCP_NODELAY'), 'getsockopt', NOT_SUPPORTED, 'TCP_NODELAY on UDP (get)');
  check(() => getSockOpt(udp, 'TCP_INFO'), 'getsockopt', NOT_SUPPORTED, 'TCP_INFO on UDP');
  check(() => getSockOpt(client, 'IPV6_TCLASS'), 'getsockopt', NOT_SUPPORTED, 'an IPv6 option on an IPv4 socket');
  check(() => setSockOpt(client, 'TCP_FASTOPEN', 5), 'setsockopt', ['EINVAL'], 'TCP_FASTOPEN on a connected socket');
  check(
    () => setSockOpt(client, 'TCP_CONGESTION', 'no-such-algorithm'),
    'setsockopt',
    ['ENOENT'],
    'an unknown congestion control',
  );
  check(
    () => setSockOptRaw(client, C.SOL_SOCKET!, C.SO_RCVBUF!, Buffer.alloc(1)),
    'setsockopt',
    ['EINVAL'],
    'a 1-byte int',
  );
  // The socket is fine after all that.
  assert.ok(fdinfoFlags(fdOf(client)) & O_NONBLOCK);
  const got = within(
    new Promise<string>((resolve) => accepted.once('data', (d) => resolve(String(d)))),
    5000,
    'data after the refusals',
  );
  client.write('ok');
  assert.equal(await got, 'ok');
  await destroySocket(client);
  await destroySocket(accepted);
  await closeServer(server);
  await closeDgram(udp);
  await expectFdsBackTo(baseline, 'the refused options');
});

test('getSockOptRaw / setSockOptRaw', async (t) => {
  const { client, server } = await connectedPair(t);
  const type = getSockOptRaw(client, C.SOL_SOCKET!, C.SO_TYPE!, 4);
  assert.equal(type.length, 4);
  assert.equal(type.readInt32LE(0), C.SOCK_STREAM);
  assert.equal(getSockOptRaw(client, C.SOL_SOCKET!, C.SO_TYPE!).length, 4, 'the kernel says how many bytes it wrote');

  const one = Buffer.alloc(4);
  one.writeInt32LE(1);
  setSockOptRaw(client, C.IPPROTO_TCP!, C.TCP_KEEPCNT!, Buffer.from([7, 0, 0, 0]));
  assert.equal(getSockOpt(client, 'TCP_KEEPCNT'), 7);
  setSockOptRaw(client, C.SOL_SOCKET!, C.SO_KEEPALIVE!, one);
  assert.equal(getSockOpt(client, 'SO_KEEPALIVE'), true);

  const linger = Buffer.alloc(8);
  linger.writeInt32LE(1, 0);
  linger.writeInt32LE(9, 4);
  setSockOptRaw(client, C.SOL_SOCKET!, C.SO_LINGER!, linger);
  assert.deepEqual(getSockOpt(client, 'SO_LINGER'), { enabled: true, seconds: 9 });
  assert.deepEqual(getSockOptRaw(client, C.SOL_SOCKET!, C.SO_LINGER!, 8), linger);
  setSockOpt(client, 'SO_LINGER', { enabled: false, seconds: 0 });

  const cc = getSockOptRaw(client, C.IPPROTO_TCP!, C.TCP_CONGESTION!, 16);
  assert.equal(
    cc.toString('utf8', 0, cc.indexOf(0) < 0 ? cc.length : cc.indexOf(0)),
    getSockOpt(client, 'TCP_CONGESTION'),
  );

  throwsCode(() => getSockOptRaw(client, C.SOL_SOCKET!, C.SO_TYPE!, 65537), RangeError, 'ERR_OUT_OF_RANGE');
  throwsCode(() => getSockOptRaw(client, C.SOL_SOCKET!, C.SO_TYPE!, -1), RangeError, 'ERR_OUT_OF_RANGE');
  throwsCode(() => getSockOptRaw(client, 'x' as unknown as number, C.SO_TYPE!), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(
    () => setSockOptRaw(client, C.SOL_SOCKET!, C.SO_KEEPALIVE!, [1, 0, 0, 0] as unknown as Buffer),
    TypeError,
    'ERR_INVALID_ARG_TYPE',
  );
  throwsCode(() => setSockOptRaw(client, C.SOL_SOCKET!, 2 ** 31, one), RangeError, 'ERR_OUT_OF_RANGE');
  let err: (Error & { code?: string; syscall?: string }) | undefined;
  try {
    getSockOptRaw(client, 9999, 1);
  } catch (e) {
    err = e as typeof err;
  }
  assert.ok(err && NOT_SUPPORTED.includes(err.code!), `an unknown level is refused: ${String(err)}`);
  assert.equal(err.syscall, 'getsockopt');
  assert.ok(fdinfoFlags(fdOf(client)) & O_NONBLOCK);
  void server;
});
