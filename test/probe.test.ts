/**
 * probe(fd | object): the kind, family, socket type, addresses and flags of every kind of fd baton deals
 * with, as the kernel reports them, without changing anything about the fd.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { before, test } from 'node:test';
import { dupFd, fdOf, probe, type FdInfo } from '../src/index.js';
import { expectFdsBackTo, fdCount, fdinfoFlags, O_CLOEXEC, O_NONBLOCK, tmpDir } from './helpers.js';
import {
  bindUdp,
  closeServer,
  closedFd,
  connectedPair,
  connectedUnixPair,
  fdList,
  ipv6Available,
  listenTcp,
  NO_IPV6,
  openFifo,
  runPythonUnixDgram,
  throwsCode,
  warmUp,
} from './fd-helpers.js';

before(warmUp);

/** probe(), checking that it changed no flag and that probing the number gives the same answer. */
function probed(source: Parameters<typeof probe>[0]): FdInfo {
  const fd = fdOf(source);
  const flags = fdinfoFlags(fd);
  const info = probe(source);
  assert.equal(fdinfoFlags(fd), flags, 'probe must not change the fd flags');
  assert.deepEqual(probe(fd), info, 'probing the number or the object gives the same answer');
  assert.equal(info.fd, fd);
  assert.equal(info.nonblocking, (flags & O_NONBLOCK) !== 0, 'nonblocking matches /proc fdinfo');
  assert.equal(info.cloexec, (flags & O_CLOEXEC) !== 0, 'cloexec matches /proc fdinfo');
  return info;
}

const socketCommon = { nonblocking: true, cloexec: true, accessMode: 'rw' } as const;

test('probe: TCP listener on 127.0.0.1', async (t) => {
  const server = await listenTcp(t);
  const info = probed(server);
  assert.deepEqual(shapeOf(info), {
    kind: 'tcp-listener',
    family: 'IPv4',
    socketType: 'stream',
    listening: true,
    local: { family: 'IPv4', address: '127.0.0.1', port: (server.address() as net.AddressInfo).port },
    remote: null,
    ...socketCommon,
  });
  assert.ok(info.inode > 0);
});

test('probe: TCP listener on ::1', async (t) => {
  if (!(await ipv6Available())) return t.skip(NO_IPV6);
  const server = await listenTcp(t, '::1');
  const info = probed(server);
  assert.equal(info.kind, 'tcp-listener');
  assert.equal(info.family, 'IPv6');
  assert.equal(info.listening, true);
  assert.deepEqual(info.local, {
    family: 'IPv6',
    address: '::1',
    port: (server.address() as net.AddressInfo).port,
    scopeId: 0,
  });
  assert.equal(info.remote, null);
});

for (const host of ['127.0.0.1', '::1']) {
  test(`probe: TCP connection over ${host}, both ends, addresses as Node reports them`, async (t) => {
    if (host === '::1' && !(await ipv6Available())) return t.skip(NO_IPV6);
    const { client, accepted, server } = await connectedPair(t, host);
    const family = host === '::1' ? 'IPv6' : 'IPv4';
    const c = probed(client);
    const a = probed(accepted);
    for (const [info, sock] of [
      [c, client],
      [a, accepted],
    ] as const) {
      assert.equal(info.kind, 'tcp-connection');
      assert.equal(info.family, family);
      assert.equal(info.socketType, 'stream');
      assert.equal(info.listening, false);
      assert.deepEqual(flagsOf(info), socketCommon);
      const local = info.local as { address: string; port: number; family: string };
      const remote = info.remote as { address: string; port: number; family: string };
      const addr = sock.address() as net.AddressInfo;
      assert.equal(local.family, family);
      assert.equal(local.address, addr.address);
      assert.equal(local.port, addr.port);
      assert.equal(remote.family, family);
      assert.equal(remote.address, sock.remoteAddress);
      assert.equal(remote.port, sock.remotePort);
    }
    assert.equal((c.remote as { port: number }).port, (server.address() as net.AddressInfo).port);
    assert.deepEqual(c.local, a.remote, "the client's local address is the accepted socket's remote");
    assert.notEqual(c.inode, a.inode);
  });
}

