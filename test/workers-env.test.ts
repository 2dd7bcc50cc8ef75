/**
 * What an app under `baton run` learns about its worker slot (upgrader.worker, BATON_WORKER, BATON_WORKERS), and
 * that an app forking node:cluster workers gets a clear refusal in the worker instead of the worker joining the
 * handoff as a new generation. Real processes: `node bin/baton.js`, the app on 127.0.0.1, killed by pid.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { FIXTURES, killPid, spawnNode, tmpDir, within } from './helpers.js';
import { BATON, HTTP_EXAMPLE, baton, get, startSupervised } from './upgrade-helpers.js';

const APP = path.join(FIXTURES, 'cluster-app.js');

type Cleanup = Parameters<typeof tmpDir>[0];

function supervise(t: Cleanup, env: NodeJS.ProcessEnv = {}) {
  const sock = path.join(tmpDir(t), 's.sock');
  const sup = spawnNode(t, BATON, ['run', '--socket', sock, '--', process.execPath, APP], env);
  t.after(() => {
    killPid(-sup.pid);
    killPid(sup.pid);
  });
  return { sup, sock };
}

test("under baton run: upgrader.worker is slot 0 of 1; a node:cluster worker's Upgrader.start() is refused", async (t) => {
  const { sup, sock } = supervise(t);
  const m = await sup.line(/primary pid (\d+) worker (\S+) env (\S+) port (\d+)/, 20_000);
  t.after(() => killPid(Number(m[1])));
  assert.deepEqual(JSON.parse(m[2]!), { index: 0, count: 1 });
  assert.equal(m[3], '0/1', 'BATON_WORKER/BATON_WORKERS');
  const refused = await sup.line(/cluster worker: (\S+)/, 20_000);
  assert.equal(refused[1], 'ERR_BATON_CLUSTER_WORKER');
  assert.equal((await get(Number(m[4]))).body, 'worker 0 of 1', 'the primary serves on');
  const st = await baton(['status', '--json', '--socket', sock]);
  const gens = (JSON.parse(st.stdout) as { generations: Array<{ generation: number }> }).generations;
  assert.deepEqual(
    gens.map((g) => g.generation),
    [1],
    'the cluster worker did not become a generation',
  );
  process.kill(sup.pid, 'SIGTERM');
  assert.equal(await within(sup.exited, 20_000, 'the supervisor exits after SIGTERM'), 0);
});

test('baton run started as a node:cluster worker (NODE_UNIQUE_ID set): exit 2 at once, naming it', async (t) => {
  // Without the refusal its --metrics listen waited for a cluster primary that does not exist: the supervisor
  // exited 0 without a word and the app never started.
  const dir = tmpDir(t);
  const marker = path.join(dir, 'started');
  const app = ['--', process.execPath, '-e', `require('fs').writeFileSync(${JSON.stringify(marker)}, '')`];
  const sock = path.join(dir, 's.sock');
  for (const extra of [['--metrics', '127.0.0.1:0'], []]) {
    const r = await baton(['run', '--socket', sock, ...extra, ...app], {
      env: { NODE_UNIQUE_ID: '1' },
      timeoutMs: 20_000,
    });
    assert.equal(r.code, 2, `${extra.join(' ')}: ${r.stdout} ${r.stderr}`);
    assert.match(r.stderr, /cannot run as a node:cluster worker \(NODE_UNIQUE_ID is set/);
  }
  assert.ok(!fs.existsSync(marker), 'the app never ran');
});

test("NODE_UNIQUE_ID in a --config file's env never reaches the workers: the app is not a cluster worker", async (t) => {
  // `node app.js` with the variable set takes itself for a cluster worker, whose Upgrader.start() refuses.
  const dir = tmpDir(t);
  const config = path.join(dir, 'baton.json');
  fs.writeFileSync(config, JSON.stringify({ env: { NODE_UNIQUE_ID: '1', HOST: '127.0.0.1' } }));
  const s = await startSupervised(t, { app: HTTP_EXAMPLE, dir, runArgs: ['--config', config] });
  assert.equal((await get(s.port)).status, 200);
  assert.doesNotMatch(s.sup.stderr(), /ERR_BATON_CLUSTER_WORKER/);
  assert.equal(await s.shutdown(), 0);
});
