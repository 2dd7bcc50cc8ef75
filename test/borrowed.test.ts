/**
 * A worker serving another slot's sockets (src/upgrader/borrowed.ts, through Listeners as worker 0 of
 * `baton run --workers 2` uses it). The test plays the supervisor: worker 0's fresh listener is slot 0 of an
 * SO_REUSEPORT group, the test binds slot 1 into the group, keeps that socket, and lends a copy of it. Then: the
 * app's own server (http, https, h2c, UDP) answers the connections and datagrams of both queues; the drainer
 * counts the lent connections like its own; unlend and the drain close this worker's copy only — the
 * supervisor's stays open, nonblocking, and its queue is not reset (connections queued there after the unlend
 * are accepted at the next lend, none fails); a lend of a name the worker does not serve, of the wrong kind, of
 * its own slot, or after the drain is refused with a code and its fd closed. Real sockets on 127.0.0.1.
 */
import '../src/integrations/index.js';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { test } from 'node:test';
import { closeFds } from '../src/fd/fds.js';
import { dupFd } from '../src/fd/fd-of.js';
import { acceptingServerOf } from '../src/fd/internals.js';
import { probe } from '../src/fd/probe.js';
import { bindReusePort } from '../src/fd/reuseport.js';
import { Listeners } from '../src/upgrader/listeners.js';
import { closeServer, fdList, isOpen } from './fd-helpers.js';
import { fdinfoFlags, O_NONBLOCK, waitFor } from './helpers.js';
import { selfSignedCert } from './tls-helpers.js';

type Cleanup = { after(fn: () => unknown): void };

/** Listeners of worker 0 of 2, without a supervisor (nothing offered, nothing registered). */
function worker0(t: Cleanup): { l: Listeners; events: string[] } {
  const events: string[] = [];
  const l = new Listeners({
    client: () => null,
    service: null,
    idleGrace: 100,
    log: (_level, event, fields) => events.push(`${event} ${JSON.stringify(fields ?? {})}`),
    watchHttp: () => {},
    register: async () => {},
    state: () => 'starting',
    worker: { index: 0, count: 2 },
  });
  t.after(() => l.stopAccepting());
  return { l, events };
}

/** Worker 0 listening with an http server on 'web', and the supervisor's slot 1 socket of its group. */
async function webWorker0(t: Cleanup) {
  const { l, events } = worker0(t);
  const server = http.createServer((_req, res) => res.end('ok'));
  t.after(() => closeServer(server));
  await l.listen(server, 'web', { host: '127.0.0.1', port: 0 });
  const port = (server.address() as net.AddressInfo).port;
  return { l, events, server, port, fd1: slot1(t, 'tcp', port) };
}

/** The supervisor's slot 1 socket, bound into the group at `port`; closed after the test. */
function slot1(t: Cleanup, type: 'tcp' | 'udp', port: number): number {
  const { fd } = bindReusePort({ type, host: '127.0.0.1', port });
  t.after(() => closeFds([fd]));
  return fd;
}

