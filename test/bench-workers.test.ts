/**
 * `npm run bench:workers -- --quick` (bench/workers/run.ts) as a smoke test: it starts `baton run --workers 2`,
 * `--workers 1`, a node:cluster primary with 2 workers and — when bench/workers/.pm2 has PM2 already (the test
 * never installs it: BENCH_PM2_INSTALL=0) — PM2 in cluster mode, runs every phase tiny, and reports every column:
 * each request and each WebSocket message accounted for, every reload done, and what baton promises (no failed
 * request, every WebSocket kept with its state). Nothing here looks at req/s, balance or upgrade times: they
 * depend on the machine.
 *
 * The benchmark kills everything it started (PM2's daemon included) when it ends or gets SIGTERM; after the test
 * its process group gets SIGTERM, then SIGKILL.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runBench } from './bench-helpers.js';
import { ROOT } from './helpers.js';

interface Counted {
  sent: number;
  ok: number;
  non2xx: number;
  errors: number;
  byHeader: Record<string, number>;
  reqPerSec?: number;
}
interface Throughput {
  key: string;
  rounds: Counted[];
  failed: number;
}
interface Col {
  key: string;
  title: string;
  skipped?: string;
  steady?: Throughput;
  fresh?: Throughput;
  reload?: {
    phase: {
      http: Counted;
      ws: {
        clients: number;
        kept: number;
        closed: number;
        sent: number;
        answered: number;
        lost: number;
        unansweredAtClose: number;
        stateLost: number;
      };
    };
    reloadMs: number[];
    reloadFailures: string[];
    pids: number;
    failed: number;
  };
}

const PM2_INSTALLED = fs.existsSync(path.join(ROOT, 'bench/workers/.pm2/node_modules/pm2/package.json'));

function accounted(what: string, r: Counted): void {
  assert.equal(r.sent, r.ok + r.non2xx + r.errors, `${what}: every request accounted for`);
  assert.ok(r.ok > 0, `${what}: requests answered`);
}

test('bench:workers --quick reports every column, every request and message accounted for', {
  timeout: 240_000,
}, async (t) => {
  const { code, out, err } = await runBench(t, 'workers', ['--quick', '--json'], { BENCH_PM2_INSTALL: '0' });
  assert.equal(code, 0, `bench:workers failed:\n${out.slice(-3000)}\n${err.slice(-3000)}`);

  const { reloads, cols, cpu } = JSON.parse(out.trim().split('\n').pop()!) as {
    reloads: number;
    cols: Col[];
    cpu: Throughput[];
  };
  assert.deepEqual(
    cols.map((c) => c.key),
    ['baton', 'cluster', 'pm2'],
  );
  for (const c of cols) {
    // Every column is in the printed table, measured or with the reason it was skipped.
    assert.ok(
      out.split('\n').some((l) => l.startsWith(c.title)),
      `${c.title} printed`,
    );
    if (c.key === 'pm2' && !PM2_INSTALLED) {
      assert.match(c.skipped ?? '', /not installed/);
      continue;
    }
    assert.equal(c.skipped, undefined, `${c.key} was skipped: ${c.skipped}`);
    for (const [mode, phase] of [['keep-alive', c.steady!] as const, ['close', c.fresh!] as const]) {
      for (const r of phase.rounds) {
        accounted(`${c.key} ${mode}`, r);
        assert.equal(r.errors + r.non2xx, 0, `${c.key}: no failure while nothing restarts`);
        assert.equal(Object.keys(r.byHeader).filter((pid) => pid !== '').length, 2, `${c.key}: both workers serve`);
      }
    }
    const rl = c.reload!;
    accounted(`${c.key} reloads`, rl.phase.http);
    assert.deepEqual(rl.reloadFailures, [], `${c.key}: every reload done`);
    assert.equal(rl.reloadMs.length, reloads);
    assert.equal(rl.pids, 2 * (reloads + 1), `${c.key}: each reload replaced both workers, and all of them served`);
    const ws = rl.phase.ws;
    assert.equal(ws.kept + ws.closed, ws.clients, `${c.key}: every WebSocket kept or closed`);
    assert.equal(ws.sent, ws.answered + ws.lost + ws.unansweredAtClose, `${c.key}: every message accounted for`);
    assert.ok(ws.answered > 0);
  }
  // What baton promises, whatever the machine: no request fails, every WebSocket moves with its state.
  const baton = cols[0]!.reload!;
  assert.equal(baton.failed, 0, JSON.stringify(baton.phase.http));
  assert.equal(baton.phase.ws.kept, baton.phase.ws.clients);
  assert.equal(baton.phase.ws.stateLost, 0);

  assert.deepEqual(
    cpu.map((r) => r.key),
    ['baton1', 'baton', 'cluster'],
  );
  for (const r of cpu) for (const x of r.rounds) accounted(`cpu ${r.key}`, x);
});
