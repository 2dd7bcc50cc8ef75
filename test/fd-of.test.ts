/**
 * fdOf / dupFd / withFd / closeFds: borrowing the fd behind a Node object has no side effect (no dup, no
 * change of blocking mode, no ownership taken); dupFd makes exactly one close-on-exec copy of the same
 * socket; withFd is synchronous and transparent; closeFds closes what it is given and nothing else.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { before, test } from 'node:test';
import { closeFds, dupFd, fdOf, probe, withFd, type FdSource } from '../src/index.js';
import { expectFdsBackTo, fdCount, fdinfoFlags, O_CLOEXEC, O_NONBLOCK, tmpDir, waitFor, within } from './helpers.js';
import {
  bindUdp,
  closeDgram,
  closeServer,
  closedFd,
  connectedPair,
  connectedUnixPair,
  destroySocket,
  fdList,
  isOpen,
  listenTcp,
  throwsCode,
  warmUp,
  stillOpen,
} from './fd-helpers.js';
import { selfSignedCert } from './tls-helpers.js';
import { get } from './upgrade-helpers.js';

before(warmUp);

interface Borrowed {
  fd: number;
  inode: number;
}

/**
 * fdOf(source) under a microscope: the set of open fds and the fd's flags are identical before and after,
 * and the result is an open fd. Returns the fd and its inode, for checking that closing the object closes it.
 */
function borrow(source: FdSource, expectSocket: boolean): Borrowed {
  const fdsBefore = fdList();
  const fd = fdOf(source);
  const fdsAfter = fdList();
  assert.deepEqual(fdsAfter, fdsBefore, 'fdOf must not open (dup) any fd');
  assert.ok(fdsBefore.includes(fd), `fdOf returned ${fd}, which is not open`);
  const flags = fdinfoFlags(fd);
  assert.equal(fdOf(source), fd, 'fdOf is stable');
  assert.equal(fdinfoFlags(fd), flags, 'fdOf must not change the fd flags');
  if (expectSocket) assert.ok(flags & O_NONBLOCK, 'a Node socket is nonblocking, and stays so');
  const info = probe(fd);
  assert.equal(fdinfoFlags(fd), flags, 'probe must not change the fd flags');
  assert.equal(info.nonblocking, (flags & O_NONBLOCK) !== 0);
  return { fd, inode: info.inode };
}

async function assertClosedAfter(b: Borrowed, what: string): Promise<void> {
  await waitFor(() => !stillOpen(b.fd, b.inode), 2000, `${what}: its fd ${b.fd} to be closed by closing the object`);
}

test(
  'fdOf: net.Server (TCP and Unix), both sides of a TCP and a Unix connection: no dup, no flag change, no ' +
    'ownership',
  async (t) => {
    const baseline = fdCount();
    const tcp = await connectedPair(t);
    const unix = await connectedUnixPair(t);

    const server = borrow(tcp.server, true);
    assert.equal(probe(server.fd).kind, 'tcp-listener');
    assert.equal((probe(server.fd).local as { port: number }).port, (tcp.server.address() as net.AddressInfo).port);

    const client = borrow(tcp.client, true);
    const accepted = borrow(tcp.accepted, true);
    assert.notEqual(client.fd, accepted.fd);
    assert.equal((probe(client.fd).local as { port: number }).port, tcp.client.localPort);
    assert.equal((probe(client.fd).remote as { port: number }).port, tcp.client.remotePort);
    assert.equal((probe(accepted.fd).local as { port: number }).port, tcp.accepted.localPort);

    const userver = borrow(unix.server, true);
    assert.deepEqual(probe(userver.fd).local, { family: 'unix', path: unix.path });
    const uclient = borrow(unix.client, true);
    const uaccepted = borrow(unix.accepted, true);
    assert.equal(probe(uclient.fd).kind, 'unix-connection');
    assert.equal(probe(uaccepted.fd).kind, 'unix-connection');

    // The objects still work normally after being borrowed from.
    const echoed = new Promise<string>((resolve) => tcp.client.once('data', (d) => resolve(String(d))));
    tcp.accepted.write('after fdOf');
    assert.equal(await within(echoed, 5000, 'data over a borrowed connection'), 'after fdOf');

    // ...and close normally: closing the object closes the fd (nobody else owns it).
    await destroySocket(tcp.client);
    await assertClosedAfter(client, 'TCP client');
    await destroySocket(tcp.accepted);
    await assertClosedAfter(accepted, 'accepted TCP socket');
    await closeServer(tcp.server);
    await assertClosedAfter(server, 'TCP server');
    await destroySocket(unix.client);
    await destroySocket(unix.accepted);
    await closeServer(unix.server);
    await assertClosedAfter(uclient, 'Unix client');
    await assertClosedAfter(uaccepted, 'accepted Unix socket');
    await assertClosedAfter(userver, 'Unix server');
    assert.equal(fs.existsSync(unix.path), false, 'the Unix server removed its socket file as usual');
    await expectFdsBackTo(baseline, 'closing every borrowed object');
  },
);

