/**
 * bindReusePort (native/reuseport.c): sockets of one SO_REUSEPORT group on one 127.0.0.1 port each get a share
 * of fresh connections (and UDP flows); a port held without SO_REUSEPORT is EADDRINUSE; every error names its
 * syscall and leaves no fd open; the sockets are nonblocking and close-on-exec.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { closeFds } from '../src/fd/fds.js';
import { bindReusePort, type ReusePortSocket } from '../src/fd/reuseport.js';
import { bindOnFd, listenOnFd } from '../src/fd/adopt.js';
import { probe } from '../src/fd/index.js';
import { FIXTURES, spawnNode, within } from './helpers.js';
import {
  closeDgram,
  closeServer,
  connectMany,
  countAccepts,
  fdList,
  ipv6Available,
  NO_IPV6,
  throwsCode,
  warmUp,
} from './fd-helpers.js';

type Cleanup = { after(fn: () => unknown): void };

/** n sockets of one group on a fresh port of `host`, each closed after the test. */
function group(t: Cleanup, n: number, type: 'tcp' | 'udp', host = '127.0.0.1'): ReusePortSocket[] {
  const first = bindReusePort({ type, host, port: 0 });
  const all = [first];
  for (let i = 1; i < n; i++) all.push(bindReusePort({ type, host, port: first.port }));
  // A socket handed to a server is marked fd -1 (claim): its server closes it.
  t.after(() => closeFds(all.filter((s) => s.fd >= 0).map((s) => s.fd)));
  return all;
}

/** Serve each socket of the group with a counting server (which owns the fd from then on). */
function countingServers(t: Cleanup, sockets: ReusePortSocket[]): Promise<number[]> {
  return countAccepts(
    t,
    sockets.map((_, i) => claim(sockets, i)),
  );
}

/** Take socket i's fd out of the group's cleanup list (its new owner closes it). */
function claim(sockets: ReusePortSocket[], i: number): number {
  const fd = sockets[i]!.fd;
  sockets[i] = { ...sockets[i]!, fd: -1 };
  return fd;
}

test.before(warmUp);

test('2 reuseport sockets on one 127.0.0.1 port: each accepts at least 15% of 200 fresh connections', async (t) => {
  const sockets = group(t, 2, 'tcp');
  assert.equal(sockets[1]!.port, sockets[0]!.port);
  const port = sockets[0]!.port;
  const counts = await countingServers(t, sockets);
  await connectMany(port, '127.0.0.1', 200);
  assert.equal(counts[0]! + counts[1]!, 200);
  for (const c of counts) assert.ok(c >= 30, `connections per socket: ${counts.join(', ')}`);
});

test('4 reuseport sockets on one port: every one of them accepts connections', async (t) => {
  const sockets = group(t, 4, 'tcp');
  const port = sockets[0]!.port;
  const counts = await countingServers(t, sockets);
  await connectMany(port, '127.0.0.1', 200);
  assert.equal(
    counts.reduce((a, b) => a + b),
    200,
  );
  for (const c of counts) assert.ok(c > 0, `connections per socket: ${counts.join(', ')}`);
});

test('IPv6: a group on ::1, v6only as asked', async (t) => {
  if (!(await ipv6Available())) return t.skip(NO_IPV6);
  const sockets = group(t, 2, 'tcp', '::1');
  assert.equal(sockets[0]!.family, 'IPv6');
  const counts = await countingServers(t, sockets);
  await connectMany(sockets[0]!.port, '::1', 60);
  assert.equal(counts[0]! + counts[1]!, 60);
});

test('UDP: 2 reuseport sockets share a port; flows from many source ports reach both', async (t) => {
  const sockets = group(t, 2, 'udp');
  const counts = [0, 0];
  for (const i of [0, 1]) {
    const s = dgram.createSocket('udp4');
    s.on('message', () => counts[i]!++);
    await bindOnFd(s, claim(sockets, i));
    t.after(() => closeDgram(s));
  }
  const port = sockets[0]!.port;
  for (let i = 0; i < 40; i++) {
    const client = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) =>
      client.send('x', port, '127.0.0.1', (err) => (err ? reject(err) : resolve())),
    );
    client.close();
  }
  for (let i = 0; i < 100 && counts[0]! + counts[1]! < 40; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(counts[0]! + counts[1]!, 40, 'every datagram arrived');
  assert.ok(counts[0]! > 0 && counts[1]! > 0, `datagrams per socket: ${counts.join(', ')}`);
});

test('the sockets are nonblocking and close-on-exec; TCP ones listen, UDP ones do not', (t) => {
  const [tcp] = group(t, 1, 'tcp');
  const [udp] = group(t, 1, 'udp');
  const a = probe(tcp!.fd);
  assert.equal(a.kind, 'tcp-listener');
  assert.ok(a.nonblocking && a.cloexec);
  const b = probe(udp!.fd);
  assert.equal(b.kind, 'udp');
  assert.ok(b.nonblocking && b.cloexec);
});

