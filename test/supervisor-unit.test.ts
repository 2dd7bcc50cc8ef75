/**
 * The supervisor's state machine (start, ready, rollback, crash, hang, stop, crash loop) against a fake
 * process interface (test/supervisor-fake.ts): no process is spawned and no timer waits — the test moves
 * the supervisor's clock, plays each generation over the real control socket, and says when it exits.
 * The same paths with real processes stay in upgrade-*.test.ts, crash-loop.test.ts and fault-*.test.ts.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { moveTo, TRANSITIONS, type Generation } from '../src/cli/generation.js';
import { Supervisor, type SupervisorOptions } from '../src/cli/supervisor.js';
import { GenerationClient } from '../src/handoff/client.js';
import { Inventory } from '../src/handoff/inventory.js';
import type { InventoryEntry } from '../src/handoff/messages.js';
import type { LogFields } from '../src/upgrader/logger.js';
import { tmpDir, waitFor, within } from './helpers.js';
import { FakeProcess } from './supervisor-fake.js';

const READY_TIMEOUT = 5000;
/** Each test takes well under a second; a transition that breaks must fail, not hang the suite. */
const UNIT = { timeout: 20_000 };
const DRAIN_TIMEOUT = 4000;

interface Started {
  sup: Supervisor;
  os: FakeProcess;
  socket: string;
  events: Array<{ level: string; event: string; fields: LogFields }>;
  saw(event: string, fields?: LogFields): boolean;
}

type Cleanup = { after(fn: () => void): void };

async function startFake(t: Cleanup, opts: Partial<SupervisorOptions> = {}): Promise<Started> {
  const os = new FakeProcess();
  const socket = path.join(tmpDir(t), 'control.sock');
  const events: Started['events'] = [];
  const logger = {
    log: (level: string, event: string, fields: LogFields = {}) => events.push({ level, event, fields }),
  };
  const sup = new Supervisor(
    {
      command: ['app.js'],
      socket,
      logger,
      logFormat: 'text',
      readyTimeoutMs: READY_TIMEOUT,
      drainTimeoutMs: DRAIN_TIMEOUT,
      ...opts,
    },
    os,
  );
  await sup.start();
  t.after(() => {
    if (!sup.status().supervisor.stopping) sup.stop('test end');
    sup.stop('test end (force)');
  });
  const saw = (event: string, fields: LogFields = {}) =>
    events.some((e) => e.event === event && Object.entries(fields).every(([k, v]) => e.fields[k] === v));
  return { sup, os, socket, events, saw };
}

/** Wait until the supervisor has spawned its `n`th child; returns its pid. */
async function spawned(s: Started, n: number): Promise<number> {
  await waitFor(() => s.os.children.length >= n, 10_000, `spawn number ${n}`);
  return s.os.children[n - 1]!.pid;
}

/** Play generation `generation`: join the control socket and (unless told not to) call ready(). */
async function join(t: Cleanup, s: Started, generation: number, ready = true): Promise<GenerationClient> {
  const client = await GenerationClient.join(s.socket, { generation, timeoutMs: 10_000 });
  t.after(() => client.close());
  if (ready) await client.ready([], 10_000);
  return client;
}

function stateOf(s: Started, generation: number): string | undefined {
  return s.sup.status().generations.find((g) => g.generation === generation)?.state;
}

/** Start the supervisor and have generation 1 serve; returns its pid and client. */
async function firstServing(t: Cleanup, opts: Partial<SupervisorOptions> = {}) {
  const s = await startFake(t, opts);
  const pid1 = await spawned(s, 1);
  const gen1 = await join(t, s, 1);
  await waitFor(() => stateOf(s, 1) === 'serving', 10_000, 'generation 1 serving');
  return { s, pid1, gen1 };
}

/** The reason of the next drain message `client` gets. */
function drainReason(client: GenerationClient): Promise<string> {
  return new Promise<string>((resolve) => client.on('drain', (msg) => resolve(msg.reason)));
}

