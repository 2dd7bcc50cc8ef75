/**
 * Sockets from the service manager:
 *
 * - socket activation with Debian's real `systemd-socket-activate` (it listens, and on the first connection
 *   execs the command with LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES): `baton run` takes the socket named
 *   `web` into its inventory, the generations inherit it, and it serves through reloads under load with
 *   0 failed requests; the variables never reach a generation and the activated fd is not inherited by
 *   one (close-on-exec). Without `baton run`, the app takes it by itself, by position when it has no name
 *   — a Unix socket too, for an app that asked for a TCP port (the unit decides the address).
 * - the fd store: `baton run --fdstore` stores its listener with the (fake) manager; the manager kills it
 *   ("systemctl restart") and starts a new one with the stored fd as LISTEN_FDS: the port never refuses a
 *   connection, and the new instance serves every request that waited.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { startLoad } from '../scripts/lib/http-load.js';
import { FIXTURES, killPid, tmpDir, waitFor, within } from './helpers.js';
import { alive, baton, BATON, get, HTTP_EXAMPLE, isGenerationOf, waitExit } from './upgrade-helpers.js';
import { environOf, freePort, probe, startManager } from './systemd-helpers.js';

const ACTIVATE = '/usr/bin/systemd-socket-activate';
/** Prints its address and sockets (test/fixtures/activated-app.ts). */
const ACTIVATED_APP = path.join(FIXTURES, 'activated-app.js');

function activateMissing(): string | false {
  return fs.existsSync(ACTIVATE) ? false : `${ACTIVATE} is not installed (apt-get install systemd)`;
}

type Cleanup = Parameters<typeof tmpDir>[0];

interface Activated {
  child: ChildProcess;
  pid: number;
  output(): string;
}

