/**
 * threadCpuMicros() (src/fd/process.ts, native/process.c): the calling thread's CPU time, which the migration's
 * pacing measures its own work by — the event loop's, not that of Node's other threads (process.cpuUsage()
 * sums them all, and cost up to 9 ms a call in a busy generation).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { threadCpuMicros } from '../src/fd/process.js';

test("threadCpuMicros counts this thread's CPU time, not another thread's", async () => {
  const start = threadCpuMicros();
  assert.equal(typeof start, 'number');
  // 20 ms of this thread's CPU, by its own clock: it advances while this thread works.
  while (threadCpuMicros() - start < 20_000);
  const mid = threadCpuMicros();
  assert.ok(mid - start >= 20_000);
  // A worker spins for 200 ms of its own CPU while this thread waits for it (no work here but the wait).
  const process0 = process.cpuUsage();
  const worker = new Worker(
    `const t0 = process.cpuUsage();
     const cpu = () => { const u = process.cpuUsage(t0); return u.user + u.system; };
     while (cpu() < 200000);
     require('node:worker_threads').parentPort.postMessage('done');`,
    { eval: true },
  );
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  await worker.terminate();
  const used = process.cpuUsage(process0);
  const mine = threadCpuMicros() - mid;
  assert.ok(used.user + used.system >= 200_000, `the process used ${used.user + used.system} µs`);
  assert.ok(mine < 100_000, `this thread used ${mine} µs while the worker spun for 200,000`);
});
