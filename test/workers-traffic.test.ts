/**
 * `baton run --workers N` under traffic (docs/workers.md), real processes on 127.0.0.1, every pid killed after the
 * test (startSupervised's cleanup):
 * - 4 workers: 400 fresh connections reach every worker (each at least half a fair share); 2 reloads under
 *   keep-alive load fail no request, and only the new workers answer after each.
 * - 2 workers: 200 WebSockets and 100 raw TCP connections (upgrader.migrate()) through 3 reloads: no close, every
 *   echo exactly once and in order with the connection's state carried over, each connection on the same slot
 *   throughout, every old worker moving all of its raw connections.
 * - 2 workers, UDP: 16 client flows send numbered datagrams through 3 reloads: every datagram answered exactly
 *   once (none lost), each flow answered by one slot throughout, both slots used.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import path from 'node:path';
import { test } from 'node:test';
import WebSocket from 'ws';
import { startLoad } from '../scripts/lib/http-load.js';
import { FIXTURES, waitFor } from './helpers.js';
import { allAnsweredBy, connectClients, problems } from './migrate-helpers.js';
import { get, startSupervised, type Supervised } from './upgrade-helpers.js';
import { assertNoFailedRequests, servedBy, servingPids } from './workers-helpers.js';
import { connect, type Client } from './ws-helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Connections each worker in `pids` accepted, as `baton status` says, once `done` holds of them (each worker
 * reports within a second), then once more a report later (what is counted late shows). */
async function acceptedBy(s: Supervised, pids: number[], done: (a: number[]) => boolean): Promise<number[]> {
  const read = async () => {
    const gens = (await s.status()).generations as Array<{ pid: number; accepted?: number | null }>;
    return pids.map((pid) => gens.find((g) => g.pid === pid)?.accepted ?? 0);
  };
  for (let i = 0; i < 50 && !done(await read()); i++) await sleep(100);
  await sleep(1200);
  return read();
}

test('4 workers: fresh connections reach every worker; 2 reloads under keep-alive load, 0 failed', async (t) => {
  const WORKERS = 4;
  const s = await startSupervised(t, { app: path.join(FIXTURES, 'worker-app.js'), runArgs: ['--workers', '4'] });
  let before = await servingPids(s);
  assert.equal(before.length, WORKERS, `serving: ${before.join(', ')}`);
  const N = 400;
  const counts = await servedBy(s.port, N);
  assert.deepEqual(
    [...counts.keys()].sort((a, b) => a - b),
    before,
    'every worker answers, and only they',
  );
  // The kernel hashes each connection's 4-tuple to a slot: about N / 4 each (binomial: sd ~9 at 100).
  for (const [pid, n] of counts)
    assert.ok(n >= N / WORKERS / 2, `worker ${pid} got ${n} of ${N}: ${[...counts.values()]}`);
  t.diagnostic(`${N} fresh connections per worker: ${[...counts.values()].join(', ')}`);
  // Each worker's ACCEPTED is exactly what it answered: nothing else opened a connection.
  const expected = before.map((pid) => counts.get(pid)!);
  assert.deepEqual(await acceptedBy(s, before, (a) => a.every((n, i) => n >= expected[i]!)), expected, 'accepted');

  const load = startLoad({ port: s.port, connections: 8, pauseMs: 2, timeoutMs: 10_000 });
  await waitFor(() => load.result.ok > 100, 10_000, 'the load running');
  for (let i = 0; i < 2; i++) {
    const opened = load.result.socketsOpened;
    const r = await s.reload();
    assert.equal(r.code, 0, `reload ${i + 1}: ${r.stderr}`);
    const after = await servingPids(s);
    assert.equal(after.length, WORKERS);
    for (const pid of after) assert.ok(!before.includes(pid), `reload ${i + 1}: ${pid} is an old worker`);
    for (let k = 0; k < 80; k++) {
      const pid = Number((await get(s.port)).body.split(' ')[0]);
      assert.ok(after.includes(pid), `reload ${i + 1}: ${pid} answered, not a new worker`);
    }
    // The load's keep-alive connections moved to the new workers: not accepted by them. Accepted are the 80
    // probes and any connection the load had to open anew (one closed instead of moved).
    const accepted = (await acceptedBy(s, after, (a) => a.reduce((x, y) => x + y) >= 80)).reduce((x, y) => x + y);
    const fresh = load.result.socketsOpened - opened;
    assert.ok(accepted >= 80 && accepted <= 80 + fresh, `reload ${i + 1}: accepted ${accepted}, fresh ${80 + fresh}`);
    before = after;
  }
  const result = await load.stop();
  const { sent, ok, non2xx, errors } = result;
  t.diagnostic(`keep-alive load through 2 reloads: ${JSON.stringify({ sent, ok, non2xx, errors })}`);
  assertNoFailedRequests(result);
  assert.equal(await s.shutdown(), 0);
});

