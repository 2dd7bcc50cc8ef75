/**
 * Live migration of raw TCP connections when things go wrong, with examples/tcp-echo under `baton run`
 * (real processes, 127.0.0.1). The example's MIGRATE_CHUNK / MIGRATE_PAUSE_MS spread the move out over a
 * second or so, so that clients can close, and the old generation can die, in the middle of it.
 *
 * - Half of 400 clients close (FIN, close, or reset) at random moments while a reload moves them: neither
 *   generation crashes (the old one drains and exits 0), the survivors keep streaming with every line
 *   answered once and in order, the new generation's connection count comes back to exactly the 200 live
 *   clients, the supervisor holds as many fds as before, and the new generation leaked none: after one
 *   more (clean) reload, the next generation holds exactly as many fds for the same 200 connections.
 * - State over 64 KiB: migrate() rejects with ERR_BATON_STATE_TOO_LARGE, the app says goodbye and closes
 *   the connection; the client sees a clean close (FIN, no error). State just under the limit moves intact.
 * - The old generation is SIGKILLed in the middle of moving 600 connections — 50 moved, 50 in flight in the
 *   migration channel (the new generation is frozen with SIGSTOP meanwhile), the others not sent — every
 *   client either keeps working in the new generation or sees its connection closed — none hangs — the
 *   100 moved or in flight keep working, and the new generation keeps serving (a new client is answered;
 *   it counts exactly the live connections).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { waitFor } from './helpers.js';
import { alive, startSupervised, waitExit, type Supervised } from './upgrade-helpers.js';
import { allAnsweredBy, connectClients, ECHO, ECHO_MOVED, ECHO_SERVING_TCP, problems } from './migrate-helpers.js';

const fdsOf = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `f` until it returns `want` (or `ms` passed); returns the last value. */
async function settle<T>(f: () => T | Promise<T>, want: T, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v === want || Date.now() > deadline) return v;
    await sleep(100);
  }
}

async function serving(s: Supervised): Promise<{ pid: number; generation: number; connections: number }> {
  const list = await s.serving();
  assert.equal(list.length, 1, `exactly one serving generation: ${JSON.stringify(list)}`);
  return list[0]!;
}

test('clients closing while they are being moved: no crash, the count comes back to the live clients, no fd leak', {
  timeout: 180_000,
}, async (t) => {
  const N = 400;
  const s = await startSupervised(t, {
    app: ECHO,
    servingLine: ECHO_SERVING_TCP(1),
    env: { MIGRATE_CHUNK: '25', MIGRATE_PAUSE_MS: '20' },
  });
  const clients = await connectClients(N, { connect: { host: '127.0.0.1', port: s.port } });
  t.after(() => clients.forEach((c) => c.socket.destroy()));
  clients.forEach((c) => c.start());
  await allAnsweredBy(clients, 1, 30_000);
  const leaving = clients.filter((_, i) => i % 2 === 0);
  const staying = clients.filter((_, i) => i % 2 === 1);
  const gen1 = await serving(s);
  const supFds = fdsOf(s.sup.pid);

  // From the moment the reload starts, over 800 ms: before, during and after the move.
  const reload = s.reload();
  const closes = leaving.map(async (c, i) => {
    await sleep(Math.floor(Math.random() * 800));
    c.endedByTest = true;
    if (i % 3 === 0) c.socket.end();
    else if (i % 3 === 1) c.socket.destroy();
    else c.socket.resetAndDestroy();
  });
  const r = await reload;
  assert.equal(r.code, 0, `reload failed: ${r.stdout} ${r.stderr}`);
  await Promise.all(closes);
  const moved = await s.sup.line(ECHO_MOVED(1), 30_000);
  t.diagnostic(moved[0]);

  const exitLine = new RegExp(`baton exit supervisor=\\d+ generation=1 child=${gen1.pid} code=0 signal=null`);
  await waitFor(() => exitLine.test(s.sup.stderr()), 30_000, 'the old generation drains and exits 0');
  await allAnsweredBy(staying, 2, 30_000);
  const gen2 = await serving(s);
  assert.equal(gen2.generation, 2);
  assert.equal(
    await settle(async () => (await serving(s)).connections, staying.length),
    staying.length,
    'generation 2 counts exactly the live clients',
  );
  assert.equal(
    await settle(() => fdsOf(s.sup.pid), supFds, 5000),
    supFds,
    'the supervisor holds as many fds as before the reload',
  );
  // A leak in generation 2 (an fd of a client that closed during the move) stays there; the next
  // generation gets only the live connections. Same connections, same code: the same number of fds.
  const gen2Fds = fdsOf(gen2.pid);
  const r2 = await s.reload();
  assert.equal(r2.code, 0, r2.stderr);
  await waitExit(gen2.pid, 30_000, 'generation 2 exits');
  await allAnsweredBy(staying, 3, 30_000);
  const gen3 = await serving(s);
  assert.equal(await settle(async () => (await serving(s)).connections, staying.length), staying.length);
  assert.equal(
    await settle(() => fdsOf(gen3.pid), gen2Fds, 5000),
    gen2Fds,
    `generation 3 holds as many fds as generation 2 did for the same ${staying.length} connections`,
  );

  await Promise.all(staying.map((c) => c.stop()));
  assert.equal(problems(staying), 'none');
  for (const c of staying) assert.equal(c.answered, c.sent);
  assert.doesNotMatch(s.sup.stderr(), /Uncaught|TypeError|RangeError|baton crash/, 'no generation crashed');
  staying.forEach((c) => c.end());
  assert.equal(await s.shutdown(), 0);
});

