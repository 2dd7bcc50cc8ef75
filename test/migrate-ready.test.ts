/**
 * Readiness-ordered adoption (src/upgrader/migrate-receiver.ts): the new generation parks the connections it
 * receives and adopts first those whose client sends something, so a client that speaks during a large move is
 * not served after every connection sent before it.
 *
 * 3,000 idle raw TCP connections move with upgrader.migrateAll() to a new generation whose 'migrated' handler
 * takes 200 µs (busy) per connection; one more client, connected last (so its connection is among the last the
 * old generation sends), asks `/adopted` every few ms from the moment the reload starts. The first answer it
 * gets from the new generation says how many connections that generation had taken in by then: with eager
 * adoption (batch by batch, in arrival order) every connection sent before it — all the others; with
 * readiness-ordered adoption far fewer. Order, not wall clock.
 *
 * Then, the move's bookkeeping: the 300 idle clients connected just before it close at that moment (their
 * connections are parked in the new generation, or on their way) and leave no socket behind there; every
 * other connection answers once more from the new generation with its id (each arrived exactly once, with its
 * state); the new generation took in exactly what the old one moved; its fd table holds its connections and
 * its baseline, nothing else (no parked fd, no epoll set left open).
 *
 * The same order with WebSockets (webSocketServer(), 1,500 idle ones, restore() taking 200 µs), and at the end
 * `wss.clients` holds every one of them, each once, with its state.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { openFds, ROOT, waitFor } from './helpers.js';
import { connectLineClients, epollSets, LineClient, nofileLimit, parseLine as parse } from './migrate-helpers.js';
import { get, startSupervised } from './upgrade-helpers.js';
import WebSocket from 'ws';
import { connect, expectAllMovedTo, WS_SERVING, type Client } from './ws-helpers.js';

const APP = path.join(ROOT, 'dist/test/fixtures/tcp-slow-adopt-app.js');
const SERVING = /generation 1 serving on tcp:\/\/127\.0\.0\.1:(\d+)/;
const MOVED = /generation 1 moved (\d+) of (\d+) connections/;
const IDLE = 3000;
/** Idle clients, connected right before the talker, that close once the talker is answered by generation 2. */
const CLOSERS = 300;

