/**
 * Batch sizing and pacing of a move (src/upgrader/pacing.ts): batches follow the adoption cost the new
 * generation reports, the first is small (the new generation is cold), an older receiver that reports no cost
 * gets full batches as before, and paced() starts one batch's worth only once the sender says it would leave.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_MIGRATION_BATCH } from '../src/handoff/messages.js';
import {
  BatchSizer,
  FIRST_BATCH,
  MIN_BATCH,
  TARGET_BATCH_MS,
  TARGET_OWN_SLICE_MS,
  TURN_SHARE,
  paced,
} from '../src/upgrader/pacing.js';
import { manualSender } from './helpers.js';

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
  const sender = manualSender(3);
  const done = paced(sender, [0, 1, 2, 3, 4, 5, 6], async (i) => {
    started.push(i);
  });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [0, 1, 2], 'the first batch only');
  sender.release();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [0, 1, 2, 3, 4, 5]);
  sender.batchSize = 10; // the size may change between batches
  sender.release();
  await done;
  assert.deepEqual(started, [0, 1, 2, 3, 4, 5, 6]);
  assert.equal(sender.releases, 2);
});

test("batch size: no larger than the old generation's own work for a batch allows, whatever the new one's cost", () => {
  const b = new BatchSizer();
  b.observe(32, 1); // adoption is nearly free: 253 by that alone
  assert.equal(b.size, MAX_MIGRATION_BATCH);
  b.observeSend(100, 100 * 30); // sending: 30 µs per connection here
  assert.equal(b.size, Math.floor((TARGET_OWN_SLICE_MS * 1000) / 30));
  b.observePrepare(100, 100 * 10); // preparing: 10 more; a batch's two parts can run back to back
  assert.equal(b.ownCost, 40);
  assert.equal(b.size, Math.floor((TARGET_OWN_SLICE_MS * 1000) / 40));
  b.observeSend(10, 10 * 1_000_000); // a very slow batch (averaged): never below the minimum
  assert.equal(b.size, MIN_BATCH);
  // The smaller of the two limits: the new generation's adoption can still be the tighter one.
  const slowNew = new BatchSizer();
  slowNew.observePrepare(32, 32);
  slowNew.observe(32, 200);
  assert.equal(slowNew.size, Math.floor((TARGET_BATCH_MS * 1000) / 200));
  // An older receiver (no cost reported): full batches, still capped by this generation's own cost.
  const blind = new BatchSizer();
  blind.observe(32, undefined);
  blind.observeSend(32, 32 * 100);
  assert.equal(blind.size, Math.floor((TARGET_OWN_SLICE_MS * 1000) / 100));
  // Nonsense figures (a count of 0, a negative time) are ignored.
  const odd = new BatchSizer();
  odd.observeSend(0, 5);
  odd.observePrepare(3, -1);
  assert.equal(odd.ownCost, null);
});

test('paced() reports what preparing each batch cost, and reads the batch size once per batch', async () => {
  const reports: number[] = [];
  let reads = 0;
  const sender = {
    accepting: true,
    get batchSize() {
      reads++;
      return 10;
    },
    prepared: (count: number, micros: number) => {
      assert.ok(Number.isFinite(micros) && micros >= 0, `a CPU time in µs: ${micros}`);
      reports.push(count);
    },
    sendable: () => new Promise<void>((r) => setImmediate(r)),
  };
  const items = Array.from({ length: 1000 }, (_, i) => i);
  let done = 0;
  await paced(sender, items, async () => {
    done++;
  });
  assert.equal(done, 1000);
  assert.deepEqual(reports, Array(100).fill(10), 'one report per batch, with its size');
  // Before: the getter was read for every item (1,000 reads here; 17 ms of self time in a profile of 10,000).
  assert.equal(reads, 100, 'once per batch');
});

test("batch size: an overloaded old generation (its loop's turns take seconds) sends full batches", () => {
  // What the targets allow: ~60 a batch (100 µs of adoption, 60 µs of its own work per connection).
  const b = new BatchSizer();
  b.observe(32, 100);
  b.observeSend(32, 32 * 60);
  const paced = Math.floor((TARGET_OWN_SLICE_MS * 1000) / 60);
  assert.equal(b.size, paced);
  // Turns as long as a loaded loop's leave the targets in force (a GC pause, a busy core).
  b.observeTurn(2);
  b.observeTurn(30);
  assert.equal(b.size, paced);
  // Turns of 2.3 s (bench:migrate, 10,000 WebSockets at 40,000 messages a second): each client still here
  // waits that long anyway; a batch per turn sized for a quiet loop would take minutes to move them all.
  b.observeTurn(2300);
  b.observeTurn(2300);
  assert.equal(b.size, MAX_MIGRATION_BATCH);
  // The share of a turn is the bound: a turn of 100 ms allows 10 ms of the old generation's own work.
  const mid = new BatchSizer();
  mid.observe(32, 10);
  mid.observeSend(32, 32 * 200);
  mid.observeTurn(100);
  mid.observeTurn(100);
  assert.equal(mid.size, Math.floor((100 * TURN_SHARE * 1000) / 200));
  // Once the loop is quick again, the targets are back (a moving average of two).
  b.observeTurn(1);
  b.observeTurn(1);
  b.observeTurn(1);
  b.observeTurn(1);
  b.observeTurn(1);
  b.observeTurn(1);
  b.observeTurn(1);
  assert.equal(b.size, paced);
  // Nonsense is ignored.
  b.observeTurn(Number.NaN);
  b.observeTurn(-5);
  assert.equal(b.size, paced);
});
