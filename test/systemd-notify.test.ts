/**
 * The service manager's notification protocol, against a real AF_UNIX datagram socket
 * (test/fixtures/notify-manager.py, which reports each datagram with the sender's pid as the kernel saw it):
 *
 * - `baton run`: the exact sequence for start, a reload, a rolled-back reload and a stop, all from the
 *   supervisor (the service's main process); generations never see NOTIFY_SOCKET; an abstract socket name.
 * - the watchdog: WATCHDOG=1 at half of WATCHDOG_USEC, only for the process WATCHDOG_PID names.
 * - standalone takeover: the old generation hands the main-process role to its successor (MAINPID=)
 *   before it acknowledges; a rollback and a stop.
 * - sdNotify itself: fields, fds (SCM_RIGHTS), errors, and no fd left open on any path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { monotonicUsec, sdListenFds, sdNotify } from '../src/fd/systemd.js';
import { silentLogger } from '../src/upgrader/logger.js';
import { ServiceNotifier } from '../src/integrations/systemd.js';
import { expectFdsBackTo, fdCount, killPid, spawnNode, tmpDir, waitFor, within } from './helpers.js';
import { baton, BEHAVIOUR_APP, HTTP_EXAMPLE, SERVING, startSupervised, waitExit } from './upgrade-helpers.js';
import { environOf, startManager, texts, type Notification } from './systemd-helpers.js';

/** Compare notification texts with expectations (strings exactly, RegExps by match). */
function expectSequence(actual: string[], expected: Array<string | RegExp>, what: string): void {
  const show = `${what}:\n${actual.map((a) => JSON.stringify(a)).join('\n')}`;
  assert.equal(actual.length, expected.length, show);
  expected.forEach((e, i) => {
    if (typeof e === 'string') assert.equal(actual[i], e, show);
    else assert.match(actual[i]!, e, show);
  });
}

const MONO = 'MONOTONIC_USEC=\\d+';

test('baton run: READY=1, RELOADING=1 … READY=1 for a reload and for a rollback, STOPPING=1 — all from the ' +
  'supervisor', {
  timeout: 120_000,
}, async (t) => {
  const dir = tmpDir(t);
  const m = await startManager(t, `@baton-test-${process.pid}-${path.basename(dir)}`);
  const behaviour = path.join(dir, 'behaviour');
  fs.writeFileSync(behaviour, 'ok');
  const s = await startSupervised(t, {
    app: BEHAVIOUR_APP,
    dir,
    env: { BEHAVIOUR_FILE: behaviour, NOTIFY_SOCKET: m.socket },
    servingLine: SERVING(1),
  });
  await m.next((n) => n.fields.READY === '1', 'READY=1 for generation 1');
  const gen1 = (await s.serving())[0]!.pid;
  const env1 = environOf(gen1);
  assert.equal(
    env1.NOTIFY_SOCKET,
    undefined,
    'a generation never sees NOTIFY_SOCKET: the supervisor is the main process',
  );
  assert.equal(env1.BATON_SUPERVISOR, String(s.sup.pid));

  const before = monotonicUsec();
  const r = await s.reload();
  const after = monotonicUsec();
  assert.equal(r.code, 0, r.stderr);
  await m.next((n) => n.fields.STATUS === 'generation 2 serving, 1 listener', 'READY=1 for generation 2');
  const reloading = m.messages.find((n) => n.fields.RELOADING === '1')!;
  const usec = BigInt(reloading.fields.MONOTONIC_USEC!);
  assert.ok(
    usec >= before && usec <= after,
    `MONOTONIC_USEC ${usec} is CLOCK_MONOTONIC at the reload (${before}..${after})`,
  );

  fs.writeFileSync(behaviour, 'exit1');
  const r2 = await s.reload();
  assert.equal(r2.code, 1, 'the reload to generation 3 is rolled back');
  await m.next((n) => /rolled back/.test(n.fields.STATUS ?? ''), 'READY=1 after the rollback');

  assert.equal(await s.shutdown(), 0, s.sup.stderr().slice(-2000));
  await m.next((n) => n.fields.STOPPING === '1', 'STOPPING=1');

  for (const n of m.messages) assert.equal(n.pid, s.sup.pid, `sent by the supervisor: ${n.text}`);
  expectSequence(
    texts(m.messages),
    [
      'READY=1\nSTATUS=generation 1 serving, 1 listener',
      new RegExp(`^RELOADING=1\\n${MONO}\\nSTATUS=reloading: generation 2 is starting$`),
      'READY=1\nSTATUS=generation 2 serving, 1 listener',
      new RegExp(`^RELOADING=1\\n${MONO}\\nSTATUS=reloading: generation 3 is starting$`),
      /^READY=1\nSTATUS=generation 2 serving, 1 listener; generation 3 rolled back: exited with code 1 before ready\(\)[^\n]*$/,
      'STOPPING=1\nSTATUS=stopping: 1 generation draining',
    ],
    'notifications',
  );
});