test('the transition table: a generation moves only along it', () => {
  const g = { generation: 7, state: 'starting' } as Generation;
  const illegal = { code: 'ERR_BATON_STATE', message: /cannot go from starting to draining/ };
  assert.throws(() => moveTo(g, 'draining', 1), illegal);
  moveTo(g, 'serving', 5);
  assert.equal(g.readyAt, 5);
  assert.throws(() => moveTo(g, 'starting', 6), { code: 'ERR_BATON_STATE' });
  moveTo(g, 'draining', 9);
  assert.equal(g.drainStartedAt, 9);
  moveTo(g, 'exited', 10);
  for (const to of Object.keys(TRANSITIONS) as Array<Generation['state']>) {
    assert.throws(() => moveTo(g, to, 11), { code: 'ERR_BATON_STATE' });
  }
});

test('start: the first generation joins, calls ready() and serves; the upgrade record says so', UNIT, async (t) => {
  const s = await startFake(t);
  const pid = await spawned(s, 1);
  assert.equal(stateOf(s, 1), 'starting');
  assert.equal(s.os.child(pid).env.BATON_GENERATION, '1');
  await join(t, s, 1);
  await waitFor(() => stateOf(s, 1) === 'serving', 10_000, 'generation 1 serving');
  const record = s.sup.status().upgrades.at(-1)!;
  assert.deepEqual([record.kind, record.outcome, record.pid], ['start', 'serving', pid]);
  assert.deepEqual(s.os.child(pid).signals, [], 'nothing killed');
});

test('hang: no ready() in time: rolled back, SIGTERM then SIGKILL, a respawn after the backoff', UNIT, async (t) => {
  const s = await startFake(t);
  const pid = await spawned(s, 1);
  const client = await join(t, s, 1, false);
  s.os.advance(READY_TIMEOUT - 1);
  assert.equal(stateOf(s, 1), 'starting', 'not yet');
  assert.deepEqual(s.os.child(pid).signals, []);
  s.os.advance(1);
  assert.ok(s.saw('rollback', { generation: 1, reason: `no ready() within ${READY_TIMEOUT} ms` }));
  assert.deepEqual(s.os.child(pid).signals, ['SIGTERM']);
  await waitFor(() => client.state === 'closed', 10_000, 'the supervisor closes its control connection');
  // Nothing serves: the next start is scheduled at the rollback, after the first backoff (100 ms).
  assert.ok(s.saw('respawn-scheduled', { inMs: 100 }));
  s.os.advance(99);
  assert.equal(s.os.children.length, 1, 'the respawn waits for its backoff');
  s.os.advance(1);
  const pid2 = await spawned(s, 2);
  assert.equal(s.os.child(pid2).env.BATON_GENERATION, '2');
  s.os.advance(2900);
  assert.deepEqual(s.os.child(pid).signals, ['SIGTERM', 'SIGKILL'], 'SIGKILL after the kill grace');
  s.os.exit(pid, null, 'SIGKILL');
  assert.equal(stateOf(s, 1), undefined, 'gone from status');
  await join(t, s, 2);
  await waitFor(() => stateOf(s, 2) === 'serving', 10_000, 'generation 2 serving');
});

test('exit before ready(): rolled back with its exit and last output', UNIT, async (t) => {
  const s = await startFake(t);
  const pid = await spawned(s, 1);
  await s.os.stderr(pid, 'Error: Cannot find module app.js\n');
  s.os.exit(pid, 1);
  const rollback = s.events.find((e) => e.event === 'rollback')!;
  const reason = /^exited with code 1 before ready\(\); last output:\nError: Cannot find module app\.js/;
  assert.match(String(rollback.fields.reason), reason);
  assert.equal(s.sup.status().upgrades.at(-1)!.outcome, 'rolled-back');
});