test('probe: UDP sockets (udp4, udp6, and a connected one)', async (t) => {
  const u4 = await bindUdp(t);
  const info = probed(u4);
  assert.deepEqual(shapeOf(info), {
    kind: 'udp',
    family: 'IPv4',
    socketType: 'dgram',
    listening: false,
    local: { family: 'IPv4', address: '127.0.0.1', port: u4.address().port },
    remote: null,
    ...socketCommon,
  });

  const peer = await bindUdp(t);
  await new Promise<void>((resolve, reject) =>
    peer.connect(u4.address().port, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve())),
  );
  const connected = probed(peer);
  assert.equal(connected.kind, 'udp');
  assert.deepEqual(connected.remote, { family: 'IPv4', address: '127.0.0.1', port: u4.address().port });

  if (!(await ipv6Available())) return t.diagnostic(`udp6 not checked: ${NO_IPV6}`);
  const u6 = await bindUdp(t, 'udp6');
  const info6 = probed(u6);
  assert.equal(info6.kind, 'udp');
  assert.equal(info6.family, 'IPv6');
  assert.deepEqual(info6.local, { family: 'IPv6', address: '::1', port: u6.address().port, scopeId: 0 });
});

test('probe: Unix listener, both ends of a Unix connection, and an abstract-namespace listener', async (t) => {
  const { server, client, accepted, path: file } = await connectedUnixPair(t);
  const l = probed(server);
  assert.deepEqual(shapeOf(l), {
    kind: 'unix-listener',
    family: 'unix',
    socketType: 'stream',
    listening: true,
    local: { family: 'unix', path: file },
    remote: null,
    ...socketCommon,
  });
  const c = probed(client);
  assert.equal(c.kind, 'unix-connection');
  assert.equal(c.listening, false);
  assert.deepEqual(c.local, { family: 'unix', path: '' }, 'the client socket is unnamed');
  assert.deepEqual(c.remote, { family: 'unix', path: file });
  const a = probed(accepted);
  assert.equal(a.kind, 'unix-connection');
  assert.deepEqual(a.local, { family: 'unix', path: file });
  assert.deepEqual(a.remote, { family: 'unix', path: '' });

  const abstract = net.createServer();
  t.after(() => closeServer(abstract));
  const name = `baton-probe-${process.pid}`;
  await new Promise<void>((resolve) => abstract.listen(`\0${name}`, resolve));
  const ab = probed(abstract);
  assert.equal(ab.kind, 'unix-listener');
  assert.deepEqual(ab.local, { family: 'unix', path: `@${name}` });
});

test('probe: regular files (access modes, size), a directory, /dev/null', async (t) => {
  const baseline = fdCount();
  const dir = tmpDir(t);
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, 'hello world');
  for (const [flag, mode] of [
    ['r', 'r'],
    ['a', 'w'],
    ['r+', 'rw'],
  ] as const) {
    const fd = fs.openSync(file, flag);
    try {
      const info = probed(fd);
      assert.deepEqual(
        { ...shapeOf(info), size: info.size, inode: info.inode },
        {
          kind: 'file',
          family: null,
          socketType: null,
          listening: false,
          local: null,
          remote: null,
          accessMode: mode,
          nonblocking: false,
          cloexec: true,
          size: 11,
          inode: fs.statSync(file).ino,
        },
        `opened '${flag}'`,
      );
    } finally {
      fs.closeSync(fd);
    }
  }
  const dfd = fs.openSync(dir, 'r');
  assert.equal(probed(dfd).kind, 'directory');
  fs.closeSync(dfd);
  const nfd = fs.openSync('/dev/null', 'r+');
  const n = probed(nfd);
  assert.equal(n.kind, 'char-device');
  assert.equal(n.accessMode, 'rw');
  fs.closeSync(nfd);
  const fh = await fs.promises.open(file, 'r');
  assert.equal(probed(fh).kind, 'file', 'a FileHandle is probed through fdOf');
  await fh.close();
  await expectFdsBackTo(baseline, 'probing files');
});

