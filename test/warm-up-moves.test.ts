/**
 * The move warm-up a new generation runs before ready() (src/upgrader/warm-up-moves.ts): loopback connections
 * through the path a moved connection takes (a bare fd parked in a ReadinessWatch, adopted as a net.Socket,
 * continued as an echo or as a WebSocket rebuilt on a private server object), nothing of it reaching the app,
 * nothing left open, bounded in time; and under `baton run` generation 2 runs it and every connection still
 * moves exactly once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { webSocketWarmUp, type WsServerLike } from '../src/integrations/ws.js';
import { Upgrader } from '../src/index.js';
import { ECHO_EXCHANGE, warmUpMoves } from '../src/upgrader/warm-up-moves.js';
import { expectFdsBackTo, fdCount, FIXTURES, waitFor } from './helpers.js';
import { startSupervised } from './upgrade-helpers.js';

const APP = path.join(FIXTURES, 'warm-moves-app.js');
const SERVING = /generation 1 serving echo=(\d+) web=\d+/;

test('warmUpMoves() runs every connection through the path, echo and WebSocket, and leaves no fd behind', async () => {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  let appConnections = 0;
  wss.on('connection', () => appConnections++);
  const ws = webSocketWarmUp(wss as unknown as WsServerLike);
  await warmUpMoves(2, [ECHO_EXCHANGE, ws]); // loads what the first run loads; count fds after it
  const base = fdCount();
  const r = await warmUpMoves(100, [ECHO_EXCHANGE, ws]);
  assert.equal(r.connections, 100);
  // Groups of 16, alternating: echo 16, ws 16, echo 16, ws 16, echo 16, ws 16, echo 4.
  assert.deepEqual(r.byKind, { raw: 52, ws: 48 });
  assert.equal(appConnections, 0, "the app's WebSocketServer never emits 'connection' for the warm-up");
  assert.equal(wss.clients.size, 0, "nothing is added to the app's wss.clients");
  assert.deepEqual(await warmUpMoves(0, [ECHO_EXCHANGE]), { connections: 0, byKind: {} });
  assert.deepEqual(await warmUpMoves(10, []), { connections: 0, byKind: {} });
  await expectFdsBackTo(base, 'after the move warm-up');
  wss.close();
});

test('warmUpMoves() is bounded: with a tiny time limit it stops early and still closes everything', async () => {
  const base = fdCount();
  const r = await warmUpMoves(100_000, [ECHO_EXCHANGE], 20);
  assert.ok(r.connections < 100_000, `stopped at the time limit (${r.connections} connections)`);
  await expectFdsBackTo(base, 'after a cut-short move warm-up');
});

test('options.warmUpMoves must be an integer from 0 to 100000 (TypeError)', async () => {
  for (const bad of [-1, 1.5, '100', Number.NaN, 100_001]) {
    await assert.rejects(
      Upgrader.start({ warmUpMoves: bad as number, logger: false }),
      (err: Error & { code?: string }) => err instanceof TypeError && err.code === 'ERR_INVALID_ARG_TYPE',
    );
  }
});

/** A raw client of the fixture's echo: sends a line, resolves with the answer line. */
function lineClient(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  socket.setEncoding('utf8');
  let buffered = '';
  let closed = false;
  const waiting: Array<(line: string) => void> = [];
  socket.on('data', (d: string) => {
    buffered += d;
    for (let nl = buffered.indexOf('\n'); nl !== -1; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      waiting.shift()?.(line);
    }
  });
  socket.on('error', () => {});
  socket.on('close', () => (closed = true));
  return {
    socket,
    get closed() {
      return closed;
    },
    ready: new Promise<void>((resolve) => socket.once('connect', () => resolve())),
    ask(line: string, ms = 20_000): Promise<string> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer to ${line}`)), ms);
        waiting.push((answer) => {
          clearTimeout(timer);
          resolve(answer);
        });
        socket.write(`${line}\n`);
      });
    },
  };
}

test(
  'under baton run: generation 2 warms the move path before ready, the app sees none of it, and every ' +
    'connection moves exactly once',
  async (t) => {
    const s = await startSupervised(t, { app: APP, servingLine: SERVING });
    const webPort = Number(/generation 1 serving echo=\d+ web=(\d+)/.exec(s.sup.stdout())![1]);
    assert.doesNotMatch(s.sup.stderr(), /baton warmed-up gen=1/, 'generation 1 has nothing to take over');
    const raw = Array.from({ length: 20 }, () => lineClient(s.port));
    await Promise.all(raw.map((c) => c.ready));
    for (const c of raw) assert.equal(await c.ask('hello'), '1 hello');
    const sockets = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const ws = new WebSocket(`ws://127.0.0.1:${webPort}/`, { perMessageDeflate: false });
        await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
        return ws;
      }),
    );
    let wsClosed = 0;
    for (const ws of sockets) ws.on('close', () => wsClosed++);
    const r = await s.reload();
    assert.equal(r.code, 0, `reload: ${r.stdout} ${r.stderr}`);
    await s.sup.line(/generation 2 serving/, 20_000);
    const m = /baton warmed-up gen=2 pid=\d+ requests=(\d+) ms=\d+ moves=(\d+) webSockets=(\d+)/.exec(s.sup.stderr());
    assert.ok(m, `generation 2 logs its warm-up: ${s.sup.stderr().slice(-2000)}`);
    assert.equal(Number(m[2]), 100, 'the default: 100 connections through the move path');
    assert.equal(Number(m[3]), 48, 'a third-ish of them rebuilt as WebSockets (groups alternate echo, ws)');
    assert.ok(s.sup.stderr().indexOf('baton warmed-up gen=2') < s.sup.stderr().indexOf('baton ready gen=2'));
    // Every connection is answered by generation 2 (moved), none closed on the way.
    for (const c of raw) await waitFor(() => !c.closed, 1, 'raw client open');
    const answers = await Promise.all(raw.map((c) => c.ask('again')));
    assert.deepEqual(
      answers,
      raw.map(() => '2 again'),
    );
    const wsAnswers = await Promise.all(
      sockets.map(
        (ws) =>
          new Promise<string>((resolve) => {
            ws.once('message', (d) => resolve(String(d)));
            ws.send('again');
          }),
      ),
    );
    assert.deepEqual(
      wsAnswers,
      sockets.map(() => '2 again'),
    );
    assert.equal(wsClosed, 0, 'no WebSocket closed');
    // What reached generation 2's app: exactly the moved connections, once each; nothing from the warm-up.
    const stats = JSON.parse(await raw[0]!.ask('stats')) as Record<string, number>;
    assert.deepEqual(stats, {
      gen: 2,
      rawAccepted: 0,
      migrated: 20,
      httpAccepted: 0,
      wsFresh: 0,
      wsMigrated: 20,
      wsClients: 20,
    });
    for (const ws of sockets) ws.terminate();
    for (const c of raw) c.socket.destroy();
    assert.equal(await s.shutdown(), 0);
  },
);