test('state over 64 KiB: migrate() rejects with ERR_BATON_STATE_TOO_LARGE and the app closes the connection cleanly', {
  timeout: 120_000,
}, async (t) => {
  const s = await startSupervised(t, { app: ECHO, servingLine: ECHO_SERVING_TCP(1) });
  const [big, medium, plain] = await connectClients(3, { connect: { host: '127.0.0.1', port: s.port } });
  t.after(() => [big, medium, plain].forEach((c) => c!.socket.destroy()));
  const bigNote = 'b'.repeat(70 * 1024);
  const mediumNote = 'm'.repeat(60 * 1024);
  big!.send(`/note ${bigNote}\n`);
  medium!.send(`/note ${mediumNote}\n`);
  await waitFor(() => big!.extra.length === 1 && medium!.extra.length === 1, 10_000, 'the notes stored');
  assert.match(big!.extra[0]!, new RegExp(`^1:[^:]+:1:noted ${70 * 1024}$`));
  plain!.start();
  await allAnsweredBy([plain!], 1, 10_000);

  const r = await s.reload();
  assert.equal(r.code, 0, r.stderr);
  const moved = await s.sup.line(ECHO_MOVED(1), 30_000);
  assert.equal(moved[1], '2', moved[0]);
  assert.match(moved[3]!, /not moved: ERR_BATON_STATE_TOO_LARGE=1/);
  assert.match(
    s.sup.stdout(),
    /could not move connection \S+: ERR_BATON_STATE_TOO_LARGE the connection state is \d+ bytes as JSON; at most 65536/,
  );

  // The connection whose state was too large: a goodbye, then a clean close (FIN), not a reset.
  await waitFor(() => big!.closed, 10_000, 'the connection with too much state closes');
  assert.match(big!.extra.at(-1)!, /^1:[^:]+:-:bye ERR_BATON_STATE_TOO_LARGE$/);
  assert.equal(big!.ended, true, "the client saw the server's FIN");
  assert.equal(big!.hadError, null, 'no error (no reset) on the client');

  // 60 KiB moved with its connection, intact.
  medium!.send('/note\n');
  await waitFor(() => medium!.extra.length === 2 || medium!.closed, 10_000, 'the note read back');
  const [gen, , n, text] = medium!.extra[1]!.split(':');
  assert.equal(gen, '2', 'answered by the new generation');
  assert.equal(n, '2', 'the count moved with the state');
  assert.ok(text === `note ${mediumNote}`, `the note came back intact (${text!.length} characters)`);
  assert.equal(medium!.closed, false);

  // The old generation finished cleanly: the goodbye completed (no connection left for the drain timeout).
  const drainedRe = /baton drained gen=1 pid=\d+ ms=\d+ forced=(\d+)/;
  await waitFor(() => drainedRe.test(s.sup.stderr()), 60_000, 'the old generation drained');
  assert.equal(drainedRe.exec(s.sup.stderr())![1], '0', 'no connection had to be closed at the drain timeout');

  await allAnsweredBy([plain!], 2, 10_000);
  await plain!.stop();
  assert.equal(problems([plain!, medium!]), 'none');
  medium!.end();
  plain!.end();
  assert.equal(await s.shutdown(), 0);
});