test('fdOf: dgram.Socket (udp4) and fs FileHandle', async (t) => {
  const baseline = fdCount();
  const udp = await bindUdp(t);
  const b = borrow(udp, true);
  const info = probe(b.fd);
  assert.equal(info.kind, 'udp');
  assert.equal((info.local as { port: number }).port, udp.address().port);
  await closeDgram(udp);
  await assertClosedAfter(b, 'UDP socket');

  const dir = tmpDir(t);
  fs.writeFileSync(path.join(dir, 'f'), 'hello world');
  const fh = await fs.promises.open(path.join(dir, 'f'), 'r');
  const f = borrow(fh, false);
  assert.equal(f.fd, fh.fd);
  assert.equal(probe(f.fd).kind, 'file');
  assert.equal(probe(f.fd).nonblocking, false, 'a regular file stays blocking');
  assert.equal(await fh.readFile('utf8'), 'hello world', 'the FileHandle still works');
  await fh.close();
  await assertClosedAfter(f, 'FileHandle');
  await expectFdsBackTo(baseline, 'closing the UDP socket and the FileHandle');
});

test('fdOf: http, https and http2 servers, and TLS sockets on both ends', async (t) => {
  const baseline = fdCount();
  const cert = selfSignedCert(t);

  const h1 = http.createServer((_req, res) => res.end('plain'));
  t.after(() => closeServer(h1));
  await new Promise<void>((resolve) => h1.listen(0, '127.0.0.1', resolve));
  const h1b = borrow(h1, true);
  assert.equal((probe(h1b.fd).local as { port: number }).port, (h1.address() as net.AddressInfo).port);
  const { body } = await get((h1.address() as net.AddressInfo).port);
  assert.equal(body, 'plain', 'the http server serves after fdOf');

  const h2 = http2.createServer();
  t.after(() => closeServer(h2));
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
  const h2b = borrow(h2, true);
  assert.equal(probe(h2b.fd).kind, 'tcp-listener');

  await closeServer(h1);
  await closeServer(h2);
  await assertClosedAfter(h1b, 'http server');
  await assertClosedAfter(h2b, 'http2 server');

  if (!cert) {
    t.diagnostic('openssl is not available: https/TLS cases not run');
    await expectFdsBackTo(baseline, 'closing the servers');
    return;
  }
  const tlsOptions = { key: cert.key, cert: cert.cert };
  const hs = https.createServer(tlsOptions, (_req, res) => res.end('secure'));
  t.after(() => closeServer(hs));
  await new Promise<void>((resolve) => hs.listen(0, '127.0.0.1', resolve));
  const hsb = borrow(hs, true);
  assert.equal((probe(hsb.fd).local as { port: number }).port, (hs.address() as net.AddressInfo).port);

  const h2s = http2.createSecureServer(tlsOptions);
  t.after(() => closeServer(h2s));
  await new Promise<void>((resolve) => h2s.listen(0, '127.0.0.1', resolve));
  const h2sb = borrow(h2s, true);
  assert.equal(probe(h2sb.fd).kind, 'tcp-listener');

  // TLS sockets: the server side (from the https server) and the client side.
  const serverSide = new Promise<tls.TLSSocket>((resolve) => hs.once('secureConnection', resolve));
  const client = tls.connect({
    host: '127.0.0.1',
    port: (hs.address() as net.AddressInfo).port,
    rejectUnauthorized: false,
    ALPNProtocols: ['http/1.1'],
  });
  t.after(() => destroySocket(client));
  await within(
    new Promise((resolve, reject) => client.once('secureConnect', resolve).once('error', reject)),
    5000,
    'TLS handshake',
  );
  const server = await within(serverSide, 5000, 'TLS accept');
  const cb = borrow(client, true);
  const sb = borrow(server, true);
  assert.equal((probe(cb.fd).local as { port: number }).port, client.localPort);
  assert.equal((probe(cb.fd).remote as { port: number }).port, (hs.address() as net.AddressInfo).port);
  assert.equal(
    (probe(sb.fd).remote as { port: number }).port,
    client.localPort,
    'the server-side TLS socket is the peer of the client',
  );

  // The TLS connection still carries a request after the fds were borrowed.
  client.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  let response = '';
  client.setEncoding('utf8').on('data', (d) => (response += d));
  await within(new Promise((resolve) => client.once('end', resolve)), 5000, 'HTTPS response');
  assert.match(response, /secure$/);
  await destroySocket(client);
  await assertClosedAfter(cb, 'TLS client socket');
  await assertClosedAfter(sb, 'server-side TLS socket');
  await closeServer(hs);
  await closeServer(h2s);
  await assertClosedAfter(hsb, 'https server');
  await assertClosedAfter(h2sb, 'secure http2 server');
  await expectFdsBackTo(baseline, 'closing every server and TLS socket');
});

