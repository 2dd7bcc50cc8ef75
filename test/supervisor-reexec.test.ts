/**
 * Replacing the supervisor in place (src/cli/reexec.ts): SIGUSR2 and `baton reload --supervisor` re-execute
 * `baton run` in the same process while HTTP keep-alive load and WebSockets run — same supervisor pid, same
 * generation, nothing lost, no WebSocket closed; the new image still upgrades generations and stops; a new
 * image that fails its check leaves the old one running; fds stay flat across re-execs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { execve } from '../src/fd/exec.js';
import { closeFds, socketpair } from '../src/fd/fds.js';
import { validateState } from '../src/cli/reexec.js';
import { expectNothingLost, startTraffic } from './fault-helpers.js';
import { fdinfoFlags, O_CLOEXEC, waitFor, within } from './helpers.js';
import { BATON, BEHAVIOUR_APP, baton, get, startSupervised, type Status, type Supervised } from './upgrade-helpers.js';
import { connect, WS_APP, WS_SERVING, type Client } from './ws-helpers.js';

type SupervisorStatus = Status['supervisor'] & {
  version: string;
  execCount: number;
  execAt: string | null;
  startedAt: string;
};

async function supervisorOf(s: Supervised): Promise<{ sup: SupervisorStatus; status: Status }> {
  const status = await s.status();
  return { sup: status.supervisor as SupervisorStatus, status };
}

/** Wait until the new image logged that it took over (execCount = n). */
function resumed(s: Supervised, n: number, ms = 20_000): Promise<void> {
  const line = new RegExp(`baton supervisor-reexec supervisor=${s.sup.pid} .*execCount=${n} `);
  return waitFor(() => line.test(s.sup.stderr()), ms, `re-exec #${n} to finish`);
}

/** WebSocket clients that each send a numbered message every 100 ms and check each echo. */
function chatter(clients: Client[]): { stop(): void } {
  const timer = setInterval(() => {
    for (const c of clients) if (c.ws.readyState === WebSocket.OPEN) c.ws.send(String(c.sent++));
  }, 100);
  return { stop: () => clearInterval(timer) };
}

/** A process that is gone for good: not running and not a zombie waiting to be reaped. */
const reaped = (pid: number) => !fs.existsSync(`/proc/${pid}`);