/** How many of this process's fds are the socket `fd` is (dups and lent copies included). */
function copiesOf(fd: number): number {
  const want = `socket:[${probe(fd).inode}]`;
  let n = 0;
  for (const f of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${f}`) === want) n++;
    } catch {
      // the listing's own fd
    }
  }
  return n;
}

/** Count, per accepting handle, the connections `server` gets: its own listener's, or another's (a lent one). */
function whoAccepts(server: net.Server): { own: number; other: number } {
  const counts = { own: 0, other: 0 };
  // prepend: http sets socket.server to itself in its own 'connection' listener.
  server.prependListener('connection', (socket: net.Socket) => {
    if (acceptingServerOf(socket) === server) counts.own++;
    else counts.other++;
  });
  return counts;
}

/** `n` fresh-connection requests at once; resolves with their bodies (rejects on any failure). */
function requests(n: number, one: () => Promise<string>): Promise<string[]> {
  return Promise.all(Array.from({ length: n }, one));
}

function httpGet(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

test('a lent TCP socket: served by the app server, counted like its own; unlend and drain close only our copy', async (t) => {
  const { l, events, server, port, fd1 } = await webWorker0(t);
  const counts = whoAccepts(server);
  l.borrowed.open();

  assert.deepEqual(await l.borrowed.lend(1, ['web'], [dupFd(fd1)]), { served: ['web'], refused: [] });
  assert.deepEqual(l.borrowed.slots(), [1]);
  assert.equal(copiesOf(fd1), 2, "this process holds the supervisor's copy and the lent one");
  assert.deepEqual(await requests(60, () => httpGet(port)), Array(60).fill('ok'), 'every fresh connection answered');
  assert.ok(counts.own > 0 && counts.other > 0, `both queues served: ${JSON.stringify(counts)}`);

  // Open connections from both queues are the listener's connections (what the drain waits for).
  const clients: net.Socket[] = [];
  t.after(() => {
    for (const c of clients) c.destroy();
  });
  for (let i = 0; i < 30; i++) clients.push(net.connect(port, '127.0.0.1'));
  await waitFor(() => l.connections === 30, 5000, `30 connections tracked (${l.connections})`);
  for (const c of clients.splice(0)) c.destroy();
  await waitFor(() => l.connections === 0, 5000, 'closed connections leave the count');

  await l.borrowed.unlend(1);
  assert.deepEqual(l.borrowed.slots(), []);
  assert.equal(copiesOf(fd1), 1, 'unlend closed the lent copy only');
  assert.ok(isOpen(fd1), "the supervisor's copy is open");
  assert.ok(fdinfoFlags(fd1) & O_NONBLOCK, 'and still nonblocking (the open file description was shared)');
  assert.ok(probe(fd1).listening);
  assert.ok(events.some((e) => e.startsWith('unlent ')));

  // Connections queued in slot 1 while nobody serves it wait there (the queue was not reset) and are accepted by
  // the next lend: none fails.
  const errors: string[] = [];
  for (let i = 0; i < 40; i++) {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
    clients.push(c);
  }
  await waitFor(() => clients.every((c) => !c.connecting), 5000, 'every handshake completed');
  const other = counts.other;
  assert.deepEqual(await l.borrowed.lend(1, ['web'], [dupFd(fd1)]), { served: ['web'], refused: [] });
  await waitFor(() => l.connections === 40, 5000, `every queued connection accepted (${l.connections})`);
  assert.ok(counts.other > other, 'some of them from the lent queue');
  assert.deepEqual(errors, []);

  // A lend of a name already served: nothing changes, the extra copy is closed.
  const extra = dupFd(fd1);
  assert.deepEqual(await l.borrowed.lend(1, ['web'], [extra]), { served: ['web'], refused: [] });
  assert.equal(copiesOf(fd1), 2, 'the second copy was closed');

  // The drain stops accepting on the lent socket too; a later lend is refused and its fd closed.
  l.stopAccepting();
  assert.equal(copiesOf(fd1), 1, 'the drain closed the lent copy');
  assert.deepEqual(l.borrowed.slots(), []);
  const late = dupFd(fd1);
  const refused = await l.borrowed.lend(1, ['web'], [late]);
  assert.deepEqual(refused.served, []);
  assert.equal(refused.refused[0]?.code, 'ERR_BATON_STATE');
  assert.equal(copiesOf(fd1), 1, 'the refused fd is closed');
});

test('a lend it cannot serve is refused with a code, its fd closed, nothing leaked; one before ready() waits', async (t) => {
  const { l, events, port, fd1 } = await webWorker0(t);
  const udp = bindReusePort({ type: 'udp', host: '127.0.0.1', port: 0 });
  t.after(() => closeFds([udp.fd]));

  // Before this worker serves, a lend waits.
  let early: Awaited<ReturnType<typeof l.borrowed.lend>> | null = null;
  const pending = l.borrowed.lend(1, ['web'], [dupFd(fd1)]).then((r) => (early = r));
  await new Promise((r) => setImmediate(r));
  assert.equal(early, null, 'not served before ready()');
  l.borrowed.open();
  await pending;
  assert.deepEqual(early, { served: ['web'], refused: [] });
  await l.borrowed.unlend(1);

  const before = fdList();
  const unknown = await l.borrowed.lend(1, ['api'], [dupFd(fd1)]);
  assert.deepEqual(unknown.served, []);
  assert.equal(unknown.refused[0]?.code, 'ERR_BATON_LEND_REFUSED');
  assert.match(unknown.refused[0]!.reason, /does not listen on "api"/);
  const wrongKind = await l.borrowed.lend(1, ['web'], [dupFd(udp.fd)]);
  assert.equal(wrongKind.refused[0]?.code, 'ERR_BATON_LEND_REFUSED');
  assert.match(wrongKind.refused[0]!.reason, /udp/);
  const own = await l.borrowed.lend(0, ['web'], [dupFd(fd1)]);
  assert.equal(own.refused[0]?.code, 'ERR_BATON_LEND_REFUSED');
  // Several names in one lend: each answered on its own.
  const mixed = await l.borrowed.lend(1, ['api', 'web'], [dupFd(fd1), dupFd(fd1)]);
  assert.deepEqual(mixed.served, ['web']);
  assert.deepEqual(
    mixed.refused.map((r) => r.name),
    ['api'],
  );
  await l.borrowed.unlend(1);
  assert.deepEqual(fdList(), before, 'every refused fd closed, the unlent one too');
  // A worker that never serves (its ready() failed: rolled back) closes a lend that waited for it.
  const never = worker0(t).l;
  await never.listen(http.createServer(), 'web', { host: '127.0.0.1', port: 0 });
  const waiting = never.borrowed.lend(1, ['web'], [dupFd(fd1)]);
  never.borrowed.close();
  assert.equal((await waiting).refused[0]?.code, 'ERR_BATON_STATE');
  assert.equal(copiesOf(fd1), 1, 'the waiting lent copy is closed');
  never.stopAccepting();
  assert.ok(events.some((e) => e.startsWith('lent ') && e.includes('refused')));
  await l.borrowed.lend(1, ['web'], [dupFd(fd1)]);
  assert.deepEqual(await requests(20, () => httpGet(port)), Array(20).fill('ok'), 'the worker serves on');
});

test('TLS and HTTP/2: a lent socket feeds the https server (its TLS) and the h2c server (its sessions)', async (t) => {
  const cert = selfSignedCert(t);
  if (!cert) {
    t.skip('openssl is not installed');
    return;
  }
  const { l } = worker0(t);
  const tlsOptions = { key: cert.key, cert: cert.cert };
  const secure = https.createServer(tlsOptions, (_req, res) => res.end('tls'));
  t.after(() => closeServer(secure));
  await l.listen(secure, 'secure', { host: '127.0.0.1', port: 0 });
  const h2 = http2.createServer();
  h2.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.end('h2');
  });
  t.after(() => closeServer(h2));
  await l.listen(h2, 'h2', { host: '127.0.0.1', port: 0 });
  const securePort = (secure.address() as net.AddressInfo).port;
  const h2Port = (h2.address() as net.AddressInfo).port;
  const secureCounts = whoAccepts(secure);
  const h2Counts = whoAccepts(h2);
  l.borrowed.open();
  const lent = await l.borrowed.lend(
    1,
    ['secure', 'h2'],
    [dupFd(slot1(t, 'tcp', securePort)), dupFd(slot1(t, 'tcp', h2Port))],
  );
  assert.deepEqual(lent, { served: ['secure', 'h2'], refused: [] });

  const tlsGet = () =>
    new Promise<string>((resolve, reject) => {
      const req = https.get(
        { host: '127.0.0.1', port: securePort, agent: false, ca: cert.cert, timeout: 5000 },
        (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d));
          res.on('end', () => resolve(body));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
    });
  assert.deepEqual(await requests(40, tlsGet), Array(40).fill('tls'));
  assert.ok(secureCounts.other > 0, `TLS connections from the lent queue: ${JSON.stringify(secureCounts)}`);

  const h2Get = () =>
    new Promise<string>((resolve, reject) => {
      const session = http2.connect(`http://127.0.0.1:${h2Port}`);
      session.on('error', reject);
      const req = session.request({ ':path': '/' });
      let body = '';
      req.setEncoding('utf8').on('data', (d: string) => (body += d));
      req.on('end', () => {
        session.close();
        resolve(body);
      });
      req.on('error', reject);
    });
  assert.deepEqual(await requests(40, h2Get), Array(40).fill('h2'));
  assert.ok(h2Counts.other > 0, `HTTP/2 sessions from the lent queue: ${JSON.stringify(h2Counts)}`);
});