test('old generation SIGKILLed in the middle of the move: every client keeps working or is closed, none hangs', {
  timeout: 180_000,
}, async (t) => {
  const N = 600;
  const s = await startSupervised(t, {
    app: ECHO,
    servingLine: ECHO_SERVING_TCP(1),
    env: { MIGRATE_CHUNK: '50', MIGRATE_PAUSE_MS: '150' },
  });
  const clients = await connectClients(N, { connect: { host: '127.0.0.1', port: s.port } });
  t.after(() => clients.forEach((c) => c.socket.destroy()));
  clients.forEach((c) => c.start());
  await allAnsweredBy(clients, 1, 30_000);
  const gen1 = await serving(s);

  const r = await s.reload();
  assert.equal(r.code, 0, r.stderr);
  const gen2 = await serving(s);
  t.after(() => {
    try {
      process.kill(gen2.pid, 'SIGCONT');
    } catch {
      // gone
    }
  });
  // After the first 50 moved, freeze the new generation: the old one sends the next batch of 50 and waits
  // for an acknowledgement that does not come. Then kill the old one: 50 connections are in the new
  // generation, 50 are in flight in the migration channel, 500 were never sent (some stopped reading).
  const m = await s.sup.line(/generation 1 moved (\d+)\/600/, 30_000);
  process.kill(gen2.pid, 'SIGSTOP');
  const movedBeforeKill = Number(m[1]);
  await sleep(500);
  process.kill(gen1.pid, 'SIGKILL');
  t.diagnostic(`froze generation 2 after "${m[0]}", SIGKILLed generation 1 500 ms later`);
  const exitLine = new RegExp(`baton exit supervisor=\\d+ generation=1 child=${gen1.pid} code=null signal=SIGKILL`);
  await waitFor(() => exitLine.test(s.sup.stderr()), 10_000, 'the supervisor reports the old generation killed');
  process.kill(gen2.pid, 'SIGCONT');

  // None hangs: each client is answered by generation 2 or sees its connection closed.
  await allAnsweredBy(clients, 2, 30_000);
  const working = clients.filter((c) => !c.closed);
  const closed = clients.filter((c) => c.closed);
  t.diagnostic(
    `${working.length} connections keep working in generation 2, ${closed.length} were closed ` +
      `(${closed.filter((c) => c.hadError).length} by a reset)`,
  );
  assert.ok(
    working.length >= movedBeforeKill + 50,
    `${working.length} working: the ${movedBeforeKill} moved before the kill and the 50 in flight should`,
  );
  assert.ok(closed.length > 0, 'the kill came before the move was complete (else this test proves nothing)');
  for (const c of working) assert.equal(c.lastGen, 2);

  // Those that work, work properly; the new generation serves a new client and counts exactly the live ones.
  await Promise.all(working.map((c) => c.stop()));
  assert.equal(problems(working), 'none');
  const [fresh] = await connectClients(1, { connect: { host: '127.0.0.1', port: s.port } });
  t.after(() => fresh!.socket.destroy());
  fresh!.start();
  await allAnsweredBy([fresh!], 2, 10_000);
  await fresh!.stop();
  const now = await serving(s);
  assert.equal(now.pid, gen2.pid, 'the new generation kept serving (no respawn)');
  assert.equal(
    await settle(async () => (await serving(s)).connections, working.length + 1),
    working.length + 1,
    'generation 2 counts exactly the live connections',
  );
  assert.equal(alive(gen1.pid), false);
  [...working, fresh!].forEach((c) => c.end());
  assert.equal(await s.shutdown(), 0);
});

test('reloads back to back while the previous move is still under way: no connection is lost', {
  timeout: 180_000,
}, async (t) => {
  const N = 300;
  // 25 connections every 400 ms: generation 1 needs about 5 s to move them all, while the next reloads
  // each take a fraction of that. Generation 2 is replaced while connections are still arriving from 1, and
  // 3 while they arrive from 2: each must wait for its predecessor to finish before it may exit.
  const s = await startSupervised(t, {
    app: ECHO,
    servingLine: ECHO_SERVING_TCP(1),
    env: { MIGRATE_CHUNK: '25', MIGRATE_PAUSE_MS: '400' },
  });
  const clients = await connectClients(N, { connect: { host: '127.0.0.1', port: s.port } });
  t.after(() => clients.forEach((c) => c.socket.destroy()));
  clients.forEach((c) => c.start());
  await allAnsweredBy(clients, 1, 30_000);
  const pids = [(await serving(s)).pid];
  for (let gen = 2; gen <= 4; gen++) {
    const r = await s.reload();
    assert.equal(r.code, 0, `reload to generation ${gen}: ${r.stdout} ${r.stderr}`);
    pids.push(Number(/\(pid (\d+)\) is serving/.exec(r.stdout)![1]));
    if (gen === 3)
      assert.doesNotMatch(
        s.sup.stdout(),
        /generation 1 moved \d+ of/,
        'generation 2 was replaced while generation 1 was still moving connections to it',
      );
  }
  await allAnsweredBy(clients, 4, 30_000);
  for (const pid of pids.slice(0, -1)) await waitExit(pid, 30_000, `generation ${pid} exits`);
  assert.equal(await settle(async () => (await serving(s)).connections, N), N, 'generation 4 holds every connection');
  await Promise.all(clients.map((c) => c.stop()));
  assert.equal(problems(clients), 'none');
  for (const c of clients) assert.equal(c.answered, c.sent);
  clients.forEach((c) => c.end());
  assert.equal(await s.shutdown(), 0);
});
