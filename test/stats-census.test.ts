/**
 * A draining generation reports its connections by kind every 250 ms (src/upgrader/stats.ts). The census walks
 * every connection, so each report takes it once: it used to take it twice (once to see whether anything
 * changed, once more for the report), a second walk of 10,000 connections in a task of the old generation
 * while it moves them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
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
