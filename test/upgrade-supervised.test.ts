/**
 * Acceptance: zero-downtime upgrades under `baton run`. examples/http-server serves a steady keep-alive
 * load while it is reloaded 10 times; every `baton reload` succeeds and not one request fails.
 *
 * The authority is scripts/lib/http-load.ts, which accounts for every request it sends (sent = ok +
 * non2xx + errors). autocannon is run as well when it is installed, as a second, independent client; it
 * cannot prove "no request was lost" on its own (it drops requests in flight when a connection closes
 * instead of counting them), so for it we assert what it does count: errors, timeouts and non-2xx.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startLoad } from '../scripts/lib/http-load.js';
import { waitExit, startSupervised, get, SERVING, alive } from './upgrade-helpers.js';
import { waitFor } from './helpers.js';

const RELOADS = 10;

test('baton run: 10 reloads under keep-alive load, every request answered 2xx', { timeout: 180_000 }, async (t) => {
  const s = await startSupervised(t);
  const load = startLoad({ port: s.port, connections: 20, pauseMs: 2, timeoutMs: 10_000, durationMs: 120_000 });
  t.after(() => load.stop());
  await waitFor(() => load.result.ok >= 200, 20_000, 'the load running against generation 1');

  const pids = [(await s.serving())[0]!.pid];
  for (let i = 0; i < RELOADS; i++) {
    const before = load.result.ok;
    const r = await s.reload();
    assert.equal(r.code, 0, `reload ${i + 1} failed: ${r.stdout} ${r.stderr}`);
    const m = /generation (\d+) \(pid (\d+)\) is serving/.exec(r.stdout);
    assert.ok(m, `reload ${i + 1} output: ${r.stdout}`);
    assert.equal(Number(m[1]), i + 2);
    pids.push(Number(m[2]));
    await s.sup.line(SERVING(i + 2), 10_000);
    // The new generation takes the load before the next reload.
    await waitFor(() => load.result.ok >= before + 50, 10_000, `requests served after reload ${i + 1}`);
  }
  const result = await load.stop();
  t.diagnostic(
    `http-load: sent ${result.sent}, ok ${result.ok}, errors ${result.errors}, connections opened ` +
      `${result.socketsOpened}`,
  );

  assert.equal(result.errors, 0, `failed requests: ${JSON.stringify(result.errorCodes)}`);
  assert.equal(result.non2xx, 0, 'non-2xx responses');
  assert.equal(result.sent, result.ok, 'every request sent was answered 2xx');
  assert.ok(result.ok >= 500, `only ${result.ok} requests completed`);
  // Idle keep-alive connections move to the new generation instead of closing: the client never had to
  // reconnect (each of its 20 loops kept the one connection it opened).
  assert.equal(
    result.socketsOpened,
    20,
    `the client opened ${result.socketsOpened} connections; migration should keep the first 20`,
  );

  // The last generation serves, alone; every replaced one exited.
  const serving = await s.serving();
  assert.equal(serving.length, 1);
  assert.equal(serving[0]!.generation, RELOADS + 1);
  assert.equal(serving[0]!.pid, pids.at(-1));
  assert.match((await get(s.port)).body, new RegExp(`generation ${RELOADS + 1} \\(pid ${pids.at(-1)}\\)`));
  for (const pid of pids.slice(0, -1)) await waitExit(pid, 10_000, `replaced generation ${pid} exits`);
  const st = await s.status();
  assert.equal(
    st.upgrades.filter((u) => u.kind === 'reload' && u.outcome === 'serving').length,
    RELOADS,
    'the 10 reloads were recorded as serving',
  );

  assert.equal(await s.shutdown(), 0, s.sup.stderr().slice(-2000));
  assert.equal(alive(pids.at(-1)!), false, 'the last generation exited with the supervisor');
});

test('baton run: 10 reloads under autocannon: no errors, no timeouts, no non-2xx', { timeout: 180_000 }, async (t) => {
  let autocannon: AutocannonFn;
  try {
    autocannon = ((await import('autocannon' as string)) as { default: AutocannonFn }).default;
  } catch {
    t.skip('autocannon is not installed (npm install --save-dev autocannon)');
    return;
  }
  const s = await startSupervised(t);
  let responses = 0;
  // A modest, bounded rate: the machine is shared. duration is an upper bound; we stop it after the reloads.
  const instance = autocannon({
    url: `http://127.0.0.1:${s.port}/`,
    connections: 20,
    overallRate: 2000,
    duration: 120,
    timeout: 10,
  });
  instance.on('response', () => responses++);
  t.after(() => instance.stop());
  const finished = new Promise<AutocannonResult>((resolve, reject) => {
    instance.on('done', resolve);
    instance.on('error', reject);
  });
  await waitFor(() => responses >= 200, 20_000, 'autocannon running against generation 1');
  for (let i = 0; i < RELOADS; i++) {
    const before = responses;
    const r = await s.reload();
    assert.equal(r.code, 0, `reload ${i + 1} failed: ${r.stdout} ${r.stderr}`);
    await waitFor(() => responses >= before + 50, 10_000, `responses after reload ${i + 1}`);
  }
  instance.stop();
  const result = await finished;
  t.diagnostic(
    `autocannon: ${result.requests.total} requests, 2xx ${result['2xx']}, errors ${result.errors}, timeouts ` +
      `${result.timeouts}, non2xx ${result.non2xx}`,
  );
  assert.equal(result.errors, 0, 'autocannon errors');
  assert.equal(result.timeouts, 0, 'autocannon timeouts');
  assert.equal(result.non2xx, 0, 'autocannon non-2xx');
  assert.ok(result['2xx'] >= 500, `only ${result['2xx']} 2xx responses`);
  assert.equal((await s.serving())[0]!.generation, RELOADS + 1);
  assert.equal(await s.shutdown(), 0);
});

interface AutocannonResult {
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
  requests: { total: number };
}
interface AutocannonInstance {
  on(event: 'response', fn: () => void): void;
  on(event: 'done', fn: (r: AutocannonResult) => void): void;
  on(event: 'error', fn: (err: Error) => void): void;
  stop(): void;
}
type AutocannonFn = (opts: Record<string, unknown>) => AutocannonInstance;