test('reload: the new generation serves, the old one drains and exits; SIGKILL if it does not', UNIT, async (t) => {
  const { s, pid1, gen1 } = await firstServing(t);
  const drained = drainReason(gen1);
  const reload = s.sup.reload();
  const pid2 = await spawned(s, 2);
  await join(t, s, 2);
  const record = await within(reload, 10_000, 'the reload');
  assert.deepEqual([record.kind, record.outcome, record.generation], ['reload', 'serving', 2]);
  assert.equal(await within(drained, 10_000, 'drain'), 'upgrade');
  assert.equal(stateOf(s, 1), 'draining');
  s.os.advance(DRAIN_TIMEOUT + 2999);
  assert.deepEqual(s.os.child(pid1).signals, []);
  s.os.advance(1);
  assert.deepEqual(s.os.child(pid1).signals, ['SIGKILL'], 'still draining after drain timeout + grace');
  s.os.exit(pid1, null, 'SIGKILL');
  assert.ok(s.saw('exit', { generation: 1 }));
  assert.equal(stateOf(s, 2), 'serving');
  assert.deepEqual(s.os.child(pid2).signals, []);
});

test('crash: a serving generation exits; the listeners stay and another starts after the backoff', UNIT, async (t) => {
  const { s, pid1 } = await firstServing(t, { minUptimeMs: 1000 });
  s.os.advance(2000); // up longer than min-uptime: not a failed start
  s.os.exit(pid1, 1);
  assert.ok(s.saw('crash', { generation: 1, code: 1 }));
  assert.ok(s.saw('respawn-scheduled'));
  s.os.advance(100);
  await spawned(s, 2);
  assert.equal(s.sup.status().upgrades.at(-1)!.kind, 'respawn');
  assert.equal(s.sup.status().supervisor.restarts, 1);
});

for (const code of [1, 0]) {
  test(
    `crash with code ${code}: the respawned generation serves; at stop the supervisor exits ${code}`,
    UNIT,
    async (t) => {
      const { s, pid1 } = await firstServing(t, { minUptimeMs: 1000 });
      s.os.advance(2000); // up longer than min-uptime: a crash, not a failed start
      s.os.exit(pid1, code);
      s.os.advance(100); // the first backoff
      const pid2 = await spawned(s, 2);
      const gen2 = await join(t, s, 2);
      await waitFor(() => stateOf(s, 2) === 'serving', 10_000, 'generation 2 serving');
      const drained = drainReason(gen2);
      s.sup.stop('SIGTERM');
      assert.equal(await within(drained, 10_000, 'drain'), 'stop');
      s.os.exit(pid2, 0);
      // The supervisor's exit code reports the crash (a code other than 0), though it stopped cleanly.
      assert.equal(await within(s.sup.finished, 10_000, 'the supervisor exits'), code);
    },
  );
}

test('crash loop: --max-starts failed starts in a row and the supervisor gives up, exit 1', UNIT, async (t) => {
  const s = await startFake(t, { maxStarts: 3 });
  for (let n = 1; n <= 3; n++) {
    const pid = await spawned(s, n);
    s.os.exit(pid, 1);
    s.os.advance(10_000); // past any backoff
  }
  assert.equal(await within(s.sup.finished, 10_000, 'the supervisor gives up'), 1);
  assert.ok(s.saw('give-up', { failedStarts: 3, generation: 3 }));
  assert.match(s.sup.failure ?? '', /^3 starts in a row failed; the last, generation 3/);
  assert.equal(s.os.children.length, 3, 'no fourth start');
});

test('stop: the serving generation is told to drain; the supervisor exits 0 once it has', UNIT, async (t) => {
  const { s, pid1, gen1 } = await firstServing(t);
  const drained = drainReason(gen1);
  s.sup.stop('SIGTERM');
  assert.equal(await within(drained, 10_000, 'drain'), 'stop');
  s.os.exit(pid1, 0);
  assert.equal(await within(s.sup.finished, 10_000, 'the supervisor exits'), 0);
  assert.ok(s.saw('supervisor-exit', { code: 0 }));
});

test('stop while a generation starts: it is terminated (it has nothing to drain)', UNIT, async (t) => {
  const s = await startFake(t);
  const pid = await spawned(s, 1);
  s.sup.stop('SIGTERM');
  assert.deepEqual(s.os.child(pid).signals, ['SIGTERM']);
  s.os.exit(pid, null, 'SIGTERM');
  assert.equal(await within(s.sup.finished, 10_000, 'the supervisor exits'), 0);
});

