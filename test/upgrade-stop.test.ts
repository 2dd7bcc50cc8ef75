/**
 * Acceptance: graceful stop. SIGTERM to `baton run` while 20 clients send requests that take 300 ms each:
 * every request that reached the app is answered (none is reset in flight), the supervisor exits 0, and
 * no generation process remains. New connections may be refused once the stop began — that is what
 * stopping means — so the accounting is done against the app's own log of the requests it received
 * (test/fixtures/behaviour-app.ts, RECV_LOG): a request in that log must have a response.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { tmpDir, waitFor, within } from './helpers.js';
import { alive, BEHAVIOUR_APP, isGenerationOf, startSupervised } from './upgrade-helpers.js';

interface Outcome {
  id: number;
  start: number;
  end: number;
  status?: number;
  error?: string;
}

test('SIGTERM to baton run under load: requests in flight complete, exit 0, no generation left', {
  timeout: 120_000,
}, async (t) => {
  const dir = tmpDir(t);
  const recvLog = path.join(dir, 'received.log');
  const s = await startSupervised(t, { app: BEHAVIOUR_APP, dir, env: { RECV_LOG: recvLog } });
  // One reload first, so that the stop has a generation that inherited its listener.
  assert.equal((await s.reload()).code, 0);
  const gen = (await s.serving())[0]!;
  assert.equal(gen.generation, 2);

  const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
  t.after(() => agent.destroy());
  const outcomes: Outcome[] = [];
  let nextId = 0;
  let stopping = false;
  const one = (id: number) =>
    new Promise<Outcome>((resolve) => {
      const o: Outcome = { id, start: performance.now(), end: 0 };
      const req = http.get(
        { host: '127.0.0.1', port: s.port, path: `/?delay=300&id=${id}`, agent, timeout: 10_000 },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ ...o, end: performance.now(), status: res.statusCode! }));
          res.on('error', (err: NodeJS.ErrnoException) =>
            resolve({ ...o, end: performance.now(), error: err.code ?? err.message }),
          );
        },
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) =>
        resolve({ ...o, end: performance.now(), error: err.code ?? err.message }),
      );
    });
  const deadline = Date.now() + 60_000;
  const loops = Promise.all(
    Array.from({ length: 20 }, async () => {
      while (!stopping && Date.now() < deadline) {
        const o = await one(nextId++);
        outcomes.push(o);
        if (o.error) await new Promise((r) => setTimeout(r, 20)); // refused after the stop: do not spin
      }
    }),
  );
  t.after(() => {
    stopping = true;
    return loops;
  });
  await waitFor(() => outcomes.filter((o) => o.status === 200).length >= 60, 20_000, 'the load running');

  const sigterm = performance.now();
  process.kill(s.sup.pid, 'SIGTERM');
  const code = await within(s.sup.exited, 30_000, 'the supervisor exits after SIGTERM');
  stopping = true;
  await within(loops, 20_000, 'the clients finish');

  assert.equal(code, 0, s.sup.stderr().slice(-3000));
  for (const pid of s.generationPids()) {
    assert.equal(alive(pid) && isGenerationOf(pid, s.sup.pid), false, `generation pid ${pid} is still running`);
  }
  assert.equal(alive(gen.pid), false);
  assert.match(s.sup.stderr(), new RegExp(`baton exit supervisor=${s.sup.pid} generation=2 child=${gen.pid} code=0`));
  assert.match(s.sup.stderr(), /baton supervisor-exit supervisor=\d+ code=0/);

  const received = new Set(fs.readFileSync(recvLog, 'utf8').split('\n').filter(Boolean).map(Number));
  const lost = outcomes.filter((o) => received.has(o.id) && o.status !== 200);
  const inFlight = outcomes.filter((o) => o.start < sigterm && o.end > sigterm);
  const errors = outcomes.filter((o) => o.error).map((o) => o.error);
  t.diagnostic(
    `requests: ${outcomes.length}, in flight at SIGTERM: ${inFlight.length}, errors after the stop: ` +
      `${JSON.stringify(errors.reduce<Record<string, number>>((a, e) => ((a[e!] = (a[e!] ?? 0) + 1), a), {}))}`,
  );
  assert.deepEqual(lost, [], 'requests the app received but never answered');
  assert.ok(inFlight.length >= 10, `only ${inFlight.length} requests were in flight at SIGTERM`);
  assert.ok(
    inFlight.every((o) => o.status === 200),
    `in-flight requests failed: ${JSON.stringify(inFlight.filter((o) => o.status !== 200))}`,
  );
  // Every request that failed did so at connect time, never having reached the app.
  for (const o of outcomes.filter((x) => x.error)) {
    assert.ok(o.end > sigterm, `request ${o.id} failed before the stop: ${o.error}`);
    assert.ok(!received.has(o.id));
  }
  assert.ok(
    outcomes.every((o) => o.error || o.status === 200),
    'non-200 responses',
  );
});