/** `systemd-socket-activate args…`, killed by pid after the test with every generation its baton started. */
async function activate(t: Cleanup, args: string[], listening: string): Promise<Activated> {
  const child = spawn(ACTIVATE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
  const pid = child.pid!;
  t.after(() => {
    for (const m of output.matchAll(/baton spawn supervisor=\d+ generation=\d+ child=(\d+)/g)) {
      const gen = Number(m[1]);
      if (!isGenerationOf(gen, pid)) continue;
      for (const target of [-gen, gen]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    killPid(pid);
  });
  await waitFor(
    () => output.includes(`Listening on ${listening}`) || child.exitCode !== null,
    10_000,
    'systemd-socket-activate listening',
  );
  assert.equal(child.exitCode, null, output);
  return { child, pid, output: () => output };
}

/**
 * `baton run --socket <socket> -- node HTTP_EXAMPLE` under systemd-socket-activate on 127.0.0.1:port, the
 * socket named `fdname` (--fdname) when one is given. The tool passes only PATH, TERM, USER and HOME on, plus
 * -E variables.
 */
function activateBatonRun(t: Cleanup, port: number, socket: string, fdname?: string): Promise<Activated> {
  const address = `127.0.0.1:${port}`;
  const named = fdname === undefined ? [] : [`--fdname=${fdname}`];
  const batonRun = [BATON, 'run', '--socket', socket, '--', process.execPath, HTTP_EXAMPLE];
  return activate(t, ['-l', address, ...named, '-E', 'PORT=0', process.execPath, ...batonRun], address);
}

/** SIGTERM the activated `baton run` (exec'd in place by the tool): it exits with code 0. */
async function stopActivated(sa: Activated): Promise<void> {
  process.kill(sa.pid, 'SIGTERM');
  const exited = new Promise((resolve) => sa.child.once('exit', (code) => resolve(code)));
  assert.equal(await within(exited, 20_000, 'baton run exits after SIGTERM'), 0);
}

/** The inode of the TCP socket listening on 127.0.0.1:port, from /proc/net/tcp. */
function listenerInode(port: number): string {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === `0100007F:${hex}` && f[3] === '0A') return f[9]!;
  }
  throw new Error(`no listener on 127.0.0.1:${port} in /proc/net/tcp`);
}

/** How many of `pid`'s fds are the socket with that inode. */
function fdsOnSocket(pid: number, inode: string): number {
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

test('systemd-socket-activate … baton run: the activated socket `web` serves through 3 reloads under load, 0 errors', {
  timeout: 120_000,
  skip: activateMissing(),
}, async (t) => {
  const dir = tmpDir(t);
  const port = await freePort();
  const socket = path.join(dir, 's.sock');
  const sa = await activateBatonRun(t, port, socket, 'web');
  // The first connection starts the service (the tool execs baton in place: same pid); it waits in the
  // socket's queue until generation 1 accepts it.
  const first = await get(port, '/', 30_000);
  assert.equal(first.status, 200);
  assert.match(first.body, /^hello from generation 1 \(pid \d+\)/);
  assert.match(
    sa.output(),
    new RegExp(
      `baton listen-fd supervisor=${sa.pid} name=web kind=tcp address=127\\.0\\.0\\.1:${port} origin=activation`,
    ),
  );

  const load = startLoad({ port, connections: 10, pauseMs: 2, timeoutMs: 10_000, durationMs: 90_000 });
  t.after(() => load.stop());
  await waitFor(() => load.result.ok >= 100, 20_000, 'the load running against generation 1');
  for (let i = 0; i < 3; i++) {
    const before = load.result.ok;
    const r = await baton(['reload', '--socket', socket], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `reload ${i + 1}: ${r.stdout} ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`generation ${i + 2} \\(pid \\d+\\) is serving`));
    await waitFor(() => load.result.ok >= before + 50, 10_000, `requests served after reload ${i + 1}`);
  }
  const result = await load.stop();
  t.diagnostic(`http-load: sent ${result.sent}, ok ${result.ok}, errors ${result.errors}`);
  assert.equal(result.errors, 0, `failed requests: ${JSON.stringify(result.errorCodes)}`);
  assert.equal(result.non2xx, 0);
  assert.equal(result.sent, result.ok);

  const st = await baton(['status', '--json', '--socket', socket]);
  const status = JSON.parse(st.stdout) as {
    generations: Array<{ generation: number; pid: number; state: string }>;
    listeners: unknown[];
  };
  assert.deepEqual(status.listeners, [{ name: 'web', kind: 'tcp', address: `127.0.0.1:${port}` }]);
  const serving = status.generations.filter((g) => g.state === 'serving');
  assert.equal(serving.length, 1);
  assert.equal(serving[0]!.generation, 4);
  const gen = serving[0]!.pid;
  const env = environOf(gen);
  for (const k of ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', 'NOTIFY_SOCKET'])
    assert.equal(env[k], undefined, `${k} does not reach a generation`);
  // One fd for the socket in the supervisor (its copy, close-on-exec) and one in the generation (handed
  // over): the activated fd 3 did not leak into the generation through exec.
  const inode = listenerInode(port);
  assert.equal(fdsOnSocket(sa.pid, inode), 1, 'the supervisor holds the activated socket once');
  assert.equal(fdsOnSocket(gen, inode), 1, 'the generation holds it once');

  await stopActivated(sa);
  assert.equal(alive(gen), false);
});

test('systemd-socket-activate without --fdname … baton run: generation 1 takes the unnamed socket by position, the ' +
  'next ones by name', {
  timeout: 60_000,
  skip: activateMissing(),
}, async (t) => {
  const dir = tmpDir(t);
  const port = await freePort();
  const socket = path.join(dir, 's.sock');
  const sa = await activateBatonRun(t, port, socket);
  assert.match((await get(port, '/', 30_000)).body, /^hello from generation 1 /);
  assert.match(
    sa.output(),
    new RegExp(
      `baton listen-fd supervisor=${sa.pid} name=null kind=tcp address=127\\.0\\.0\\.1:${port} origin=activation`,
    ),
  );
  await waitFor(() => sa.output().includes('listener-named'), 10_000, 'the supervisor naming the socket');
  assert.match(
    sa.output(),
    new RegExp(`baton listener-named supervisor=${sa.pid} name=web address=127\\.0\\.0\\.1:${port}`),
  );
  const r = await baton(['reload', '--socket', socket], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match((await get(port)).body, /^hello from generation 2 /);
  const st = JSON.parse((await baton(['status', '--json', '--socket', socket])).stdout) as { listeners: unknown[] };
  assert.deepEqual(st.listeners, [{ name: 'web', kind: 'tcp', address: `127.0.0.1:${port}` }]);
  assert.doesNotMatch(sa.output(), /listener-closed/);
  await stopActivated(sa);
});

test('systemd-socket-activate … node app.js (no baton run): an unnamed socket is taken by position; a Unix socket ' +
  'serves an app that asked for a port', {
  timeout: 60_000,
  skip: activateMissing(),
}, async (t) => {
  const port = await freePort();
  const sa = await activate(
    t,
    ['-l', `127.0.0.1:${port}`, '-E', 'PORT=8', process.execPath, HTTP_EXAMPLE],
    `127.0.0.1:${port}`,
  );
  const r = await get(port, '/', 30_000);
  assert.equal(
    r.body,
    `hello from generation 1 (pid ${sa.pid})\n`,
    'the app itself, exec’d in place, answers on the activated port',
  );
  assert.match(
    sa.output(),
    new RegExp(
      `baton listen gen=1 pid=${sa.pid} name=web address=127\\.0\\.0\\.1:${port} inherited=true origin=activation`,
    ),
  );
  killPid(sa.pid);
  await waitExit(sa.pid, 10_000, 'the app exits');

  const dir = tmpDir(t);
  const unix = path.join(dir, 'web.sock');
  const sa2 = await activate(t, ['-l', unix, '--fdname=web', process.execPath, ACTIVATED_APP], unix);
  const body = await new Promise<string>((resolve, reject) => {
    http
      .get({ socketPath: unix, path: '/', agent: false, timeout: 30_000 }, (res) => {
        let b = '';
        res
          .setEncoding('utf8')
          .on('data', (d: string) => (b += d))
          .on('end', () => resolve(b));
      })
      .on('error', reject);
  });
  assert.equal(body, `activated pid ${sa2.pid}\n`);
  await waitFor(() => sa2.output().includes('serving on'), 10_000, 'the app printing its address');
  assert.match(
    sa2.output(),
    /sockets \[\{"name":"web","kind":"unix","address":\{"path":"[^"]+web\.sock"\},"origin":"activation"\}\]/,
  );
  killPid(sa2.pid);
});

test('--fdstore: a restart ("systemctl restart") keeps the port open — no connection refused, every request served', {
  timeout: 120_000,
}, async (t) => {
  const dir = tmpDir(t);
  const m = await startManager(t, path.join(dir, 'notify.sock'));
  const argv = [
    process.execPath,
    BATON,
    'run',
    '--fdstore',
    '--socket',
    path.join(dir, 's.sock'),
    '--',
    process.execPath,
    HTTP_EXAMPLE,
  ];
  const first = await m.start(argv, { PORT: '0' });
  await m.next((n) => n.pid === first && n.fields.READY === '1', 'READY=1 from the first instance');
  assert.deepEqual(m.store(), ['web']);
  const stored = m.messages.find((n) => n.fields.FDSTORE === '1')!;
  assert.equal(stored.text, 'FDSTORE=1\nFDNAME=web');
  assert.equal(stored.fds, 1);
  assert.equal(stored.pid, first);
  const serving = /generation 1 serving on http:\/\/127\.0\.0\.1:(\d+)/;
  await waitFor(() => serving.test(m.output()), 10_000, 'generation 1 printing its port');
  const port = Number(serving.exec(m.output())![1]);

  const p = probe(port, 4);
  t.after(() => p.stop());
  await waitFor(() => p.ok >= 50, 20_000, 'the prober served by the first instance');

  // Stop: the generation drains and closes its listener, the supervisor its copy; the socket lives on in
  // the manager's fd store, and new connections wait in its queue.
  process.kill(first, 'SIGTERM');
  await m.next((n) => n.pid === first && n.fields.STOPPING === '1', 'STOPPING=1');
  await waitExit(first, 20_000, 'the first instance exits');
  // Between the two instances the port is still listening, held by the manager's fd store alone.
  assert.equal(fdsOnSocket(m.child.pid!, listenerInode(port)), 1, 'the fd store holds the listening socket');
  const waiting = p.ok;
  const from = m.messages.length;
  const second = await m.start(argv, { PORT: '0' });
  const ready = await m.next(
    (n) => n.pid === second && n.fields.READY === '1',
    'READY=1 from the restarted instance',
    from,
  );
  assert.equal(ready.text, 'READY=1\nSTATUS=generation 1 serving, 1 listener');
  await waitFor(() => p.ok >= waiting + 50, 20_000, 'the prober served by the restarted instance');
  await p.stop();

  t.diagnostic(`prober: ok ${p.ok}, refused ${p.refused}, errors ${JSON.stringify(p.errors)}`);
  assert.equal(p.refused, 0, 'no connection was refused across the restart');
  assert.deepEqual(p.errors, {});
  assert.ok(
    p.bodies.some((b) => b.includes(`generation 1`) && !b.includes(`(pid ${first})`)),
    'the restarted instance answered',
  );
  assert.match(
    m.output(),
    new RegExp(`baton listen-fd supervisor=${second} name=web kind=tcp address=127\\.0\\.0\\.1:${port} origin=fdstore`),
  );
  // Nothing stored twice: the restarted instance knew 'web' was in the store already.
  assert.equal(m.messages.filter((n) => n.fields.FDSTORE === '1').length, 1);
  assert.deepEqual(m.store(), ['web']);
  process.kill(second, 'SIGTERM');
  await waitExit(second, 20_000, 'the restarted instance exits');
});