test('SIGUSR2, reload --supervisor under load, WebSockets open: same pids, nothing lost; reload, stop', async (t) => {
  const s = await startSupervised(t, { app: WS_APP, servingLine: WS_SERVING });
  const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => connect(s.port, i)));
  t.after(() => clients.forEach((c) => c.ws.terminate()));
  const talk = chatter(clients);
  t.after(() => talk.stop());
  await waitFor(() => clients.every((c) => c.expected > 0), 10_000, 'every WebSocket got an echo');
  const traffic = await startTraffic(t, s.port);
  const before = await supervisorOf(s);
  const gen1 = before.status.generations;
  assert.equal(gen1.length, 1);
  assert.equal(before.sup.execCount, 0);

  process.kill(s.sup.pid, 'SIGUSR2');
  await resumed(s, 1);
  await traffic.served('after SIGUSR2');
  const afterSignal = await supervisorOf(s);
  assert.equal(afterSignal.sup.pid, s.sup.pid);
  assert.equal(afterSignal.sup.execCount, 1);
  assert.equal(afterSignal.sup.startedAt, before.sup.startedAt, 'the supervisor keeps its start time');
  const only1 = [[1, gen1[0]!.pid, 'serving']];
  assert.deepEqual(
    afterSignal.status.generations.map((g) => [g.generation, g.pid, g.state]),
    only1,
  );

  const r = await s.reload(['--supervisor']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`supervisor pid ${s.sup.pid} re-executed: baton \\S+, exec 2`));
  await traffic.served('after reload --supervisor');
  const afterCommand = await supervisorOf(s);
  assert.equal(afterCommand.sup.pid, s.sup.pid);
  assert.equal(afterCommand.sup.execCount, 2);
  assert.deepEqual(
    afterCommand.status.generations.map((g) => [g.generation, g.pid, g.state]),
    only1,
  );
  assert.ok(
    clients.every((c) => c.ws.readyState === WebSocket.OPEN),
    'every WebSocket is open',
  );
  const echoed = clients.map((c) => c.expected);
  await waitFor(() => clients.every((c, i) => c.expected > echoed[i]!), 10_000, 'WebSocket answers after the re-execs');

  // The new image upgrades generations: generation 1 (spawned by the first image) drains, exits and is reaped
  // by this one through its pidfd; the WebSockets move to generation 2.
  const up = await s.reload();
  assert.equal(up.code, 0, up.stderr);
  const exitLine = new RegExp(`baton exit supervisor=${s.sup.pid} generation=1 child=${gen1[0]!.pid} code=0`);
  await waitFor(() => exitLine.test(s.sup.stderr()), 15_000, 'the new image sees generation 1 exit');
  assert.ok(reaped(gen1[0]!.pid), 'generation 1 was reaped (no zombie)');
  await traffic.served('by generation 2');
  await waitFor(() => clients.every((c) => c.generations.has(2)), 10_000, 'every WebSocket answered by generation 2');
  talk.stop();
  expectNothingLost(t, await traffic.stop());
  await waitFor(() => clients.every((c) => c.expected === c.sent), 10_000, 'every WebSocket message echoed');
  assert.deepEqual(clients.flatMap((c) => c.problems).slice(0, 5), [], 'echoes in order, exactly once');
  assert.deepEqual(
    clients.flatMap((c) => c.closes),
    [],
    'no WebSocket closed',
  );

  const gen2 = (await s.serving())[0]!;
  const stop = await baton(['stop', '--socket', s.socket]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal(await within(s.sup.exited, 20_000, 'the supervisor exits after baton stop'), 0);
  await waitFor(() => reaped(gen2.pid), 10_000, 'generation 2 exits');
});

test('a new image failing its check leaves the old supervisor running, reported; fixed, it re-executes', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-reexec-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const entry = path.join(dir, 'entry.mjs');
  fs.writeFileSync(entry, 'this is not JavaScript(\n');
  const s = await startSupervised(t, { env: { BATON_REEXEC_ENTRY: entry } });
  const traffic = await startTraffic(t, s.port);
  const gen1 = (await s.serving())[0]!;

  const r = await s.reload(['--supervisor']);
  assert.equal(r.code, 1, `${r.stdout}${r.stderr}`);
  assert.match(r.stderr, /failed, the old supervisor keeps running: /);
  assert.match(r.stderr, /the new supervisor image .* failed its check: exit code 1/);
  assert.match(r.stderr, /SyntaxError/);
  process.kill(s.sup.pid, 'SIGUSR2');
  const failures = () => (s.sup.stderr().match(/reexec-failed/g) ?? []).length;
  await waitFor(() => failures() >= 2, 15_000, 'the SIGUSR2 re-exec to fail too');
  await traffic.served('after the failed re-execs');
  const { sup, status } = await supervisorOf(s);
  assert.equal(sup.pid, s.sup.pid);
  assert.equal(sup.execCount, 0);
  assert.deepEqual(
    status.generations.map((g) => g.pid),
    [gen1.pid],
  );
  assert.match((await get(s.port)).body, /^hello from generation 1/);

  // The same entry, now a working baton: the re-exec goes through.
  fs.writeFileSync(entry, `await import(${JSON.stringify(pathToFileURL(BATON).href)});\n`);
  const ok = await s.reload(['--supervisor']);
  assert.equal(ok.code, 0, ok.stderr);
  await traffic.served('after the re-exec');
  expectNothingLost(t, await traffic.stop());
  assert.equal((await supervisorOf(s)).sup.execCount, 1);
  assert.equal(await s.shutdown(), 0);
});

