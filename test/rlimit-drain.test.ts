/**
 * Honest reloads at the fd limit (issue: under `prlimit --nofile=64` with 100 connections, the `drain`
 * message's migration-channel fd was cut (MSG_CTRUNC); generation 1 took that for "supervisor gone", kept
 * accepting, and was SIGKILLed at drain-timeout + 3 s with its 42 connections — none moved, none closed
 * politely — while `baton reload` had exited 0).
 *
 * Now the generation's control connection keeps an fd in reserve that it lets go only while receiving, so
 * the drain arrives with its migration channel; the old generation moves what the new one has room for,
 * closes the rest politely, exits on its own, and the supervisor records and logs the counts. A drain
 * whose fds are cut anyway is still taken as a drain (polite, without migration).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { FIXTURES, killPid, spawnNode, tmpDir, waitFor, within } from './helpers.js';
import { alive, baton, BATON, HTTP_EXAMPLE, type Status } from './upgrade-helpers.js';

const PRLIMIT = spawnSync('prlimit', ['--version']).status === 0;
const CONNECTIONS = 100;

interface Conn {
  socket: net.Socket;
  data: string;
  served: boolean;
  ended: boolean;
  error: string | null;
}

function open(port: number): Conn {
  const c: Conn = { socket: net.connect(port, '127.0.0.1'), data: '', served: false, ended: false, error: null };
  c.socket.setEncoding('utf8');
  c.socket.on('connect', () => c.socket.write('GET / HTTP/1.1\r\nHost: t\r\n\r\n'));
  c.socket.on('data', (d: string) => {
    c.data += d;
    if (/generation \d+/.test(c.data)) c.served = true;
  });
  c.socket.on('end', () => {
    c.ended = true;
    c.socket.end();
  });
  c.socket.on('error', (err: NodeJS.ErrnoException) => (c.error = err.code ?? err.message));
  c.socket.on('close', () => (c.ended = true));
  return c;
}

test('fd limit during drain: the old generation receives its drain, moves what fits, closes the rest politely and ' +
  'exits on its own', {
  timeout: 180_000,
}, async (t) => {
  if (!PRLIMIT) return t.skip('prlimit (util-linux) is not installed');
  const dir = tmpDir(t);
  const socket = path.join(dir, 's.sock');
  const sup = spawn(
    'prlimit',
    [
      '--nofile=64:64',
      process.execPath,
      BATON,
      'run',
      '--socket',
      socket,
      '--drain-timeout',
      '10',
      '--',
      process.execPath,
      HTTP_EXAMPLE,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PORT: '0' },
    },
  );
  let out = '';
  let err = '';
  sup.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  sup.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise((r) => sup.on('exit', (code, signal) => r(code ?? signal)));
  const genPids = () =>
    [...err.matchAll(/baton spawn supervisor=\d+ generation=\d+ child=(\d+)/g)].map((m) => Number(m[1]));
  t.after(() => {
    for (const pid of genPids()) killPid(pid);
    killPid(sup.pid!);
  });
  await waitFor(() => /generation 1 serving on http:\/\/127\.0\.0\.1:(\d+)/.test(out), 20_000, 'generation 1 serves');
  const port = Number(/generation 1 serving on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
  const gen1 = genPids()[0]!;

  // 100 keep-alive connections against a limit of 64 fds: generation 1 takes what fits (libuv closes the rest).
  const conns = Array.from({ length: CONNECTIONS }, () => open(port));
  t.after(() => conns.forEach((c) => c.socket.destroy()));
  await waitFor(() => conns.every((c) => c.served || c.ended), 30_000, 'every connection served or refused');
  const held = conns.filter((c) => c.served && !c.ended);
  t.diagnostic(`generation 1 holds ${held.length} of ${CONNECTIONS} connections at RLIMIT_NOFILE 64`);
  assert.ok(held.length >= 10, `generation 1 holds ${held.length} connections`);

  const r = await baton(['reload', '--socket', socket], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `reload: ${r.stdout} ${r.stderr}`);
  // Generation 1 got the drain with its migration channel (it used to log supervisor-gone and serve on)...
  await waitFor(
    () => /drain-requested gen=1 .*migrate=true/.test(err),
    10_000,
    `generation 1 receives its drain: ${err.slice(-3000)}`,
  );
  assert.doesNotMatch(err, /supervisor-gone/);
  // ...and exits on its own, drained, well before the supervisor's SIGKILL at drain-timeout + 3 s.
  await within(
    new Promise<void>((res) => {
      const timer = setInterval(() => {
        if (!alive(gen1)) {
          clearInterval(timer);
          res();
        }
      }, 50);
    }),
    30_000,
    'generation 1 exits',
  );
  await waitFor(
    () => /baton exit supervisor=\d+ generation=1 /.test(err),
    5000,
    'the supervisor sees generation 1 exit',
  );
  assert.match(
    err,
    new RegExp(`baton exit supervisor=\\d+ generation=1 child=${gen1} code=0 signal=null`),
    'generation 1 was killed, not drained',
  );
  assert.match(err, /baton drained gen=1 /);

  // Every connection it held either moved (open, answered by generation 2) or was closed politely (FIN, no reset).
  await waitFor(() => held.every((c) => c.ended || !alive(gen1)), 5000, 'connections settled');
  const moved = held.filter((c) => !c.ended);
  const closed = held.filter((c) => c.ended);
  for (const c of closed) assert.equal(c.error, null, `a connection was reset: ${c.error}`);
  for (const c of moved) {
    c.data = '';
    c.socket.write('GET / HTTP/1.1\r\nHost: t\r\n\r\n');
  }
  await waitFor(() => moved.every((c) => /generation 2/.test(c.data) || c.ended), 20_000, 'moved connections answer');
  for (const c of moved) assert.match(c.data, /generation 2/, 'a moved connection is served by generation 2');
  t.diagnostic(`moved ${moved.length}, closed politely ${closed.length} of ${held.length}`);

  // The supervisor says so: counts in its log and in status.
  await waitFor(() => /connections-(not-)?moved /.test(err), 5000, 'the supervisor logs the counts');
  const line = /connections-(?:not-)?moved supervisor=\d+ generation=1 child=\d+ to=2 moved=(\d+) notMoved=(\d+)/.exec(
    err,
  );
  assert.ok(line, err.slice(-3000));
  assert.equal(Number(line[1]), moved.length);
  assert.equal(Number(line[2]), closed.length);
  if (closed.length) assert.match(err, /WARN connections-not-moved /);
  const st = await baton(['status', '--json', '--socket', socket]);
  const up = (JSON.parse(st.stdout) as Status).upgrades.find((u) => u.generation === 2) as unknown as {
    moved: number;
    notMoved: number;
  };
  assert.deepEqual([up.moved, up.notMoved], [moved.length, closed.length]);

  process.kill(sup.pid!, 'SIGTERM');
  await within(exited, 30_000, 'the supervisor exits');
});

test('fd limit during drain: a drain whose fds are cut anyway (MSG_CTRUNC) is still a drain — polite, not ' +
  '"supervisor gone"', {
  timeout: 120_000,
}, async (t) => {
  if (!PRLIMIT) return t.skip('prlimit (util-linux) is not installed');
  const dir = tmpDir(t);
  const socket = path.join(dir, 's.sock');
  const limitFile = path.join(dir, 'limit');
  fs.writeFileSync(limitFile, '12'); // the generation lowers its limit to the fds it has open + 12
  const sup = spawnNode(t, path.join(FIXTURES, 'cut-drain-supervisor.js'), [socket, '64']);
  await sup.line(/listening/, 15_000);
  const gen = spawnNode(t, path.join(FIXTURES, 'limits-app.js'), [], {
    BATON_SUPERVISOR: String(sup.pid),
    BATON_SOCKET: socket,
    BATON_GENERATION: '1',
    LIMIT_FILE: limitFile,
    PORT: '0',
  });
  await gen.line(/generation 1 serving on/, 20_000);
  await sup.line(/drain sent/, 15_000);
  // Before: "supervisor-gone" and it served on (under baton run: until SIGKILLed with its connections).
  const code = await within(gen.exited, 20_000, 'the generation drains and exits');
  assert.equal(code, 0, gen.stderr());
  assert.match(gen.stderr(), /WARN drain-without-migration gen=1 .*MSG_CTRUNC/);
  assert.match(gen.stderr(), /baton drained gen=1 /);
  assert.doesNotMatch(gen.stderr(), /supervisor-gone/);
});
