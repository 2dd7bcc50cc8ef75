/**
 * The fault matrix in standalone mode (docs/faults.md): no supervisor, generation 1 owns the control socket
 * and a second process started with the same BATON_SOCKET takes over. Each party — the new process and
 * the serving one — is SIGKILLed or stopped (SIGSTOP, the "hang") at one exact step of the takeover, under
 * a keep-alive load and a probe of fresh connections (test/fault-helpers.ts). Each cell asserts what the
 * user sees (failed requests, refused connections), which process serves afterwards and that it alone
 * accepts on the listener, and that no process is left. Without a supervisor nothing keeps a copy of the
 * listener: when the last process holding it dies, the port closes — the cells say exactly when.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnNode, tmpDir, waitFor, within, type Spawned } from './helpers.js';
import {
  cont,
  expectAllGone,
  expectLostAtMost,
  servedWithoutLoss,
  expectOnlyAccepting,
  FAULT_APP,
  faultHit,
  running,
  HANG_MS,
  heldUntilReplaced,
  servedBy,
  servingPid,
  servingRe,
  sleep,
  startTraffic,
  summary,
  type Traffic,
} from './fault-helpers.js';
import { baton } from './upgrade-helpers.js';

type Cleanup = Parameters<typeof tmpDir>[0];

interface Standalone {
  dir: string;
  socket: string;
  port: number;
  holdFile: string;
  gen1: Spawned;
  traffic: Traffic;
  procs: Spawned[];
  /** Start a successor (or any process) with the same control socket and port. */
  next(env?: NodeJS.ProcessEnv): Spawned;
  release(): void;
  /** Is `pid` a running process of this cell? */
  running(pid: number): boolean;
}

/** Generation 1 of the fault app with BATON_SOCKET, serving, under traffic. */
async function standalone(t: Cleanup, env: NodeJS.ProcessEnv = {}): Promise<Standalone> {
  const dir = tmpDir(t);
  const socket = path.join(dir, 'c.sock');
  const holdFile = path.join(dir, 'release');
  const procs: Spawned[] = [];
  const start = (extra: NodeJS.ProcessEnv) => {
    const p = spawnNode(t, FAULT_APP, [], { BATON_SOCKET: socket, HOLD_FILE: holdFile, ...extra });
    procs.push(p);
    return p;
  };
  const gen1 = start({ PORT: '0', ...env });
  const port = Number((await gen1.line(servingRe(1), 20_000))[1]);
  const traffic = await startTraffic(t, port);
  return {
    dir,
    socket,
    port,
    holdFile,
    gen1,
    traffic,
    procs,
    next: (e = {}) => start({ PORT: String(port), ...e }),
    release: () => fs.writeFileSync(holdFile, ''),
    running: (pid) => running(pid, `HOLD_FILE=${holdFile}`),
  };
}

/** `baton status` on the control socket names exactly this generation, serving. */
async function statusShows(socket: string, gen: number, pid: number): Promise<void> {
  const st = await baton(['status', '--json', '--socket', socket]);
  assert.equal(st.code, 0, st.stderr);
  const gens = (JSON.parse(st.stdout) as { generations: Array<{ generation: number; pid: number; state: string }> })
    .generations;
  assert.deepEqual(
    gens.map((g) => [g.generation, g.pid, g.state]),
    [[gen, pid, 'serving']],
  );
}

/** `baton stop` the serving process; then no process of the cell is left. */
async function stopAll(w: Standalone, serving: Spawned): Promise<void> {
  const stop = await baton(['stop', '--socket', w.socket]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal(await within(serving.exited, 20_000, 'the serving process exits on baton stop'), 0);
  await expectAllGone(
    w.procs.map((p) => p.pid),
    w.running,
    'every process of the cell is gone',
  );
}

const slowRequests = (w: Standalone, n: number, ms: number) =>
  heldUntilReplaced(w.port, w.gen1.pid, () => w.gen1.stdout(), n, ms);

const pidsOf = (w: Standalone) => w.procs.map((p) => p.pid);

// --- the new process ---------------------------------------------------------------------------------

test('standalone: new process SIGKILLed before auth: the serving one drops the connection, nothing lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await standalone(t);
  const n = w.next({ FAULT: 'before-auth:kill' });
  await faultHit(n, '0', 'before-auth');
  await within(n.exited, 10_000, 'the new process dies');
  await waitFor(
    () => /baton WARN control-refused gen=1 pid=\d+ reason=/.test(w.gen1.stderr()),
    10_000,
    'generation 1 drops the silent connection',
  );
  await servedWithoutLoss(t, w.traffic, w.port, pidsOf(w), 1, w.gen1.pid);
  await statusShows(w.socket, 1, w.gen1.pid);
  await stopAll(w, w.gen1);
});

