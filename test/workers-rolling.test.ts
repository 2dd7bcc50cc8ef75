/**
 * `--rolling` with `baton run --workers 2` (docs/workers.md): a reload replaces one worker at a time, so at most
 * N + 1 app processes run at once (a two-phase reload runs 2N: the sampler sees that first, so it can fail), no
 * request fails under keep-alive load, and only new workers serve after it. A rolling reload whose worker 1 fails
 * at start stops there: worker 0 serves the new generation, worker 1 the old one, the reload exits non-zero naming
 * worker 1, `baton status` lists both generations serving; the next reload brings both to one newer generation.
 * Real processes, 127.0.0.1, every pid killed after the test.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startLoad } from '../scripts/lib/http-load.js';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir, waitFor, within } from './helpers.js';
import { alive, baton, isGenerationOf, startSupervised, waitExit } from './upgrade-helpers.js';
import {
  assertNoFailedRequests,
  pidByWorker,
  sampleChildren,
  servedBy,
  servingPids,
  WORKER_APP,
} from './workers-helpers.js';

const N = 2;

test('baton run --rolling: at most N + 1 workers at once, 0 failed requests, then only new pids', async (t) => {
  const s = await startSupervised(t, { app: WORKER_APP, runArgs: ['--workers', String(N), '--rolling'] });
  const load = startLoad({ port: s.port, connections: 8, pauseMs: 2, timeoutMs: 10_000 });
  // A plain `baton reload` of a supervisor started with --rolling is rolling (the next test shows the sampler
  // seeing 2N during a two-phase reload).
  let before = await servingPids(s);
  for (let i = 0; i < 2; i++) {
    const sampler = sampleChildren(s.sup.pid);
    const r = await s.reload();
    const most = sampler.stop();
    assert.equal(r.code, 0, `rolling reload ${i + 1}: ${r.stderr}`);
    assert.ok(most <= N + 1, `rolling reload ${i + 1}: ${most} app processes at once (N = ${N})`);
    t.diagnostic(`rolling reload ${i + 1}: at most ${most} app processes at once`);
    const after = await servingPids(s);
    assert.equal(after.length, N);
    for (const pid of after) assert.ok(!before.includes(pid), `reload ${i + 1}: ${pid} is an old worker`);
    const counts = await servedBy(s.port, 40);
    for (const pid of counts.keys()) assert.ok(after.includes(pid), `reload ${i + 1}: ${pid} answered, not new`);
    before = after;
  }
  const result = await load.stop();
  assertNoFailedRequests(result);
  t.diagnostic(`requests: ${result.sent} sent, ${result.ok} ok`);
  assert.equal(await s.shutdown(), 0);
});

test('two-phase runs 2N at once; baton reload --rolling (this once) runs N + 1 with 0 failed requests', async (t) => {
  const s = await startSupervised(t, { app: WORKER_APP, runArgs: ['--workers', String(N)] });
  const load = startLoad({ port: s.port, connections: 8, pauseMs: 2, timeoutMs: 10_000 });
  let sampler = sampleChildren(s.sup.pid);
  let r = await s.reload();
  assert.equal(r.code, 0, r.stderr);
  assert.equal(sampler.stop(), 2 * N, 'a two-phase reload starts every new worker before any old one leaves');
  const before = await servingPids(s);
  sampler = sampleChildren(s.sup.pid);
  r = await s.reload(['--rolling']);
  const most = sampler.stop();
  assert.equal(r.code, 0, r.stderr);
  assert.ok(most <= N + 1, `${most} app processes at once`);
  const after = await servingPids(s);
  assert.equal(after.length, N);
  for (const pid of after) assert.ok(!before.includes(pid), `${pid} is an old worker`);
  assertNoFailedRequests(await load.stop());
  assert.equal(await s.shutdown(), 0);
});

test('a rolling reload whose worker 1 fails at start stops: worker 0 new, worker 1 old, both serve', async (t) => {
  const s = await startSupervised(t, { app: WORKER_APP, env: { FAIL_AT: '2:1' }, runArgs: ['--workers', String(N)] });
  const old = await pidByWorker(s.port, 60);
  assert.equal(old.size, N, 'both workers answer');
  const r = await s.reload(['--rolling']);
  assert.equal(r.code, 1, 'the reload fails');
  assert.match(r.stderr, /worker 1 \(pid \d+\): exited with code 3/, 'naming worker 1');
  assert.match(r.stderr, /worker 0 serves generation 2, worker 1 keeps theirs/);
  const now = await pidByWorker(s.port, 100);
  assert.equal(now.size, N, 'both slots answer');
  assert.ok(![...now.get(0)!].some((pid) => old.get(0)!.has(pid)), 'worker 0 is a new process');
  assert.deepEqual([...now.get(1)!], [...old.get(1)!], 'worker 1 is the old process');
  const status = await s.status();
  const serving = status.generations.filter((g) => g.state === 'serving');
  assert.deepEqual(serving.map((g) => g.generation).sort(), [1, 2], 'status lists both generations serving');
  const last = status.upgrades.at(-1)!;
  assert.equal(last.outcome, 'stopped');
  // The next reload (any kind) starts every slot at one number past the newest: both serve generation 3.
  const again = await s.reload();
  assert.equal(again.code, 0, again.stderr);
  const gens = (await s.serving()).map((g) => g.generation);
  assert.deepEqual(gens, [3, 3]);
  assert.equal(await s.shutdown(), 0);
});

for (const how of ['SIGTERM', 'baton stop'] as const) {
  test(`${how} during a rolling reload (new worker 1 held at start): the supervisor exits 0, every worker is gone`, async (t) => {
    const dir = tmpDir(t);
    const gate = path.join(dir, 'go'); // never created: new worker 1 waits before it listens until it is stopped
    const s = await startSupervised(t, {
      app: WORKER_APP,
      dir,
      env: { HOLD_AT: '2:1', HOLD_FILE: gate },
      runArgs: ['--workers', String(N)],
    });
    const reload = s.reload(['--rolling']);
    await waitFor(() => /worker 1 of generation 2 waits for/.test(s.sup.stderr()), 30_000, 'new worker 1 held');
    // Old worker 0 has exited (a rolling reload starts slot 1 only then): old worker 1, new 0 and new 1 run.
    const pids = s.generationPids();
    assert.equal(pids.filter(alive).length, N + 1, `of ${pids.join(', ')}`);
    assert.equal(pids.length, 2 * N, `old and new workers: ${pids.join(', ')}`);
    // (After `baton stop` no SIGTERM: a second stop request forces, exit 130.)
    if (how === 'baton stop') assert.equal((await baton(['stop', '--socket', s.socket])).code, 0);
    const code = how === 'SIGTERM' ? s.shutdown(30_000) : within(s.sup.exited, 30_000, 'the supervisor exits');
    assert.equal(await code, 0, 'the supervisor exits cleanly');
    const r = await within(reload, 30_000, 'baton reload answers');
    assert.notEqual(r.code, 0, `the reload did not complete: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /worker 1 \(pid \d+\): the supervisor is stopping: /, 'saying why worker 1 did not start');
    t.diagnostic(`baton reload: exit ${r.code}, ${r.stderr.trim()}`);
    for (const pid of pids) await waitExit(pid, 10_000, `worker ${pid} is gone`);
    assert.deepEqual(processesOf(s.sup.pid), [], 'no process of this supervisor left behind');
  });
}

/** Every live process whose environment names supervisor `sup` (its workers, whoever their parent is now). */
function processesOf(sup: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name) && isGenerationOf(Number(name), sup) && alive(Number(name)))
    .map(Number);
}
