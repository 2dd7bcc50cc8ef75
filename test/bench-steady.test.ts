/**
 * `npm run bench:steady -- --quick` (bench/steady/run.ts) as a smoke test: it starts plain node:http and
 * `baton run` (and `baton run --workers 1` when that flag exists), runs its interleaved rounds with
 * keep-alive and with `Connection: close`, and reports every row — each request accounted for. Nothing here
 * looks at the figures themselves: they depend on the machine.
 *
 * The benchmark kills everything it started when it ends or gets SIGTERM; after the test its process group
 * gets SIGTERM, then SIGKILL.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { runBench } from './bench-helpers.js';
import { ROOT } from './helpers.js';

interface Round {
  sent: number;
  ok: number;
  non2xx: number;
  errors: number;
  reqPerSec: number;
  p99: number;
}
interface Row {
  mode: string;
  server: string;
  title: string;
  skipped?: string;
  rounds: Round[];
  rpsRatio?: { median: number };
  p99Ratio?: { median: number };
}

test('bench:steady --quick reports every row, every request accounted for', { timeout: 180_000 }, async (t) => {
  // Rounds of 200 ms (BENCH_ROUND_MS's least) instead of --quick's 1 s: still both rounds (the order alternates
  // from one to the next) of every row, each with hundreds of requests to account for; the figures are not
  // looked at. 12 rounds of 1 s made this the slowest test of the suite (16 s).
  const { code, out, err } = await runBench(t, 'steady', ['--quick', '--json'], { BENCH_ROUND_MS: '200' });
  assert.equal(code, 0, `bench:steady failed:\n${out.slice(-3000)}\n${err.slice(-3000)}`);

  const { rounds, rows } = JSON.parse(out.trim().split('\n').pop()!) as { rounds: number; rows: Row[] };
  const help = spawnSync(process.execPath, [path.join(ROOT, 'bin/baton.js'), 'run', '--help'], { encoding: 'utf8' });
  const workers = /--workers\b/.test(help.stdout + help.stderr);
  assert.deepEqual(
    rows.map((r) => `${r.mode}/${r.server}`),
    ['keepalive/plain', 'keepalive/baton', 'keepalive/workers', 'close/plain', 'close/baton', 'close/workers'],
  );
  for (const r of rows) {
    // Every row is in the printed table, measured or with the reason it was skipped.
    assert.match(out, new RegExp(`^(keep-alive|Connection: close) +${r.title.replace(/[-]/g, '\\-')} `, 'm'));
    if (r.server === 'workers' && !workers) {
      assert.match(r.skipped ?? '', /no --workers flag/);
      assert.equal(r.rounds.length, 0);
      continue;
    }
    assert.equal(r.skipped, undefined, `${r.mode}/${r.server} was skipped: ${r.skipped}`);
    assert.equal(r.rounds.length, rounds);
    for (const x of r.rounds) {
      assert.equal(x.sent, x.ok + x.non2xx + x.errors, `${r.mode}/${r.server}: every request accounted for`);
      assert.ok(x.ok > 0, `${r.mode}/${r.server}: requests answered`);
      assert.equal(x.errors, 0, `${r.mode}/${r.server}: no errors while nothing restarts`);
      assert.equal(x.non2xx, 0);
      assert.ok(x.reqPerSec > 0 && x.p99 > 0);
    }
    if (r.server !== 'plain') assert.ok(r.rpsRatio && r.p99Ratio, `${r.mode}/${r.server}: ratios to plain node:http`);
  }
});