test('standalone: new process hung before auth: another successor takes over meanwhile, nothing lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await standalone(t);
  const hung = w.next({ FAULT: 'before-auth:hang' });
  await faultHit(hung, '0', 'before-auth');
  // A silent connection does not make the serving generation busy: the next successor is not refused.
  const n = w.next();
  const nPid = await servingPid(n, 2);
  assert.equal(await within(w.gen1.exited, 20_000, 'generation 1 exits after the takeover'), 0);
  process.kill(hung.pid, 'SIGKILL');
  await servedWithoutLoss(t, w.traffic, w.port, pidsOf(w), 2, nPid);
  await servedBy(w.port, 2, nPid);
  await stopAll(w, n);
});

test('standalone: new process SIGKILLed after the inventory: rolled back, nothing lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await standalone(t);
  const n = w.next({ FAULT: 'after-inventory:kill' });
  await faultHit(n, 2, 'after-inventory');
  await waitFor(
    () => /baton WARN rollback gen=1 pid=\d+ next=2 /.test(w.gen1.stderr()),
    10_000,
    'generation 1 rolls back',
  );
  await servedWithoutLoss(t, w.traffic, w.port, pidsOf(w), 1, w.gen1.pid);
  await statusShows(w.socket, 1, w.gen1.pid);
  await stopAll(w, w.gen1);
});

test('standalone: new process hung mid-fd-transfer: rolled back at readyTimeout; continued, its ready() fails and it ' +
  'never serves', {
  timeout: 60_000,
}, async (t) => {
  const w = await standalone(t, { READY_TIMEOUT: '2000' });
  const n = w.next({ FAULT: 'mid-fd-transfer:hang' });
  await faultHit(n, 2, 'mid-fd-transfer');
  await waitFor(
    () => /baton WARN rollback gen=1 pid=\d+ next=2 .*reason="timed out after 2000 ms/.test(w.gen1.stderr()),
    10_000,
    'generation 1 rolls back at its readyTimeout',
  );
  await statusShows(w.socket, 1, w.gen1.pid);
  cont(n.pid);
  assert.equal(await within(n.exited, 10_000, 'the continued process exits'), 1);
  // Which of the two depends on whether its event loop saw the connection close before ready() ran.
  assert.match(
    n.stdout(),
    /generation 2 pid \d+ ready failed: ERR_BATON_ROLLED_BACK (the serving generation \(pid \d+\) ended the handoff before ready\(\)|the handoff did not complete: )/,
  );
  assert.doesNotMatch(n.stdout(), servingRe(2));
  await servedWithoutLoss(t, w.traffic, w.port, pidsOf(w), 1, w.gen1.pid);
  await stopAll(w, w.gen1);
});

