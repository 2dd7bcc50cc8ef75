/**
 * WorkerStarts (src/cli/worker-starts.ts): a generation of N workers starts worker 0 alone, then the others at
 * most `parallel` at a time; nobody commits until all are ready; any failure before that aborts every started
 * worker and names the one that failed. Pure bookkeeping, driven by hand.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkerStarts } from '../src/cli/worker-starts.js';

function starts(count: number, parallel = 2) {
  const started: number[] = [];
  const aborted: number[][] = [];
  const w = new WorkerStarts(count, { start: (s) => started.push(s), abort: (s) => aborted.push(s) }, parallel);
  return { w, started, aborted };
}

const settled = async <T>(p: Promise<T>): Promise<T | 'pending'> =>
  Promise.race([p, new Promise<'pending'>((r) => setImmediate(() => r('pending')))]);

test('worker 0 alone, then at most 2 at a time; every ready() resolves true only when all 4 are ready', async () => {
  const { w, started, aborted } = starts(4);
  w.begin();
  assert.deepEqual(started, [0], 'worker 0 starts alone');
  const r0 = w.ready(0);
  assert.deepEqual(started, [0, 1, 2], 'then two at a time');
  assert.equal(await settled(r0), 'pending', 'no commit before all are ready');
  const r2 = w.ready(2);
  assert.deepEqual(started, [0, 1, 2, 3]);
  const r1 = w.ready(1);
  assert.equal(await settled(r1), 'pending');
  const r3 = w.ready(3);
  assert.deepEqual(await Promise.all([r0, r1, r2, r3]), [true, true, true, true]);
  assert.deepEqual(await w.outcome, { ok: true });
  assert.deepEqual(aborted, []);
  w.failed(1, 'crashed while serving');
  assert.deepEqual(aborted, [], 'a crash after the commit is not the start’s business');
});

test('one worker: ready() commits at once', async () => {
  const { w, started } = starts(1);
  w.begin();
  assert.deepEqual(started, [0]);
  assert.equal(await w.ready(0), true);
});

test('a worker that fails before the commit: every started one aborted, the rest never started, named', async () => {
  const { w, started, aborted } = starts(4);
  w.begin();
  const r0 = w.ready(0);
  w.failed(2, 'exited with code 3 before ready()');
  assert.deepEqual(aborted, [[0, 1]], 'the started workers still running are terminated');
  assert.equal(await r0, false, 'the ready one is not acknowledged');
  assert.deepEqual(await w.outcome, { ok: false, slot: 2, reason: 'exited with code 3 before ready()' });
  assert.deepEqual(started, [0, 1, 2], 'worker 3 never starts');
  assert.equal(await w.ready(1), false, 'a late ready() is refused');
  w.failed(1, 'another');
  assert.deepEqual(await w.outcome, { ok: false, slot: 2, reason: 'exited with code 3 before ready()' });
});

test('the deadline: failed(slot, reason, false) aborts the hung worker too', async () => {
  const { w, aborted } = starts(2);
  w.begin();
  const r0 = w.ready(0);
  w.failed(1, 'no ready() within 100 ms', false);
  assert.deepEqual(aborted, [[0, 1]]);
  assert.equal(await r0, false);
});

test('bad arguments are RangeErrors', () => {
  assert.throws(() => new WorkerStarts(0, { start() {}, abort() {} }), RangeError);
  assert.throws(() => new WorkerStarts(2, { start() {}, abort() {} }, 0), RangeError);
  const { w } = starts(2);
  assert.throws(() => w.ready(2), RangeError);
});
