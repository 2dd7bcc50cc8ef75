/**
 * A WebSocket pauses only while it moves: during a reload the old generation keeps serving each connection
 * until its own batch leaves (src/integrations/ws.ts with MigrationSender.sendable()), instead of stopping
 * every one at the drain and leaving the last batch frozen for the whole move. The new generation of
 * test/fixtures/ws-slow-adopt-app.ts takes 2 ms to restore each WebSocket (~0.5 s per batch of 253), so the
 * old one, without pacing, has stopped reading every connection long before the first batch is adopted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { waitFor } from './helpers.js';
import { startSupervised } from './upgrade-helpers.js';
import path from 'node:path';
import { ROOT } from './helpers.js';
import { connect, expectEchoedIntact, WS_SERVING as SERVING, type Client } from './ws-helpers.js';

const APP = path.join(ROOT, 'dist/test/fixtures/ws-slow-adopt-app.js');

/** Several batches whatever their size (at most 253; sized by the adoption cost the new generation reports):
 * two in flight at a time, so the last ones leave well after the first connections were answered by the new
 * generation. */
const N = 4 * 253;

test('while WebSockets move in batches, the old generation answers those whose batch has not left yet', async (t) => {
  const s = await startSupervised(t, { app: APP, servingLine: SERVING, env: { RESTORE_BUSY_MS: '2' } });
  const clients: Client[] = [];
  for (let i = 0; i < N; i += 100) {
    const n = Math.min(100, N - i);
    clients.push(...(await Promise.all(Array.from({ length: n }, (_, k) => connect(s.port, i + k)))));
  }
  // Ping-pong: each client sends its next message as soon as the previous one is answered.
  let running = true;
  let firstNewAt = Infinity;
  let oldAfterNew = 0;
  let newAnswers = 0;
  const sentAt = new Float64Array(N);
  const send = (c: Client, i: number) => {
    if (!running || c.ws.readyState !== WebSocket.OPEN) return;
    sentAt[i] = performance.now();
    c.ws.send(String(c.sent++));
  };
  clients.forEach((c, i) => {
    c.ws.on('message', (data) => {
      const gen = Number(String(data).split(' ')[0]);
      if (gen === 2) {
        newAnswers++;
        if (firstNewAt === Infinity) firstNewAt = performance.now();
      } else if (gen === 1 && sentAt[i]! > firstNewAt) {
        // Sent after another client was already answered by the new generation, answered by the old one.
        oldAfterNew++;
      }
      send(c, i);
    });
    send(c, i);
  });
  await waitFor(() => clients.every((c) => c.expected > 0), 30_000, 'every client got an echo');
  const r = await s.reload();
  assert.equal(r.code, 0, r.stderr);
  await waitFor(() => clients.every((c) => c.generations.has(2)), 30_000, 'every client answered by generation 2');
  running = false;
  await expectEchoedIntact(clients);
  t.diagnostic(`answers from generation 2: ${newAnswers}; from generation 1 after the first of those: ${oldAfterNew}`);
  // The last batches leave only once those ahead are adopted (two batches in flight at most): their clients
  // are still answered by generation 1 meanwhile. Moving all at once, every one was paused at the drain (0).
  assert.ok(oldAfterNew >= 20, `only ${oldAfterNew} messages sent after generation 2 answered had generation 1 answer`);
  for (const c of clients) c.ws.terminate();
  assert.equal(await s.shutdown(), 0);
});