test('2 workers: 200 WebSockets + 100 raw TCP connections through 3 reloads, 0 closed, every echo once', async (t) => {
  const RELOADS = 3;
  const s = await startSupervised(t, {
    app: path.join(FIXTURES, 'workers-mixed-app.js'),
    runArgs: ['--workers', '2'],
    servingLine: /generation 1 worker 0 serving ws 127\.0\.0\.1:(\d+)/,
  });
  const echoPort = Number(/generation 1 worker 0 serving ws \S+ echo 127\.0\.0\.1:(\d+)/.exec(s.sup.stdout())![1]);
  await s.sup.line(/generation 1 worker 1 serving/, 20_000);
  const sockets: Client[] = [];
  for (let i = 0; i < 200; i += 100) {
    sockets.push(...(await Promise.all(Array.from({ length: 100 }, (_, k) => connect(s.port, i + k)))));
  }
  // The slot that answers each WebSocket (the app appends its worker index to every echo).
  const slots = sockets.map((c) => {
    const seen = new Set<number>();
    c.ws.on('message', (data) => seen.add(Number(String(data).split(' ')[3])));
    return seen;
  });
  const raw = await connectClients(100, { connect: { host: '127.0.0.1', port: echoPort }, pauseMs: [100, 300] });
  t.after(() => {
    for (const c of sockets) c.ws.terminate();
    for (const c of raw) c.socket.destroy();
  });
  for (const c of raw) c.start();
  let running = true;
  const timer = setInterval(() => {
    if (!running) return;
    for (const c of sockets) if (c.ws.readyState === WebSocket.OPEN) c.ws.send(String(c.sent++));
  }, 200);
  t.after(() => clearInterval(timer));
  await waitFor(() => sockets.every((c) => c.expected > 0), 20_000, 'every WebSocket got an echo');
  await allAnsweredBy(raw, 1, 20_000);

  for (let i = 0; i < RELOADS; i++) {
    const gen = i + 2;
    const r = await s.reload();
    assert.equal(r.code, 0, `reload ${i + 1}: ${r.stderr}`);
    // Each old worker handed over all of its raw connections, and they add up to every one.
    const moved = await Promise.all(
      [0, 1].map((w) => s.sup.line(new RegExp(`generation ${gen - 1} worker ${w} moved (\\d+) of (\\d+) `), 30_000)),
    );
    for (const m of moved) assert.equal(m[1], m[2], m[0]);
    assert.equal(Number(moved[0]![2]) + Number(moved[1]![2]), raw.length, `${moved[0]![0]}; ${moved[1]![0]}`);
    await allAnsweredBy(raw, gen, 30_000);
    await waitFor(() => sockets.every((c) => c.generations.has(gen)), 30_000, `every WebSocket answered by ${gen}`);
    assert.equal(problems(raw), 'none', `after reload ${i + 1}`);
  }
  running = false;
  clearInterval(timer);
  await waitFor(() => sockets.every((c) => c.expected === c.sent), 20_000, 'every WebSocket message echoed');
  await Promise.all(raw.map((c) => c.stop()));

  const wsProblems = sockets.flatMap((c, i) => c.problems.map((p) => `WebSocket ${i}: ${p}`));
  assert.deepEqual(wsProblems.slice(0, 5), [], 'echoes in order, exactly once, with the state carried over');
  assert.deepEqual(
    sockets.flatMap((c) => c.closes),
    [],
    'no WebSocket closed',
  );
  assert.equal(problems(raw), 'none');
  for (const c of raw) {
    assert.equal(c.closed, false, 'no raw connection closed');
    assert.equal(c.answered, c.sent, `connection ${c.id}: ${c.sent} lines sent, ${c.answered} answered`);
    assert.deepEqual(c.gens, [1, 2, 3, 4], `connection ${c.id} was answered by generations ${c.gens.join(',')}`);
  }
  for (const c of sockets) assert.deepEqual([...c.generations].sort(), [1, 2, 3, 4]);
  // A connection stays on its slot: old worker i hands it to new worker i.
  assert.ok(
    slots.every((seen) => seen.size === 1),
    'each WebSocket answered by one slot',
  );
  assert.deepEqual(new Set(slots.map((seen) => [...seen][0])), new Set([0, 1]), 'both slots served WebSockets');
  const messages = sockets.reduce((a, c) => a + c.sent, 0) + raw.reduce((a, c) => a + c.sent, 0);
  t.diagnostic(`${messages} messages echoed across ${RELOADS} reloads`);
  assert.equal(await s.shutdown(), 0);
});

