/**
 * WebSocket clients of examples/websocket/server.js for the tests: each sends numbered messages and checks
 * every echo ("<generation> <echoed count> <n>"), so a lost, duplicated or reordered message, state that did
 * not move, or a close is seen.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import WebSocket from 'ws';
import { ROOT, waitFor } from './helpers.js';
import { get } from './upgrade-helpers.js';

export const WS_APP = path.join(ROOT, 'examples/websocket/server.js');
export const WS_SERVING = /generation 1 serving WebSockets on ws:\/\/127\.0\.0\.1:(\d+)/;

export interface Client {
  ws: WebSocket;
  sent: number;
  expected: number;
  problems: string[];
  closes: number[];
  generations: Set<number>;
}

export function connect(port: number, id: number, perMessageDeflate = false): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/c${id}`, { perMessageDeflate });
    const c: Client = { ws, sent: 0, expected: 0, problems: [], closes: [], generations: new Set() };
    ws.on('message', (data) => {
      // The server answers "<generation> <echoed count> <n>": the count is app state that must move too.
      const [gen, echoed, n] = String(data).split(' ').map(Number) as [number, number, number];
      c.generations.add(gen);
      if (n !== c.expected || echoed !== c.expected + 1) {
        c.problems.push(`expected #${c.expected}/${c.expected + 1}, got #${n}/${echoed}`);
      }
      c.expected = n + 1;
    });
    ws.on('close', (code) => c.closes.push(code));
    ws.once('open', () => resolve(c));
    ws.once('error', reject);
  });
}

/** Waits until every message sent has been echoed; then each echo came in order, exactly once, and no client's
 * connection closed. */
export async function expectEchoedIntact(clients: Client[]): Promise<void> {
  await waitFor(() => clients.every((c) => c.expected === c.sent), 20_000, 'every message echoed');
  const problems = clients.flatMap((c, i) => c.problems.map((p) => `client ${i}: ${p}`));
  assert.deepEqual(problems.slice(0, 5), [], 'echoes in order, exactly once, with the state carried over');
  assert.deepEqual(
    clients.flatMap((c) => c.closes),
    [],
    'no client saw its connection close',
  );
}

/**
 * After a move to generation `gen` (the reload returns before it is over): wait up to `ms` until the app's
 * /clients says its wss.clients holds `n`, then have every client send once and check that each answer came
 * from `gen`, in order, with its echoed count carried over (expectEchoedIntact).
 */
export async function expectAllMovedTo(port: number, clients: Client[], n: number, gen: number, ms: number) {
  let held = '';
  await waitFor(
    () => {
      void get(port, '/clients').then((res) => (held = res.body.trim()));
      return held === `clients ${n}`;
    },
    ms,
    `wss.clients to hold ${n}`,
    100,
  );
  for (const c of clients) c.ws.send(String(c.sent++));
  await expectEchoedIntact(clients);
  assert.ok(
    clients.every((c) => c.generations.has(gen)),
    `every WebSocket answered by generation ${gen}`,
  );
}
