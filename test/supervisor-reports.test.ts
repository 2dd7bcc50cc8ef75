/**
 * What the supervisor tells its operator: a SIGHUP that starts nothing (a reload is already in progress)
 * says so in the log, with why, instead of vanishing; and `baton status` shows the last failed
 * generation's output, not only "exited with code 1 before ready(); last output:".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir, waitFor } from './helpers.js';
import { baton, BEHAVIOUR_APP, SERVING, startSupervised } from './upgrade-helpers.js';

test('SIGHUP during a reload: logged as ignored, with the reason; the reload in progress completes', {
  timeout: 120_000,
}, async (t) => {
  const dir = tmpDir(t);
  const behaviour = path.join(dir, 'behaviour');
  fs.writeFileSync(behaviour, 'ok');
  const s = await startSupervised(t, { app: BEHAVIOUR_APP, dir, env: { BEHAVIOUR_FILE: behaviour } });
  fs.writeFileSync(behaviour, 'held-ready'); // generation 2 calls ready() once behaviour.release exists
  const first = s.reload();
  const slowPid = Number((await s.sup.line(/generation 2 pid (\d+) held-ready/, 20_000))[1]);
  process.kill(s.sup.pid, 'SIGHUP');
  await waitFor(() => /sighup-ignored/.test(s.sup.stderr()), 10_000, 'the ignored SIGHUP is logged');
  assert.match(
    s.sup.stderr(),
    new RegExp(
      `WARN sighup-ignored supervisor=\\d+ reason="a reload is in progress: generation 2 \\(pid ${slowPid}\\) is ` +
        `starting`,
    ),
  );
  fs.writeFileSync(`${behaviour}.release`, '');
  const r = await first;
  assert.equal(r.code, 0, r.stderr);
  await s.sup.line(SERVING(2), 10_000);
  assert.doesNotMatch(s.sup.stderr(), /baton spawn .*generation=3/, 'the SIGHUP started nothing');
  assert.equal(await s.shutdown(), 0);
});

test("baton status shows the failed generation's last output", { timeout: 120_000 }, async (t) => {
  const dir = tmpDir(t);
  const behaviour = path.join(dir, 'behaviour');
  fs.writeFileSync(behaviour, 'ok');
  const s = await startSupervised(t, { app: BEHAVIOUR_APP, dir, env: { BEHAVIOUR_FILE: behaviour } });
  fs.writeFileSync(behaviour, 'exit1');
  const r = await s.reload();
  assert.equal(r.code, 1, r.stderr);
  const st = await baton(['status', '--socket', s.socket]);
  assert.equal(st.code, 0, st.stderr);
  assert.match(
    st.stdout,
    /\nlast failure: generation 2 \(pid \d+\), reload, exited with code 1 before ready\(\); last output:\n( {2}.*\n)* {2}behaviour-app: exit1 on purpose\n/,
  );
  assert.equal(await s.shutdown(), 0);
});