/** Sockets of `pid` in a TCP state (hex, /proc/net/tcp: '08' is CLOSE_WAIT: the peer closed, we did not). */
function socketsInState(pid: number, state: string): number {
  const inodes = new Set<string>();
  for (const fd of openFds(pid)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  let n = 0;
  for (const row of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const cols = row.trim().split(/\s+/);
    if (cols[3] === state && inodes.has(cols[9]!)) n++;
  }
  return n;
}

test('a client that sends during a move of 3,000 idle connections is served before the idle ones are all adopted', async (t) => {
  if (nofileLimit() < 3 * IDLE + 1000) {
    t.skip(`needs an open files limit of ${3 * IDLE + 1000} (ulimit -n is ${nofileLimit()})`);
    return;
  }
  const s = await startSupervised(t, { app: APP, servingLine: SERVING, env: { ADOPT_BUSY_US: '200' } });
  t.after(() => {
    for (const c of clients) c.socket.destroy();
  });
  const clients: LineClient[] = [];
  // One line each, so the old generation has accepted (and keeps, in this order) every one before the next.
  const ids = await connectLineClients(s.port, IDLE, 200, clients);
  const talker = new LineClient(s.port);
  clients.push(talker);
  await talker.connected();
  talker.socket.write('hello\n');
  const talkerId = parse(await talker.answer(1)).id;
  const [gen1] = s.generationPids();
  const epollBaseline = epollSets(gen1!);

  // From the moment the reload starts, the talker asks how many connections the answering generation has
  // taken in, every few ms (old generation: 0, and it keeps answering until the talker's batch is prepared).
  const reload = s.reload();
  let asked = 1;
  const ask = setInterval(() => {
    talker.socket.write('/adopted\n');
    asked++;
  }, 3);
  t.after(() => clearInterval(ask));
  let first: { gen: number; text: string } | null = null;
  for (let n = 2; !first; n++) {
    const a = parse(await talker.answer(n, 60_000));
    assert.equal(a.id, talkerId);
    if (a.gen === 2) first = a;
  }
  clearInterval(ask);
  // Close the idle clients connected just before the talker: they are in the new generation by now (sent
  // before the talker), parked or adopted.
  for (const c of clients.slice(IDLE - CLOSERS, IDLE)) c.socket.destroy();
  const adoptedWhenAnswered = Number(/^adopted=(\d+)$/.exec(first.text)?.[1]);
  t.diagnostic(
    `the talker was first answered by generation 2 after it had adopted ${adoptedWhenAnswered} of ${IDLE + 1}`,
  );
  const r = await reload;
  assert.equal(r.code, 0, r.stderr);
  const moved = await s.sup.line(MOVED, 60_000);
  assert.equal(Number(moved[2]), IDLE + 1, moved[0]);
  // The defect: adopted in arrival order, the talker waited for every connection sent before it (3,000).
  assert.ok(
    adoptedWhenAnswered < (IDLE * 2) / 3,
    `the talker was answered only after ${adoptedWhenAnswered} of ${IDLE + 1} connections were adopted`,
  );

  // Every other connection arrived once, with its state: its next line is answered by generation 2, as
  // its second line, on the same id.
  const staying = clients.slice(0, IDLE - CLOSERS);
  for (const c of staying) c.socket.write('again\n');
  for (let i = 0; i < staying.length; i++) {
    const a = parse(await staying[i]!.answer(2));
    assert.deepEqual(a, { gen: 2, id: ids[i], n: 2, text: 'again' }, `client ${i}`);
  }
  // Everything the talker asked was answered exactly once, in order.
  await talker.answer(asked);
  await new Promise((res) => setTimeout(res, 100));
  assert.equal(talker.lines.length, asked, 'the talker got one answer per line');
  const gen2 = s.generationPids().find((pid) => pid !== gen1)!;
  const stats = async () => {
    talker.socket.write('/stats\n');
    const line = parse(await talker.answer(++asked)).text;
    const m = /^connections=(\d+) adopted=(\d+) unread=(\d+)$/.exec(line);
    assert.ok(m, line);
    return { connections: Number(m[1]), adopted: Number(m[2]), unread: Number(m[3]) };
  };
  // The closers' connections were taken in and closed there (no socket left behind in CLOSE_WAIT); the new
  // generation took in exactly what the old one moved.
  let st = await stats();
  for (let i = 0; i < 100 && st.connections !== staying.length + 1; i++) {
    await new Promise((res) => setTimeout(res, 50));
    st = await stats();
  }
  assert.deepEqual(
    st,
    { connections: staying.length + 1, adopted: Number(moved[1]), unread: CLOSERS },
    'generation 2 took in every connection moved, once; the closers closed there unread',
  );
  assert.equal(socketsInState(gen2, '08'), 0, 'no connection closed by its client left open in generation 2');
  assert.equal(epollSets(gen2), epollBaseline, 'no epoll set left open in generation 2 (the readiness watch)');
  // Its fd table: its connections and its baseline (measured once they are gone, the talker's aside).
  const withConnections = openFds(gen2).length;
  for (const c of staying) c.socket.destroy();
  await waitFor(() => openFds(gen2).length <= withConnections - staying.length, 10_000, 'fds back to baseline');
  assert.equal(withConnections - openFds(gen2).length, staying.length, 'one fd per connection, nothing else');
  talker.socket.destroy();
  assert.equal(await s.shutdown(), 0);
});

const WS_APP = path.join(ROOT, 'dist/test/fixtures/ws-slow-adopt-app.js');
const WS_IDLE = 1500;

test('WebSockets: one that sends during the move is served first; wss.clients holds every one at the end', async (t) => {
  if (nofileLimit() < 3 * WS_IDLE + 1000) {
    t.skip(`needs an open files limit of ${3 * WS_IDLE + 1000} (ulimit -n is ${nofileLimit()})`);
    return;
  }
  const s = await startSupervised(t, { app: WS_APP, servingLine: WS_SERVING, env: { RESTORE_BUSY_US: '200' } });
  const clients: Client[] = [];
  t.after(() => {
    for (const c of clients) c.ws.terminate();
  });
  for (let i = 0; i < WS_IDLE; i += 100) {
    const group = await Promise.all(
      Array.from({ length: Math.min(100, WS_IDLE - i) }, (_, k) => connect(s.port, i + k)),
    );
    clients.push(...group);
    for (const c of group) c.ws.send(String(c.sent++));
    await waitFor(() => group.every((c) => c.expected === 1), 10_000, 'first echoes');
  }
  // Connected last: among the last the old generation moves.
  const talker = new WebSocket(`ws://127.0.0.1:${s.port}/talker`, { perMessageDeflate: false });
  t.after(() => talker.terminate());
  const answers: string[] = [];
  talker.on('message', (d) => answers.push(String(d)));
  await new Promise((r, j) => talker.once('open', r).once('error', j));
  talker.send('hello');
  await waitFor(() => answers.length === 1, 10_000, "the talker's first answer");
  assert.match(answers[0]!, /^1 1 hello$/);
  const reload = s.reload();
  let asked = 1;
  const ask = setInterval(() => {
    if (talker.readyState !== WebSocket.OPEN) return;
    talker.send('/restored');
    asked++;
  }, 3);
  t.after(() => clearInterval(ask));
  await waitFor(() => answers.some((a) => a.startsWith('2 ')), 60_000, 'the talker answered by generation 2');
  clearInterval(ask);
  const first = answers.find((a) => a.startsWith('2 '))!;
  const restored = Number(/restored=(\d+)$/.exec(first)?.[1]);
  t.diagnostic(`the talker was first answered by generation 2 after it had restored ${restored} of ${WS_IDLE + 1}`);
  const r = await reload;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(
    restored < (WS_IDLE * 2) / 3,
    `the talker was answered only after ${restored} of ${WS_IDLE + 1} WebSockets were restored`,
  );
  // Every WebSocket arrives in wss.clients, once: the new generation takes every new connection now. Each idle
  // one answers from generation 2 with its state.
  await expectAllMovedTo(s.port, clients, WS_IDLE + 1, 2, 60_000);
  await waitFor(() => answers.length === asked, 10_000, 'the talker got one answer per message');
  assert.equal((await get(s.port, '/clients')).body.trim(), `clients ${WS_IDLE + 1}`, 'no WebSocket twice, none lost');
  for (const c of clients) c.ws.terminate();
  talker.terminate();
  assert.equal(await s.shutdown(), 0);
});