test('2 workers, UDP: 16 flows through 3 reloads, every datagram answered once, each flow on one slot', async (t) => {
  const RELOADS = 3;
  const FLOWS = 16;
  const s = await startSupervised(t, {
    app: path.join(FIXTURES, 'workers-udp-app.js'),
    runArgs: ['--workers', '2'],
    servingLine: /generation 1 worker 0 bound udp 127\.0\.0\.1:(\d+)/,
  });
  await s.sup.line(/generation 1 worker 1 bound udp/, 20_000);
  interface Flow {
    socket: dgram.Socket;
    sent: number;
    errors: number;
    /** seq -> replies */
    replies: Map<number, number>;
    slots: Set<number>;
    gens: Set<number>;
    bad: string[];
  }
  const flows: Flow[] = await Promise.all(
    Array.from({ length: FLOWS }, async (_, id) => {
      const socket = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
      const f: Flow = { socket, sent: 0, errors: 0, replies: new Map(), slots: new Set(), gens: new Set(), bad: [] };
      socket.on('message', (msg) => {
        const m = /^(\d+) (\d+) (\d+) (\d+)$/.exec(msg.toString('latin1'));
        if (!m || Number(m[1]) !== id) {
          f.bad.push(msg.toString('latin1'));
          return;
        }
        const seq = Number(m[2]);
        f.replies.set(seq, (f.replies.get(seq) ?? 0) + 1);
        f.slots.add(Number(m[3]));
        f.gens.add(Number(m[4]));
      });
      return f;
    }),
  );
  t.after(() => {
    for (const f of flows) f.socket.close();
  });
  // ~1,600 datagrams/s in all: each flow one every 10 ms.
  const timer = setInterval(() => {
    flows.forEach((f, id) => {
      const seq = f.sent++;
      f.socket.send(`${id} ${seq}`, s.port, '127.0.0.1', (err) => {
        if (err) f.errors++;
      });
    });
  }, 10);
  t.after(() => clearInterval(timer));
  const answeredBy = (gen: number) => flows.every((f) => f.gens.has(gen));
  await waitFor(() => answeredBy(1), 20_000, 'every flow answered by generation 1');
  for (let i = 0; i < RELOADS; i++) {
    const r = await s.reload();
    assert.equal(r.code, 0, `reload ${i + 1}: ${r.stderr}`);
    await waitFor(() => answeredBy(i + 2), 20_000, `every flow answered by generation ${i + 2}`);
    await sleep(200);
  }
  clearInterval(timer);
  const sent = () => flows.reduce((a, f) => a + f.sent, 0);
  const answered = () => flows.reduce((a, f) => a + f.replies.size, 0);
  await waitFor(() => answered() >= sent(), 10_000, `every datagram answered`).catch(() => {});
  const lost = flows.flatMap((f, id) =>
    Array.from({ length: f.sent }, (_, seq) => seq)
      .filter((seq) => !f.replies.has(seq))
      .map((seq) => `${id}:${seq}`),
  );
  const twice = flows.flatMap((f, id) => [...f.replies].filter(([, n]) => n > 1).map(([seq]) => `${id}:${seq}`));
  t.diagnostic(`${sent()} datagrams in ${FLOWS} flows; slots: ${flows.map((f) => [...f.slots].join('+')).join(' ')}`);
  assert.equal(
    flows.reduce((a, f) => a + f.errors, 0),
    0,
    'send errors',
  );
  assert.deepEqual(
    flows.flatMap((f) => f.bad),
    [],
    'answers to nothing sent',
  );
  assert.deepEqual(lost.slice(0, 20), [], `${lost.length} of ${sent()} datagrams not answered`);
  assert.deepEqual(twice.slice(0, 20), [], 'datagrams answered twice');
  assert.ok(sent() >= 1000, `only ${sent()} datagrams`);
  for (const f of flows) {
    assert.equal(f.slots.size, 1, `a flow answered by slots ${[...f.slots].join(', ')}`);
    assert.deepEqual([...f.gens].sort(), [1, 2, 3, 4], 'each flow answered by every generation');
  }
  assert.deepEqual(new Set(flows.map((f) => [...f.slots][0])), new Set([0, 1]), 'both slots answered flows');
  assert.equal(await s.shutdown(), 0);
});
