/**
 * Acceptance: the control plane of `baton run`. `baton status --json` matches what the kernel says
 * (generation pids are the supervisor's children, the listener it reports is the socket both the
 * generation and the supervisor hold, the connection count follows real connections); a second reload
 * while one is in progress is refused; a peer of another user gets nothing from the control socket — not
 * even at the protocol level, with the file permissions opened up; and the CLI's errors and usage.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { FIXTURES, tmpDir, waitFor } from './helpers.js';
import { baton, BEHAVIOUR_APP, get, SERVING, startSupervised, waitExit } from './upgrade-helpers.js';

/** The inode of the socket listening on 127.0.0.1:port, from /proc/net/tcp. */
function listenInode(port: number): number | null {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === '0A') return Number(f[9]);
  }
  return null;
}

function holdsSocket(pid: number, inode: number): boolean {
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

function parentOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

test('baton status --json matches reality: pids, listener, connections', { timeout: 120_000 }, async (t) => {
  const s = await startSupervised(t);
  const st = await s.status();
  assert.equal(st.supervisor.pid, s.sup.pid);
  assert.equal(st.supervisor.socket, s.socket);
  assert.equal(st.supervisor.stopping, false);
  assert.equal(st.generations.length, 1);
  const g = st.generations[0]!;
  assert.deepEqual([g.generation, g.state], [1, 'serving']);
  // The pid is a real process, the supervisor's child, running the app.
  assert.equal(parentOf(g.pid), s.sup.pid);
  assert.match(fs.readFileSync(`/proc/${g.pid}/cmdline`, 'utf8'), /examples\/http-server\/server\.js/);
  assert.match(
    (await get(s.port)).body,
    new RegExp(`\\(pid ${g.pid}\\)`),
    'the pid status reports is the one answering',
  );
  // The listener: the address is right, and the generation and the supervisor hold that very socket.
  assert.deepEqual(st.listeners, [{ name: 'web', kind: 'tcp', address: `127.0.0.1:${s.port}` }]);
  const inode = listenInode(s.port);
  assert.ok(inode, `no listening socket on 127.0.0.1:${s.port}`);
  assert.ok(holdsSocket(g.pid, inode), 'the generation holds the listener');
  assert.ok(holdsSocket(s.sup.pid, inode), 'the supervisor holds a copy of the listener');
  assert.equal(st.upgrades.length, 1);
  assert.deepEqual(
    [st.upgrades[0]!.generation, st.upgrades[0]!.pid, st.upgrades[0]!.kind, st.upgrades[0]!.outcome],
    [1, g.pid, 'start', 'serving'],
  );

  // Connections: 5 open keep-alive connections show up as 5, and go back to 0 when closed.
  assert.equal(g.connections, 0);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 5 });
  t.after(() => agent.destroy());
  await Promise.all(
    Array.from(
      { length: 5 },
      () =>
        new Promise<void>((resolve, reject) => {
          // All 5 are issued before any socket is free again, so the agent opens 5 connections.
          http
            .get({ host: '127.0.0.1', port: s.port, agent }, (res) => res.resume().on('end', resolve))
            .on('error', reject);
        }),
    ),
  );
  // Generations report their count every 500 ms when it changes; poll status until it shows.
  const connections = async (want: number) => {
    let last = -1;
    for (let deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
      last = (await s.serving())[0]!.connections;
      if (last === want) return;
    }
    assert.fail(`status shows ${last} connections, expected ${want}`);
  };
  await connections(5);
  agent.destroy();
  await connections(0);
  assert.equal(await s.shutdown(), 0);
});

test('a second reload while one is in progress is refused cleanly; the first completes', {
  timeout: 120_000,
}, async (t) => {
  const dir = tmpDir(t);
  const behaviour = path.join(dir, 'behaviour');
  fs.writeFileSync(behaviour, 'ok');
  const s = await startSupervised(t, { app: BEHAVIOUR_APP, dir, env: { BEHAVIOUR_FILE: behaviour } });
  const oldPid = (await s.serving())[0]!.pid;

  fs.writeFileSync(behaviour, 'held-ready'); // generation 2 calls ready() once behaviour.release exists
  const first = s.reload();
  const slowPid = Number((await s.sup.line(/generation 2 pid (\d+) held-ready/, 20_000))[1]);
  const during = await s.status();
  assert.deepEqual(
    during.generations.map((g) => [g.generation, g.pid, g.state]),
    [
      [1, oldPid, 'serving'],
      [2, slowPid, 'starting'],
    ],
  );
  assert.equal(during.upgrades.at(-1)!.outcome, 'pending');

  const second = await s.reload();
  assert.equal(second.code, 1, `second reload: ${second.stdout} ${second.stderr}`);
  assert.match(second.stderr, /upgrade in progress: generation 2 \(pid \d+\) is starting/);
  fs.writeFileSync(`${behaviour}.release`, '');
  const r = await first;
  assert.equal(r.code, 0, `first reload: ${r.stdout} ${r.stderr}`);
  assert.match(r.stdout, new RegExp(`generation 2 \\(pid ${slowPid}\\) is serving`));
  await s.sup.line(SERVING(2), 10_000);
  await waitExit(oldPid, 10_000, 'generation 1 exits');
  const after = await s.status();
  // The refused reload started nothing: no generation 3, no upgrade record for it.
  assert.deepEqual(
    after.generations.map((g) => [g.generation, g.state]),
    [[2, 'serving']],
  );
  assert.deepEqual(
    after.upgrades.map((u) => [u.generation, u.outcome]),
    [
      [1, 'serving'],
      [2, 'serving'],
    ],
  );
  assert.equal(await s.shutdown(), 0);
});

