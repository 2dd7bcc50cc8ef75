/**
 * The fault matrix under `baton run` (docs/faults.md): each party — the new generation (2), the old one (1),
 * the supervisor — is SIGKILLed or stopped (SIGSTOP, the "hang") at one exact step of a reload, while a
 * keep-alive load and a probe of fresh connections run (test/fault-helpers.ts). Each cell asserts what the
 * user sees: requests failed (none, or at most one per connection of the killed process, each a reset),
 * connections refused (none: the supervisor keeps the port open, and when it is gone the generations do),
 * which generation serves afterwards and that it alone accepts on the listener, `baton reload`'s exit code
 * and reason, and that every process the test saw is gone at the end (or, when the supervisor was killed,
 * exactly the generation that serves on without it).
 *
 * The app is test/fixtures/fault-app.ts; the step names are its own. Cells that existing tests cover are
 * referenced in docs/faults.md instead of repeated here (upgrade-rollback, upgrade-crash, migrate-edge).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { connectClients, allAnsweredBy, problems, type EchoClient } from './migrate-helpers.js';
import { waitFor } from './helpers.js';
import {
  acceptingPids,
  cont,
  expectAllGone,
  expectLostAtMost,
  expectNothingLost,
  servedWithoutLoss,
  expectOnlyAccepting,
  faultHit,
  FAULT_APP,
  HANG_MS,
  heldUntilReplaced,
  holds,
  listenerInode,
  servedBy,
  servingPid,
  servingRe,
  sleep,
  superviseFaultApp,
  type FaultWorld,
} from './fault-helpers.js';
import { startSupervised, type CliResult } from './upgrade-helpers.js';

function expectRolledBack(r: CliResult, reason: RegExp): void {
  assert.equal(r.code, 1, `baton reload: ${r.stdout} ${r.stderr}`);
  assert.match(r.stderr, /rolled back, the old generation keeps serving: /);
  assert.match(r.stderr, reason);
}

function expectReloaded(r: CliResult, generation: number): void {
  assert.equal(r.code, 0, `baton reload: ${r.stdout} ${r.stderr}`);
  assert.match(r.stdout, new RegExp(`generation ${generation} \\(pid \\d+\\) is serving`));
}

/** `baton reload` could not get an answer: the supervisor died under it. */
function expectReloadCutOff(r: CliResult): void {
  assert.equal(r.code, 1, `baton reload: ${r.stdout} ${r.stderr}`);
  assert.match(r.stderr, /baton reload: cannot reach .*: the peer closed the control connection/);
}

const fdsOf = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;

/** Poll until the supervisor holds `want` fds again (closes can lag behind the events that cause them). */
async function expectSupervisorFds(w: FaultWorld, want: number): Promise<void> {
  let now = fdsOf(w.s.sup.pid);
  await waitFor(() => (now = fdsOf(w.s.sup.pid)) === want, 5000, 'the supervisor back to its fd count').catch(() => {
    assert.fail(`the supervisor holds ${now} fds, ${want} before the reload`);
  });
}

/** The supervisor stops (SIGTERM) with `code`, and every process seen is gone. */
async function stopAll(w: FaultWorld, code = 0): Promise<void> {
  assert.equal(await w.s.shutdown(), code, w.s.sup.stderr().slice(-3000));
  await expectAllGone(w.pids(), w.running, 'every process of the cell exits with the supervisor');
}

/** The supervisor is dead: exactly `survivors` are still running (serving on without it); they are then
 * stopped and nothing is left. */
async function survivorsOnly(w: FaultWorld, survivors: number[]): Promise<void> {
  await waitFor(
    () => w.pids().filter(w.running).length === survivors.length,
    10_000,
    'only the survivors running',
  ).catch(() => {});
  assert.deepEqual(
    w.pids().filter(w.running).sort(),
    [...survivors].sort(),
    'processes still running after the supervisor died',
  );
  for (const pid of survivors) process.kill(pid, 'SIGTERM');
  await expectAllGone(w.pids(), w.running, 'the survivors stop on SIGTERM');
}

/** `n` echo clients against the echo port of generation 1, streaming and answered by it. */
async function echoClients(
  t: { after(fn: () => unknown): void },
  w: FaultWorld,
  n: number,
): Promise<{ port: number; clients: EchoClient[] }> {
  const port = Number(servingRe(1).exec(w.s.sup.stdout())![3]);
  const clients = await connectClients(n, { connect: { host: '127.0.0.1', port }, pauseMs: [20, 60] });
  t.after(() => clients.forEach((c) => c.socket.destroy()));
  clients.forEach((c) => c.start());
  await allAnsweredBy(clients, 1, 20_000);
  return { port, clients };
}