test('EADDRINUSE (bind) when a socket without SO_REUSEPORT holds the port, either way round; no fd leaks', async (t) => {
  const plain = net.createServer();
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  t.after(() => closeServer(plain));
  const port = (plain.address() as net.AddressInfo).port;
  const before = fdList();
  const err = throwsCode(() => bindReusePort({ type: 'tcp', host: '127.0.0.1', port }), Error, 'EADDRINUSE');
  assert.equal(err.syscall, 'bind');
  assert.match(err.message, new RegExp(`127\\.0\\.0\\.1 port ${port}`));
  assert.deepEqual(fdList(), before);

  const plainUdp = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => plainUdp.bind(0, '127.0.0.1', resolve));
  t.after(() => closeDgram(plainUdp));
  const udpPort = plainUdp.address().port;
  const before2 = fdList();
  const e2 = throwsCode(() => bindReusePort({ type: 'udp', host: '127.0.0.1', port: udpPort }), Error, 'EADDRINUSE');
  assert.equal(e2.syscall, 'bind');
  assert.deepEqual(fdList(), before2);

  // The other way round: a group holds the port, Node's own (exclusive) listen cannot take it.
  const [held] = group(t, 1, 'tcp');
  const other = net.createServer();
  const e3 = await new Promise<NodeJS.ErrnoException>((resolve) => {
    other.once('error', resolve);
    other.listen(held!.port, '127.0.0.1');
  });
  assert.equal(e3.code, 'EADDRINUSE');
});

test("exclusive: a group's first socket refuses a port another group holds, but not one with TIME_WAIT left", async (t) => {
  const [held] = group(t, 1, 'tcp');
  const before = fdList();
  const err = throwsCode(
    () => bindReusePort({ type: 'tcp', host: '127.0.0.1', port: held!.port, exclusive: true }),
    Error,
    'EADDRINUSE',
  );
  assert.equal(err.syscall, 'bind');
  assert.match(err.message, /held by another socket/);
  assert.deepEqual(fdList(), before, "the check's own socket is closed");
  const [udp] = group(t, 1, 'udp');
  throwsCode(
    () => bindReusePort({ type: 'udp', host: '127.0.0.1', port: udp!.port, exclusive: true }),
    Error,
    'EADDRINUSE',
  );
  // Without exclusive it joins the group: what the group's other sockets do.
  const joined = bindReusePort({ type: 'tcp', host: '127.0.0.1', port: held!.port });
  closeFds([joined.fd]);

  // A port whose listener is gone but whose last connection the server closed first (TIME_WAIT on its side)
  // is free to a new group.
  const sockets = group(t, 1, 'tcp');
  const port = sockets[0]!.port;
  const server = net.createServer((c) => c.end('x')); // the server closes first: TIME_WAIT is the server's
  await listenOnFd(server, claim(sockets, 0));
  await connectMany(port, '127.0.0.1', 1);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const again = bindReusePort({ type: 'tcp', host: '127.0.0.1', port, exclusive: true });
  closeFds([again.fd]);
});

test('an address not on this host: EADDRNOTAVAIL from bind, nothing left open', () => {
  const before = fdList();
  const err = throwsCode(() => bindReusePort({ type: 'tcp', host: '192.0.2.1', port: 0 }), Error, 'EADDRNOTAVAIL');
  assert.equal(err.syscall, 'bind');
  assert.deepEqual(fdList(), before);
});

test('a privileged port without the capability: EACCES from bind, nothing left open', (t) => {
  if (process.getuid!() === 0) return t.skip('runs as root: binding port 1 is allowed');
  const before = fdList();
  const err = throwsCode(() => bindReusePort({ type: 'tcp', host: '127.0.0.1', port: 1 }), Error, 'EACCES');
  assert.equal(err.syscall, 'bind');
  assert.deepEqual(fdList(), before);
});

test('bad arguments are TypeError/RangeError, thrown before any socket exists', () => {
  const before = fdList();
  const bad = (o: unknown) => bindReusePort(o as Parameters<typeof bindReusePort>[0]);
  throwsCode(() => bad(null), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => bad({ type: 'sctp', port: 0 }), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => bad({ type: 'tcp', host: 'localhost', port: 0 }), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => bad({ type: 'tcp', host: 7, port: 0 }), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => bad({ type: 'tcp', port: '80' }), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => bad({ type: 'tcp', port: 1.5 }), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => bad({ type: 'tcp', port: 65536 }), RangeError, 'ERR_OUT_OF_RANGE');
  throwsCode(() => bad({ type: 'tcp', port: 0, backlog: -1 }), RangeError, 'ERR_OUT_OF_RANGE');
  throwsCode(() => bad({ type: 'tcp', port: 0, ipv6Only: 1 }), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => bad({ type: 'tcp', port: 0, exclusive: 'yes' }), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => bad({ type: 'tcp', host: 'fe80::1%nosuchif0', port: 0 }), TypeError, 'ERR_INVALID_ARG_VALUE');
  assert.deepEqual(fdList(), before);
});

test('no fd to spare: EMFILE from socket(), and the process has as many fds open as before', async (t) => {
  const child = spawnNode(t, path.join(FIXTURES, 'reuseport-emfile.js'));
  assert.equal(await within(child.exited, 30_000, 'the reuseport-emfile fixture'), 0, child.stderr());
  const out = JSON.parse(child.stdout().trim().split('\n').pop()!) as Record<string, unknown>;
  if (out.skip) return t.skip(String(out.skip));
  assert.equal(out.code, 'EMFILE', JSON.stringify(out));
  assert.equal(out.syscall, 'socket', JSON.stringify(out));
  assert.equal(out.after, out.before);
});
