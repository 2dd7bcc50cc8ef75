/**
 * A raw connection pauses only while it moves: with upgrader.migrateAll() the old generation keeps serving each
 * connection until its own batch leaves (as src/integrations/ws.ts does for WebSockets), instead of stopping
 * every one at the drain — what calling migrate() for all of them in 'drain' does, the only way before
 * migrateAll(). The new generation of test/fixtures/tcp-slow-adopt-app.ts takes 2 ms to take each connection
 * in, so the old one, without pacing, has stopped reading every connection long before the first batch is
 * adopted. Every line is still answered exactly once, in order, with the state (its count) carried over.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ROOT, waitFor } from './helpers.js';
import { EchoClient, problems } from './migrate-helpers.js';
import { startSupervised } from './upgrade-helpers.js';

const APP = path.join(ROOT, 'dist/test/fixtures/tcp-slow-adopt-app.js');
const SERVING = /generation 1 serving on tcp:\/\/127\.0\.0\.1:(\d+)/;
/** Several batches whatever their size (at most 253; the first smaller): the last ones leave well after the
 * first connections were answered by the new generation. */
const N = 4 * 253;

test('while raw connections move in batches (migrateAll), the old generation answers those not sent yet', async (t) => {
  const s = await startSupervised(t, { app: APP, servingLine: SERVING, env: { ADOPT_BUSY_MS: '2' } });
  const clients: EchoClient[] = [];
  for (let i = 0; i < N; i += 100) {
    const batch = Array.from(
      { length: Math.min(100, N - i) },
      () => new EchoClient({ connect: { port: s.port, host: '127.0.0.1' }, pauseMs: [0, 5], splitDelayMs: 2 }),
    );
    await Promise.all(batch.map((c) => c.connected()));
    clients.push(...batch);
  }
  // Every answer's generation and when it came, beside EchoClient's own checks (order, count, id).
  let firstNewAt = Infinity;
  let oldAfterNew = 0;
  let newAnswers = 0;
  for (const c of clients) {
    let buf = '';
    c.socket.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const gen = Number(buf.slice(0, buf.indexOf(':')));
        buf = buf.slice(nl + 1);
        if (gen === 2) {
          newAnswers++;
          if (firstNewAt === Infinity) firstNewAt = performance.now();
        } else if (gen === 1 && performance.now() > firstNewAt + 50) {
          // Answered by the old generation well after another client was answered by the new one.
          oldAfterNew++;
        }
      }
    });
    c.start();
  }
  await waitFor(() => clients.every((c) => c.answered > 0), 30_000, 'every client got an answer');
  const r = await s.reload();
  assert.equal(r.code, 0, r.stderr);
  await s.sup.line(/generation 1 moved (\d+) of (\d+) connections/, 60_000);
  await waitFor(() => clients.every((c) => c.lastGen === 2), 30_000, 'every client answered by generation 2');
  await Promise.all(clients.map((c) => c.stop()));
  assert.equal(problems(clients), 'none', 'answers in order, exactly once, with the state carried over');
  assert.deepEqual(clients.filter((c) => c.closed).length, 0, 'no client saw its connection close');
  t.diagnostic(
    `answers from generation 2: ${newAnswers}; from generation 1 50 ms after the first of those: ${oldAfterNew}`,
  );
  // The last batches leave only once those ahead are adopted (two batches in flight at most): their clients
  // are still answered by generation 1 meanwhile. Moving all at once, every one was paused at the drain (0).
  assert.ok(oldAfterNew >= 20, `only ${oldAfterNew} answers from generation 1 came after generation 2 answered`);
  for (const c of clients) c.end();
  assert.equal(await s.shutdown(), 0);
});