/** The end of an echo cell: every client stops with every message it sent answered, and nothing else wrong. */
async function echoesIntact(clients: EchoClient[]): Promise<void> {
  await Promise.all(clients.map((c) => c.stop()));
  assert.equal(problems(clients), 'none');
  for (const c of clients) assert.equal(c.answered, c.sent);
}

/** An echo cell whose connections moved to generation 2 (`pid`) ends: the echoes intact, no request lost,
 * generation 1 gone, generation 2 alone accepting on the echo port. */
async function echoesMovedTo(
  t: { diagnostic(msg: string): void },
  w: FaultWorld,
  port: number,
  clients: EchoClient[],
  pid: number,
): Promise<void> {
  await echoesIntact(clients);
  expectNothingLost(t, await w.traffic.stop());
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 exits');
  await expectOnlyAccepting(port, w.pids(), pid, 'generation 2 alone accepts on the echo port');
  clients.forEach((c) => c.end());
}

const slowRequests = (w: FaultWorld, n: number, ms: number | 'released') =>
  heldUntilReplaced(w.s.port, w.gen1, () => w.s.sup.stdout(), n, ms);

const ECHO = { ECHO_PORT: '0', MIGRATE_CHUNK: '10', MIGRATE_PAUSE_MS: '100' };

// --- the new generation ----------------------------------------------------------------------------

test('new generation SIGKILLed before auth (connected, nothing said): rolled back, nothing lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  const supFds = fdsOf(w.s.sup.pid);
  w.fault(2, 'before-auth', 'kill');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 2, 'before-auth');
  expectRolledBack(await reload, /exited on SIGKILL before ready\(\)/);
  await waitFor(
    () => /baton WARN control-refused supervisor=\d+ reason=/.test(w.s.sup.stderr()),
    10_000,
    'the supervisor drops the silent connection',
  );
  await w.traffic.served('by generation 1 after the rollback');
  expectNothingLost(t, await w.traffic.stop());
  assert.equal(w.running(hit.pid), false);
  await expectOnlyAccepting(w.s.port, w.pids(), w.gen1, 'generation 1 alone accepts');
  await servedBy(w.s.port, 1, w.gen1);
  await expectSupervisorFds(w, supFds);
  await stopAll(w);
});

test('new generation hung before auth: rolled back at --ready-timeout and killed; nothing lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t, { readyTimeout: 3 });
  w.fault(2, 'before-auth', 'hang');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 2, 'before-auth');
  expectRolledBack(await reload, /no ready\(\) within 3000 ms/);
  // SIGTERM waits while the process is stopped; the supervisor's SIGKILL follows 3 s later.
  await waitFor(() => !w.running(hit.pid), 15_000, 'the stopped generation is killed');
  await waitFor(
    () => /baton WARN control-refused supervisor=\d+ reason=/.test(w.s.sup.stderr()),
    10_000,
    'the supervisor drops the silent connection',
  );
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 1, w.gen1, ' after the rollback');
  await servedBy(w.s.port, 1, w.gen1);
  await stopAll(w);
});

test('new generation SIGKILLed after the inventory (fds received, none adopted): rolled back, nothing lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  const supFds = fdsOf(w.s.sup.pid);
  w.fault(2, 'after-inventory', 'kill');
  const reload = w.s.reload();
  await faultHit(w.s.sup, 2, 'after-inventory');
  expectRolledBack(await reload, /exited on SIGKILL before ready\(\)/);
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 1, w.gen1, ' after the rollback');
  await servedBy(w.s.port, 1, w.gen1);
  await expectSupervisorFds(w, supFds);
  await stopAll(w);
});

test('new generation hung after the inventory: rolled back at --ready-timeout, killed, its fds gone; nothing lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t, { readyTimeout: 3 });
  const supFds = fdsOf(w.s.sup.pid);
  w.fault(2, 'after-inventory', 'hang');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 2, 'after-inventory');
  const inode = listenerInode(w.s.port)!;
  assert.ok(holds(hit.pid, inode), 'the stopped generation holds the inherited listener');
  assert.deepEqual(acceptingPids(w.s.port, w.pids()), [w.gen1], 'holding is not accepting: generation 1 alone accepts');
  expectRolledBack(await reload, /no ready\(\) within 3000 ms/);
  await waitFor(() => !w.running(hit.pid), 15_000, 'the stopped generation is killed');
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 1, w.gen1, ' after the rollback');
  await expectSupervisorFds(w, supFds);
  await stopAll(w);
});

