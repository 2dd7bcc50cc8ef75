/**
 * `baton run --workers 2` started again after its supervisor was killed (-9): the two workers it left serving
 * (orphans, one per slot) are not taken over with N > 1 (docs/workers.md): the new supervisor exits 1 with
 * ERR_BATON_TAKEOVER_REFUSED naming both pids, joins neither, and both serve on. Real processes, 127.0.0.1; every
 * pid killed after the test.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { FIXTURES, killPid, spawnNode, waitFor, within } from './helpers.js';
import { alive, BATON, startSupervised } from './upgrade-helpers.js';
import { servedBy, servingPids } from './workers-helpers.js';

const APP = path.join(FIXTURES, 'worker-app.js');

test('2 workers orphaned by a supervisor crash: a new baton run --workers 2 refuses them, they serve on', async (t) => {
  const s = await startSupervised(t, { app: APP, runArgs: ['--workers', '2'] });
  const workers = await servingPids(s);
  assert.equal(workers.length, 2);
  t.after(() => workers.forEach(killPid));
  process.kill(s.sup.pid, 'SIGKILL');
  await within(s.sup.exited, 10_000, 'the supervisor dies');
  const takeoverSocket = (pid: number) => `${s.socket}.takeover.${pid}`;
  await waitFor(() => workers.every((pid) => fs.existsSync(takeoverSocket(pid))), 20_000, 'both orphans wait');

  const again = spawnNode(t, BATON, ['run', '--socket', s.socket, '--workers', '2', '--', process.execPath, APP], {
    PORT: '0',
  });
  t.after(() => killPid(again.pid));
  assert.equal(await within(again.exited, 20_000, 'the new supervisor exits'), 1);
  assert.match(again.stderr(), /ERR_BATON_TAKEOVER_REFUSED|cannot be taken over with --workers N > 1/);
  for (const pid of workers) assert.match(again.stderr(), new RegExp(`\\b${pid}\\b`), `it names ${pid}`);
  assert.doesNotMatch(again.stderr(), /baton spawn /, 'no worker was started');
  for (const pid of workers) assert.ok(alive(pid), `orphan ${pid} serves on`);
  const counts = await servedBy(s.port, 60);
  assert.deepEqual(
    [...counts.keys()].sort((a, b) => a - b),
    workers,
    'both orphans still answer',
  );
});
