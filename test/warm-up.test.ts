/**
 * The HTTP warm-up a new generation runs before it takes over (src/upgrader/warm-up.ts): it answers the
 * requests it was asked for on a private server (127.0.0.1, its own handler), leaves nothing open, is
 * bounded in time, and runs only when there is a predecessor to take over from (real processes under
 * `baton run`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Upgrader } from '../src/index.js';
import { warmUpHttp } from '../src/upgrader/warm-up.js';
import { expectFdsBackTo, fdCount } from './helpers.js';
import { get, SERVING, startSupervised } from './upgrade-helpers.js';

test('warmUpHttp() answers the requests asked for and leaves no fd or handle behind', async () => {
  await warmUpHttp(1); // the first call loads node:http; count fds after it
  const base = fdCount();
  assert.equal(await warmUpHttp(50), 50);
  assert.equal(await warmUpHttp(0), 0);
  await expectFdsBackTo(base, 'after the warm-up');
});

test('warmUpHttp() is bounded: with a tiny time limit it stops early and still cleans up', async () => {
  const base = fdCount();
  const answered = await warmUpHttp(1_000_000, 20);
  assert.ok(answered < 1_000_000, `stopped at the time limit (answered ${answered})`);
  await expectFdsBackTo(base, 'after a cut-short warm-up');
});

test('options.warmUp must be an integer from 0 to 100000 (TypeError)', async () => {
  for (const bad of [-1, 1.5, '100', Number.NaN, 100_001]) {
    await assert.rejects(
      Upgrader.start({ warmUp: bad as number, logger: false }),
      (err: Error & { code?: string }) => err instanceof TypeError && err.code === 'ERR_INVALID_ARG_TYPE',
    );
  }
  const plain = await Upgrader.start({ warmUp: 0, logger: false, exitOnDrain: false });
  assert.equal(plain.mode, 'plain');
});

test('under baton run: generation 1 (nothing to take over) does not warm up; generation 2 does, before ready', async (t) => {
  const s = await startSupervised(t);
  assert.doesNotMatch(s.sup.stderr(), /baton warmed-up gen=1/);
  const r = await s.reload();
  assert.equal(r.code, 0, `reload: ${r.stdout} ${r.stderr}`);
  await s.sup.line(SERVING(2), 10_000);
  const m = /baton warmed-up gen=2 pid=\d+ requests=(\d+) ms=\d+/.exec(s.sup.stderr());
  assert.ok(m, `generation 2 logs its warm-up: ${s.sup.stderr().slice(-2000)}`);
  assert.equal(Number(m[1]), 100, 'the default: 100 requests');
  // It comes before the handover: generation 2 logs ready after it.
  assert.ok(s.sup.stderr().indexOf('baton warmed-up gen=2') < s.sup.stderr().indexOf('baton ready gen=2'));
  assert.match((await get(s.port)).body, /generation 2/);
  assert.equal(await s.shutdown(), 0);
});
