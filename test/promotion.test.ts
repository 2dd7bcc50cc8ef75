/**
 * What baton keeps per connection must not outlive the connection in the young generation's eyes.
 *
 * `npm run bench:steady` found `baton run` 14-21% slower than plain node:http at the p99 with `Connection: close`
 * (a new connection per request) while both ran the same number of instructions per request. The difference
 * was the garbage collector: the app's scavenges promoted twice the bytes per request (1,307 against 572,
 * --trace-gc-nvp), and a scavenge's pause grows with what it copies. The cause was the Sets in which baton
 * tracked each connection and response for the drain (src/integrations/linked-set.ts says why a churning Set
 * does that). This test counts the bytes the scavenges promote per request — v8.GCProfiler's old-space size
 * before and after each scavenge — in plain node:http and in the same app listening through an Upgrader,
 * under the same `Connection: close` load. Counted bytes, not time: it holds on a loaded machine.
 *
 * And what baton adds to every request, counted in listeners: one 'request' listener on the server and one
 * 'close' listener on each response (docs/performance.md, "What baton executes per request").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startLoad } from '../scripts/lib/http-load.js';
import { FIXTURES, spawnNode, tmpDir, waitFor } from './helpers.js';
import { get } from './upgrade-helpers.js';
import { assertNoFailedRequests } from './workers-helpers.js';

const APP = path.join(FIXTURES, 'promotion-app.js');
const CONNECTIONS = 16;
const WARM_UP = 3000;
const MEASURED = 8000;
/** Measured here: with the Sets the Upgrader's app promoted 2.7-3.1× what plain node:http did per request; with the
 * lists, 0.95-1.06×. */
const MAX_RATIO = 1.5;

interface Promotion {
  promoted: number;
  scavenges: number;
  requests: number;
}

/** `count` requests (at least), each on a new connection; every one answered with a 200. */
async function load(port: number, count: number): Promise<void> {
  const l = startLoad({ port, connections: CONNECTIONS, keepAlive: false, timeoutMs: 10_000 });
  try {
    await waitFor(() => l.result.sent >= count, 120_000, `${count} requests`);
  } finally {
    assertNoFailedRequests(await l.stop());
  }
}

async function promotedPerRequest(t: Parameters<typeof tmpDir>[0], env: NodeJS.ProcessEnv): Promise<number> {
  const app = spawnNode(t, APP, [], env);
  const port = Number((await app.line(/^ready (\d+)/, 20_000))[1]);
  await load(port, WARM_UP); // the JIT settles, and the long-lived objects reach the old generation
  assert.equal((await get(port, '/gc/start')).status, 200);
  await load(port, MEASURED);
  const p = JSON.parse((await get(port, '/gc/stop')).body) as Promotion;
  assert.ok(p.requests >= MEASURED, `counted ${p.requests} requests`);
  assert.ok(p.scavenges >= 3, `${p.scavenges} scavenges while measuring: too few to compare`);
  return p.promoted / p.requests;
}

test('an app listening through an Upgrader promotes no more per Connection: close request than plain node:http', {
  timeout: 300_000,
}, async (t) => {
  const plain = await promotedPerRequest(t, {});
  const baton = await promotedPerRequest(t, { BATON_SOCKET: path.join(tmpDir(t), 'promotion.sock') });
  const ratio = baton / plain;
  t.diagnostic(
    `promoted per request: plain ${plain.toFixed(0)} B, Upgrader ${baton.toFixed(0)} B (${ratio.toFixed(2)}×)`,
  );
  assert.ok(
    ratio <= MAX_RATIO,
    `the Upgrader's app promoted ${baton.toFixed(0)} bytes per request, plain node:http ${plain.toFixed(0)} ` +
      `(${ratio.toFixed(2)}×, at most ${MAX_RATIO}×): something baton tracks per connection outlives it`,
  );
});

test('an Upgrader adds one listener per request: none for SSE streams before a drain, none for "finish"', async (t) => {
  type Counts = { request: number; finish: number; close: number };
  const counts = async (env: NodeJS.ProcessEnv): Promise<Counts> => {
    const app = spawnNode(t, APP, [], env);
    const port = Number((await app.line(/^ready (\d+)/, 20_000))[1]);
    const r = await get(port, '/listeners');
    assert.equal(r.status, 200);
    return JSON.parse(r.body) as Counts;
  };
  const plain = await counts({});
  const baton = await counts({ BATON_SOCKET: path.join(tmpDir(t), 'listeners.sock') });
  t.diagnostic(`listeners: plain ${JSON.stringify(plain)}, Upgrader ${JSON.stringify(baton)}`);
  // The drainer's 'request' listener (src/integrations/http.ts); the SSE tracker reads its list of responses and
  // listens to requests only once the drain begins (sse.ts). Two here meant both listened to every request.
  assert.equal(baton.request - plain.request, 1, "'request' listeners baton adds");
  // A response's end is its 'close' (node:http emits it after 'finish'): a 'finish' listener as well would turn
  // the response's listeners into an array next to node:http's own.
  assert.equal(baton.finish - plain.finish, 0, "'finish' listeners baton adds per response");
  assert.equal(baton.close - plain.close, 1, "'close' listeners baton adds per response");
});