test('new generation SIGKILLed mid-fd-transfer (listener adopted, a fresh socket registered): rolled back, the ' +
  'supervisor drops the registered fd', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t, { env: { EXTRA: '2' } });
  const supFds = fdsOf(w.s.sup.pid);
  w.fault(2, 'mid-fd-transfer', 'kill');
  const reload = w.s.reload();
  await faultHit(w.s.sup, 2, 'mid-fd-transfer');
  const extraRe = /baton listen gen=2 pid=\d+ name=extra address=127\.0\.0\.1:(\d+) inherited=false/;
  await waitFor(
    () => extraRe.test(w.s.sup.stderr()),
    10_000,
    "the new generation's log line for 'extra' (relayed by the supervisor)",
  );
  const extraPort = Number(extraRe.exec(w.s.sup.stderr())![1]);
  expectRolledBack(await reload, /exited on SIGKILL before ready\(\)/);
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 1, w.gen1, ' after the rollback');
  await expectSupervisorFds(w, supFds);
  assert.equal(listenerInode(extraPort), null, 'the socket only the failed generation used is closed everywhere');
  await stopAll(w);
});

test('new generation hung mid-fd-transfer: rolled back at --ready-timeout and killed; the registered fd is dropped', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t, { readyTimeout: 3, env: { EXTRA: '2' } });
  const supFds = fdsOf(w.s.sup.pid);
  w.fault(2, 'mid-fd-transfer', 'hang');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 2, 'mid-fd-transfer');
  expectRolledBack(await reload, /no ready\(\) within 3000 ms/);
  await waitFor(() => !w.running(hit.pid), 15_000, 'the stopped generation is killed');
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 1, w.gen1, ' after the rollback');
  await expectSupervisorFds(w, supFds);
  await stopAll(w);
});

test('new generation SIGKILLed right after ready: a crash; generation 3 is respawned on the kept listener, no ' +
  'refusal', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  w.fault(2, 'after-ready', 'kill');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 2, 'after-ready');
  expectReloaded(await reload, 2); // it was ready: the reload succeeded, then it crashed
  const gen3 = await servingPid(w.s.sup, 3);
  await w.traffic.served('by generation 3');
  const r = await w.traffic.stop();
  t.diagnostic(`generation 2 held ${hit.connections} connections when killed`);
  // Generation 1's connections were moving to generation 2 when it died: those that moved die with it,
  // the others are closed by generation 1 (it cannot move them). Each loses at most the request on it.
  expectLostAtMost(t, r, 8);
  assert.match(
    w.s.sup.stderr(),
    new RegExp(`baton ERROR crash supervisor=\\d+ generation=2 child=${hit.pid} code=null signal=SIGKILL`),
  );
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 drains and exits');
  await expectOnlyAccepting(w.s.port, w.pids(), gen3, 'generation 3 alone accepts');
  await servedBy(w.s.port, 3, gen3);
  const st = await w.s.status();
  assert.deepEqual(
    st.upgrades.map((u) => [u.generation, u.kind, u.outcome]),
    [
      [1, 'start', 'serving'],
      [2, 'reload', 'serving'],
      [3, 'respawn', 'serving'],
    ],
  );
  await stopAll(w, 1); // the supervisor's exit code reports the crash
});

