/**
 * Acceptance: HTTP/1.1 keep-alive connections move to the new generation at their first idle moment, under
 * `baton run` with test/fixtures/migrate-http-app.ts (real processes, 127.0.0.1).
 *
 * 8 keep-alive connections send requests back to back through 5 reloads, and a 9th connection holds a
 * request across each reload (the app answers it 500 ms after it was replaced, however long the reload took: a
 * fixed 2-second hold lost the race with a reload on a loaded machine). Proved:
 * - no request fails, every response is 200, and the client never opens another connection (9 in all);
 * - each connection is answered by every generation in turn (it moved 5 times), and in each generation
 *   the server's 'connection' event fired for it (`seen`) and req.socket.remotePort is the client's own
 *   local port: the new generation continues the same TCP connection; the last generation counts exactly 9
 *   'connection' events — one per migrated connection, none accepted;
 * - the request in flight at each reload is answered by the OLD generation, after it was replaced
 *   (`draining`), and the next request on that same connection is answered by the new one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { FIXTURES, waitFor } from './helpers.js';
import { SERVING, startSupervised, waitExit } from './upgrade-helpers.js';

const APP = path.join(FIXTURES, 'migrate-http-app.js');
const RELOADS = 5;
const CONNS = 8;

interface Answer {
  gen: number;
  pid: number;
  remotePort: number;
  seen: boolean;
  connections: number;
  draining: boolean;
}

interface Exchange {
  answer: Answer;
  localPort: number;
  socket: net.Socket;
}

/** One GET through `agent`; resolves with the parsed answer and the client side of the connection used. */
function ask(
  agent: http.Agent,
  port: number,
  urlPath: string,
  opened: WeakSet<net.Socket>,
  onOpen: () => void,
  timeoutMs = 15_000,
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, agent, timeout: timeoutMs }, (res) => {
      const socket = req.socket as net.Socket;
      const localPort = socket.localPort!;
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}: ${body}`));
        try {
          resolve({ answer: JSON.parse(body) as Answer, localPort, socket });
        } catch (err) {
          reject(err as Error);
        }
      });
      res.on('error', reject);
    });
    req.on('socket', (s: net.Socket) => {
      if (!opened.has(s)) {
        opened.add(s);
        onOpen();
      }
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end();
  });
}

test('HTTP keep-alive: 5 reloads, no request fails, no new connection, each connection continues in the next ' +
  'generation', {
  timeout: 180_000,
}, async (t) => {
  const s = await startSupervised(t, { app: APP, servingLine: SERVING(1) });
  // fifo: every free connection is reused in turn (lifo would leave some idle for long stretches).
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNS, maxFreeSockets: CONNS, scheduling: 'fifo' });
  const longAgent = new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });
  t.after(() => {
    agent.destroy();
    longAgent.destroy();
  });
  const opened = new WeakSet<net.Socket>();
  let socketsOpened = 0;
  let longOpened = 0;
  let ok = 0;
  const errors: string[] = [];
  const wrong: string[] = [];
  /** Per connection (client socket): the generation of its last answer. */
  const genOf = new Map<net.Socket, number>();
  const check = (x: Exchange, what: string) => {
    const a = x.answer;
    if (a.remotePort !== x.localPort)
      wrong.push(`${what}: remotePort ${a.remotePort} in generation ${a.gen}, the client's port is ${x.localPort}`);
    if (!a.seen) wrong.push(`${what}: generation ${a.gen} answered on a socket its server emitted no 'connection' for`);
    const before = genOf.get(x.socket) ?? 0;
    if (a.gen < before) wrong.push(`${what}: generation went back from ${before} to ${a.gen}`);
    genOf.set(x.socket, a.gen);
  };

  let stopping = false;
  const loop = async () => {
    while (!stopping) {
      try {
        const x = await ask(agent, s.port, '/', opened, () => socketsOpened++);
        ok++;
        check(x, 'request');
      } catch (err) {
        errors.push((err as NodeJS.ErrnoException).code ?? (err as Error).message);
      }
      await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 15)));
    }
  };
  const loops = Array.from({ length: CONNS }, loop);
  t.after(() => (stopping = true));
  const long = (urlPath: string, timeoutMs?: number) =>
    ask(longAgent, s.port, urlPath, opened, () => longOpened++, timeoutMs);
  check(await long('/'), 'first request of the long connection');
  await waitFor(() => genOf.size === CONNS + 1 || errors.length > 0, 20_000, `${CONNS} connections open`);

  const oldPids: number[] = [];
  for (let i = 0; i < RELOADS; i++) {
    const gen = i + 2;
    oldPids.push((await s.serving())[0]!.pid);
    // A request the old generation is still answering when it is replaced (it answers 500 ms after its drain
    // began; the bound is for a reload on a loaded machine, and the request fails if the drain never comes).
    const held = long('/?replaced=1&delay=500', 60_000);
    await s.sup.line(new RegExp(`generation ${gen - 1} holds a request until it is replaced`), 10_000);
    const r = await s.reload();
    assert.equal(r.code, 0, `reload ${i + 1} failed: ${r.stdout} ${r.stderr}`);
    const x = await held;
    check(x, 'the long request');
    assert.equal(x.answer.gen, gen - 1, 'the request in flight at the reload is answered by the old generation');
    assert.equal(x.answer.draining, true, 'it was still in flight when the old generation was replaced');
    // Then its connection moves: the next request on it is answered by the new generation.
    const next = await long('/');
    check(next, 'the request after the long one');
    assert.equal(next.answer.gen, gen, 'the connection of the long request moved to the new generation');
    assert.ok(next.socket === x.socket, `the same connection (local port ${next.localPort}, before ${x.localPort})`);
    await waitFor(
      () => [...genOf.values()].every((g) => g === gen) || errors.length > 0,
      20_000,
      `every connection answered by generation ${gen}`,
    ).catch((err: Error) => {
      throw new Error(
        `${err.message}: last generation per connection ${[...genOf.values()].join(',')}; errors ${errors.join(',')}`,
      );
    });
    assert.deepEqual(errors, [], `requests failed after reload ${i + 1}`);
    assert.deepEqual(wrong, [], `after reload ${i + 1}`);
  }
  stopping = true;
  await Promise.all(loops);
  // Every connection is now in the last generation, which accepted none: one 'connection' event each.
  const last = await long('/');
  check(last, 'the last request');
  assert.equal(last.answer.gen, RELOADS + 1);
  assert.equal(last.answer.connections, CONNS + 1, `'connection' events in generation ${RELOADS + 1}`);
  t.diagnostic(
    `${ok} requests answered 200, ${errors.length} failed; connections opened: ${socketsOpened} + ${longOpened}`,
  );

  assert.deepEqual(errors, [], 'no request failed');
  assert.deepEqual(wrong, []);
  assert.ok(ok >= 200, `only ${ok} requests completed`);
  assert.equal(socketsOpened, CONNS, 'the load opened its 8 connections once and kept them');
  assert.equal(longOpened, 1, 'the long requests used one connection throughout');
  assert.equal(genOf.size, CONNS + 1);
  for (const pid of oldPids) await waitExit(pid, 20_000, `replaced generation ${pid} exits`);
  agent.destroy();
  longAgent.destroy();
  assert.equal(await s.shutdown(), 0);
});