test('standalone: new process SIGKILLed right after ready: the port closes (nothing keeps a copy); a restart serves ' +
  'again', {
  timeout: 60_000,
}, async (t) => {
  const w = await standalone(t);
  const startedAt = Date.now();
  const n = w.next({ FAULT: 'after-ready:kill' });
  await faultHit(n, 2, 'after-ready');
  await within(n.exited, 10_000, 'the new process dies');
  // Generation 1 had handed everything over, the control socket included: it drains and exits.
  assert.equal(await within(w.gen1.exited, 20_000, 'generation 1 drains and exits'), 0);
  await waitFor(
    () => w.traffic.probe.result.refused > 0,
    10_000,
    'fresh connections refused: no process holds the listener',
  );
  assert.deepEqual(pidsOf(w).filter(w.running), [], 'no process left');
  // The load would only spin on refusals from here: stop it (what it saw is part of the measurement).
  const load = await w.traffic.load.stop();
  t.diagnostic(`load: sent ${load.sent}, ok ${load.ok}, errors ${JSON.stringify(load.errorCodes)}`);
  assert.equal(load.sent, load.ok + load.errors);
  for (const code of Object.keys(load.errorCodes))
    assert.ok(['ECONNRESET', 'EPIPE', 'ECONNREFUSED'].includes(code), JSON.stringify(load.errorCodes));
  // The documented way back: start the app again. The stale control socket is replaced; it binds the port.
  const again = w.next();
  const againPid = await servingPid(again, 1);
  await servedBy(w.port, 1, againPid);
  const refused = w.traffic.probe.result.refused;
  const connected = w.traffic.probe.result.connected;
  await waitFor(() => w.traffic.probe.result.connected >= connected + 10, 10_000, 'the probe connecting again');
  const probe = await w.traffic.probe.stop();
  t.diagnostic(
    `probe: ${probe.attempts} connects, ${probe.connected} connected, ${probe.refused} refused (all while no process ` +
      `held the port)`,
  );
  assert.ok(
    probe.refusedAt.every((at) => at >= startedAt),
    'no refusal before the fault',
  );
  assert.equal(probe.refused, refused, 'no refusal once the restarted process serves');
  assert.deepEqual(probe.errors, {});
  await expectOnlyAccepting(w.port, pidsOf(w), againPid, 'the restarted process alone accepts');
  await stopAll(w, again);
});

test('standalone: new process hung right after ready, then continued: nothing lost', { timeout: 60_000 }, async (t) => {
  const w = await standalone(t);
  const n = w.next({ FAULT: 'after-ready:hang' });
  const hit = await faultHit(n, 2, 'after-ready');
  await sleep(HANG_MS);
  assert.equal(w.traffic.probe.result.refused, 0);
  cont(hit.pid);
  await servingPid(n, 2);
  assert.equal(await within(w.gen1.exited, 20_000, 'generation 1 exits'), 0);
  await servedWithoutLoss(t, w.traffic, w.port, pidsOf(w), 2, n.pid);
  await stopAll(w, n);
});

// --- the serving process -----------------------------------------------------------------------------

test('standalone: serving process SIGKILLed before the inventory (successor said hello): the successor starts as ' +
  'generation 1', {
  timeout: 60_000,
}, async (t) => {
  const w = await standalone(t, { FAULT: 'event:upgrade-start:kill' });
  const startedAt = Date.now();
  const n = w.next();
  await faultHit(w.gen1, 1, 'event:upgrade-start');
  // Its handshake broke; asked again, the socket refuses: it starts afresh instead of failing.
  const nPid = await servingPid(n, 1);
  await w.traffic.served('by the successor');
  const refused = w.traffic.probe.result.refused;
  await w.traffic.served('by the successor, once more');
  const r = await w.traffic.stop();
  t.diagnostic(summary(r));
  // Nothing held the listener between the kill and the successor's bind: refusals only in that window.
  assert.ok(
    r.probe.refusedAt.every((at) => at >= startedAt),
    `refusals before the fault: ${summary(r)}`,
  );
  assert.equal(r.probe.refused, refused, `refusals after the successor served: ${summary(r)}`);
  for (const code of Object.keys(r.load.errorCodes))
    assert.ok(['ECONNRESET', 'EPIPE', 'ECONNREFUSED'].includes(code), summary(r));
  await expectOnlyAccepting(w.port, pidsOf(w), nPid, 'the successor alone accepts');
  await statusShows(w.socket, 1, nPid);
  await stopAll(w, n);
});

