/**
 * Crash loops end (issue: `baton run -- node missing.js` retried forever, backoff up to 10 s, and exited 0
 * on stop). Starts that fail in a row while nothing serves — no ready(), or an exit within --min-uptime of
 * it — make `baton run` give up after --max-starts (default 5) and exit 1 with the last error and its
 * output; a generation that served longer and then crashes is restarted, counted in `baton status`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnNode, tmpDir, within } from './helpers.js';
import { baton, BATON, BEHAVIOUR_APP, SERVING, startSupervised } from './upgrade-helpers.js';

const spawns = (stderr: string) => (stderr.match(/baton spawn supervisor=/g) ?? []).length;

test('crash loop: a missing script is tried 5 times (the default), then baton run exits 1 with its error', {
  timeout: 120_000,
}, async (t) => {
  const dir = tmpDir(t);
  const missing = path.join(dir, 'missing.js');
  const sup = spawnNode(t, BATON, ['run', '--socket', path.join(dir, 's.sock'), '--', process.execPath, missing]);
  const code = await within(sup.exited, 60_000, 'baton run gives up on a script that is not there');
  assert.equal(code, 1, sup.stderr());
  assert.equal(spawns(sup.stderr()), 5);
  assert.match(sup.stderr(), /baton ERROR give-up supervisor=\d+ failedStarts=5 generation=5/);
  // The last error and its output, on the way out.
  assert.match(
    sup.stderr(),
    /baton: giving up: 5 starts in a row failed; the last, generation 5 \(pid \d+\), exited with code 1 before ready\(\); last output:\n(.*\n)*Error: Cannot find module/,
  );
  assert.equal(fs.existsSync(path.join(dir, 's.sock')), false, 'the control socket is gone');
});

test('crash loop: a generation that exits sooner than --min-uptime after ready() counts as a failed start', {
  timeout: 120_000,
}, async (t) => {
  const dir = tmpDir(t);
  const behaviour = path.join(dir, 'behaviour');
  fs.writeFileSync(behaviour, 'crash-after-ready');
  const sup = spawnNode(
    t,
    BATON,
    [
      'run',
      '--socket',
      path.join(dir, 's.sock'),
      '--max-starts',
      '3',
      '--min-uptime',
      '30',
      '--',
      process.execPath,
      BEHAVIOUR_APP,
    ],
    {
      BEHAVIOUR_FILE: behaviour,
      PORT: '0',
    },
  );
  const code = await within(sup.exited, 60_000, 'baton run gives up on an app that crashes right after ready()');
  assert.equal(code, 1, sup.stderr());
  assert.equal(spawns(sup.stderr()), 3);
  assert.equal((sup.stdout().match(/serving on/g) ?? []).length, 3, 'each one did call ready()');
  assert.match(
    sup.stderr(),
    /baton: giving up: 3 starts in a row failed; the last, generation 3 \(pid \d+\), exited with code 3 \d+ ms after ready\(\), sooner than --min-uptime 30000 ms; last output:\n(.*\n)*behaviour-app: crash after ready on purpose/,
  );
});

test('crash loop: crashes after --min-uptime restart with backoff, counted in status, however many', {
  timeout: 180_000,
}, async (t) => {
  const s = await startSupervised(t, { app: BEHAVIOUR_APP, runArgs: ['--max-starts', '2', '--min-uptime', '0.2'] });
  for (let gen = 1; gen <= 3; gen++) {
    const [serving] = await s.serving();
    assert.equal(serving?.generation, gen);
    await new Promise((r) => setTimeout(r, 500)); // past --min-uptime
    process.kill(serving!.pid, 'SIGKILL');
    await s.sup.line(SERVING(gen + 1), 30_000);
  }
  const st = (await s.status()) as unknown as { supervisor: { restarts: number; failedStarts: number } };
  assert.equal(st.supervisor.restarts, 3);
  assert.equal(st.supervisor.failedStarts, 0);
  const text = await baton(['status', '--socket', s.socket]);
  assert.match(text.stdout, /supervisor pid \d+, up \d+ s, 3 restarts, socket /);
  assert.doesNotMatch(s.sup.stderr(), /give-up/);
  assert.equal(s.sup.child.exitCode, null, 'still supervising');
  await s.shutdown();
});

test('baton run --help documents --max-starts and --min-uptime; bad values are usage errors', async () => {
  const help = await baton(['run', '--help']);
  assert.match(help.stdout, /--max-starts N .*\n(.*\n)*.*--min-uptime S/);
  const bad = await baton(['run', '--max-starts', '-1', '--', 'true']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--max-starts takes a whole number/);
});
