/**
 * Acceptance: raw TCP connections move between generations (upgrader.migrate() / 'migrated'), with
 * examples/tcp-echo under `baton run` (real processes, 127.0.0.1 or a Unix socket in a private tmp dir).
 *
 * - 1,000 TCP clients stream sequence-numbered lines (bursts written in two pieces, so the server often
 *   holds a partial line, which moves as `pending`) through 5 reloads: no client socket ever sees 'close' or
 *   'error' until the test ends it; every line is answered exactly once and in order (EchoClient checks each
 *   answer's running count against its own); each connection keeps its id (the state moved) and is answered
 *   by all 6 generations in turn; every old generation reports all 1,000 moved and exits; the last one
 *   counts 1,000 connections (`baton status`).
 * - The same over a Unix socket (200 clients).
 * - Bytes Node had already read from a connection that the app had not processed (a paused connection whose
 *   client does not read its answers) move once: not processed in the old generation and again in the new.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { tmpDir, waitFor } from './helpers.js';
import { startSupervised, waitExit, type Supervised } from './upgrade-helpers.js';
import {
  allAnsweredBy,
  connectClients,
  ECHO,
  ECHO_MOVED,
  ECHO_SERVING_TCP,
  ECHO_SERVING_UNIX,
  nofileLimit,
  problems,
  type EchoClient,
} from './migrate-helpers.js';

const RELOADS = 5;

/** Reload RELOADS times; after each, the old generation moved all `n` and every client hears the new one. */
async function reloadAll(
  s: Supervised,
  clients: EchoClient[],
  n: number,
  diag: (msg: string) => void,
): Promise<number[]> {
  const oldPids: number[] = [];
  for (let i = 0; i < RELOADS; i++) {
    const gen = i + 2;
    const oldPid = (await s.serving())[0]!.pid;
    const r = await s.reload();
    assert.equal(r.code, 0, `reload ${i + 1} failed: ${r.stdout} ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`generation ${gen} \\(pid \\d+\\) is serving`));
    const moved = await s.sup.line(ECHO_MOVED(gen - 1), 60_000);
    diag(moved[0]);
    assert.equal(
      Number(moved[2]),
      n,
      `generation ${gen - 1} had ${moved[2]} connections to move, expected ${n}: ${problems(clients)}`,
    );
    assert.equal(Number(moved[1]), n, `generation ${gen - 1}: ${moved[0]}`);
    await allAnsweredBy(clients, gen, 30_000);
    assert.equal(problems(clients), 'none', `after reload ${i + 1}`);
    oldPids.push(oldPid);
  }
  return oldPids;
}

async function finish(s: Supervised, clients: EchoClient[], n: number): Promise<void> {
  await Promise.all(clients.map((c) => c.stop()));
  assert.equal(problems(clients), 'none');
  for (const c of clients) {
    assert.equal(c.closed, false, 'no connection closed before the test ended it');
    assert.equal(c.answered, c.sent, `client ${c.id}: ${c.sent} lines sent, ${c.answered} answered`);
    assert.deepEqual(c.gens, [1, 2, 3, 4, 5, 6], `client ${c.id} was answered by generations ${c.gens.join(',')}`);
  }
  // The last generation counts every connection as its own (they arrived by migration, not accept).
  assert.equal(await servingConnections(s, n), n, `connections of generation ${RELOADS + 1} (baton status)`);
}

/** The serving generation's connection count (baton status), polled until it is `n` or 10 s passed. */
async function servingConnections(s: Supervised, n: number): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const count = (await s.serving())[0]!.connections;
    if (count === n || Date.now() > deadline) return count;
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('raw TCP: 1,000 connections streaming lines through 5 reloads: none closed, every line answered once, in order', {
  timeout: 240_000,
}, async (t) => {
  const N = 1000;
  const limit = nofileLimit();
  t.diagnostic(`ulimit -n: ${limit}`);
  assert.ok(limit >= N + 500, `ulimit -n is ${limit}: ${N} clients need at least ${N + 500}`);
  const s = await startSupervised(t, { app: ECHO, servingLine: ECHO_SERVING_TCP(1) });
  const clients = await connectClients(N, { connect: { host: '127.0.0.1', port: s.port } });
  t.after(() => clients.forEach((c) => c.socket.destroy()));
  clients.forEach((c) => c.start());
  await allAnsweredBy(clients, 1, 30_000);

  const oldPids = await reloadAll(s, clients, N, (m) => t.diagnostic(m));
  await finish(s, clients, N);
  const sent = clients.reduce((a, c) => a + c.sent, 0);
  t.diagnostic(`${N} clients sent ${sent} lines, all answered once and in order`);
  for (const pid of oldPids) await waitExit(pid, 30_000, `replaced generation ${pid} exits`);
  clients.forEach((c) => c.end());
  assert.equal(await s.shutdown(), 0);
});

test('Unix socket: 200 connections streaming lines through 5 reloads: none closed, every line answered once, in ' +
  'order', {
  timeout: 180_000,
}, async (t) => {
  const N = 200;
  const dir = tmpDir(t);
  const sockPath = path.join(dir, 'echo.sock');
  const s = await startSupervised(t, {
    app: ECHO,
    dir,
    env: { SOCKET_PATH: sockPath },
    servingLine: ECHO_SERVING_UNIX(1),
  });
  const clients = await connectClients(N, { connect: { path: sockPath } });
  t.after(() => clients.forEach((c) => c.socket.destroy()));
  clients.forEach((c) => c.start());
  await allAnsweredBy(clients, 1, 30_000);
  const oldPids = await reloadAll(s, clients, N, (m) => t.diagnostic(m));
  await finish(s, clients, N);
  for (const pid of oldPids) await waitExit(pid, 30_000, `replaced generation ${pid} exits`);
  clients.forEach((c) => c.end());
  assert.equal(await s.shutdown(), 0);
});

test('bytes Node read but the app had not processed (a paused connection) move once', {
  timeout: 120_000,
}, async (t) => {
  const s = await startSupervised(t, { app: ECHO, servingLine: ECHO_SERVING_TCP(1) });
  const socket = net.connect({ host: '127.0.0.1', port: s.port });
  t.after(() => socket.destroy());
  await new Promise((r) => socket.once('connect', r));
  // Do not read the answers: the server's writes back up, so it pauses the connection (backpressure) and
  // what the client sends next piles up in Node's buffer over there, read but unprocessed. Keep writing
  // until the server stops reading altogether (our writes stop draining).
  socket.pause();
  const pad = 'x'.repeat(100);
  let lines = 0;
  const block = () => {
    let text = '';
    for (let i = 0; i < 500; i++) text += `seq ${lines++} ${pad}\n`;
    return text;
  };
  for (let total = 0; ; total += 500) {
    assert.ok(total < 2_000_000, 'the server never stopped reading');
    if (socket.write(block())) continue;
    const drained = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 1000);
      socket.once('drain', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (!drained) break;
  }
  t.diagnostic(`${lines} lines written before the server stopped reading`);
  const r = await s.reload();
  assert.equal(r.code, 0, r.stderr);
  // The old generation now waits for its queued answers to leave (the move flushes them first): read.
  await new Promise((resolve) => setTimeout(resolve, 500));
  let buf = '';
  let answered = 0;
  const gens = new Map<string, number>();
  const errors: string[] = [];
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const [gen, , n, text] = line.split(':');
      gens.set(gen!, (gens.get(gen!) ?? 0) + 1);
      if (Number(n) !== answered + 1 || text !== `seq ${answered} ${pad}`)
        if (errors.length < 3) errors.push(`answer ${answered + 1}: ${line.slice(0, 40)}`);
      answered++;
    }
  });
  socket.resume();
  await waitFor(
    () => answered >= lines || errors.length > 0 || socket.destroyed,
    60_000,
    `all ${lines} lines answered (${answered} so far)`,
  );
  await new Promise((resolve) => setTimeout(resolve, 200)); // a duplicate would arrive after the last line
  t.diagnostic(`answered by generation: ${JSON.stringify(Object.fromEntries(gens))}`);
  assert.deepEqual(errors, [], 'every line answered once, in order');
  assert.equal(answered, lines);
  assert.ok((gens.get('2') ?? 0) > 0, 'the lines the old generation had not processed were answered by the new one');
  const moved = await s.sup.line(ECHO_MOVED(1), 10_000);
  assert.equal(moved[1], '1', moved[0]);
  socket.end();
  assert.equal(await s.shutdown(), 0);
});