test('standalone: serving process SIGKILLed while the successor has its inventory: the successor serves, no refusal', {
  timeout: 60_000,
}, async (t) => {
  const w = await standalone(t);
  const n = w.next({ FAULT: 'after-inventory:hold' });
  await faultHit(n, 2, 'after-inventory');
  process.kill(w.gen1.pid, 'SIGKILL');
  await within(w.gen1.exited, 10_000, 'generation 1 dies');
  await sleep(300);
  assert.equal(w.traffic.probe.result.refused, 0, 'the successor holds the listener: connections queue');
  w.release();
  await servingPid(n, 2);
  assert.match(
    n.stderr(),
    /baton listen gen=2 pid=\d+ name=web address=127\.0\.0\.1:\d+ inherited=true/,
    'it took the listener generation 1 had offered',
  );
  await w.traffic.served('by generation 2');
  expectLostAtMost(t, await w.traffic.stop(), 8); // generation 1's connections died with it
  await expectOnlyAccepting(w.port, pidsOf(w), n.pid, 'generation 2 alone accepts');
  await statusShows(w.socket, 2, n.pid);
  await stopAll(w, n);
});

test('standalone: serving process hung while the successor has its inventory, then continued: the takeover completes', {
  timeout: 60_000,
}, async (t) => {
  const w = await standalone(t);
  const n = w.next({ FAULT: 'after-inventory:hold' });
  await faultHit(n, 2, 'after-inventory');
  process.kill(w.gen1.pid, 'SIGSTOP');
  w.release(); // its ready waits for generation 1's acknowledgement
  await sleep(HANG_MS);
  cont(w.gen1.pid);
  await servingPid(n, 2);
  assert.equal(await within(w.gen1.exited, 20_000, 'generation 1 exits'), 0);
  await servedWithoutLoss(t, w.traffic, w.port, pidsOf(w), 2, n.pid);
  await stopAll(w, n);
});

test('standalone: serving process SIGKILLed when told to drain: at most one request per connection it held fails', {
  timeout: 60_000,
}, async (t) => {
  const w = await standalone(t, { FAULT: 'drain:kill' });
  const n = w.next();
  const hit = await faultHit(w.gen1, 1, 'drain');
  await servingPid(n, 2);
  await w.traffic.served('by generation 2');
  const r = await w.traffic.stop();
  t.diagnostic(`generation 1 held ${hit.connections} connections`);
  expectLostAtMost(t, r, hit.connections);
  await expectOnlyAccepting(w.port, pidsOf(w), n.pid, 'generation 2 alone accepts');
  await stopAll(w, n);
});

test('standalone: serving process SIGKILLed mid-drain: exactly its requests in flight fail', {
  timeout: 60_000,
}, async (t) => {
  const w = await standalone(t, { FAULT: 'mid-drain:kill' });
  const slow = await slowRequests(w, 3, 5000);
  const n = w.next();
  const hit = await faultHit(w.gen1, 1, 'mid-drain');
  assert.ok(hit.inflight >= 3);
  await servingPid(n, 2);
  assert.deepEqual(await Promise.all(slow), ['ECONNRESET', 'ECONNRESET', 'ECONNRESET']);
  await w.traffic.served('by generation 2');
  expectLostAtMost(t, await w.traffic.stop(), hit.connections - 3);
  await expectOnlyAccepting(w.port, pidsOf(w), n.pid, 'generation 2 alone accepts');
  await stopAll(w, n);
});

test('standalone: serving process hung mid-drain, then continued: its requests in flight complete, nothing lost', {
  timeout: 60_000,
}, async (t) => {
  const w = await standalone(t, { FAULT: 'mid-drain:hang' });
  const slow = await slowRequests(w, 3, 3000);
  const n = w.next();
  const hit = await faultHit(w.gen1, 1, 'mid-drain');
  assert.ok(hit.inflight >= 3, `generation 1 had ${hit.inflight} requests in flight`);
  await servingPid(n, 2);
  await sleep(HANG_MS);
  cont(w.gen1.pid);
  assert.deepEqual(await Promise.all(slow), [200, 200, 200]);
  assert.equal(await within(w.gen1.exited, 20_000, 'generation 1 exits'), 0);
  await servedWithoutLoss(t, w.traffic, w.port, pidsOf(w), 2, n.pid);
  await stopAll(w, n);
});
