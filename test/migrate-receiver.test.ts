/**
 * MigrationReceiver's readiness-ordered adoption, in one process over a socketpair (MigrationSender on the
 * other end), with real TCP connections on 127.0.0.1 and a 'connection' handler made slow on purpose (busy):
 * which connection is adopted when, that each is adopted exactly once, and that the move is not reported over
 * while a connection is parked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { socketpair } from '../src/fd/fds.js';
import { MigrationReceiver, MigrationSender } from '../src/upgrader/migrate.js';
import { closeServer, listenTcp } from './fd-helpers.js';
import { expectFdsBackTo, fdCount, waitFor, within } from './helpers.js';

interface Move {
  clients: net.Socket[];
  sender: MigrationSender;
  receiver: MigrationReceiver;
  /** `state.i` of each connection, in the order the receiver emitted 'connection'. */
  order: number[];
  /** The adopted sockets, by `state.i`. */
  sockets: Map<number, net.Socket>;
  /** Resolves when every move() has (the batches are acknowledged). */
  moved: Promise<void>;
  cleanup(): Promise<void>;
}

/** `order` holds each of 0..n-1 exactly once. */
function assertEachOnce(order: number[], n: number): void {
  assert.deepEqual(
    [...order].sort((a, b) => a - b),
    Array.from({ length: n }, (_, i) => i),
    'each connection once',
  );
}

/** `n` idle connections moved to a receiver whose 'connection' handler takes `busyUs` µs each. */
async function move(t: Parameters<typeof listenTcp>[0], n: number, busyUs: number): Promise<Move> {
  const accepted: net.Socket[] = [];
  const listener = await listenTcp(t, '127.0.0.1', (s) => accepted.push(s));
  const port = (listener.address() as net.AddressInfo).port;
  const clients: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    clients.push(c);
    await new Promise((r) => c.once('connect', r));
    while (accepted.length <= i) await new Promise((r) => setImmediate(r));
  }
  const [senderFd, receiverFd] = socketpair();
  const sender = new MigrationSender(senderFd);
  const receiver = new MigrationReceiver(receiverFd);
  const order: number[] = [];
  const sockets = new Map<number, net.Socket>();
  receiver.on('connection', (socket, item) => {
    for (const until = performance.now() + busyUs / 1000; performance.now() < until; );
    const i = (item.state as { i: number }).i;
    assert.ok(!sockets.has(i), `connection ${i} emitted twice`);
    order.push(i);
    sockets.set(i, socket);
    socket.on('error', () => {});
  });
  const moved = Promise.all(accepted.map((s, i) => sender.move(s, 'raw', 'x', { i }))).then(() => {});
  return {
    clients,
    sender,
    receiver,
    order,
    sockets,
    moved,
    async cleanup() {
      for (const c of clients) c.destroy();
      for (const s of sockets.values()) s.destroy();
      sender.close();
      receiver.close();
      await closeServer(listener);
    },
  };
}

test('a parked connection whose client sends is adopted ahead of the idle ones that arrived before it', async (t) => {
  const base = fdCount();
  const N = 400;
  const m = await move(t, N, 300);
  await within(m.moved, 30_000, 'every batch acknowledged');
  const before = m.order.length;
  m.clients[N - 1]!.write('x');
  await waitFor(() => m.sockets.has(N - 1), 30_000, 'the last connection adopted');
  const position = m.order.indexOf(N - 1);
  t.diagnostic(`adopted when every batch was acknowledged: ${before}; the talker adopted as number ${position + 1}`);
  // Adopted eagerly (each batch before its acknowledgement), all N were there before the client sent anything.
  assert.ok(before < N, `all ${N} connections were adopted before the move() calls resolved`);
  assert.ok(position < N - 50, `the talker was adopted as number ${position + 1} of ${N}`);
  // What it sent is read by the socket the receiver made.
  const socket = m.sockets.get(N - 1)!;
  const got = await within(
    new Promise<string>((r) => socket.once('data', (d) => r(d.toString()))),
    5000,
    'the byte reaches the new side',
  );
  assert.equal(got, 'x');
  // The old generation is done: it closes its end (finished() waits for that too — without it, it resolves only
  // at its timeout, 30 s of this test in CI).
  await within(m.sender.settled(), 5000, 'the sender settled');
  m.sender.close();
  await within(m.receiver.finished(30_000), 31_000, 'the rest adopted');
  assert.equal(m.receiver.sending, false, "finished() resolved on 'done', not at its timeout");
  assert.equal(m.order.length, N);
  assertEachOnce(m.order, N);
  await m.cleanup();
  await expectFdsBackTo(base, 'the move');
});