test('Type=notify-reload: SIGHUP and the ExecReload=baton reload that follows are one reload; a second SIGHUP is ' +
  'acknowledged', {
  timeout: 90_000,
}, async (t) => {
  const dir = tmpDir(t);
  const m = await startManager(t, path.join(dir, 'notify.sock'));
  const behaviour = path.join(dir, 'behaviour');
  fs.writeFileSync(behaviour, 'ok');
  const s = await startSupervised(t, {
    app: BEHAVIOUR_APP,
    dir,
    env: { BEHAVIOUR_FILE: behaviour, NOTIFY_SOCKET: m.socket },
  });
  await m.next((n) => n.fields.READY === '1', 'READY=1 for generation 1');
  // Generation 2 takes 2 s to call ready(): the reload is still in progress when the others arrive.
  fs.writeFileSync(behaviour, 'slow-ready');
  process.kill(s.sup.pid, 'SIGHUP');
  await s.sup.line(/generation 2 pid \d+ slow-ready/, 20_000);
  const reload = s.reload();
  process.kill(s.sup.pid, 'SIGHUP');
  await m.next(
    (n) => n.fields.RELOADING === '1',
    'the second RELOADING=1',
    m.messages.findIndex((n) => n.fields.RELOADING === '1') + 1,
  );
  const r = await reload;
  assert.equal(r.code, 0, `baton reload joins the reload SIGHUP started: ${r.stdout} ${r.stderr}`);
  assert.match(r.stdout, /generation 2 \(pid \d+\) is serving/);
  await m.next((n) => n.fields.STATUS === 'generation 2 serving, 1 listener', 'READY=1 for generation 2');
  const st = await s.status();
  assert.deepEqual(
    st.upgrades.map((u) => [u.generation, u.kind, u.outcome]),
    [
      [1, 'start', 'serving'],
      [2, 'reload', 'serving'],
    ],
    'one reload, not two',
  );
  assert.equal(await s.shutdown(), 0);
  await m.next((n) => n.fields.STOPPING === '1', 'STOPPING=1');
  expectSequence(
    texts(m.messages),
    [
      'READY=1\nSTATUS=generation 1 serving, 1 listener',
      new RegExp(`^RELOADING=1\\n${MONO}\\nSTATUS=reloading: generation 2 is starting$`),
      new RegExp(`^RELOADING=1\\n${MONO}\\nSTATUS=reloading: generation 2 is starting$`),
      'READY=1\nSTATUS=generation 2 serving, 1 listener',
      'STOPPING=1\nSTATUS=stopping: 1 generation draining',
    ],
    'notifications',
  );
});