test('security: a peer running as another uid gets no fd from the control socket', { timeout: 120_000 }, async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to run a peer as another uid');
    return;
  }
  if (spawnSync('setpriv', ['--version']).status !== 0) {
    t.skip('setpriv (util-linux) is not installed');
    return;
  }
  const s = await startSupervised(t);
  const intruder = path.join(FIXTURES, 'intruder.js');
  const runAsNobody = async () => {
    const p = spawnSync(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, intruder, s.socket],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(p.status, 0, `intruder failed: ${p.stderr}`);
    return p.stdout
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            role: string;
            connected: boolean;
            error: string | null;
            messages: number;
            fds: number;
            closedByPeer: boolean;
          },
      );
  };

  // As baton sets it up (socket 0600 in a 0700 directory), the file system already keeps it out.
  assert.equal(fs.statSync(s.socket).mode & 0o777, 0o600);
  assert.equal(fs.statSync(s.dir).mode & 0o777, 0o700);
  for (const a of await runAsNobody()) {
    assert.equal(a.connected, false, `${a.role}: connected through a 0700 directory`);
    assert.equal(a.error, 'EACCES');
    assert.equal(a.fds, 0);
  }

  // Open the permissions up: now the supervisor's own check (SO_PEERCRED, before reading anything) refuses.
  fs.chmodSync(s.dir, 0o711);
  fs.chmodSync(s.socket, 0o777);
  const attempts = await runAsNobody();
  assert.deepEqual(
    attempts.map((a) => a.role),
    ['generation', 'control'],
  );
  for (const a of attempts) {
    assert.equal(a.connected, true, `${a.role}: could not connect: ${a.error}`);
    assert.equal(a.fds, 0, `${a.role}: the supervisor sent ${a.fds} fds to uid 65534`);
    assert.equal(a.messages, 0, `${a.role}: the supervisor answered uid 65534`);
    assert.equal(a.closedByPeer, true, `${a.role}: the supervisor did not close the connection`);
  }
  await waitFor(
    () => (s.sup.stderr().match(/control-refused .*uid 65534/g) ?? []).length === 2,
    5000,
    'two refusals logged',
  );
  // Nothing happened: no reload was started, generation 1 still serves alone.
  const st = await s.status();
  assert.deepEqual(
    st.generations.map((g) => [g.generation, g.state]),
    [[1, 'serving']],
  );
  assert.equal(st.upgrades.length, 1);
  assert.doesNotMatch(s.sup.stderr(), /baton spawn .*generation=2/);
  assert.equal(await s.shutdown(), 0);
});

test('baton reload without a supervisor: exit 1 and a clear message', async (t) => {
  const dir = tmpDir(t);
  const socket = path.join(dir, 'nobody-here.sock');
  for (const cmd of ['reload', 'status', 'stop']) {
    const r = await baton([cmd, '--socket', socket]);
    assert.equal(r.code, 1, `${cmd}: ${r.stderr}`);
    assert.match(
      r.stderr,
      new RegExp(
        `baton ${cmd}: cannot reach ${socket.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: .*is \`baton run\` running ` +
          `with this socket\\?`,
      ),
    );
    assert.equal(r.stdout, '');
  }
  // Something at the path that is not a listening socket (a stale file), found through BATON_SOCKET.
  fs.writeFileSync(socket, '');
  const r = await baton(['reload'], { env: { BATON_SOCKET: socket } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /baton reload: cannot reach .*ECONNREFUSED.*is `baton run` running/);
});

test('baton run refuses a control socket in a world-writable directory', async (t) => {
  const dir = tmpDir(t);
  fs.chmodSync(dir, 0o777);
  const r = await baton(
    ['run', '--socket', path.join(dir, 's.sock'), '--', process.execPath, '-e', 'setTimeout(() => {}, 60000)'],
    { timeoutMs: 20_000 },
  );
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /cannot start the supervisor: .*world-writable/);
  assert.equal(fs.existsSync(path.join(dir, 's.sock')), false);
});

test('baton --help, run --help, bad usage', async () => {
  const ok = async (args: string[], re: RegExp) => {
    const r = await baton(args);
    assert.equal(r.code, 0, `baton ${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, re);
    assert.equal(r.stderr, '');
  };
  await ok(['--help'], /Usage:\n {2}baton run \[options\] -- COMMAND/);
  await ok([], /Usage:/);
  await ok(['run', '--help'], /^Usage: baton run \[options\] -- COMMAND \[ARGS\.\.\.\][\s\S]*--ready-timeout S/);
  await ok(['help', 'reload'], /^Usage: baton reload/);
  await ok(['reload', '-h'], /^Usage: baton reload/);
  await ok(['status', '--help'], /^Usage: baton status/);
  await ok(['--version'], /^\d+\.\d+\.\d+/);

  const usage = async (args: string[], re: RegExp) => {
    const r = await baton(args);
    assert.equal(r.code, 2, `baton ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.match(r.stderr, /--help' for usage/);
    assert.equal(r.stdout, '');
  };
  await usage(['frobnicate'], /unknown command or option 'frobnicate'/);
  await usage(['run'], /run needs a command/);
  await usage(['run', '--bogus', '--', 'node'], /unknown option --bogus/);
  await usage(['run', '--ready-timeout', 'soon', '--', 'node'], /--ready-timeout takes a number of seconds/);
  await usage(['run', '--log-format', 'xml', '--', 'node'], /--log-format is text or json/);
  await usage(['run', '--socket'], /--socket needs a value/);
  await usage(['reload', 'now'], /unexpected argument 'now'/);
  await usage(['status', '--json', '--bogus'], /unknown option --bogus/);
  await usage(['help', 'nothing'], /unknown command 'nothing'/);
});
