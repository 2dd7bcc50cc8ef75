/**
 * `baton run --workers 2` (docs/workers.md): fresh connections reach both workers; reloads under keep-alive load
 * fail no request and leave only the new workers serving; a reload in which one new worker exits at start is
 * rolled back with both old workers serving on. Real processes (`node bin/baton.js`), 127.0.0.1, every pid
 * killed after the test (startSupervised's cleanup kills the supervisor and each worker it spawned).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { startLoad } from '../scripts/lib/http-load.js';
import { FIXTURES } from './helpers.js';
import { get, startSupervised, type Supervised } from './upgrade-helpers.js';

const APP = path.join(FIXTURES, 'worker-app.js');
const WORKERS = 2;

type Cleanup = Parameters<typeof startSupervised>[0];

function start(t: Cleanup, env: NodeJS.ProcessEnv = {}): Promise<Supervised> {
  return startSupervised(t, { app: APP, env, runArgs: ['--workers', String(WORKERS)] });
}

/** Which worker pids answer `n` fresh connections, with how many each. */
async function servedBy(port: number, n: number): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const { status, body } = await get(port);
    assert.equal(status, 200);
    const pid = Number(body.split(' ')[0]);
    counts.set(pid, (counts.get(pid) ?? 0) + 1);
  }
  return counts;
}

/** The pids of the serving workers, as `baton status` lists them. */
async function servingPids(s: Supervised): Promise<number[]> {
  return (await s.serving()).map((g) => g.pid).sort((a, b) => a - b);
}

test('2 workers: fresh connections reach both (each >= 15% of 200)', async (t) => {
  const s = await start(t);
  const pids = await servingPids(s);
  assert.equal(pids.length, WORKERS, `serving: ${pids.join(', ')}`);
  const counts = await servedBy(s.port, 200);
  assert.deepEqual(
    [...counts.keys()].sort((a, b) => a - b),
    pids,
    'only the serving workers answer',
  );
  for (const [pid, n] of counts) assert.ok(n >= 30, `worker ${pid} got ${n} of 200`);
  assert.equal(await s.shutdown(), 0);
});

test('3 reloads under keep-alive load: 0 failed requests, only the new workers serve after each', async (t) => {
  const s = await start(t);
  const load = startLoad({ port: s.port, connections: 8, pauseMs: 2, timeoutMs: 10_000 });
  let before = await servingPids(s);
  for (let i = 0; i < 3; i++) {
    const r = await s.reload();
    assert.equal(r.code, 0, `reload ${i + 1}: ${r.stderr}`);
    const after = await servingPids(s);
    assert.equal(after.length, WORKERS);
    for (const pid of after) assert.ok(!before.includes(pid), `reload ${i + 1}: ${pid} is an old worker`);
    const counts = await servedBy(s.port, 40);
    for (const pid of counts.keys()) assert.ok(after.includes(pid), `reload ${i + 1}: ${pid} answered, not new`);
    before = after;
  }
  const result = await load.stop();
  assert.equal(result.sent, result.ok + result.non2xx + result.errors, 'every request counted');
  assert.ok(result.sent > 0);
  assert.deepEqual(
    { non2xx: result.non2xx, errors: result.errors },
    { non2xx: 0, errors: 0 },
    JSON.stringify(result.errorCodes),
  );
  assert.equal(await s.shutdown(), 0);
});

test('a new worker that exits at start: the reload is rolled back naming it, both old workers serve on', async (t) => {
  const s = await start(t, { FAIL_AT: '2:1' });
  const before = await servingPids(s);
  const r = await s.reload();
  assert.notEqual(r.code, 0, 'the reload fails');
  assert.match(`${r.stdout}${r.stderr}`, /worker 1/, 'naming the worker');
  assert.match(`${r.stdout}${r.stderr}`, /exited with code 3/);
  assert.deepEqual(await servingPids(s), before, 'the old workers serve on');
  const counts = await servedBy(s.port, 100);
  assert.deepEqual(
    [...counts.keys()].sort((a, b) => a - b),
    before,
    'both old workers still answer',
  );
  assert.equal(await s.shutdown(), 0);
});
