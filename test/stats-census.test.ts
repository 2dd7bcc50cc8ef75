/**
 * A draining generation reports its connections by kind every 250 ms (src/upgrader/stats.ts). The census walks
 * every HTTP connection (each may be upgraded or an SSE stream), so each report takes it once: it used to take it
 * twice (once to see whether anything changed, once more for the report), a second walk of 10,000 connections in
 * a task of the old generation while it moves them. A plain net.Server's connections are all raw: counted, not
 * walked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { ConnectionCensus } from '../src/upgrader/census.js';
import type { Generation } from '../src/upgrader/modes/mode.js';
import { StatsReporter } from '../src/upgrader/stats.js';

test('a draining report takes the census of connections once', () => {
  let census = 0;
  const sent: unknown[] = [];
  const g = {
    client: () => ({ stats: (_n: number, _state: string, extra: unknown) => sent.push(extra) }),
    connections: () => 3,
    arriving: () => 0,
    accepted: () => 3,
    waiting: () => 'connections',
    connectionKinds: () => {
      census++;
      return { ws: 3 };
    },
  } as unknown as Generation;
  const stats = new StatsReporter(g);
  stats.draining(); // the first tick runs at once, and reports (nothing reported before)
  stats.drained(null);
  assert.equal(sent.length, 1);
  assert.deepEqual((sent[0] as { kinds: unknown }).kinds, { ws: 3 });
  assert.equal(census, 1, 'one walk of the connections per report (before: 2)');
});

test("the census counts a plain net.Server's connections as raw without walking them; an HTTP server's it walks", () => {
  const census = new ConnectionCensus();
  let walked = 0;
  const sockets = (n: number): Iterable<net.Socket> => ({
    *[Symbol.iterator]() {
      for (let i = 0; i < n; i++) {
        walked++;
        yield new net.Socket();
      }
    },
  });
  const raw = { object: net.createServer(), sockets: sockets(10_000), connections: 10_000 };
  assert.deepEqual(census.count([raw], new Set()), { raw: 10_000 });
  assert.equal(walked, 0, 'raw connections counted, not walked (before: a walk of all 10,000)');
  const web = { object: http.createServer(), sockets: sockets(3), connections: 3 };
  assert.deepEqual(census.count([raw, web], new Set()), { raw: 10_000, http: 3 });
  assert.equal(walked, 3, "an HTTP server's connections are walked: each may be upgraded or an SSE stream");
});