test('new generation SIGKILLed after ready, before the old one moved anything: the old one still answers every ' +
  'request on its connections', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  w.fault(1, 'drain', 'hold'); // generation 1 has its drain message, and moves nothing until released
  const reload = w.s.reload();
  await faultHit(w.s.sup, 1, 'drain');
  expectReloaded(await reload, 2);
  const n = await servingPid(w.s.sup, 2);
  process.kill(n, 'SIGKILL');
  await waitFor(
    () =>
      new RegExp(`baton ERROR crash supervisor=\\d+ generation=2 child=${n} code=null signal=SIGKILL`).test(
        w.s.sup.stderr(),
      ),
    10_000,
    'the supervisor sees generation 2 crash',
  );
  w.release();
  // Its connections cannot move (the successor is gone): they stay, the request each client sent meanwhile
  // is answered with Connection: close, and the clients reconnect — to generation 3, respawned.
  const gen3 = await servingPid(w.s.sup, 3);
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 drains and exits');
  await w.traffic.served('by generation 3');
  expectNothingLost(t, await w.traffic.stop());
  // The supervisor logs the exit when it reaps the child, which may be after the test saw the pid go.
  const exited = new RegExp(`baton exit supervisor=\\d+ generation=1 child=${w.gen1} code=0`);
  await waitFor(() => exited.test(w.s.sup.stderr()), 10_000, 'the supervisor logs generation 1 exiting with 0');
  await expectOnlyAccepting(w.s.port, w.pids(), gen3, 'generation 3 alone accepts');
  await stopAll(w, 1);
});

test('new generation hung right after ready, then continued: requests wait, none fails', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  w.fault(2, 'after-ready', 'hang');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 2, 'after-ready');
  await sleep(HANG_MS);
  assert.equal(w.traffic.probe.result.refused, 0, 'connections queue for the stopped generation: none refused');
  cont(hit.pid);
  expectReloaded(await reload, 2);
  await w.traffic.served('by generation 2 once continued');
  expectNothingLost(t, await w.traffic.stop());
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 drains and exits');
  await expectOnlyAccepting(w.s.port, w.pids(), hit.pid, 'generation 2 alone accepts');
  await servedBy(w.s.port, 2, hit.pid);
  await stopAll(w);
});

test('new generation SIGKILLed mid-migration: every echo connection is closed (none hangs), generation 3 serves', {
  timeout: 90_000,
}, async (t) => {
  const w = await superviseFaultApp(t, { env: ECHO });
  const { port, clients } = await echoClients(t, w, 40);
  w.fault(2, 'migrated:10', 'kill');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 2, 'migrated:10');
  expectReloaded(await reload, 2);
  const gen3 = await servingPid(w.s.sup, 3);
  // The 10 that moved died with generation 2; generation 1 cannot move the rest and closes them.
  await waitFor(() => clients.every((c) => c.closed), 20_000, 'every echo client sees its connection closed');
  assert.ok(clients.every((c) => c.lastGen <= 2));
  await w.traffic.served('by generation 3');
  expectLostAtMost(t, await w.traffic.stop(), 8);
  t.diagnostic(
    `echo: ${clients.filter((c) => c.lastGen === 2).length} answered by generation 2 before it died (${hit.echo} held)`,
  );
  const [fresh] = await connectClients(1, { connect: { host: '127.0.0.1', port } });
  t.after(() => fresh!.socket.destroy());
  fresh!.start();
  await allAnsweredBy([fresh!], 3, 10_000);
  await fresh!.stop();
  fresh!.end();
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 exits');
  await expectOnlyAccepting(port, w.pids(), gen3, 'generation 3 alone accepts on the echo port');
  await stopAll(w, 1);
});

test('new generation hung mid-migration, then continued: every echo connection carries on, nothing lost', {
  timeout: 90_000,
}, async (t) => {
  const w = await superviseFaultApp(t, { env: ECHO });
  const { port, clients } = await echoClients(t, w, 40);
  w.fault(2, 'migrated:10', 'hang');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 2, 'migrated:10');
  expectReloaded(await reload, 2);
  await sleep(HANG_MS);
  cont(hit.pid);
  await allAnsweredBy(clients, 2, 30_000);
  await w.s.sup.line(/generation 1 moved 40 of 40 echo connections/, 20_000);
  await echoesMovedTo(t, w, port, clients, hit.pid);
  await stopAll(w);
});

// --- the old generation ------------------------------------------------------------------------------