test('re-exec refused while a generation starts; a draining one is carried over, finishes, is reaped', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-reexec-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const behaviour = path.join(dir, 'behaviour');
  fs.writeFileSync(behaviour, 'ok');
  const recv = path.join(dir, 'recv');
  const s = await startSupervised(t, { app: BEHAVIOUR_APP, env: { BEHAVIOUR_FILE: behaviour, RECV_LOG: recv } });

  // Generation 2 calls ready() only once the test lets it: a re-exec meanwhile is refused, and the reload goes on.
  fs.writeFileSync(behaviour, 'held-ready');
  const reload = s.reload();
  await s.sup.line(/generation 2 pid \d+ held-ready/, 15_000);
  const refused = await s.reload(['--supervisor']);
  assert.equal(refused.code, 1, refused.stdout);
  assert.match(refused.stderr, /upgrade in progress: generation 2/);
  fs.writeFileSync(`${behaviour}.release`, '');
  assert.equal((await reload).code, 0);

  // Generation 2 holds a request while generation 3 replaces it and the supervisor re-execs: it drains across
  // the re-exec. The request is answered only once the new image has generation 2 draining.
  fs.writeFileSync(behaviour, 'ok');
  const gen2 = (await s.serving())[0]!;
  const answerNow = path.join(dir, 'answer-now');
  const slow = get(s.port, `/?until=${encodeURIComponent(answerNow)}&id=slow`, 30_000);
  const arrived = () => fs.existsSync(recv) && fs.readFileSync(recv, 'utf8').includes('slow');
  await waitFor(arrived, 10_000, 'the slow request reaching generation 2');
  const up = await s.reload();
  assert.equal(up.code, 0, up.stderr);
  const r = await s.reload(['--supervisor']);
  assert.equal(r.code, 0, r.stderr);
  const after = await s.status();
  assert.deepEqual(
    after.generations.map((g) => [g.generation, g.state]),
    [
      [2, 'draining'],
      [3, 'serving'],
    ],
  );
  fs.writeFileSync(answerNow, '');
  const answer = await slow;
  assert.equal(answer.status, 200);
  assert.match(answer.body, new RegExp(`^generation 2 pid ${gen2.pid}`));
  const exitLine = new RegExp(`baton exit supervisor=${s.sup.pid} generation=2 child=${gen2.pid} code=0`);
  await waitFor(() => exitLine.test(s.sup.stderr()), 15_000, 'the new image sees generation 2 exit after its drain');
  assert.ok(reaped(gen2.pid), 'generation 2 was reaped');
  assert.equal(await s.shutdown(), 0);
});

test('no fd leaks in the supervisor across 3 re-execs', async (t) => {
  const s = await startSupervised(t);
  const fds = () =>
    fs.readdirSync(`/proc/${s.sup.pid}/fd`).map((fd) => {
      try {
        return fs.readlinkSync(`/proc/${s.sup.pid}/fd/${fd}`);
      } catch {
        return '?';
      }
    });
  const reexec = async (i: number) => {
    const r = await s.reload(['--supervisor']);
    assert.equal(r.code, 0, r.stderr);
    await resumed(s, i);
  };
  // The baseline is taken after a first re-exec: from then on the supervisor follows its generation through a
  // pidfd (one fd per generation it did not spawn itself) instead of libuv's SIGCHLD watch.
  await reexec(1);
  const baseline = fds().length;
  for (let i = 2; i <= 4; i++) {
    await reexec(i);
    // The new image opens its event loop's fds as it starts: give it a moment to settle.
    const what = () => `the supervisor's fds back to ${baseline} after re-exec ${i} (now: ${fds().join(' ')})`;
    await waitFor(() => fds().length === baseline, 5000, what());
  }
  assert.equal((await s.serving()).length, 1);
  assert.equal(await s.shutdown(), 0);
});

