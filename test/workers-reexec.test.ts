/**
 * Re-exec of the supervisor with `baton run --workers 2` (src/cli/reexec.ts, reexec-carry.ts): every lane, the
 * slot sockets and N cross the exec. Under keep-alive load, `baton reload --supervisor` keeps the supervisor pid
 * and both worker pids and fails no request; the new image then reloads both workers (0 failed) and respawns a
 * worker killed with -9 into its slot; a second re-exec (SIGUSR2) carries the lanes out of step (slot 1's own
 * generation number and restart), and a reload after it replaces both. Real processes (`node bin/baton.js`), 127.0.0.1, every pid killed after the
 * test (startSupervised's cleanup).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { startLoad } from '../scripts/lib/http-load.js';
import { FIXTURES } from './helpers.js';
import { get, startSupervised, type Status, type Supervised } from './upgrade-helpers.js';
import { assertNoFailedRequests, servedBy } from './workers-helpers.js';

const APP = path.join(FIXTURES, 'worker-app.js');

/** The serving workers as [slot, pid], by slot. */
async function workers(s: Supervised): Promise<Array<[number, number]>> {
  const serving = (await s.serving()) as Array<Status['generations'][number] & { worker: number }>;
  return serving.map((g): [number, number] => [g.worker, g.pid]).sort((a, b) => a[0] - b[0]);
}

/** Which slot each of `n` fresh connections' answers came from, by pid (worker-app answers "pid slot"). */
async function slotsServing(port: number, n: number): Promise<Map<number, number>> {
  const slots = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const [pid, slot] = (await get(port)).body.split(' ').map(Number);
    slots.set(pid!, slot!);
  }
  return slots;
}

test('2 workers: reload --supervisor under load keeps every pid, 0 failed; then a reload and a kill -9', async (t) => {
  const s = await startSupervised(t, { app: APP, runArgs: ['--workers', '2'] });
  const before = await workers(s);
  assert.deepEqual(
    before.map(([slot]) => slot),
    [0, 1],
  );
  const load = startLoad({ port: s.port, connections: 8, pauseMs: 2, timeoutMs: 10_000 });

  const r = await s.reload(['--supervisor']);
  assert.equal(r.code, 0, `reload --supervisor: ${r.stdout}${r.stderr}`);
  assert.match(r.stdout, new RegExp(`supervisor pid ${s.sup.pid} re-executed`));
  const status = await s.status();
  assert.equal(status.supervisor.pid, s.sup.pid, 'the same supervisor pid');
  assert.equal((status.supervisor as { execCount?: number }).execCount, 1);
  assert.deepEqual(await workers(s), before, 'the same workers, in the same slots');
  const served = await servedBy(s.port, 100);
  assert.deepEqual(
    [...served.keys()].sort((a, b) => a - b),
    before.map(([, pid]) => pid).sort((a, b) => a - b),
    'both workers answer after the re-exec',
  );

  // The new image reloads N workers: both replaced, old worker i drains into new worker i.
  const up = await s.reload();
  assert.equal(up.code, 0, `reload after the re-exec: ${up.stdout}${up.stderr}`);
  const after = await workers(s);
  assert.deepEqual(
    after.map(([slot]) => slot),
    [0, 1],
  );
  for (const [slot, pid] of after) assert.ok(!before.some(([, old]) => old === pid), `slot ${slot}: ${pid} is old`);
  const answered = await slotsServing(s.port, 60);
  for (const [pid] of answered)
    assert.ok(
      after.some(([, p]) => p === pid),
      `${pid} answered, not a new worker`,
    );
  const result = await load.stop();
  t.diagnostic(
    `load through the re-exec and the reload: ${result.sent} sent, ${result.ok} ok, ${result.errors} errors`,
  );
  assertNoFailedRequests(result);

  // A crash after the re-exec respawns into the right slot, with slot 1's sockets.
  const victim = after.find(([slot]) => slot === 1)![1];
  process.kill(victim, 'SIGKILL');
  let respawned: Array<[number, number]> = [];
  for (let i = 0; i < 300; i++) {
    respawned = await workers(s);
    if (respawned.length === 2 && !respawned.some(([, pid]) => pid === victim)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(respawned.length, 2, `serving after the crash: ${respawned}`);
  assert.equal(respawned[0]![1], after[0]![1], 'worker 0 serves on');
  const newPid = respawned[1]![1];
  assert.equal(respawned[1]![0], 1, 'the respawn is worker 1');
  const slots = await slotsServing(s.port, 100);
  assert.equal(slots.get(newPid), 1, `the respawned worker ${newPid} answers as slot 1: ${[...slots]}`);
  assert.equal(slots.size, 2, `both slots answer: ${[...slots]}`);

  // SIGUSR2 now, with the lanes out of step (slot 1 respawned: a generation number of its own, a restart): both
  // carry over, and a reload after it still replaces both workers under one new number.
  const restartsOf = async () => ((await s.status()) as unknown as { workers: Array<{ restarts: number }> }).workers;
  const restarts = await restartsOf();
  assert.deepEqual(
    restarts.map((w) => w.restarts),
    [0, 1],
  );
  process.kill(s.sup.pid, 'SIGUSR2');
  const line = new RegExp(`baton supervisor-reexec supervisor=${s.sup.pid} .*execCount=2 `);
  for (let i = 0; i < 400 && !line.test(s.sup.stderr()); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(s.sup.stderr(), line, 'the second re-exec (SIGUSR2) finished');
  assert.deepEqual(await workers(s), respawned, 'the same workers after SIGUSR2');
  assert.deepEqual(await restartsOf(), restarts, "each slot's restarts are carried");
  const again = await s.reload();
  assert.equal(again.code, 0, `reload after SIGUSR2: ${again.stdout}${again.stderr}`);
  const last = (await s.serving()) as Array<Status['generations'][number] & { worker: number }>;
  assert.deepEqual(last.map((g) => g.worker).sort(), [0, 1]);
  assert.equal(new Set(last.map((g) => g.generation)).size, 1, 'one generation number for both workers');
  for (const g of last) assert.ok(!respawned.some(([, pid]) => pid === g.pid), `${g.pid} is an old worker`);
  assert.equal((await slotsServing(s.port, 100)).size, 2, 'both new workers answer');
  assert.equal(await s.shutdown(), 1, 'a serving worker crashed: exit 1, as with one worker');
});