test('a lent UDP socket: its datagrams reach the app socket, which answers from the same address', async (t) => {
  const { l } = worker0(t);
  const socket = await l.bindDgram('udp', { type: 'udp4', address: '127.0.0.1', port: 0 });
  socket.on('message', (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address));
  const port = socket.address().port;
  const fd1 = slot1(t, 'udp', port);
  l.borrowed.open();
  assert.deepEqual(await l.borrowed.lend(1, ['udp'], [dupFd(fd1)]), { served: ['udp'], refused: [] });
  const clients: dgram.Socket[] = [];
  t.after(() => {
    for (const c of clients) c.close();
  });
  // 24 flows (source ports): each hashes to one slot's socket; without the lend about half would go unanswered.
  for (let i = 0; i < 24; i++) {
    const c = dgram.createSocket('udp4');
    clients.push(c);
    await new Promise<void>((r) => c.bind(0, '127.0.0.1', r));
    const answer = await new Promise<{ text: string; port: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`flow ${i}: no answer`)), 5000);
      c.once('message', (msg, rinfo) => {
        clearTimeout(timer);
        resolve({ text: msg.toString(), port: rinfo.port });
      });
      c.send(`ping ${i}`, port, '127.0.0.1');
    });
    assert.deepEqual(answer, { text: `ping ${i}`, port }, 'answered from the port it was sent to');
  }
  await l.borrowed.unlend(1);
  assert.equal(copiesOf(fd1), 1, 'unlend closed the lent copy only');
  assert.ok(fdinfoFlags(fd1) & O_NONBLOCK);
});