test('watchdog: WATCHDOG=1 at half of WATCHDOG_USEC from the supervisor; none for a process WATCHDOG_PID does not ' +
  'name', {
  timeout: 60_000,
}, async (t) => {
  const dir = tmpDir(t);
  const m = await startManager(t, path.join(dir, 'notify.sock'));
  const s = await startSupervised(t, { dir, env: { NOTIFY_SOCKET: m.socket, WATCHDOG_USEC: '200000' } });
  await m.next((n) => n.fields.READY === '1', 'READY=1');
  const pings = () => m.messages.filter((n) => n.fields.WATCHDOG === '1' && n.pid === s.sup.pid).length;
  const seen = pings();
  await waitFor(() => pings() >= seen + 3, 10_000, 'three more WATCHDOG=1 pings');
  const gen = (await s.serving())[0]!.pid;
  const env = environOf(gen);
  assert.equal(env.WATCHDOG_USEC, undefined, 'the watchdog is the supervisor’s');
  assert.equal(env.WATCHDOG_PID, undefined);
  assert.equal(await s.shutdown(), 0);

  // A plain app (no baton run, no socket) notifies by itself: READY=1. WATCHDOG_PID=1 is not this process.
  const from = m.messages.length;
  const plain = spawnNode(t, HTTP_EXAMPLE, [], {
    NOTIFY_SOCKET: m.socket,
    PORT: '0',
    WATCHDOG_USEC: '100000',
    WATCHDOG_PID: '1',
    BATON_SOCKET: '',
  });
  await plain.line(SERVING(1));
  const ready = await m.next((n) => n.pid === plain.pid && n.fields.READY === '1', 'READY=1 from the plain app', from);
  assert.equal(ready.text, 'READY=1\nSTATUS=generation 1 serving, 1 listener');
  // Long enough for two pings at the 50 ms interval that WATCHDOG_USEC would mean.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(
    m.messages.filter((n) => n.pid === plain.pid && n.fields.WATCHDOG).length,
    0,
    'no pings for another process’s watchdog',
  );
  killPid(plain.pid);

  // The same app started the way systemd does it: WATCHDOG_PID is its own pid.
  const sh = spawn(
    'sh',
    ['-c', 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', 'sh', process.execPath, HTTP_EXAMPLE],
    {
      stdio: 'ignore',
      env: { ...process.env, NOTIFY_SOCKET: m.socket, PORT: '0', WATCHDOG_USEC: '100000', BATON_SOCKET: '' },
    },
  );
  t.after(() => killPid(sh.pid!));
  await waitFor(
    () => m.messages.filter((n) => n.pid === sh.pid && n.fields.WATCHDOG === '1').length >= 3,
    10_000,
    'pings from the process WATCHDOG_PID names',
  );
  killPid(sh.pid!);
});

test('standalone: MAINPID= hands the main process to the successor before the old generation acknowledges; rollback, ' +
  'stop', {
  timeout: 90_000,
}, async (t) => {
  const dir = tmpDir(t);
  const m = await startManager(t, path.join(dir, 'notify.sock'));
  const behaviour = path.join(dir, 'behaviour');
  fs.writeFileSync(behaviour, 'ok');
  const env = {
    BATON_SOCKET: path.join(dir, 'app.sock'),
    NOTIFY_SOCKET: m.socket,
    PORT: '0',
    BEHAVIOUR_FILE: behaviour,
  };
  const g1 = spawnNode(t, BEHAVIOUR_APP, [], env);
  await g1.line(SERVING(1), 20_000);
  await m.next((n) => n.pid === g1.pid && n.fields.READY === '1', 'READY=1 from generation 1');

  const g2 = spawnNode(t, BEHAVIOUR_APP, [], env);
  await g2.line(SERVING(2), 20_000);
  await m.next((n) => n.pid === g2.pid && n.fields.READY === '1', 'READY=1 from generation 2');
  await waitExit(g1.pid, 20_000, 'generation 1 drains and exits');

  fs.writeFileSync(behaviour, 'exit1');
  const g3 = spawnNode(t, BEHAVIOUR_APP, [], env);
  assert.equal(await within(g3.exited, 20_000, 'generation 3 exits'), 1);
  await m.next((n) => n.pid === g2.pid && /rolled back/.test(n.fields.STATUS ?? ''), 'READY=1 after the rollback');

  const stop = await baton(['stop', '--socket', env.BATON_SOCKET]);
  assert.equal(stop.code, 0, stop.stderr);
  await m.next((n) => n.pid === g2.pid && n.fields.STOPPING === '1', 'STOPPING=1 from generation 2');
  assert.equal(await within(g2.exited, 20_000, 'generation 2 exits'), 0);

  const seq = m.messages.filter((n) => !n.fields.WATCHDOG);
  const who = (n: Notification) =>
    n.pid === g1.pid ? 'g1' : n.pid === g2.pid ? 'g2' : n.pid === g3.pid ? 'g3' : String(n.pid);
  expectSequence(
    seq.map((n) => `${who(n)} ${n.text}`),
    [
      'g1 READY=1\nSTATUS=generation 1 serving, 1 listener',
      new RegExp(`^g1 RELOADING=1\\n${MONO}\\nSTATUS=reloading: generation 2 is taking over$`),
      `g1 MAINPID=${g2.pid}\nSTATUS=generation 2 (pid ${g2.pid}) is taking over`,
      `g2 MAINPID=${g2.pid}\nREADY=1\nSTATUS=generation 2 serving, 1 listener`,
      new RegExp(`^g2 RELOADING=1\\n${MONO}\\nSTATUS=reloading: generation 3 is taking over$`),
      new RegExp(
        `^g2 READY=1\\nSTATUS=generation 2 serving, 1 listener; generation 3 \\(pid ${g3.pid}\\) rolled back: [^\\n]+$`,
      ),
      'g2 STOPPING=1\nSTATUS=stopping: generation 2 draining 0 connections',
    ],
    'notifications',
  );
});

