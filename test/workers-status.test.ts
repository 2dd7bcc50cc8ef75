/**
 * `baton run --workers 2`, what it tells: `baton status` (text, --json, the --watch frame) has a row per worker
 * process with its slot, connections accepted and its slot's restarts; /metrics gives every per-process series a
 * `worker` label (without it two workers of one generation would be one repeated series, which Prometheus
 * rejects); the supervisor's lines about a worker end with `worker=I` and each line of a worker's stderr starts
 * with `[gen G wI]`. Also the label machinery on its own (a line cut across chunks is labelled once). Real
 * processes (`node bin/baton.js`), 127.0.0.1, every pid killed after the test.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import { lineLabeller } from '../src/cli/spawn-generation.js';
import type { StatusData } from '../src/cli/status-format.js';
import { frame } from '../src/cli/watch.js';
import { FIXTURES } from './helpers.js';
import { parseExposition, sampleOf, type Family } from './prometheus-parser.js';
import { baton, get, startSupervised } from './upgrade-helpers.js';

const APP = path.join(FIXTURES, 'worker-app.js');

interface WorkerRow {
  generation: number;
  worker: number;
  pid: number;
  state: string;
  accepted: number | null;
  restarts: number;
}

interface WorkersStatus {
  supervisor: { workers: number; restarts: number };
  workers: Array<{ worker: number; restarts: number }>;
  generations: WorkerRow[];
}

function scrape(url: string): Promise<Map<string, Family>> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => {
          try {
            resolve(parseExposition(body)); // strict: a repeated series throws
          } catch (err) {
            reject(err);
          }
        });
      })
      .on('error', reject);
  });
}

test('lineLabeller: each line labelled once, however the stream is cut into chunks', () => {
  const label = lineLabeller('[gen 3 w1] ');
  const out = ['one\ntw', 'o\n', '', 'three', ' still three\nfour\n\n'].map((c) => label(Buffer.from(c)).toString());
  assert.equal(
    out.join(''),
    '[gen 3 w1] one\n[gen 3 w1] two\n[gen 3 w1] three still three\n[gen 3 w1] four\n[gen 3 w1] \n',
  );
});

test('2 workers: status, --json, the watch frame and /metrics per worker; logs name the worker', async (t) => {
  const s = await startSupervised(t, { app: APP, runArgs: ['--workers', '2', '--metrics', '127.0.0.1:0'] });
  const url = /metrics-listen url=(http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(s.sup.stderr())?.[1];
  assert.ok(url, `no metrics-listen line: ${s.sup.stderr()}`);
  const json = async () => {
    const r = await baton(['status', '--json', '--socket', s.socket]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as WorkersStatus;
  };
  const N = 200;
  for (let i = 0; i < N; i++) assert.equal((await get(s.port)).status, 200);
  // Accepted comes with each worker's next report (within a second).
  let st = await json();
  for (let i = 0; i < 100; i++) {
    const accepted = st.generations.reduce((n, g) => n + (g.accepted ?? 0), 0);
    if (accepted >= N) break;
    await new Promise((r) => setTimeout(r, 100));
    st = await json();
  }
  assert.equal(st.supervisor.workers, 2);
  assert.deepEqual(st.workers, [
    { worker: 0, restarts: 0 },
    { worker: 1, restarts: 0 },
  ]);
  const rows = st.generations.filter((g) => g.state === 'serving').sort((a, b) => a.worker - b.worker);
  assert.deepEqual(
    rows.map((g) => [g.generation, g.worker, g.restarts]),
    [
      [1, 0, 0],
      [1, 1, 0],
    ],
  );
  // Every GET was a fresh connection: the two counts add up to them (the readiness probes of the helpers
  // came before), and each worker got a fair share.
  const accepted = rows.map((g) => g.accepted ?? 0);
  assert.ok(accepted[0]! + accepted[1]! >= N, `accepted ${accepted.join(' + ')} of ${N}`);
  for (const a of accepted) assert.ok(a >= N * 0.15, `accepted ${accepted.join(' + ')}: uneven`);

  const text = await baton(['status', '--socket', s.socket]);
  assert.match(text.stdout, /, 2 workers per generation$/m);
  assert.match(
    text.stdout,
    /^WORKER\s+GENERATION\s+PID\s+STATE\s+STARTED\s+READY IN\s+CONNECTIONS\s+ACCEPTED\s+RESTARTS\s+CPU\s+RSS\s+WAITING FOR$/m,
  );
  for (const g of rows) {
    const row = new RegExp(`^${g.worker}\\s+1\\s+${g.pid}\\s+serving\\s+\\S+\\s+\\d+ ms\\s+\\d+\\s+\\d+\\s+0\\s+`, 'm');
    assert.match(text.stdout, row, `worker ${g.worker}'s row`);
  }
  const view = frame(st as unknown as StatusData, 1000, null).join('\n');
  assert.match(
    view,
    /^W\s+GEN\s+PID\s+STATE\s+UPTIME\s+CONNS\s+ACCEPTED\s+RESTARTS\s+CPU\s+RSS\s+LOOP P99\s+LOOP BUSY$/m,
  );
  assert.match(view, new RegExp(`^1\\s+1\\s+${rows[1]!.pid}\\s+serving\\s`, 'm'));
  assert.match(view, /, 2 workers, 0 restarts,/);

  const m = await scrape(url);
  for (const g of rows) {
    const labels = { generation: '1', worker: String(g.worker) };
    assert.equal(sampleOf(m, 'baton_generation_info', { ...labels, pid: String(g.pid), state: 'serving' }), 1);
    assert.ok((sampleOf(m, 'baton_connections_accepted_total', labels) ?? 0) >= N * 0.15);
    assert.equal(typeof sampleOf(m, 'baton_connections_open', labels), 'number');
    assert.equal(typeof sampleOf(m, 'baton_generation_resident_memory_bytes', labels), 'number');
    assert.equal(sampleOf(m, 'baton_restarts_total', { worker: String(g.worker) }), 0);
  }

  // The supervisor's lines about a worker end with worker=I; each worker's stderr line starts with its label.
  const err = s.sup.stderr();
  for (const w of [0, 1]) {
    assert.match(
      err,
      new RegExp(`^baton spawn supervisor=\\d+ generation=1 child=${rows[w]!.pid} kind=start worker=${w}$`, 'm'),
    );
    assert.match(
      err,
      new RegExp(`^baton ready supervisor=\\d+ generation=1 child=${rows[w]!.pid} .*worker=${w}$`, 'm'),
    );
    assert.match(err, new RegExp(`^\\[gen 1 w${w}\\] baton start gen=1 pid=${rows[w]!.pid} worker=${w} `, 'm'));
  }
  assert.doesNotMatch(err, /^baton start gen=/m, 'no worker line without its label');

  // A crash is counted in its slot's restarts.
  process.kill(rows[1]!.pid, 'SIGKILL');
  for (let i = 0; i < 300; i++) {
    st = await json();
    const respawned = st.generations.find((g) => g.worker === 1 && g.state === 'serving' && g.pid !== rows[1]!.pid);
    if (respawned) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(st.workers, [
    { worker: 0, restarts: 0 },
    { worker: 1, restarts: 1 },
  ]);
  assert.equal(st.supervisor.restarts, 1);
  const respawned = st.generations.find((g) => g.worker === 1 && g.state === 'serving')!;
  assert.ok(respawned && respawned.pid !== rows[1]!.pid, 'worker 1 was respawned');
  assert.equal(respawned.restarts, 1);
  assert.match(
    s.sup.stderr(),
    new RegExp(`^baton ERROR crash supervisor=\\d+ generation=1 child=${rows[1]!.pid} .*worker=1$`, 'm'),
  );
  const after = await scrape(url);
  assert.equal(sampleOf(after, 'baton_restarts_total', { worker: '1' }), 1);
  assert.equal(sampleOf(after, 'baton_restarts_total', { worker: '0' }), 0);

  // A reload after the respawn: both slots get a worker of one new generation, and only those serve.
  const r = await s.reload();
  assert.equal(r.code, 0, `${r.stdout} ${r.stderr}`);
  st = await json();
  const serving = st.generations.filter((g) => g.state === 'serving').sort((a, b) => a.worker - b.worker);
  assert.deepEqual(
    serving.map((g) => g.worker),
    [0, 1],
    JSON.stringify(st.generations),
  );
  assert.equal(serving[0]!.generation, serving[1]!.generation, 'one generation in every slot');
  assert.ok(!serving.some((g) => g.pid === rows[0]!.pid || g.pid === respawned.pid), 'only new workers serve');
  assert.equal(await s.shutdown(), 1, 'a serving worker crashed: exit 1');
});
