/**
 * Server-Sent Events across reloads under `baton run` (test/fixtures/sse-app.ts, 20 EventSource clients):
 * - a replaced generation exits once its own connections are gone, whatever an older generation still
 *   holds (the completion protocol of src/upgrader/migrate.ts), and `baton status` shows what each draining
 *   generation waits for;
 * - baton ends SSE streams when the new generation is ready: clients resume there with Last-Event-ID and
 *   lose no event;
 * - streams the app ends itself in 'drain' are not logged as connections that failed to move.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { FIXTURES, waitFor } from './helpers.js';
import { openPlainStreams, openTickers, tickerProblems, type TickerClient } from './sse-helpers.js';
import { alive, baton, startSupervised, waitExit, type Status } from './upgrade-helpers.js';

const APP = path.join(FIXTURES, 'sse-app.js');
const N = 20;

function closeAll(clients: TickerClient[]): void {
  for (const c of clients) c.close();
}

type StatusGen = Status['generations'][number] & { kinds?: Record<string, number>; waitingFor?: string };

test(
  'a replaced generation holding nothing exits while an older one still holds 20 SSE streams; status shows each ' +
    'draining generation',
  async (t) => {
    const s = await startSupervised(t, {
      app: APP,
      env: { SSE_END: '0', DRAIN_TIMEOUT: '60000', SSE_T0: String(Date.now()) },
    });
    const clients = await openTickers(`http://127.0.0.1:${s.port}`, N);
    t.after(() => closeAll(clients));
    const gen1 = (await s.serving())[0]!.pid;
    for (const n of [2, 3]) {
      const r = await s.reload();
      assert.equal(r.code, 0, `reload to generation ${n}: ${r.stderr}`);
    }
    const gens = (await s.status()).generations as StatusGen[];
    const gen2 = gens.find((g) => g.generation === 2)?.pid;
    // Generation 2 holds no connection: it must not wait for generation 1's streams (60 s drainTimeout).
    if (gen2 !== undefined)
      await waitExit(gen2, 20_000, 'generation 2 (holding nothing) exits while generation 1 still drains');
    assert.ok(alive(gen1), 'generation 1 still holds its streams');
    const st = await s.status();
    const draining = st.generations.filter((g) => g.state === 'draining') as StatusGen[];
    assert.deepEqual(
      draining.map((g) => g.generation),
      [1],
      JSON.stringify(st.generations),
    );
    assert.equal(draining[0]!.waitingFor, 'connections');
    assert.equal(draining[0]!.kinds?.sse, N, JSON.stringify(draining[0]));
    const text = await baton(['status', '--socket', s.socket]);
    assert.match(text.stdout, new RegExp(`draining .*sse ${N}`), text.stdout);
    assert.equal(tickerProblems(clients), '');
    // The streams end: generation 1 has nothing left and exits.
    closeAll(clients);
    await waitExit(gen1, 20_000, 'generation 1 exits once its streams are closed');
    assert.equal(await s.shutdown(), 0);
  },
);

test(
  'SSE streams end when the new generation is ready: 20 EventSource clients resume on the newest one with ' +
    'Last-Event-ID, 0 events lost',
  async (t) => {
    const s = await startSupervised(t, { app: APP, env: { SSE_T0: String(Date.now()) } });
    const clients = await openTickers(`http://127.0.0.1:${s.port}`, N);
    t.after(() => closeAll(clients));
    const pids = [(await s.serving())[0]!.pid];
    for (const n of [2, 3]) {
      const r = await s.reload();
      assert.equal(r.code, 0, `reload to generation ${n}: ${r.stderr}`);
      pids.push((await s.serving())[0]!.pid);
    }
    await waitFor(() => clients.every((c) => c.gen === 3), 20_000, 'every client receives events from generation 3');
    for (const pid of pids.slice(0, 2)) await waitExit(pid, 20_000, 'the replaced generations exit');
    const before = clients.map((c) => c.last!);
    await waitFor(() => clients.every((c, i) => c.last! > before[i]! + 5), 10_000, 'the streams go on');
    assert.equal(tickerProblems(clients), '', 'no event lost or repeated');
    assert.ok(
      clients.every((c) => c.reconnects >= 1),
      'each client reconnected (its stream was ended)',
    );
    assert.doesNotMatch(s.sup.stderr(), /not-moved/);
    assert.match(s.sup.stderr(), /sse-ended gen=1 pid=\d+ streams=20 retryMs=300/);
    closeAll(clients);
    assert.equal(await s.shutdown(), 0);
  },
);

test("streams the app ends in its 'drain' handler are not logged as connections that could not move", async (t) => {
  const s = await startSupervised(t, {
    app: APP,
    env: { SSE_END: '0', SSE_APP_ENDS: '1', SSE_T0: String(Date.now()) },
  });
  const clients = await openTickers(`http://127.0.0.1:${s.port}`, N);
  t.after(() => closeAll(clients));
  // And streams on connections that close after their response (Connection: close): the app's res.end()
  // closes them while baton tries to move them on, which used to be logged as not-moved ERR_BATON_NOT_OPEN.
  const plain = await openPlainStreams(s.port, N);
  t.after(() => plain.close());
  const gen1 = (await s.serving())[0]!.pid;
  const r = await s.reload();
  assert.equal(r.code, 0, r.stderr);
  await waitFor(() => clients.every((c) => c.gen === 2), 20_000, 'every client receives events from generation 2');
  await waitExit(gen1, 20_000, 'generation 1 exits');
  assert.equal(plain.ended(), N, 'each plain stream ended cleanly');
  assert.equal(tickerProblems(clients), '');
  assert.doesNotMatch(s.sup.stderr(), /not-moved/, 'connections that closed normally are not "not moved"');
  assert.match(s.sup.stderr(), /drained gen=1 /);
  closeAll(clients);
  assert.equal(await s.shutdown(), 0);
});