test("the move is not over while a connection is parked: sending, finished() and 'done' wait for it", async (t) => {
  const base = fdCount();
  const N = 100;
  const m = await move(t, N, 1000);
  let doneAt = -1;
  m.receiver.on('done', () => (doneAt = m.order.length));
  await within(m.moved, 30_000, 'every batch acknowledged');
  await within(m.sender.settled(), 5000, 'the sender settled');
  // The old generation is drained: it closes its end.
  m.sender.close();
  await waitFor(() => !m.receiver.senderActive, 5000, 'the receiver saw the channel close');
  assert.ok(m.receiver.parked > 0, 'connections still parked (1 ms each to adopt)');
  assert.equal(m.receiver.sending, true, 'still sending while connections are parked');
  await within(m.receiver.finished(60_000), 61_000, 'finished');
  assert.equal(m.order.length, N, 'finished() resolved once every connection was adopted');
  assert.equal(doneAt, N, "'done' once every connection was adopted");
  assert.equal(m.receiver.sending, false);
  await m.cleanup();
  await expectFdsBackTo(base, 'the move');
});

test('close() adopts every parked connection at once; a client that closes while parked leaves no fd', async (t) => {
  const base = fdCount();
  const N = 100;
  const m = await move(t, N, 1000);
  await within(m.moved, 30_000, 'every batch acknowledged');
  // The last client closes while its connection is parked: adopted ahead of the rest, its socket ends.
  m.clients[N - 1]!.destroy();
  await waitFor(() => m.sockets.has(N - 1), 30_000, 'the closed connection adopted');
  const closed = m.sockets.get(N - 1)!;
  closed.resume();
  await within(new Promise((r) => (closed.destroyed ? r(null) : closed.once('close', r))), 5000, 'its socket closes');
  assert.ok(m.receiver.parked > 0, 'connections still parked (1 ms each to adopt)');
  m.receiver.close();
  assert.equal(m.receiver.parked, 0);
  assert.equal(m.order.length, N, 'every parked connection adopted by close()');
  assert.equal(m.receiver.sending, false);
  await within(m.receiver.finished(1000), 1000, 'finished at once');
  await m.cleanup();
  await expectFdsBackTo(base, 'the move');
});

test("close() from an app's 'connection' handler mid-slice adopts the rest, each connection once", async (t) => {
  const base = fdCount();
  const N = 100;
  const m = await move(t, N, 1000);
  // Called while the background slice is adopting (its iterator over the parked connections is mid-way):
  // close() adopts the rest through it, and the slice must neither adopt one twice nor stop short.
  m.receiver.on('connection', () => {
    if (m.order.length === 10) m.receiver.close();
  });
  await within(m.moved, 30_000, 'every batch acknowledged');
  await waitFor(() => m.order.length === N, 30_000, 'every connection adopted');
  assertEachOnce(m.order, N);
  assert.equal(m.receiver.parked, 0);
  assert.equal(m.receiver.sending, false);
  await m.cleanup();
  await expectFdsBackTo(base, 'the move');
});

test('parked connections whose clients all speak at once are adopted a slice per turn, not all in one', async (t) => {
  const base = fdCount();
  const N = 150;
  // 1 ms per adoption: a slice (SLICE_MS, 2 ms) holds at most three. The watch reports up to 64 readable
  // connections per turn; adopting them all at once was one task of N ms during which nothing else here ran
  // (bench:migrate, 1,000 talking clients: 37 ms).
  const m = await move(t, N, 1000);
  let turn = 0;
  let ticking = true;
  const tick = () => {
    turn++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const perTurn = new Map<number, number>();
  m.receiver.on('connection', () => perTurn.set(turn, (perTurn.get(turn) ?? 0) + 1));
  await within(m.moved, 30_000, 'every batch acknowledged');
  const parkedWhenSpoken = m.receiver.parked;
  for (const c of m.clients) c.write('x');
  await waitFor(() => m.order.length === N, 60_000, 'every connection adopted');
  ticking = false;
  const most = Math.max(...perTurn.values());
  t.diagnostic(`${parkedWhenSpoken} parked when every client spoke; at most ${most} adopted in one turn`);
  assert.ok(parkedWhenSpoken >= 100, `only ${parkedWhenSpoken} still parked: the test needs most of them`);
  // Per turn: a poll-phase slice and a check-phase slice, each up to 3 (one more may start just before the end).
  assert.ok(most <= 10, `${most} connections adopted in one turn of the event loop`);
  assertEachOnce(m.order, N);
  await m.cleanup();
  await expectFdsBackTo(base, 'the move');
});