test('fdOf: objects without an open fd throw TypeError ERR_BATON_NOT_OPEN', async (t) => {
  const notListening = net.createServer();
  throwsCode(() => fdOf(notListening), TypeError, 'ERR_BATON_NOT_OPEN');

  const closed = await listenTcp(t);
  await closeServer(closed);
  throwsCode(() => fdOf(closed), TypeError, 'ERR_BATON_NOT_OPEN');

  throwsCode(() => fdOf(new net.Socket()), TypeError, 'ERR_BATON_NOT_OPEN');
  const { client } = await connectedPair(t);
  fdOf(client); // open: fine
  await destroySocket(client);
  throwsCode(() => fdOf(client), TypeError, 'ERR_BATON_NOT_OPEN');

  const unbound = dgram.createSocket('udp4');
  throwsCode(() => fdOf(unbound), TypeError, 'ERR_BATON_NOT_OPEN');
  unbound.close();
  const udp = await bindUdp(t);
  fdOf(udp);
  await closeDgram(udp);
  throwsCode(() => fdOf(udp), TypeError, 'ERR_BATON_NOT_OPEN');

  const fh = await fs.promises.open('/dev/null', 'r');
  fdOf(fh);
  await fh.close();
  throwsCode(() => fdOf(fh), TypeError, 'ERR_BATON_NOT_OPEN');
});

test('fdOf: numbers are validated and returned as is; other types are rejected', () => {
  assert.equal(fdOf(0), 0);
  assert.equal(fdOf(7), 7, 'a number is not checked for being open, only validated');
  throwsCode(() => fdOf(-1), RangeError, 'ERR_OUT_OF_RANGE');
  throwsCode(() => fdOf(2 ** 31), RangeError, 'ERR_OUT_OF_RANGE');
  throwsCode(() => fdOf(1.5), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => fdOf(NaN), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => fdOf(Infinity), TypeError, 'ERR_INVALID_ARG_TYPE');
  for (const bad of ['3', {}, null, undefined, [], { fd: 3 }, true, 3n]) {
    throwsCode(() => fdOf(bad as unknown as FdSource), TypeError, 'ERR_INVALID_ARG_TYPE');
  }
});

