/**
 * `baton run --workers 2` (docs/workers.md): fresh connections reach both workers; reloads under keep-alive load
 * fail no request and leave only the new workers serving; a reload in which one new worker exits at start is
 * rolled back with both old workers serving on. Real processes (`node bin/baton.js`), 127.0.0.1, every pid
 * killed after the test (startSupervised's cleanup kills the supervisor and each worker it spawned). Also: kill -9
 * of one worker (respawned into its slot, no probe fails), and a first start that fails in worker 1 (exit 1).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { startLoad } from '../scripts/lib/http-load.js';
import { FIXTURES, killPid, spawnNode, tmpDir, within } from './helpers.js';
import type { UpgradeRecord } from '../src/cli/upgrade-record.js';
import { alive, BATON, baton, get, startSupervised, type Supervised } from './upgrade-helpers.js';
import { assertNoFailedRequests, servedBy, servingPids } from './workers-helpers.js';

const APP = path.join(FIXTURES, 'worker-app.js');
const WORKERS = 2;

type Cleanup = Parameters<typeof startSupervised>[0];

function start(t: Cleanup, env: NodeJS.ProcessEnv = {}): Promise<Supervised> {
  return startSupervised(t, { app: APP, env, runArgs: ['--workers', String(WORKERS)] });
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
  assertNoFailedRequests(await load.stop());
  assert.equal(await s.shutdown(), 0);
});

test('a reload names every new worker: its output, --json and the history list each slot and pid', async (t) => {
  const s = await start(t);
  // The serving workers' pids by slot, from `baton status`.
  const bySlot = async () =>
    (await s.serving())
      .sort((a, b) => (a.worker ?? 0) - (b.worker ?? 0))
      .map((g) => ({ worker: g.worker, pid: g.pid }));
  const r = await s.reload();
  assert.equal(r.code, 0, r.stderr);
  const [w0, w1] = await bySlot();
  assert.match(r.stdout, new RegExp(`^generation 2 \\(worker 0 pid ${w0!.pid}, worker 1 pid ${w1!.pid}\\) is serving`));
  const json = await s.reload(['--json']); // two-phase
  assert.equal(json.code, 0, json.stderr);
  const upgrade = (JSON.parse(json.stdout) as { upgrade: UpgradeRecord }).upgrade;
  const serving = await bySlot();
  assert.deepEqual(
    upgrade.workers?.map(({ worker, pid, outcome }) => ({ worker, pid, outcome })),
    serving.map((w) => ({ ...w, outcome: 'serving' })),
  );
  assert.equal(upgrade.pid, serving[0]!.pid);
  const rolling = await s.reload(['--rolling']);
  assert.equal(rolling.code, 0, rolling.stderr);
  const rolled = await bySlot();
  const history = (await s.status()).upgrades.filter((u) => u.kind === 'reload');
  assert.deepEqual(
    history.map((u) => u.workers?.map((w) => w.pid)),
    [[w0!.pid, w1!.pid], serving.map((w) => w.pid), rolled.map((w) => w.pid)],
    'each reload in the history lists both workers',
  );
  const text = await baton(['status', '--socket', s.socket]);
  assert.match(text.stdout, new RegExp(`gen 4 \\(worker 0 pid ${rolled[0]!.pid}, worker 1 pid ${rolled[1]!.pid}\\)`));
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

test('kill -9 of one worker: respawned into its slot, fresh connections every 10 ms never fail', async (t) => {
  const s = await start(t);
  const before = await servingPids(s);
  const victim = before[0]!;
  let probes = 0;
  let failed = 0;
  const codes: string[] = [];
  let stop = false;
  const prober = (async () => {
    while (!stop) {
      probes++;
      await get(s.port, '/', 10_000).catch((err: NodeJS.ErrnoException) => {
        failed++;
        codes.push(err.code ?? err.message);
      });
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  process.kill(victim, 'SIGKILL');
  let after: number[] = [];
  for (let i = 0; i < 300; i++) {
    after = await servingPids(s);
    if (after.length === WORKERS && !after.includes(victim)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(after.length, WORKERS, `serving after the crash: ${after.join(', ')}`);
  assert.ok(!after.includes(victim), 'a new worker took the slot');
  const counts = await servedBy(s.port, 100);
  assert.deepEqual(
    [...counts.keys()].sort((a, b) => a - b),
    after,
    'both slots answer, the new worker included',
  );
  stop = true;
  await prober;
  assert.ok(probes > 0);
  // The probe is sequential: at most the one request the victim had accepted when SIGKILL came can fail (its
  // connection dies with the process); no fresh connection does: the slot's queue is the supervisor's.
  assert.ok(failed <= 1, `${failed} of ${probes} probes failed: ${codes.join(', ')}`);
  for (const code of codes) assert.match(code, /ECONNRESET|socket hang up/, 'only a connection the victim held');
  assert.equal(await s.shutdown(), 1, 'a serving worker crashed: exit 1, as with one worker');
});

test('the first start fails in worker 1: the supervisor exits 1 naming it, nothing left running', async (t) => {
  const dir = tmpDir(t);
  const sup = spawnNode(
    t,
    BATON,
    ['run', '--socket', path.join(dir, 's.sock'), '--workers', '2', '--', process.execPath, APP],
    { PORT: '0', FAIL_AT: '1:1' },
  );
  t.after(() => killPid(sup.pid));
  assert.equal(await within(sup.exited, 30_000, 'the supervisor gives up'), 1);
  assert.match(sup.stderr(), /worker 1 \(pid \d+\): exited with code 3/);
  for (const m of sup.stderr().matchAll(/baton spawn supervisor=\d+ generation=\d+ child=(\d+)/g)) {
    assert.ok(!alive(Number(m[1])), `worker ${m[1]} is gone`);
  }
});
