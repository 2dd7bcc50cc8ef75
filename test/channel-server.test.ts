/**
 * FdChannelServer and FdChannel.connect: the socket file's mode, what happens when the path is taken (a
 * regular file, a stale socket, a live listener), who removes the socket file, path length limits,
 * connection errors, and peer credentials across processes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { before, test, type TestContext } from 'node:test';
import { FdChannel, FdChannelServer } from '../src/fd/index.js';
import { expectFdsBackTo, fdCount, spawnProcess, tmpDir, within, type Spawned } from './helpers.js';
import { closeOf, collect, next, rejection, spawnPeer, turns, warmUpSpawn } from './channel-helpers.js';

before(async () => {
  await warmUpSpawn();
});

/**
 * Connect to `sock` and exchange one message each way with the server's side. Any channel the server
 * accepts answers `ping` with `pong` (a failed listen() on a live path probes it with a connection that
 * closes at once, so the first channel accepted is not necessarily ours).
 */
async function roundTrip(server: FdChannelServer, sock: string): Promise<void> {
  const accepted: FdChannel[] = [];
  const onChannel = (ch: FdChannel) => {
    accepted.push(ch);
    ch.on('message', (data) => {
      if (data.toString() === 'ping') void ch.send('pong').catch(() => {});
    });
  };
  server.on('channel', onChannel);
  try {
    const client = await FdChannel.connect(sock);
    const toClient = collect(client, 1);
    await client.send('ping');
    assert.equal((await toClient)[0]!.data.toString(), 'pong');
    assert.equal(client.peer.pid, process.pid);
    client.close();
  } finally {
    server.off('channel', onChannel);
    accepted.forEach((ch) => ch.close());
  }
}

test('the socket file has mode 0600, whatever the umask', async (t) => {
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const old = process.umask(0);
  let server: FdChannelServer;
  try {
    server = await FdChannelServer.listen(sock);
  } finally {
    process.umask(old);
  }
  t.after(() => server.close());
  const st = fs.statSync(sock);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
  assert.equal(server.listening, true);
  assert.equal(server.path, sock);
  await roundTrip(server, sock);
});

test('a path that is a regular file: EADDRINUSE, and the file is left alone', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'precious');
  fs.writeFileSync(file, 'do not delete me');
  fs.chmodSync(file, 0o640);
  const before = fs.statSync(file);
  const base = fdCount();
  const err = await rejection(FdChannelServer.listen(file));
  assert.equal(err.code, 'EADDRINUSE');
  assert.equal(err.syscall, 'bind');
  assert.match(err.message, /not a socket/);
  const after = fs.statSync(file);
  assert.equal(fs.readFileSync(file, 'utf8'), 'do not delete me');
  assert.equal(after.ino, before.ino);
  assert.equal(after.mode, before.mode);
  assert.equal(after.mtimeMs, before.mtimeMs);
  assert.ok(after.isFile());
  // A directory is no better.
  const sub = path.join(dir, 'subdir');
  fs.mkdirSync(sub);
  const err2 = await rejection(FdChannelServer.listen(sub));
  assert.equal(err2.code, 'EADDRINUSE');
  assert.ok(fs.statSync(sub).isDirectory());
  await expectFdsBackTo(base, 'failed listens');
});

test('a stale socket file left by a SIGKILLed listener is replaced', async (t) => {
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const child = spawnPeer(t, 'listen', [sock]);
  await child.line(/listening/);
  assert.ok(fs.statSync(sock).isSocket());
  process.kill(child.pid, 'SIGKILL');
  assert.equal(await within(child.exited, 10_000, 'child exit'), 'SIGKILL');
  assert.ok(fs.statSync(sock).isSocket(), 'the dead listener left its socket file');
  const err = await rejection(FdChannel.connect(sock));
  assert.equal(err.code, 'ECONNREFUSED', 'nobody listens on it');
  const server = await FdChannelServer.listen(sock);
  t.after(() => server.close());
  const fresh = fs.statSync(sock);
  assert.ok(fresh.isSocket());
  assert.equal(fresh.mode & 0o777, 0o600);
  await roundTrip(server, sock);
});

