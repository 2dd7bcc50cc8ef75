/**
 * `baton reload --workers M` (docs/workers.md, "Scale"): 2 -> 4 -> 1 workers under keep-alive load with 0 failed
 * requests. After growing to 4 each new worker gets a share of fresh connections and status and /metrics say 4;
 * after shrinking to 1 the removed workers' connections moved to the remaining one (their drains carried a
 * migration channel) and every fresh connection is answered — also those the kernel hashes to the sockets of the
 * removed slots, which are kept (closing one resets its queue) and lent to the remaining worker. A later plain
 * reload runs 1. Bad values fail at once naming --workers; a one-worker supervisor refuses a scale.
 * Real processes, 127.0.0.1, every pid killed after the test.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { startLoad } from '../scripts/lib/http-load.js';
import { tmpDir, waitFor } from './helpers.js';
import { baton, get, HTTP_EXAMPLE, startSupervised } from './upgrade-helpers.js';
import { assertNoFailedRequests, servedBy, servingPids, WORKER_APP } from './workers-helpers.js';

async function metric(port: number, name: string): Promise<number> {
  const { body } = await get(port, '/metrics');
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(body);
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

/** A free port on 127.0.0.1 for --metrics. */
async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

test('scale 2 -> 4 -> 1 under keep-alive load: 0 failed, every worker gets connections, status says N', async (t) => {
  const metricsPort = await freePort();
  const s = await startSupervised(t, {
    app: WORKER_APP,
    runArgs: ['--workers', '2', '--metrics', String(metricsPort)],
  });
  const load = startLoad({ port: s.port, connections: 8, pauseMs: 2, timeoutMs: 10_000 });
  const two = await servingPids(s);
  assert.equal(two.length, 2);

  const up = await s.reload(['--workers', '4']);
  assert.equal(up.code, 0, `scale to 4: ${up.stderr}`);
  const four = await servingPids(s);
  assert.equal(four.length, 4, `serving after the scale to 4: ${four.join(', ')}`);
  for (const pid of four) assert.ok(!two.includes(pid), `${pid} is an old worker`);
  const counts = await servedBy(s.port, 200);
  assert.deepEqual(
    [...counts.keys()].sort((a, b) => a - b),
    four,
    'only the 4 new workers answer',
  );
  for (const [pid, n] of counts) assert.ok(n >= 20, `worker ${pid} got ${n} of 200 fresh connections`);
  t.diagnostic(`after 2 -> 4, 200 fresh connections: ${[...counts.values()].join(' / ')}`);
  const status = await s.status();
  assert.equal(status.supervisor.workers, 4, 'status says 4 workers');
  assert.deepEqual(
    status.generations
      .filter((g) => g.state === 'serving')
      .map((g) => g.worker)
      .sort(),
    [0, 1, 2, 3],
  );
  assert.equal(await metric(metricsPort, 'baton_workers'), 4);

  const down = await s.reload(['--workers', '1']);
  assert.equal(down.code, 0, `scale to 1: ${down.stderr}`);
  const one = await servingPids(s);
  assert.equal(one.length, 1, `serving after the scale to 1: ${one.join(', ')}`);
  assert.ok(!four.includes(one[0]!), 'a new worker');
  // The workers of the removed slots 1..3 moved their connections to the remaining worker.
  for (const pid of four) {
    const drain = new RegExp(`baton drain supervisor=\\d+ generation=\\d+ child=${pid} reason=upgrade migrate=true`);
    assert.match(s.sup.stderr(), drain, `worker ${pid} drained with a migration channel`);
  }
  // Every fresh connection is answered, those hashed to the kept sockets of slots 1..3 too (lent to worker 0).
  const fresh = await Promise.all(Array.from({ length: 100 }, () => get(s.port, '/', 5000).catch((e: Error) => e)));
  const failed = fresh.filter((r) => r instanceof Error) as Error[];
  assert.equal(failed.length, 0, `fresh connections failed: ${failed.map((e) => e.message).join(', ')}`);
  for (const r of fresh) assert.equal(Number((r as { body: string }).body.split(' ')[0]), one[0]);
  const after = await s.status();
  assert.equal(after.supervisor.workers, 1, 'status says 1 worker');
  assert.equal(await metric(metricsPort, 'baton_workers'), 1);

  // A later plain reload runs the new count.
  const again = await s.reload();
  assert.equal(again.code, 0, again.stderr);
  assert.equal((await servingPids(s)).length, 1);

  const result = await load.stop();
  assertNoFailedRequests(result);
  t.diagnostic(`requests through 2 -> 4 -> 1 and a reload: ${result.sent} sent, ${result.ok} ok`);
  assert.equal(await s.shutdown(), 0);
});