test('reload, the new one fails before ready(): rolled back, the old one serves on untouched', UNIT, async (t) => {
  const { s, pid1, gen1 } = await firstServing(t);
  let drained = false;
  gen1.on('drain', () => (drained = true));
  const reload = s.sup.reload();
  const pid2 = await spawned(s, 2);
  await s.os.stderr(pid2, 'Error: listen EADDRINUSE: address already in use 127.0.0.1:8080\n');
  s.os.exit(pid2, 1);
  const record = await within(reload, 10_000, 'the reload');
  assert.deepEqual([record.kind, record.outcome, record.generation], ['reload', 'rolled-back', 2]);
  assert.match(record.reason ?? '', /^exited with code 1 before ready\(\); last output:\nError: listen EADDRINUSE/);
  assert.match(record.reason ?? '', /hint: the address is in use/);
  assert.equal(stateOf(s, 1), 'serving');
  assert.equal(stateOf(s, 2), undefined);
  assert.deepEqual(s.os.child(pid1).signals, [], 'the old generation is not signalled');
  assert.equal(drained, false, 'nor told to drain');
  assert.equal(s.os.children.length, 2, 'no respawn: a generation serves');
  s.os.advance(60_000);
  assert.equal(s.os.children.length, 2, 'still none');
  assert.equal(s.sup.status().tallies.reloads.rolledBack, 1);
});

test('reload, the new generation hangs: killed after ready-timeout, the old one serves on', UNIT, async (t) => {
  const { s, pid1 } = await firstServing(t);
  const reload = s.sup.reload();
  const pid2 = await spawned(s, 2);
  await join(t, s, 2, false);
  s.os.advance(READY_TIMEOUT);
  const record = await within(reload, 10_000, 'the reload');
  assert.equal(record.outcome, 'rolled-back');
  assert.equal(record.reason, `no ready() within ${READY_TIMEOUT} ms`);
  assert.deepEqual(s.os.child(pid2).signals, ['SIGTERM']);
  s.os.advance(3000);
  assert.deepEqual(s.os.child(pid2).signals, ['SIGTERM', 'SIGKILL']);
  s.os.exit(pid2, null, 'SIGKILL');
  assert.equal(stateOf(s, 1), 'serving');
  assert.deepEqual(s.os.child(pid1).signals, []);
  assert.equal(s.os.children.length, 2, 'no respawn');
});

test('crash loop: each early crash doubles the backoff; serving --min-uptime resets the count', UNIT, async (t) => {
  const s = await startFake(t, { maxStarts: 3, minUptimeMs: 1000 });
  // Generation 1 serves, then crashes within min-uptime: a failed start, respawn after 100 ms.
  let pid = await spawned(s, 1);
  await join(t, s, 1);
  await waitFor(() => stateOf(s, 1) === 'serving', 10_000, 'generation 1 serving');
  s.os.advance(500);
  s.os.exit(pid, 1);
  assert.equal(s.sup.status().supervisor.failedStarts, 1);
  assert.ok(s.saw('respawn-scheduled', { inMs: 100 }));
  s.os.advance(100);
  // Generation 2 never calls ready(): it exits; the next backoff is 200 ms.
  pid = await spawned(s, 2);
  s.os.exit(pid, 1);
  assert.equal(s.sup.status().supervisor.failedStarts, 2);
  assert.ok(s.saw('respawn-scheduled', { inMs: 200 }));
  s.os.advance(199);
  assert.equal(s.os.children.length, 2, 'the respawn waits for its backoff');
  s.os.advance(1);
  // Generation 3 serves past min-uptime: the count is back to 0 and a later crash is no failed start.
  pid = await spawned(s, 3);
  await join(t, s, 3);
  await waitFor(() => stateOf(s, 3) === 'serving', 10_000, 'generation 3 serving');
  assert.equal(s.sup.status().supervisor.failedStarts, 2, 'not before min-uptime');
  s.os.advance(1000);
  assert.equal(s.sup.status().supervisor.failedStarts, 0, 'reset after min-uptime');
  s.os.exit(pid, 1);
  assert.equal(s.sup.status().supervisor.failedStarts, 0);
  const last = s.events.filter((e) => e.event === 'respawn-scheduled').at(-1)!;
  assert.equal(last.fields.inMs, 100, 'a generation that served resets the backoff');
  s.os.advance(100);
  await spawned(s, 4);
  assert.equal(s.sup.status().supervisor.stopping, false, 'no give-up');
});

