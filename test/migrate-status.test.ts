/**
 * `baton status` and /metrics during a move: the connections a new generation has received but not continued
 * yet (parked by readiness-ordered adoption, src/upgrader/migrate-receiver.ts) are counted as its connections,
 * and shown apart as arriving — not missing from both generations until the app has adopted them.
 *
 * 2,500 idle raw TCP connections move with upgrader.migrateAll() to a new generation whose 'migrated' handler
 * takes 2 ms (busy) per connection: the old generation sends them all within a few batches' parking, and the
 * new one adopts them in the background over 5 s or more. Once the old generation says it moved every one,
 * `baton status --json` is asked until the new generation reports all of them; /metrics and the text status
 * are read; then one client asks how many the app had adopted by then: fewer than all, so the counts above
 * included connections still parked. Not a timing assertion: the order of the samples is what matters (each
 * report is older than the question that follows it, and what is parked only shrinks once the old generation is
 * done). Every connection then answers from the new generation, each with its own id.
 *
 * And the WebSockets a move brought in, once restored: a moved WebSocket goes to its `ws` server, not to the
 * listener's connection tracking, and was not counted at all (200 moved: the new generation reported 0).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ROOT } from './helpers.js';
import { connect, expectAllMovedTo, WS_SERVING, type Client } from './ws-helpers.js';
import { connectLineClients, type LineClient, nofileLimit, parseLine } from './migrate-helpers.js';
import { parseExposition, sampleOf } from './prometheus-parser.js';
import { baton, startSupervised, type StatusGeneration } from './upgrade-helpers.js';

const APP = path.join(ROOT, 'dist/test/fixtures/tcp-slow-adopt-app.js');
const SERVING = /generation 1 serving on tcp:\/\/127\.0\.0\.1:(\d+)/;
const MOVED = /generation 1 moved (\d+) of (\d+) connections/;
const N = 2500;

type Gen = StatusGeneration & { arriving?: number };

test('baton status and /metrics count the connections a move brought in that are still parked', async (t) => {
  if (nofileLimit() < 3 * N + 1000) {
    t.skip(`needs an open files limit of ${3 * N + 1000} (ulimit -n is ${nofileLimit()})`);
    return;
  }
  const s = await startSupervised(t, {
    app: APP,
    servingLine: SERVING,
    env: { ADOPT_BUSY_MS: '2' },
    runArgs: ['--metrics', '0'],
  });
  const metricsUrl = /metrics-listen url=(http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(s.sup.stderr())?.[1];
  assert.ok(metricsUrl, `no metrics-listen line: ${s.sup.stderr()}`);
  const clients: LineClient[] = [];
  t.after(() => {
    for (const c of clients) c.socket.destroy();
  });
  const ids = await connectLineClients(s.port, N, 250, clients);

  const reload = s.reload();
  const moved = await s.sup.line(MOVED, 60_000);
  assert.deepEqual([Number(moved[1]), Number(moved[2])], [N, N], moved[0]);
  // Every connection is in generation 2 now, parked or adopted. Sample its report, then ask the app how many it
  // has adopted (the report is older than the answer), until the report says N or the app has adopted them all.
  const talker = clients.at(-1)!;
  let answers = 1;
  const adopted = async () => {
    talker.socket.write('/adopted\n');
    const line = parseLine(await talker.answer(++answers, 60_000)).text;
    return Number(/^adopted=(\d+)$/.exec(line)?.[1]);
  };
  const samples: string[] = [];
  let gen2: Gen | undefined;
  let taken = 0;
  for (let i = 0; i < 200; i++) {
    const gens = (await s.status()).generations as Gen[];
    gen2 = gens.find((g) => g.generation === 2);
    const gen1 = gens.find((g) => g.generation === 1);
    taken = await adopted();
    samples.push(
      `gen1 ${gen1?.connections ?? 'gone'}, gen2 ${gen2?.connections} (${gen2?.arriving} arriving), adopted ${taken}`,
    );
    assert.ok((gen2?.connections ?? 0) <= N, `generation 2 reported more than it holds: ${samples.at(-1)}`);
    if ((gen2?.connections === N && (gen1?.connections ?? 0) === 0) || taken === N) break;
  }
  t.diagnostic(`after the move, status then the app's count: ${samples.join('; ')}`);
  assert.equal(
    gen2?.connections,
    N,
    `generation 2 reported fewer than the ${N} it held until it had adopted them all (parked ones not counted)`,
  );
  assert.ok(taken < N, 'adoption was over before the status was read: nothing was parked to count');
  assert.ok((gen2.arriving ?? 0) > 0, `the connections still parked are shown as arriving: ${samples.at(-1)}`);

  // /metrics: the same count, and the arriving ones as their own gauge.
  const families = parseExposition(await (await fetch(metricsUrl)).text());
  assert.equal(sampleOf(families, 'baton_connections_open', { generation: '2' }), N);
  const arrivingMetric = sampleOf(families, 'baton_connections_arriving', { generation: '2' });
  assert.ok(arrivingMetric !== undefined && arrivingMetric >= 0, 'baton_connections_arriving{generation="2"}');

  // The text status: generation 2's CONNECTIONS cell, with what is still arriving (if the app had still not
  // adopted them all after it was read, its report had some arriving).
  const text = await baton(['status', '--socket', s.socket]);
  assert.equal(text.code, 0, text.stderr);
  const row = text.stdout.split('\n').find((l) => /^2\s+\d+\s+serving/.test(l));
  assert.ok(row, text.stdout);
  const stillParked = (await adopted()) < N;
  assert.match(row, new RegExp(`\\s${N}${stillParked ? ' \\([1-9]\\d* arriving\\)' : '( \\(\\d+ arriving\\))?'}\\s`));

  const r = await reload;
  assert.equal(r.code, 0, r.stderr);
  // Nothing lost: every connection answers from generation 2 with its own id.
  for (const c of clients) if (c !== talker) c.socket.write('again\n');
  for (let i = 0; i < N - 1; i++) {
    const a = parseLine(await clients[i]!.answer(2, 60_000));
    assert.deepEqual([a.gen, a.id], [2, ids[i]], `client ${i}`);
  }
  // Once all are adopted (they all answered), the next report says N and nothing arriving.
  let final: Gen | undefined;
  for (let i = 0; i < 100 && (final?.arriving ?? 1) !== 0; i++) {
    if (i) await new Promise((res) => setTimeout(res, 100));
    final = (await s.status()).generations.find((g) => g.generation === 2) as Gen;
  }
  assert.equal(final?.connections, N);
  assert.equal(final?.arriving, 0, 'nothing arriving once every connection is adopted');
  for (const c of clients) c.socket.destroy();
  assert.equal(await s.shutdown(), 0);
});

const WS_APP = path.join(ROOT, 'dist/test/fixtures/ws-slow-adopt-app.js');
const WS_N = 200;

test("baton status counts the WebSockets a move brought in, once they are the app's", async (t) => {
  const s = await startSupervised(t, { app: WS_APP, servingLine: WS_SERVING });
  const clients: Client[] = [];
  t.after(() => {
    for (const c of clients) c.ws.terminate();
  });
  clients.push(...(await Promise.all(Array.from({ length: WS_N }, (_, i) => connect(s.port, i)))));
  const gen1 = async () => (await s.status()).generations.find((g) => g.generation === 1)?.connections;
  let before = await gen1();
  for (let i = 0; i < 50 && before !== WS_N; i++) {
    await new Promise((r) => setTimeout(r, 100));
    before = await gen1();
  }
  assert.equal(before, WS_N, 'generation 1 counts its WebSockets');
  const r = await s.reload();
  assert.equal(r.code, 0, r.stderr);
  // The move is done once generation 2's wss.clients holds every one (the reload returns before that).
  await expectAllMovedTo(s.port, clients, WS_N, 2, 30_000);
  let gen2: number | undefined;
  for (let i = 0; i < 50 && gen2 !== WS_N; i++) {
    if (i) await new Promise((res) => setTimeout(res, 100));
    gen2 = (await s.status()).generations.find((g) => g.generation === 2)?.connections;
  }
  assert.equal(gen2, WS_N, 'generation 2 counts the WebSockets that moved to it');
  for (const c of clients) c.ws.terminate();
  assert.equal(await s.shutdown(), 0);
});