test('dupFd: exactly one new fd, close-on-exec, the same socket, blocking mode untouched', async (t) => {
  const baseline = fdCount();
  const { client, accepted, server } = await connectedPair(t);
  for (const [what, source] of [
    ['listener', server],
    ['connection', client],
  ] as const) {
    const orig = fdOf(source);
    const origFlags = fdinfoFlags(orig);
    const before = fdList();
    const d = dupFd(source);
    const after = fdList();
    assert.deepEqual(
      after.filter((n) => !before.includes(n)),
      [d],
      `${what}: dupFd opens exactly one fd`,
    );
    assert.deepEqual(
      before.filter((n) => !after.includes(n)),
      [],
      `${what}: dupFd closes nothing`,
    );
    assert.notEqual(d, orig);
    const dupFlags = fdinfoFlags(d);
    assert.ok(dupFlags & O_CLOEXEC, `${what}: the dup is close-on-exec`);
    assert.ok(dupFlags & O_NONBLOCK, `${what}: the dup shares the original's (nonblocking) open file description`);
    assert.equal(fdinfoFlags(orig), origFlags, `${what}: the original's flags are unchanged`);
    assert.equal(probe(d).inode, probe(orig).inode, `${what}: same socket`);
    assert.equal(probe(d).cloexec, true);
    closeFds([d]);
    assert.equal(isOpen(d), false);
    assert.equal(fdinfoFlags(orig), origFlags);
  }
  // The connection still works after its dup was closed (closing a dup does not shut the socket down).
  const got = new Promise<string>((resolve) => accepted.once('data', (d) => resolve(String(d))));
  client.write('still here');
  assert.equal(await within(got, 5000, 'data after closing a dup'), 'still here');

  // A blocking fd stays blocking, in the dup and the original.
  const fh = await fs.promises.open('/dev/null', 'r');
  const d = dupFd(fh);
  assert.equal(fdinfoFlags(d) & O_NONBLOCK, 0);
  assert.equal(fdinfoFlags(fh.fd) & O_NONBLOCK, 0);
  assert.ok(fdinfoFlags(d) & O_CLOEXEC);
  closeFds([d]);
  await fh.close();

  const e = throwsCode(() => dupFd(closedFd()), Error, 'EBADF');
  assert.equal(e.syscall, 'dup');
  throwsCode(() => dupFd(net.createServer()), TypeError, 'ERR_BATON_NOT_OPEN');
  await destroySocket(client);
  await destroySocket(accepted);
  await closeServer(server);
  await expectFdsBackTo(baseline, 'dupFd tests');
});

test('withFd: calls fn synchronously with the fd, returns its result, propagates its exceptions', async (t) => {
  const { server } = await connectedPair(t);
  const fd = fdOf(server);
  let calledWith: number | undefined;
  const result = withFd(server, (n) => {
    calledWith = n;
    return { port: (probe(n).local as { port: number }).port };
  });
  assert.equal(calledWith, fd, "fn was called, before withFd returned, with the object's fd");
  assert.deepEqual(result, { port: (server.address() as net.AddressInfo).port });
  assert.equal(
    withFd(5, (n) => n * 2),
    10,
  );

  const boom = new Error('boom');
  assert.throws(
    () =>
      withFd(server, () => {
        throw boom;
      }),
    (err) => err === boom,
  );
  throwsCode(() => withFd(server, 'nope' as unknown as (fd: number) => void), TypeError, 'ERR_INVALID_ARG_TYPE');

  await closeServer(server);
  let called = false;
  throwsCode(() => withFd(server, () => (called = true)), TypeError, 'ERR_BATON_NOT_OPEN');
  assert.equal(called, false, 'fn is not called without an fd');
});

test('closeFds: closes the fds it is given, skips closed ones, validates everything before closing anything', async () => {
  const baseline = fdCount();
  const fh = await fs.promises.open('/dev/null', 'r');
  const a = dupFd(fh);
  const b = dupFd(fh);
  closeFds([a, b]);
  assert.equal(isOpen(a), false);
  assert.equal(isOpen(b), false);
  assert.equal(isOpen(fh.fd), true, 'only the given fds are closed');
  closeFds([closedFd()]); // already closed: ignored
  closeFds([]);

  const c = dupFd(fh);
  throwsCode(() => closeFds([c, 1.5]), TypeError, 'ERR_INVALID_ARG_TYPE');
  assert.equal(isOpen(c), true, 'a bad entry means nothing is closed');
  throwsCode(() => closeFds([c, -1]), RangeError, 'ERR_OUT_OF_RANGE');
  throwsCode(() => closeFds([c, '3' as unknown as number]), TypeError, 'ERR_INVALID_ARG_TYPE');
  assert.equal(isOpen(c), true);
  throwsCode(() => closeFds(c as unknown as number[]), TypeError, 'ERR_INVALID_ARG_TYPE');
  closeFds([c]);
  assert.equal(isOpen(c), false);
  await fh.close();
  await expectFdsBackTo(baseline, 'closeFds tests');
});