test("a live listener's path: EADDRINUSE, and the live server keeps working", async (t) => {
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const server = await FdChannelServer.listen(sock);
  t.after(() => server.close());
  const ino = fs.statSync(sock).ino;
  const err = await rejection(FdChannelServer.listen(sock));
  assert.equal(err.code, 'EADDRINUSE');
  assert.equal(err.syscall, 'bind');
  assert.equal(fs.statSync(sock).ino, ino, 'the live socket file is untouched');
  assert.equal(server.listening, true);
  await roundTrip(server, sock);

  // The same from another process holding the path.
  const sock2 = path.join(dir, 's2');
  const child = spawnPeer(t, 'listen', [sock2]);
  await child.line(/listening/);
  const err2 = await rejection(FdChannelServer.listen(sock2));
  assert.equal(err2.code, 'EADDRINUSE');
  const client = await FdChannel.connect(sock2); // the child still accepts (and closes at once)
  assert.equal(await closeOf(client), undefined);
  assert.equal(client.peer.pid, child.pid);
});

// A process in the middle of listen(): it holds the flock on the socket's directory (native/channel.c,
// lock_socket_dir), has bound the path and not called listen() yet. Python, because Node can neither flock
// nor bind without listening. It listens and unlocks after `holdS` seconds (never, for a negative value).
const BINDING_PEER = `
import fcntl, os, socket, sys, time
path, hold = sys.argv[1], float(sys.argv[2])
d = os.open(os.path.dirname(path), os.O_RDONLY)
fcntl.flock(d, fcntl.LOCK_EX)
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(path)
print('bound', flush=True)
if hold < 0:
    time.sleep(3600)
time.sleep(hold)
s.listen(8)
fcntl.flock(d, fcntl.LOCK_UN)
print('listening', flush=True)
while True:
    c, _ = s.accept()
    c.close()
`;

const HAS_PYTHON = spawnSync('python3', ['-c', 'pass']).status === 0;

/** The python peer, once it has bound `sock` (under the lock). */
async function bindingPeer(t: TestContext, sock: string, holdS: number): Promise<Spawned> {
  const peer = spawnProcess(t, 'python3', ['-c', BINDING_PEER, sock, String(holdS)]);
  await peer.line(/bound/);
  return peer;
}

test('a path another process has bound and is about to listen on is not taken from it (two listens at once)', async (t) => {
  if (!HAS_PYTHON) return t.skip('python3 is not available to bind a socket without listening on it');
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const peer = await bindingPeer(t, sock, 0.4);
  const ino = fs.statSync(sock).ino;
  const base = fdCount();
  // Before the lock, the probe found the peer's socket not listening yet, took it for stale, unlinked it
  // and bound its own: both processes then held "the" path, and the peer's was unreachable.
  const err = await rejection(FdChannelServer.listen(sock));
  assert.equal(err.code, 'EADDRINUSE');
  assert.match(err.message, /another process is listening on it/);
  assert.equal(fs.statSync(sock).ino, ino, "the peer's socket file is untouched");
  const client = await FdChannel.connect(sock);
  assert.equal(client.peer.pid, peer.pid, 'the path reaches the peer');
  client.close();
  await expectFdsBackTo(base, 'the failed listen');
});

test('a process stopped in the middle of its listen() on the same directory: a clear error after ~2 s, nothing removed', async (t) => {
  if (!HAS_PYTHON) return t.skip('python3 is not available to bind a socket without listening on it');
  const dir = tmpDir(t);
  await bindingPeer(t, path.join(dir, 'held'), -1);
  const sock = path.join(dir, 's');
  const base = fdCount();
  const err = await rejection(FdChannelServer.listen(sock), 10_000);
  assert.equal(err.syscall, 'flock');
  assert.equal(err.code, 'EAGAIN');
  assert.match(err.message, /another process has been binding a socket in its directory for 2 s/);
  assert.equal(fs.existsSync(sock), false);
  assert.ok(fs.statSync(path.join(dir, 'held')).isSocket());
  await expectFdsBackTo(base, 'the failed listen');
});