test('probe: a FIFO, blocking and nonblocking', async (t) => {
  const dir = tmpDir(t);
  const fd = openFifo(t, dir);
  const info = probed(fd);
  assert.equal(info.kind, 'pipe');
  assert.equal(info.family, null);
  assert.equal(info.accessMode, 'rw');
  assert.equal(info.nonblocking, false, 'opened without O_NONBLOCK');
  const dir2 = tmpDir(t);
  const nb = openFifo(t, dir2, fs.constants.O_NONBLOCK);
  assert.equal(probed(nb).nonblocking, true, 'opened with O_NONBLOCK');
  assert.equal(probed(nb).kind, 'pipe');
});

test('probe: stdio fds and an fd Node cannot wrap (epoll) are reported as they are', () => {
  // (Node marks its inherited stdio close-on-exec at startup; the unix-dgram test below covers an fd
  // without FD_CLOEXEC.)
  for (const fd of [0, 1, 2]) if (fdList().includes(fd)) probed(fd); // compares cloexec and nonblocking with /proc

  // libuv's epoll fd: an anonymous inode, neither socket nor file.
  const epoll = fdList().find((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[eventpoll]';
    } catch {
      return false;
    }
  });
  assert.ok(epoll !== undefined, 'a Node process has an epoll fd');
  const info = probed(epoll);
  assert.equal(info.kind, 'other');
  assert.equal(info.family, null);
  assert.equal(info.socketType, null);
});

test('probe: unix-dgram sockets (made by python3, inherited by a Node child)', async (t) => {
  const dir = tmpDir(t);
  const result = await runPythonUnixDgram(path.join(dir, 'dgram.sock'));
  if (result === null) return t.skip('python3 is not available to create AF_UNIX SOCK_DGRAM sockets');
  const [pairEnd, bound] = result;
  for (const r of [pairEnd!, bound!]) {
    assert.equal(r.info.kind, 'unix-dgram');
    assert.equal(r.info.family, 'unix');
    assert.equal(r.info.socketType, 'dgram');
    assert.equal(r.info.listening, false);
    assert.equal(r.flagsAfter, r.flagsBefore, 'probe did not change the flags');
    // python sockets are blocking, and these two are inheritable (see fd-helpers): probe must say so.
    assert.equal(r.info.nonblocking, false);
    assert.equal(r.info.cloexec, false);
    assert.equal((r.flagsBefore & O_NONBLOCK) !== 0, r.info.nonblocking);
  }
  assert.deepEqual(pairEnd!.info.local, { family: 'unix', path: '' });
  assert.deepEqual(
    pairEnd!.info.remote,
    { family: 'unix', path: '' },
    'a socketpair end is connected to an unnamed peer',
  );
  assert.deepEqual(bound!.info.local, { family: 'unix', path: path.join(dir, 'dgram.sock') });
  assert.equal(bound!.info.remote, null);
});

test('probe: EBADF for a closed fd; argument and not-open errors', async (t) => {
  const fd = closedFd();
  const err = throwsCode(() => probe(fd), Error, 'EBADF') as Error & { syscall?: string; errno?: number };
  assert.equal(err.syscall, 'fstat');
  assert.equal(err.errno, -9);
  throwsCode(() => probe(-1), RangeError, 'ERR_OUT_OF_RANGE');
  throwsCode(() => probe('0' as unknown as number), TypeError, 'ERR_INVALID_ARG_TYPE');
  const server = await listenTcp(t);
  const d = dupFd(server);
  await closeServer(server);
  throwsCode(() => probe(server), TypeError, 'ERR_BATON_NOT_OPEN');
  assert.equal(probe(d).kind, 'tcp-listener', 'the dup outlives the server object, and is still listening');
  fs.closeSync(d);
});

/** The flags every socket shares (compared with socketCommon). */
function flagsOf(info: FdInfo): Pick<FdInfo, 'nonblocking' | 'cloexec' | 'accessMode'> {
  return { nonblocking: info.nonblocking, cloexec: info.cloexec, accessMode: info.accessMode };
}

/** Everything probe() says about an fd except what differs per fd (its number, inode and size). */
function shapeOf(info: FdInfo): Omit<FdInfo, 'fd' | 'inode' | 'size'> {
  return {
    kind: info.kind,
    family: info.family,
    socketType: info.socketType,
    listening: info.listening,
    local: info.local,
    remote: info.remote,
    ...flagsOf(info),
  };
}