test('old generation SIGKILLed while the new one has its inventory: the port stays open, generation 2 serves', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  w.fault(2, 'after-inventory', 'hold');
  const reload = w.s.reload();
  const n = await faultHit(w.s.sup, 2, 'after-inventory');
  process.kill(w.gen1, 'SIGKILL');
  await waitFor(
    () =>
      new RegExp(`baton ERROR crash supervisor=\\d+ generation=1 child=${w.gen1} code=null signal=SIGKILL`).test(
        w.s.sup.stderr(),
      ),
    10_000,
    'the supervisor sees generation 1 crash',
  );
  // No generation accepts now (generation 2 holds the listener but polls it only from ready()): connections
  // wait in the queue of the kernel socket, which the supervisor's copy keeps open.
  assert.deepEqual(acceptingPids(w.s.port, w.pids()), [], 'nobody accepts while generation 2 holds');
  await sleep(300);
  assert.equal(w.traffic.probe.result.refused, 0);
  w.release();
  expectReloaded(await reload, 2);
  await w.traffic.served('by generation 2');
  expectLostAtMost(t, await w.traffic.stop(), 8); // generation 1's connections died with it
  await expectOnlyAccepting(w.s.port, w.pids(), n.pid, 'generation 2 alone accepts');
  await servedBy(w.s.port, 2, n.pid);
  const st = await w.s.status();
  assert.deepEqual(
    st.generations.map((g) => [g.generation, g.state]),
    [[2, 'serving']],
    'no respawn: the upgrade in progress took over',
  );
  await stopAll(w, 1);
});

test('old generation hung while the new one has its inventory: the upgrade completes; once continued it drains, ' +
  'nothing lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  w.fault(2, 'after-inventory', 'hold');
  const reload = w.s.reload();
  const n = await faultHit(w.s.sup, 2, 'after-inventory');
  process.kill(w.gen1, 'SIGSTOP');
  w.release();
  expectReloaded(await reload, 2);
  await sleep(HANG_MS);
  cont(w.gen1);
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 drains and exits once continued');
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 2, n.pid);
  await stopAll(w);
});

test('old generation SIGKILLed when told to drain: at most one request per connection it held fails; no refusal', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  w.fault(1, 'drain', 'kill');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 1, 'drain');
  expectReloaded(await reload, 2);
  const n = await servingPid(w.s.sup, 2);
  await w.traffic.served('by generation 2');
  const r = await w.traffic.stop();
  t.diagnostic(`generation 1 held ${hit.connections} connections, ${hit.inflight} requests in flight`);
  expectLostAtMost(t, r, hit.connections);
  assert.match(
    w.s.sup.stderr(),
    new RegExp(`baton exit supervisor=\\d+ generation=1 child=${w.gen1} code=null signal=SIGKILL`),
  );
  await expectOnlyAccepting(w.s.port, w.pids(), n, 'generation 2 alone accepts');
  await servedBy(w.s.port, 2, n);
  await stopAll(w);
});

test('old generation hung when told to drain, then continued: nothing lost', { timeout: 60_000 }, async (t) => {
  const w = await superviseFaultApp(t);
  w.fault(1, 'drain', 'hang');
  const reload = w.s.reload();
  await faultHit(w.s.sup, 1, 'drain');
  expectReloaded(await reload, 2);
  const n = await servingPid(w.s.sup, 2);
  await sleep(HANG_MS);
  cont(w.gen1);
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 drains and exits once continued');
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 2, n);
  await stopAll(w);
});

test('old generation SIGKILLed mid-drain: exactly its requests in flight fail', { timeout: 60_000 }, async (t) => {
  const w = await superviseFaultApp(t);
  const slow = await slowRequests(w, 3, 5000);
  w.fault(1, 'mid-drain', 'kill');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 1, 'mid-drain');
  expectReloaded(await reload, 2);
  const n = await servingPid(w.s.sup, 2);
  assert.deepEqual(
    await Promise.all(slow),
    ['ECONNRESET', 'ECONNRESET', 'ECONNRESET'],
    'the slow requests in flight died with generation 1',
  );
  assert.ok(hit.inflight >= 3, `generation 1 had ${hit.inflight} requests in flight`);
  await w.traffic.served('by generation 2');
  const r = await w.traffic.stop();
  t.diagnostic(`generation 1 held ${hit.connections} connections, ${hit.inflight} requests in flight`);
  expectLostAtMost(t, r, hit.connections - 3);
  await expectOnlyAccepting(w.s.port, w.pids(), n, 'generation 2 alone accepts');
  await stopAll(w);
});

test('old generation hung mid-drain, then continued: its requests in flight complete, nothing lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  const slow = await slowRequests(w, 3, 3000);
  w.fault(1, 'mid-drain', 'hang');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 1, 'mid-drain');
  assert.ok(hit.inflight >= 3, `generation 1 had ${hit.inflight} requests in flight`);
  expectReloaded(await reload, 2);
  const n = await servingPid(w.s.sup, 2);
  await sleep(HANG_MS);
  cont(w.gen1);
  assert.deepEqual(await Promise.all(slow), [200, 200, 200]);
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 drains and exits once continued');
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 2, n);
  await stopAll(w);
});