test('stop while a reload runs: the starting generation is terminated, the serving one drains', UNIT, async (t) => {
  const { s, pid1, gen1 } = await firstServing(t);
  const drained = drainReason(gen1);
  const reload = s.sup.reload();
  const pid2 = await spawned(s, 2);
  await join(t, s, 2, false);
  s.sup.stop('SIGTERM');
  assert.deepEqual(s.os.child(pid2).signals, ['SIGTERM']);
  assert.equal(await within(drained, 10_000, 'drain'), 'stop');
  await assert.rejects(s.sup.reload(), { code: 'ERR_BATON_STATE' }, 'no reload while stopping');
  s.os.exit(pid2, null, 'SIGTERM');
  const record = await within(reload, 10_000, 'the reload');
  assert.deepEqual([record.outcome, record.reason], ['rolled-back', 'exited on SIGTERM before ready()']);
  assert.equal(s.os.children.length, 2, 'nothing respawned while stopping');
  let finished = false;
  void s.sup.finished.then(() => (finished = true));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(finished, false, 'generation 1 still drains');
  s.os.exit(pid1, 0);
  assert.equal(await within(s.sup.finished, 10_000, 'the supervisor exits'), 0);
});

test('two reloads race: the second is refused; a SIGHUP joins a reload in progress', UNIT, async (t) => {
  const { s } = await firstServing(t);
  const first = s.sup.reload();
  await spawned(s, 2);
  await assert.rejects(s.sup.reload(), { code: 'ERR_BATON_UPGRADE_IN_PROGRESS', message: /generation 2/ });
  const hup = s.sup.reload('signal');
  assert.ok(s.saw('sighup-ignored'));
  await join(t, s, 2);
  const [a, b] = await within(Promise.all([first, hup]), 10_000, 'both answers');
  assert.equal(a, b, 'the same outcome');
  assert.deepEqual([a.outcome, a.generation], ['serving', 2]);
  assert.equal(s.os.children.length, 2, 'one new generation for both');
  // A command that arrives while a SIGHUP's reload runs joins it too.
  const third = s.sup.reload('signal');
  await spawned(s, 3);
  const fourth = s.sup.reload('command');
  await join(t, s, 3);
  const [c, d] = await within(Promise.all([third, fourth]), 10_000, 'both answers');
  assert.equal(c, d);
  assert.equal(c.generation, 3);
  assert.equal(s.os.children.length, 3);
});

test('the inventory: a name set again replaces it; take() follows entryFits, unnamed sockets by position', () => {
  const inv = new Inventory();
  const a = { name: 'web', kind: 'tcp', address: { host: '127.0.0.1', port: 8080 } } as const;
  inv.set({ entry: { ...a }, fd: -1 }); // never closed: replaced by the same fd below
  inv.set({ entry: { ...a }, fd: -1 });
  assert.equal(inv.size, 1);
  assert.equal(inv.take('web', 'udp4', a.address), null, 'wrong kind');
  assert.equal(inv.take('web', 'tcp', { host: '127.0.0.1', port: 9090 }), null, 'wrong address');
  assert.equal(inv.take('web', 'tcp', a.address)!.fd, -1);
  assert.equal(inv.size, 0);
  const unnamed: InventoryEntry = {
    name: 'LISTEN_FD_3',
    kind: 'tcp',
    address: a.address,
    unnamed: true,
    origin: 'activation',
  };
  inv.set({ entry: unnamed, fd: -2 });
  assert.equal(inv.take('api', 'tcp', a.address)?.entry.name, 'LISTEN_FD_3', 'an unnamed socket goes by position');
  inv.clear();
});