test('close() removes the socket file only while it is still its own', async (t) => {
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const a = await FdChannelServer.listen(sock);
  const closed = next(a, 'close');
  a.close();
  await closed;
  assert.equal(a.listening, false);
  assert.equal(fs.existsSync(sock), false, 'its own socket file is removed');
  a.close(); // idempotent

  // A successor takes over the path while the first server still runs.
  const first = await FdChannelServer.listen(sock);
  fs.unlinkSync(sock);
  const second = await FdChannelServer.listen(sock);
  t.after(() => second.close());
  const secondIno = fs.statSync(sock).ino;
  first.close();
  await turns();
  assert.ok(fs.existsSync(sock), "the successor's socket file stays");
  assert.equal(fs.statSync(sock).ino, secondIno);
  await roundTrip(second, sock);

  // Replaced by a regular file: not removed either.
  const third = await FdChannelServer.listen(path.join(dir, 't'));
  fs.unlinkSync(third.path);
  fs.writeFileSync(third.path, 'someone else');
  third.close();
  assert.equal(fs.readFileSync(third.path, 'utf8'), 'someone else');
});

test('channels already accepted stay open after the server closes', async (t) => {
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const server = await FdChannelServer.listen(sock);
  const accepted = next<[FdChannel]>(server, 'channel');
  const client = await FdChannel.connect(sock);
  const [peer] = await accepted;
  t.after(() => {
    client.close();
    peer.close();
  });
  server.close();
  const got = collect(peer, 1);
  await client.send('still here');
  assert.equal((await got)[0]!.data.toString(), 'still here');
  const err = await rejection(FdChannel.connect(sock));
  assert.equal(err.code, 'ENOENT');
});

test('a path too long for AF_UNIX: RangeError; 107 bytes is the most that works', async (t) => {
  const dir = tmpDir(t);
  const at = (len: number) => {
    const p = path.join(dir, 'x'.repeat(len - dir.length - 1));
    assert.equal(Buffer.byteLength(p), len);
    return p;
  };
  const base = fdCount();
  for (const len of [108, 200, 5000]) {
    const err = await rejection(FdChannelServer.listen(at(len)));
    assert.ok(err instanceof RangeError, `listen, ${len} bytes`);
    assert.equal(err.code, 'ERR_OUT_OF_RANGE');
    const err2 = await rejection(FdChannel.connect(at(len)));
    assert.ok(err2 instanceof RangeError, `connect, ${len} bytes`);
  }
  await expectFdsBackTo(base, 'too-long paths');
  const longest = at(107);
  const server = await FdChannelServer.listen(longest);
  t.after(() => server.close());
  await roundTrip(server, longest);
});

test('bad paths: empty, NUL bytes, not a string', async () => {
  await assert.rejects(FdChannelServer.listen(''), TypeError);
  await assert.rejects(FdChannelServer.listen('/tmp/a\0b'), TypeError);
  await assert.rejects(FdChannelServer.listen(42 as unknown as string), TypeError);
  await assert.rejects(FdChannel.connect(42 as unknown as string), TypeError);
});

test('connect to a missing path: ENOENT from connect', async (t) => {
  const dir = tmpDir(t);
  const base = fdCount();
  const err = await rejection(FdChannel.connect(path.join(dir, 'nobody-here')));
  assert.equal(err.code, 'ENOENT');
  assert.equal(err.syscall, 'connect');
  // A path that is a regular file: not a socket.
  fs.writeFileSync(path.join(dir, 'file'), '');
  const err2 = await rejection(FdChannel.connect(path.join(dir, 'file')));
  assert.equal(err2.code, 'ECONNREFUSED');
  assert.equal(err2.syscall, 'connect');
  await expectFdsBackTo(base, 'failed connects');
});

test('peer credentials are those of the real peer process', async (t) => {
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const server = await FdChannelServer.listen(sock);
  t.after(() => server.close());
  const child = spawnPeer(t, 'creds', [sock]);
  const [ch] = await next<[FdChannel]>(server, 'channel', 10_000);
  assert.notEqual(child.pid, process.pid);
  assert.deepEqual(ch.peer, { pid: child.pid, uid: process.getuid!(), gid: process.getgid!() });
  const m = await child.line(/peer (\{.*\}) self (\d+)/);
  assert.equal(Number(m[2]), child.pid);
  assert.deepEqual(JSON.parse(m[1]!), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  await ch.send('bye');
  assert.equal(await within(child.exited, 10_000, 'child exit'), 0);
});

test("a server with no 'channel' listener closes what it accepts", async (t) => {
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const server = await FdChannelServer.listen(sock);
  t.after(() => server.close());
  const client = await FdChannel.connect(sock);
  assert.equal(await closeOf(client), undefined);
});