test('old generation hung mid-migration, then continued: the move completes, every echo connection carries on', {
  timeout: 90_000,
}, async (t) => {
  const w = await superviseFaultApp(t, { env: ECHO });
  const { port, clients } = await echoClients(t, w, 40);
  w.fault(1, 'moved:10', 'hang');
  const reload = w.s.reload();
  await faultHit(w.s.sup, 1, 'moved:10');
  expectReloaded(await reload, 2);
  const n = await servingPid(w.s.sup, 2);
  // The 10 moved are served by generation 2 while generation 1 is stopped.
  await waitFor(
    () => clients.filter((c) => c.lastGen === 2).length >= 10,
    10_000,
    'the moved connections answered by generation 2',
  );
  await sleep(HANG_MS);
  cont(w.gen1);
  await allAnsweredBy(clients, 2, 30_000);
  await echoesMovedTo(t, w, port, clients, n);
  await stopAll(w);
});

// --- the supervisor ----------------------------------------------------------------------------------

test('supervisor SIGKILLed while the new generation is connecting (before auth): it fails to start, generation 1 ' +
  'serves on', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  w.fault(2, 'before-auth', 'hold');
  const reload = w.s.reload();
  const n = await faultHit(w.s.sup, 2, 'before-auth');
  process.kill(w.s.sup.pid, 'SIGKILL');
  await w.s.sup.exited;
  w.release();
  expectReloadCutOff(await reload);
  await waitFor(() => !w.running(n.pid), 10_000, 'the new generation gives up (nothing listens on the control socket)');
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 1, w.gen1, ', unsupervised');
  await servedBy(w.s.port, 1, w.gen1);
  await survivorsOnly(w, [w.gen1]);
});

test('supervisor hung while the new generation is connecting, then continued: the upgrade completes', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  w.fault(2, 'before-auth', 'hold');
  const reload = w.s.reload();
  const n = await faultHit(w.s.sup, 2, 'before-auth');
  process.kill(w.s.sup.pid, 'SIGSTOP');
  w.release(); // its hello waits in the control socket's queue
  await sleep(HANG_MS);
  cont(w.s.sup.pid);
  expectReloaded(await reload, 2);
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 drains and exits');
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 2, n.pid);
  await stopAll(w);
});

test("supervisor SIGKILLed after sending the inventory: the new generation's ready() fails (ERR_BATON_ROLLED_BACK); " +
  'generation 1 serves on', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  w.fault(2, 'after-inventory', 'hold');
  const reload = w.s.reload();
  const n = await faultHit(w.s.sup, 2, 'after-inventory');
  process.kill(w.s.sup.pid, 'SIGKILL');
  await w.s.sup.exited;
  w.release();
  expectReloadCutOff(await reload);
  // listen() still takes the inherited listener (the offered fds outlive the control connection), but nobody
  // would ever tell generation 1 to stop: ready() refuses to serve beside it.
  const failed = await w.s.sup.line(/generation 2 pid \d+ ready failed: (\S+) (.*)/, 10_000);
  assert.equal(failed[1], 'ERR_BATON_ROLLED_BACK');
  assert.match(failed[2]!, /the supervisor \(pid \d+\) closed the control connection before ready\(\)/);
  await waitFor(() => !w.running(n.pid), 10_000, 'the new generation exits');
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 1, w.gen1, ', unsupervised');
  await survivorsOnly(w, [w.gen1]);
});

test("supervisor SIGKILLed mid-fd-transfer: the new generation's ready() fails (ERR_BATON_ROLLED_BACK) instead of " +
  'serving beside generation 1', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t, { env: { EXTRA: '2' } });
  w.fault(2, 'mid-fd-transfer', 'hold');
  const reload = w.s.reload();
  const n = await faultHit(w.s.sup, 2, 'mid-fd-transfer');
  process.kill(w.s.sup.pid, 'SIGKILL');
  await w.s.sup.exited;
  w.release();
  expectReloadCutOff(await reload);
  const failed = await w.s.sup.line(/generation 2 pid \d+ ready failed: (\S+) (.*)/, 10_000);
  assert.equal(failed[1], 'ERR_BATON_ROLLED_BACK');
  assert.match(failed[2]!, /the supervisor \(pid \d+\) closed the control connection before ready\(\)/);
  assert.doesNotMatch(w.s.sup.stdout(), servingRe(2), 'generation 2 never served');
  await waitFor(() => !w.running(n.pid), 10_000, 'the new generation exits');
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 1, w.gen1, ', unsupervised');
  await survivorsOnly(w, [w.gen1]);
});