test('sdNotify: fields on one datagram each, fds attached, errors shaped like Node’s, no fd left open', async (t) => {
  const dir = tmpDir(t);
  const m = await startManager(t, path.join(dir, 'notify.sock'));
  assert.equal(sdNotify('READY=1', { socket: null }), false, 'no socket: nothing to do');
  assert.equal(sdNotify({ READY: 1, STATUS: 'two\nlines', X_FLAG: true }, { socket: m.socket }), true);
  const n = await m.next((x) => x.fields.READY === '1', 'the datagram');
  assert.equal(n.text, 'READY=1\nSTATUS=two lines\nX_FLAG=1', 'a newline in a value cannot start another field');
  assert.equal(n.pid, process.pid);

  fs.writeFileSync(path.join(dir, 'file'), 'stored\n');
  const file = fs.openSync(path.join(dir, 'file'), 'r');
  t.after(() => fs.closeSync(file));
  sdNotify({ FDSTORE: 1, FDNAME: 'thing' }, { socket: m.socket, fds: [file] });
  await waitFor(() => m.store().includes('thing'), 5000, 'the fd in the store');
  assert.equal(m.messages.at(-1)!.fds, 1);
  sdNotify({ FDSTOREREMOVE: 1, FDNAME: 'thing' }, { socket: m.socket });
  await waitFor(() => m.store().length === 0, 5000, 'the store emptied');

  const baseline = fdCount();
  for (let i = 0; i < 100; i++) {
    assert.throws(() => sdNotify('READY=1', { socket: path.join(dir, 'missing.sock') }), {
      code: 'ENOENT',
      syscall: 'sendmsg',
    });
    assert.throws(() => sdNotify('READY=1', { socket: 'relative.sock' }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => sdNotify('READY=1', { socket: `/${'x'.repeat(200)}` }), { code: 'ERR_OUT_OF_RANGE' });
  }
  assert.throws(() => sdNotify({ 'not a key': 1 }, { socket: m.socket }), { code: 'ERR_INVALID_ARG_TYPE' });
  // A burst larger than the receiver's queue (the kernel's default is 10 datagrams): sdNotify itself
  // never blocks (EAGAIN); the ServiceNotifier queues the rest, with copies of their fds, in order.
  const notifier = new ServiceNotifier({ logger: silentLogger, fields: () => ({}), env: { NOTIFY_SOCKET: m.socket } });
  for (let i = 0; i < 100; i++) assert.equal(notifier.send({ STATUS: `ping ${i}` }, [file]), true);
  await within(notifier.flushed(), 10_000, 'the queue drains');
  await waitFor(
    () => m.messages.filter((x) => x.fields.STATUS?.startsWith('ping ')).length === 100,
    5000,
    'the 100 pings',
  );
  assert.deepEqual(
    m.messages.filter((x) => x.fields.STATUS?.startsWith('ping ')).map((x) => [x.fields.STATUS, x.fds]),
    Array.from({ length: 100 }, (_, i) => [`ping ${i}`, 1]),
    'every ping, in order, each with its fd',
  );
  await expectFdsBackTo(baseline, '300 failed notifications and 100 queued ones');

  // LISTEN_FDS addressed to another process is not ours; the variables go either way.
  const env: NodeJS.ProcessEnv = { LISTEN_FDS: '1', LISTEN_PID: String(process.pid + 1), LISTEN_FDNAMES: 'web' };
  assert.deepEqual(sdListenFds({ env }), []);
  assert.deepEqual(env, {});
});
