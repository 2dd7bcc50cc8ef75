/**
 * Batch sizing and pacing of a move (src/upgrader/pacing.ts): batches follow the adoption cost the new
 * generation reports, the first is small (the new generation is cold), an older receiver that reports no cost
 * gets full batches as before, and paced() starts one batch's worth only once the sender says it would leave.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_MIGRATION_BATCH } from '../src/handoff/messages.js';
import { BatchSizer, FIRST_BATCH, MIN_BATCH, TARGET_BATCH_MS, paced } from '../src/upgrader/pacing.js';

test('batch size: small first, then as many as fit in the target, within bounds', () => {
  const b = new BatchSizer();
  assert.equal(b.size, FIRST_BATCH);
  b.observe(0, 5); // the room announcement: no batch yet
  assert.equal(b.size, FIRST_BATCH);
  b.observe(32, 100); // 100 µs per connection
  assert.equal(b.size, Math.floor((TARGET_BATCH_MS * 1000) / 100));
  b.observe(100, 100_000); // a very slow batch: averaged, and never below the minimum
  assert.equal(b.size, MIN_BATCH);
  const fast = new BatchSizer();
  fast.observe(32, 1);
  assert.equal(fast.size, MAX_MIGRATION_BATCH);
});

test('batch size: a receiver that reports no cost (an older baton) gets full batches', () => {
  const b = new BatchSizer();
  b.observe(32, undefined);
  assert.equal(b.size, MAX_MIGRATION_BATCH);
});

test('paced() starts one batch at a time, each when the sender says it would leave', async () => {
  const started: number[] = [];
  let releases = 0;
  let release: (() => void) | null = null;
  const sender = {
    accepting: true,
    batchSize: 3,
    sendable: () =>
      new Promise<void>((r) => {
        release = () => {
          releases++;
          r();
        };
      }),
  };
  const done = paced(sender, [0, 1, 2, 3, 4, 5, 6], async (i) => {
    started.push(i);
  });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [0, 1, 2], 'the first batch only');
  release!();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [0, 1, 2, 3, 4, 5]);
  sender.batchSize = 10; // the size may change between batches
  release!();
  await done;
  assert.deepEqual(started, [0, 1, 2, 3, 4, 5, 6]);
  assert.equal(releases, 2);
});