test('supervisor hung mid-fd-transfer, then continued: the upgrade completes, nothing lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t, { env: { EXTRA: '2' } });
  w.fault(2, 'mid-fd-transfer', 'hold');
  const reload = w.s.reload();
  const n = await faultHit(w.s.sup, 2, 'mid-fd-transfer');
  process.kill(w.s.sup.pid, 'SIGSTOP');
  w.release();
  // ready() waits for the supervisor's acknowledgement before generation 2 accepts, and generation 1 for its
  // drain message: generation 1 alone accepts meanwhile, and serves.
  await sleep(HANG_MS);
  await expectOnlyAccepting(w.s.port, w.pids(), w.gen1, 'generation 1 alone accepts while the supervisor hangs');
  assert.equal(w.traffic.probe.result.refused, 0);
  cont(w.s.sup.pid);
  expectReloaded(await reload, 2);
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 drains and exits');
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 2, n.pid);
  await stopAll(w);
});

test('supervisor SIGKILLed after ready: generation 1 drains and exits by itself, generation 2 serves on; nothing ' +
  'lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  w.fault(1, 'drain', 'hold'); // generation 1 has its drain message: the supervisor has sent ready-ok too
  const reload = w.s.reload();
  await faultHit(w.s.sup, 1, 'drain');
  process.kill(w.s.sup.pid, 'SIGKILL');
  await w.s.sup.exited;
  w.release();
  const r = await reload;
  assert.ok(
    r.code === 0 || /the peer closed the control connection/.test(r.stderr),
    `baton reload: ${r.code} ${r.stdout} ${r.stderr}`,
  );
  const n = await servingPid(w.s.sup, 2);
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 drains and exits without its supervisor');
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 2, n, ', unsupervised');
  await servedBy(w.s.port, 2, n);
  await survivorsOnly(w, [n]);
});

test('supervisor SIGKILLed mid-drain: the old generation finishes its requests in flight and exits; nothing lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  // In flight from generation 1's drain until the test's release() (no fixed hold to wait out).
  const slow = await slowRequests(w, 3, 'released');
  w.fault(1, 'mid-drain', 'hold');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 1, 'mid-drain');
  assert.ok(hit.inflight >= 3);
  expectReloaded(await reload, 2);
  const n = await servingPid(w.s.sup, 2);
  process.kill(w.s.sup.pid, 'SIGKILL');
  await w.s.sup.exited;
  w.release();
  assert.deepEqual(await Promise.all(slow), [200, 200, 200]);
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 drains and exits without its supervisor');
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 2, n, ', unsupervised');
  await survivorsOnly(w, [n]);
});

test('supervisor hung mid-drain, then continued: nothing lost, the old generation is reaped', {
  timeout: 60_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  // In flight from generation 1's drain until the test's release() (no fixed hold to wait out).
  const slow = await slowRequests(w, 3, 'released');
  w.fault(1, 'mid-drain', 'hold');
  const reload = w.s.reload();
  const hit = await faultHit(w.s.sup, 1, 'mid-drain');
  assert.ok(hit.inflight >= 3, `generation 1 had ${hit.inflight} requests in flight`);
  expectReloaded(await reload, 2);
  const n = await servingPid(w.s.sup, 2);
  process.kill(w.s.sup.pid, 'SIGSTOP');
  w.release();
  assert.deepEqual(await Promise.all(slow), [200, 200, 200]);
  await waitFor(() => !w.running(w.gen1), 15_000, 'generation 1 exits (a zombie until the supervisor continues)');
  cont(w.s.sup.pid);
  await waitFor(
    () => new RegExp(`baton exit supervisor=\\d+ generation=1 child=${w.gen1} code=0`).test(w.s.sup.stderr()),
    10_000,
    'the supervisor reaps generation 1',
  );
  await servedWithoutLoss(t, w.traffic, w.s.port, w.pids(), 2, n);
  await stopAll(w);
});