test('native execve: a failed exec throws with its errno and puts FD_CLOEXEC and the signal mask back', () => {
  const [a, b] = socketpair();
  try {
    assert.ok(fdinfoFlags(a) & O_CLOEXEC);
    const sigBlk = () => /SigBlk:\s*(\S+)/.exec(fs.readFileSync('/proc/thread-self/status', 'utf8'))![1];
    const mask = sigBlk();
    assert.throws(
      () => execve('/nonexistent/baton-node', ['x'], {}, [a], ['SIGUSR2']),
      (err: NodeJS.ErrnoException) => err.code === 'ENOENT' && err.syscall === 'execve',
    );
    assert.ok(fdinfoFlags(a) & O_CLOEXEC, 'close-on-exec is set again');
    assert.equal(sigBlk(), mask, 'the signal mask is back');
    assert.throws(() => execve('/bin/true', ['x'], {}, [-1], []), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => execve('/bin/true', 'x' as unknown as string[], {}, [], []), TypeError);
    assert.throws(() => execve('/bin/true', ['x'], {}, [], ['SIGNOPE' as NodeJS.Signals]), TypeError);
  } finally {
    closeFds([a, b]);
  }
});

test('the carried state is validated before anything is adopted', () => {
  const good = {
    format: 1,
    version: '0',
    pid: process.pid,
    socket: '/tmp/s.sock',
    serverFd: 10,
    startedAt: 1,
    execCount: 1,
    execAt: 1,
    inventory: [],
    generations: [],
    next: 2,
    current: null,
    history: [],
    backoffMs: 100,
    failedStarts: 0,
    restarts: 0,
    exitCode: 0,
    readySent: true,
    stored: [],
    respawnDue: false,
    requester: null,
  };
  assert.equal(validateState(structuredClone(good)).serverFd, 10);
  const bads = [
    { format: 2 },
    { pid: process.pid + 1 },
    { serverFd: -1 },
    { inventory: [{ fd: 11, entry: { name: 1 } }] },
    { requester: { fd: 12, hello: {} } },
    { inventory: [{ fd: 10, entry: good.inventory }] },
    { history: {} },
  ];
  for (const bad of bads) {
    const state = { ...structuredClone(good), ...bad };
    assert.throws(() => validateState(state), { code: 'ERR_BATON_REEXEC_STATE' }, JSON.stringify(bad));
  }
  // Format 2 (--workers N): the slot sockets, and a lane for each slot but 0.
  const lane = { inventory: [], generations: [], next: 2, current: null, history: [], backoffMs: 100 };
  const lane1 = { ...lane, failedStarts: 0, restarts: 0, exitCode: 0, readySent: true, respawnDue: false };
  const group = { name: 'web', kind: 'tcp', shared: false, address: '127.0.0.1:1', fds: [20, 21], spec: null };
  const workers = { slots: 2, balance: 'reuseport', groups: [group], lanes: [lane1] };
  const two = { ...structuredClone(good), format: 2, workers };
  assert.deepEqual(validateState(structuredClone(two)).workers?.groups[0]?.fds, [20, 21]);
  const badWorkers = [
    { workers: undefined },
    { workers: { ...workers, lanes: [] } },
    { workers: { ...workers, balance: 'random' } },
    { workers: { ...workers, groups: [{ ...group, fds: [20] }] } },
    { workers: { ...workers, groups: [{ ...group, fds: [20, 10] }] } }, // the control socket's fd again
    { workers: { ...workers, groups: [{ ...group, kind: 'sctp' }] } },
    { workers: { ...workers, lanes: [{ ...lane1, next: -1 }] } },
    { format: 1 },
  ];
  for (const bad of badWorkers) {
    const state = { ...structuredClone(two), ...bad };
    assert.throws(() => validateState(state), { code: 'ERR_BATON_REEXEC_STATE' }, JSON.stringify(bad));
  }
});
