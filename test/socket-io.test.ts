/**
 * Socket.IO across reloads under `baton run` (test/fixtures/sio-app.ts): upgrader.socketIo(io) closes the
 * old generation's engine.io connections the moment the new one is ready, and carries Socket.IO's
 * connection state recovery (sessions, packet log) over, so 20 socket.io-client clients counting ticks see
 * none lost and get their sessions back (socket.recovered). A handshake that reaches the old generation after
 * its drain closed the Socket.IO connections (on a keep-alive connection it still holds) is refused, so no
 * session opens there that nobody closes. Also: webSocketServer() given a Socket.IO part throws a TypeError
 * that points at socketIo().
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { Server } from 'socket.io';
import WebSocket from 'ws';
import { io as connect, type Socket } from 'socket.io-client';
import { Upgrader } from '../src/index.js';
import { FIXTURES, waitFor } from './helpers.js';
import { startSupervised, waitExit } from './upgrade-helpers.js';

const APP = path.join(FIXTURES, 'sio-app.js');
const N = 20;

class TickClient {
  readonly socket: Socket;
  seen = new Set<number>();
  first: number | null = null;
  gen = 0;
  /** Each reconnect: ms from 'disconnect' to 'connect', and whether the session was recovered. */
  reconnects: Array<{ ms: number; recovered: boolean }> = [];
  #disconnectedAt = 0;

  constructor(url: string, websocketOnly: boolean) {
    this.socket = connect(url, websocketOnly ? { transports: ['websocket'] } : {});
    this.socket.on('tick', (gen: number, n: number) => {
      this.gen = gen;
      this.first ??= n;
      this.seen.add(n);
    });
    this.socket.on('disconnect', () => (this.#disconnectedAt = Date.now()));
    this.socket.on('connect', () => {
      if (this.#disconnectedAt)
        this.reconnects.push({ ms: Date.now() - this.#disconnectedAt, recovered: this.socket.recovered });
    });
  }

  missing(): number[] {
    const out: number[] = [];
    if (this.first === null) return out;
    for (let n = this.first; n <= Math.max(...this.seen); n++) if (!this.seen.has(n)) out.push(n);
    return out;
  }

  /** Ticks missing between the first and the last one received. */
  lost(): number {
    if (this.first === null) return 0;
    const last = Math.max(...this.seen);
    return last - this.first + 1 - this.seen.size;
  }
}

test(
  'Socket.IO: 20 clients through two quick reloads reconnect to the newest generation with their sessions, 0 ' +
    'ticks lost',
  async (t) => {
    const s = await startSupervised(t, { app: APP, env: { SIO_T0: String(Date.now()) } });
    const url = `http://127.0.0.1:${s.port}`;
    // Half start with HTTP long-polling (and upgrade), half with WebSocket only.
    const clients = Array.from({ length: N }, (_, i) => new TickClient(url, i % 2 === 1));
    t.after(() => clients.forEach((c) => c.socket.close()));
    await waitFor(() => clients.every((c) => c.seen.size > 5), 20_000, 'every client receives ticks');
    const pids = [(await s.serving())[0]!.pid];
    for (const n of [2, 3]) {
      const r = await s.reload();
      assert.equal(r.code, 0, `reload to generation ${n}: ${r.stderr}`);
      pids.push((await s.serving())[0]!.pid);
    }
    await waitFor(
      () => clients.every((c) => c.gen === 3 && c.socket.connected),
      30_000,
      'every client receives ticks from generation 3',
    );
    for (const pid of pids.slice(0, 2)) {
      try {
        await waitExit(pid, 20_000, 'the replaced generations exit');
      } catch (err) {
        // Which generation stayed, and what it was waiting for: the supervisor's log carries every generation's.
        throw new Error(`${(err as Error).message} (pid ${pid}); supervisor log:\n${s.sup.stderr().slice(-6000)}`);
      }
    }
    const mark = clients.map((c) => Math.max(...c.seen));
    await waitFor(() => clients.every((c, i) => Math.max(...c.seen) > mark[i]! + 5), 10_000, 'the ticks go on');
    const lost = clients.reduce((a, c) => a + c.lost(), 0);
    const reconnects = clients.flatMap((c) => c.reconnects);
    const ms = reconnects.map((r) => r.ms).sort((a, b) => a - b);
    t.diagnostic(
      `${reconnects.length} reconnects, ${reconnects.filter((r) => r.recovered).length} recovered; reconnect ms: ` +
        `median ${ms[ms.length >> 1]}, max ${ms.at(-1)}; ticks lost: ${lost}`,
    );
    assert.equal(lost, 0, `no tick lost: ${clients.map((c) => c.missing().join(',')).join(' | ')}`);
    assert.ok(
      clients.every((c) => c.reconnects.length >= 1),
      'each client reconnected',
    );
    assert.ok(
      reconnects.every((r) => r.recovered),
      'every reconnect recovered its session (room, missed ticks)',
    );
    assert.doesNotMatch(s.sup.stderr(), /not-moved|socket-io-carry-failed/);
    clients.forEach((c) => c.socket.close());
    assert.equal(await s.shutdown(), 0);
  },
);

test(
  'Socket.IO without connection state recovery: clients still reconnect to the new generation at once (their ' +
    'session is new)',
  async (t) => {
    const s = await startSupervised(t, { app: APP, env: { SIO_T0: String(Date.now()), SIO_RECOVERY: '0' } });
    const clients = Array.from({ length: 4 }, (_, i) => new TickClient(`http://127.0.0.1:${s.port}`, i % 2 === 1));
    t.after(() => clients.forEach((c) => c.socket.close()));
    await waitFor(() => clients.every((c) => c.seen.size > 0), 20_000, 'every client receives ticks');
    const gen1 = (await s.serving())[0]!.pid;
    const r = await s.reload();
    assert.equal(r.code, 0, r.stderr);
    await waitFor(() => clients.every((c) => c.gen === 2), 30_000, 'every client receives ticks from generation 2');
    await waitExit(gen1, 20_000, 'generation 1 exits');
    assert.ok(clients.every((c) => c.reconnects.length === 1 && !c.reconnects[0]!.recovered));
    clients.forEach((c) => c.socket.close());
    assert.equal(await s.shutdown(), 0);
  },
);

/** Wait (bounded) until the serving generation holds `n` connections. */
async function connectionsIn(s: Awaited<ReturnType<typeof startSupervised>>, n: number): Promise<void> {
  for (let i = 0; i < 100 && (await s.serving())[0]!.connections < n; i++) await new Promise((r) => setTimeout(r, 50));
}

/** A raw keep-alive connection: GET /hold (sio-app.ts), then `next` pipelined once the hold answers "draining"
 * (the old generation's drain has closed its Socket.IO connections). Resolves with what `next` got back. */
async function behindHold(t: { after(fn: () => void): void }, port: number, next: string): Promise<string> {
  const sock = net.connect(port, '127.0.0.1');
  t.after(() => sock.destroy());
  let got = '';
  sock.setEncoding('latin1').on('data', (d: string) => (got += d));
  sock.on('error', () => {});
  let ended = false;
  sock.on('close', () => (ended = true));
  sock.write(`GET /hold HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
  await waitFor(() => got.includes('draining') || ended, 30_000, '/hold answers at the drain');
  assert.ok(got.includes('draining'), got);
  sock.write(`${next}Host: 127.0.0.1:${port}\r\n\r\n`);
  const rest = () => got.slice(got.indexOf('draining.') + 'draining.'.length);
  await waitFor(() => ended || /\r\n\r\n/.test(rest()), 10_000, 'the pipelined handshake is answered');
  await new Promise((r) => setTimeout(r, 100)); // the body, if any
  return rest();
}

test(
  'Socket.IO: a handshake that reaches the old generation after its drain began (behind a request in flight on a ' +
    'keep-alive connection) is refused, and the old generation exits',
  async (t) => {
    const s = await startSupervised(t, { app: APP, env: { SIO_T0: String(Date.now()) } });
    const gen1 = (await s.serving())[0]!.pid;
    const WS =
      'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
    const POLLING = 'GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n';
    const answers = Promise.all([behindHold(t, s.port, WS), behindHold(t, s.port, POLLING)]);
    await connectionsIn(s, 2); // their request is sent with the connect
    const reload = s.reload();
    const [ws, polling] = await answers;
    t.diagnostic(`websocket handshake: ${JSON.stringify(ws.slice(0, 120))}`);
    t.diagnostic(`polling handshake: ${JSON.stringify(polling.slice(0, 200))}`);
    assert.equal((await reload).code, 0);
    // Before the fix, generation 1 opened both sessions; the WebSocket one, closed by nobody, held it until the
    // drain timeout (30 s: measured 29.9 s after the reload).
    await waitExit(gen1, 15_000, 'generation 1 exits though handshakes reached it after its drain began');
    assert.match(ws, /^HTTP\/1\.1 40\d/, 'the WebSocket handshake is refused');
    assert.match(polling, /^HTTP\/1\.1 403/, 'the polling handshake is refused');
    assert.match(polling, /draining/);
    assert.equal(await s.shutdown(), 0);
  },
);

test(
  'Socket.IO: a session a handshake opens after the drain began (verified before it: an async allowRequest) is ' +
    'closed, and the old generation exits',
  async (t) => {
    const s = await startSupervised(t, { app: APP, env: { SIO_T0: String(Date.now()) } });
    const gen1 = (await s.serving())[0]!.pid;
    const ws = new WebSocket(`ws://127.0.0.1:${s.port}/socket.io/?EIO=4&transport=websocket&hold=1`);
    t.after(() => ws.terminate());
    const messages: string[] = [];
    let closed = false;
    ws.on('message', (m) => messages.push(String(m)));
    ws.on('close', () => (closed = true));
    ws.on('error', () => {});
    for (let i = 0; i < 100 && (await s.serving())[0]!.connections < 1; i++)
      await new Promise((r) => setTimeout(r, 50));
    assert.equal((await s.reload()).code, 0);
    await waitFor(() => closed, 15_000, 'the session opened after the drain began is closed');
    assert.match(messages[0] ?? '', /^0\{"sid"/, 'it was opened (engine.io open packet)');
    await waitExit(gen1, 15_000, 'generation 1 exits');
    assert.equal(await s.shutdown(), 0);
  },
);

test('webSocketServer() given a Socket.IO part throws a TypeError naming it and pointing at socketIo()', async (t) => {
  const upgrader = await Upgrader.start({ logger: false, exitOnDrain: false, systemd: false });
  const io = new Server(http.createServer());
  t.after(() => io.close());
  const engine = io.engine as unknown as { ws?: unknown };
  for (const [what, part] of [
    ['a socket.io Server', io],
    ['an engine.io Server', io.engine],
    ['without client tracking', engine.ws],
  ] as const) {
    if (part === undefined) continue; // engine.ws is made at the first attach()
    assert.throws(
      () => upgrader.webSocketServer(part),
      (err: Error & { code?: string }) => {
        assert.ok(err instanceof TypeError);
        assert.equal(err.code, 'ERR_INVALID_ARG_TYPE');
        assert.ok(err.message.includes(what), err.message);
        assert.match(err.message, /upgrader\.socketIo\(io\)/);
        return true;
      },
    );
  }
  assert.throws(() => upgrader.socketIo({}), TypeError);
  upgrader.socketIo(io);
});