test('baton reload --workers abc|0|-1: exit 2 at once, naming --workers; --rolling --workers too', async (t) => {
  const socket = path.join(tmpDir(t), 'none.sock'); // nobody listens: the flags are checked before connecting
  for (const v of ['abc', '0', '-1', '1.5', '']) {
    const r = await baton(['reload', '--socket', socket, '--workers', v]);
    assert.equal(r.code, 2, `--workers '${v}': ${r.stderr}`);
    assert.match(r.stderr, /--workers takes a whole number >= 1 or 'max', got/);
  }
  const both = await baton(['reload', '--socket', socket, '--rolling', '--workers', '2']);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--rolling and --workers do not go together/);
  const sup = await baton(['reload', '--socket', socket, '--supervisor', '--workers', '2']);
  assert.equal(sup.code, 2);
  const run = await baton(['run', '--socket', socket, '--rolling', '--', process.execPath, HTTP_EXAMPLE]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /--rolling goes with --workers N/);
});

test('a one-worker supervisor refuses a scale (its listeners are no reuseport groups) and serves on', async (t) => {
  const s = await startSupervised(t, { app: WORKER_APP });
  const before = await servingPids(s);
  const r = await s.reload(['--workers', '2']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--workers M needs a supervisor started with --workers N > 1/);
  assert.deepEqual(await servingPids(s), before);
  assert.equal((await get(s.port)).status, 200);
  assert.equal(await s.shutdown(), 0);
});

/** The soft and hard RLIMIT_NOFILE of `pid`, from /proc. */
function nofile(pid: number): { soft: number; hard: number } {
  const line = fs
    .readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'))!;
  const [soft, hard] = line.split(/\s+/).slice(3, 5).map(Number) as [number, number];
  return { soft, hard };
}

test('a scale-up whose bind fails (no fd left): exits 1 naming the syscall, N unchanged, both serve on', async (t) => {
  if (spawnSync('prlimit', ['--version']).status !== 0) return t.skip('prlimit (util-linux) is not installed');
  const s = await startSupervised(t, { app: WORKER_APP, runArgs: ['--workers', '2'] });
  const before = await servingPids(s);
  const sup = s.sup.pid;
  const limits = nofile(sup);
  // Leave the supervisor exactly two free fd numbers: one for the control connection of `baton reload`, one for
  // the socket of new slot 2; the socket of slot 3 fails with EMFILE. Only the soft limit is lowered (same uid:
  // no privilege needed), and raised back after.
  const open = new Set(fs.readdirSync(`/proc/${sup}/fd`).map(Number));
  const free: number[] = [];
  for (let fd = 0; free.length < 2; fd++) if (!open.has(fd)) free.push(fd);
  const setSoft = (soft: number) =>
    assert.equal(spawnSync('prlimit', ['--pid', String(sup), `--nofile=${soft}:${limits.hard}`]).status, 0);
  setSoft(free[1]! + 1);
  let r: Awaited<ReturnType<typeof baton>>;
  try {
    r = await baton(['reload', '--socket', s.socket, '--workers', '4'], { timeoutMs: 60_000 });
  } finally {
    setSoft(limits.soft);
  }
  t.diagnostic(`baton reload --workers 4 at the fd limit: exit ${r.code}, ${r.stderr.trim()}`);
  assert.equal(r.code, 1, `${r.stdout}${r.stderr}`);
  assert.match(r.stderr, /socket|bind/, 'naming the syscall');
  assert.match(r.stderr, /EMFILE/);
  // Nothing leaked: the socket bound for slot 2 was closed with the rest of the grow.
  const fds = () => fs.readdirSync(`/proc/${sup}/fd`).length;
  await waitFor(() => fds() === open.size, 10_000, `the supervisor's fds back to ${open.size}`).catch(() => {});
  assert.equal(fds(), open.size, 'no fd leaked');
  const st = await s.status();
  assert.equal(st.supervisor.workers, 2, 'N unchanged');
  assert.deepEqual(await servingPids(s), before, 'the same two workers serve');
  const counts = await servedBy(s.port, 100);
  assert.deepEqual(
    [...counts.keys()].sort((a, b) => a - b),
    before,
    'both answer',
  );
  // The next scale, with fds to spare, works.
  const again = await baton(['reload', '--socket', s.socket, '--workers', '4'], { timeoutMs: 60_000 });
  assert.equal(again.code, 0, again.stderr);
  assert.equal((await servingPids(s)).length, 4);
  assert.equal(await s.shutdown(), 0);
});