test('supervisor SIGKILLed mid-migration: the move goes on (it does not pass through the supervisor), nothing lost', {
  timeout: 90_000,
}, async (t) => {
  const w = await superviseFaultApp(t, { env: ECHO });
  const { port, clients } = await echoClients(t, w, 40);
  w.fault(1, 'moved:10', 'hold');
  const reload = w.s.reload();
  await faultHit(w.s.sup, 1, 'moved:10');
  expectReloaded(await reload, 2);
  const n = await servingPid(w.s.sup, 2);
  process.kill(w.s.sup.pid, 'SIGKILL');
  await w.s.sup.exited;
  w.release();
  await allAnsweredBy(clients, 2, 30_000);
  await w.s.sup.line(/generation 1 moved 40 of 40 echo connections/, 20_000);
  await echoesMovedTo(t, w, port, clients, n);
  await survivorsOnly(w, [n]);
});

// --- supervisor SIGKILL → takeover (src/cli/takeover.ts; more in test/takeover.test.ts) ----------------

/** `baton run` the fault app again on the same control socket, once the first supervisor is dead. */
function superviseAgain(
  t: { after(fn: () => unknown): void },
  w: FaultWorld,
  gen: number,
  env: NodeJS.ProcessEnv = {},
) {
  return startSupervised(t, {
    app: FAULT_APP,
    dir: w.s.dir,
    env: { FAULT_FILE: w.faultFile, HOLD_FILE: w.holdFile, ...env },
    servingLine: servingRe(gen),
  });
}

test('supervisor SIGKILL → takeover: a new baton run on the same socket takes over the orphan; echo connections move ' +
  '(migrate()), nothing lost', {
  timeout: 90_000,
}, async (t) => {
  const w = await superviseFaultApp(t, { env: ECHO });
  const { port, clients } = await echoClients(t, w, 40);
  process.kill(w.s.sup.pid, 'SIGKILL');
  await w.s.sup.exited;
  await w.traffic.served('by the orphan');
  const s2 = await superviseAgain(t, w, 2, ECHO);
  assert.equal(s2.port, w.s.port);
  const n = await servingPid(s2.sup, 2);
  await allAnsweredBy(clients, 2, 30_000);
  await w.s.sup.line(/generation 1 moved 40 of 40 echo connections/, 20_000); // the orphan's stdout is still this pipe
  await echoesIntact(clients);
  await waitFor(() => !w.running(w.gen1), 15_000, 'the orphan exits');
  const pids = [...w.pids(), ...s2.generationPids()];
  await servedWithoutLoss(t, w.traffic, w.s.port, pids, 2, n, ' after the takeover');
  await expectOnlyAccepting(port, pids, n, 'generation 2 alone accepts on the echo port');
  clients.forEach((c) => c.end());
  assert.equal(await s2.shutdown(), 0);
  await expectAllGone(pids, w.running, 'every process of the cell exits with the new supervisor');
});

test('supervisor SIGKILL mid-drain → takeover: two orphans; the new baton run takes over the serving one, the ' +
  'draining one finishes alone', {
  timeout: 90_000,
}, async (t) => {
  const w = await superviseFaultApp(t);
  // In flight from generation 1's drain until the test's release() (no fixed hold to wait out).
  const slow = await slowRequests(w, 3, 'released');
  w.fault(1, 'mid-drain', 'hold');
  const reload = w.s.reload();
  await faultHit(w.s.sup, 1, 'mid-drain');
  expectReloaded(await reload, 2);
  const n2 = await servingPid(w.s.sup, 2);
  process.kill(w.s.sup.pid, 'SIGKILL');
  await w.s.sup.exited;
  const s2 = await superviseAgain(t, w, 3);
  assert.ok(w.running(w.gen1), 'generation 1 was still draining during the takeover');
  assert.match(s2.sup.stderr(), new RegExp(`baton takeover supervisor=${s2.sup.pid} orphan=${n2} generation=2 `));
  w.release();
  assert.deepEqual(await Promise.all(slow), [200, 200, 200], 'the draining orphan finished its requests');
  const n3 = await servingPid(s2.sup, 3);
  await waitFor(() => !w.running(w.gen1) && !w.running(n2), 15_000, 'both orphans exit');
  const pids = [...w.pids(), ...s2.generationPids()];
  await servedWithoutLoss(t, w.traffic, w.s.port, pids, 3, n3, ' after the takeover');
  assert.equal(await s2.shutdown(), 0);
  await expectAllGone(pids, w.running, 'every process of the cell exits with the new supervisor');
});
