/**
 * adopt(fd): each kind of fd becomes the Node object that fits it, and that object works (accepts, reads,
 * writes, receives, shares the file offset). Ownership: adopt takes the fd whatever the outcome; a wrong
 * kind for a typed variant is ERR_BATON_UNSUPPORTED_FD and the fd is closed; the fd count is back to its
 * baseline after every error path and after each adopted object is closed. Most cases adopt a dupFd of an
 * object made in this process; one takes a listener from another process over an FdChannel.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { before, test } from 'node:test';
import {
  adopt,
  adoptDgram,
  adoptFile,
  adoptServer,
  adoptSocket,
  dupFd,
  fdOf,
  FdChannel,
  FdChannelServer,
  probe,
} from '../src/index.js';
import { native } from '../src/fd/native.js';
import { listenOnFd } from '../src/upgrader/sockets.js';
import { expectFdsBackTo, fdCount, FIXTURES, spawnNode, tmpDir, within } from './helpers.js';
import {
  bindUdp,
  closeDgram,
  closeServer,
  closedFd,
  connectedPair,
  connectedUnixPair,
  destroySocket,
  fdList,
  ipv6Available,
  listenTcp,
  listenUnix,
  NO_IPV6,
  openFifo,
  rejectsCode,
  runPythonUnixDgram,
  throwsCode,
  warmUp,
  stillOpen,
} from './fd-helpers.js';
import { get } from './upgrade-helpers.js';

before(warmUp);

function connectTo(port: number, host: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    s.once('connect', () => resolve(s)).once('error', reject);
  });
}

/** dgram.Socket's `type` ('udp4' | 'udp6'), which @types/node leaves out. */
function socketType(s: dgram.Socket): string {
  return (s as unknown as { type: string }).type;
}

function nextData(s: net.Socket | dgram.Socket, what: string): Promise<string> {
  const event = s instanceof dgram.Socket ? 'message' : 'data';
  return within(new Promise((resolve) => s.once(event, (d: Buffer) => resolve(String(d)))), 5000, what);
}

for (const host of ['127.0.0.1', '::1']) {
  test(`adopt: a TCP listener on ${host} becomes a listening net.Server that accepts on the original port`, async (t) => {
    if (host === '::1' && !(await ipv6Available())) return t.skip(NO_IPV6);
    const baseline = fdCount();
    const original = await listenTcp(t, host);
    const port = (original.address() as net.AddressInfo).port;
    const d = dupFd(original);
    const inode = probe(d).inode;
    const fdsBefore = fdList();
    const server = await adopt(d);
    assert.ok(server instanceof net.Server, 'a net.Server');
    t.after(() => closeServer(server));
    assert.deepEqual(fdList(), fdsBefore, 'adopt wraps the fd it was given: no dup');
    assert.equal(fdOf(server), d);
    assert.equal(server.listening, true);
    assert.deepEqual(server.address(), { address: host, family: host === '::1' ? 'IPv6' : 'IPv4', port });
    assert.equal(probe(d).nonblocking, true);

    // Only the adopted server accepts now.
    await closeServer(original);
    const accepted = within(
      new Promise<net.Socket>((resolve) => server.once('connection', resolve)),
      5000,
      'a connection on the adopted listener',
    );
    const client = await connectTo(port, host);
    t.after(() => destroySocket(client));
    const s = await accepted;
    s.end('hello from the adopted server');
    assert.equal(await nextData(client, 'the greeting'), 'hello from the adopted server');
    await destroySocket(client);
    await destroySocket(s);
    await closeServer(server);
    assert.equal(stillOpen(d, inode), false, 'closing the adopted server closed the fd');
    await expectFdsBackTo(baseline, `adopting a TCP listener on ${host}`);
  });
}

test('adoptServer: a Unix listener becomes a listening net.Server', async (t) => {
  const baseline = fdCount();
  const dir = tmpDir(t);
  const { server: original, path: file } = await listenUnix(t, dir);
  const d = dupFd(original);
  const server = await adoptServer(d);
  t.after(() => closeServer(server));
  assert.ok(server instanceof net.Server);
  assert.equal(server.listening, true);
  assert.equal(fdOf(server), d);
  // Closing the original Node server unlinks its path; move the socket file out of its way first, so the
  // adopted listener stays reachable (the socket, not the name, is what was adopted).
  const moved = path.join(dir, 'moved.sock');
  fs.renameSync(file, moved);
  await closeServer(original);
  const accepted = within(
    new Promise<net.Socket>((resolve) => server.once('connection', resolve)),
    5000,
    'a Unix connection on the adopted listener',
  );
  const client = net.connect(moved);
  t.after(() => destroySocket(client));
  const s = await accepted;
  s.end('unix hello');
  assert.equal(await nextData(client, 'the Unix greeting'), 'unix hello');
  await destroySocket(client);
  await destroySocket(s);
  await closeServer(server);
  await expectFdsBackTo(baseline, 'adopting a Unix listener');
});

for (const host of ['127.0.0.1', '::1']) {
  test(`adopt/adoptSocket: a TCP connection over ${host} becomes a net.Socket that reads and writes`, async (t) => {
    if (host === '::1' && !(await ipv6Available())) return t.skip(NO_IPV6);
    const baseline = fdCount();
    const { client, accepted, server } = await connectedPair(t, host);
    for (const how of ['adopt', 'adoptSocket'] as const) {
      const d = dupFd(accepted);
      const sock = how === 'adopt' ? await adopt(d) : adoptSocket(d);
      assert.ok(sock instanceof net.Socket, `${how}: a net.Socket`);
      t.after(() => destroySocket(sock));
      assert.equal(fdOf(sock), d);
      assert.equal(sock.remotePort, client.localPort, `${how}: remotePort is the client's port`);
      assert.equal(sock.remoteAddress, client.localAddress);
      assert.equal(sock.localPort, (server.address() as net.AddressInfo).port);
      if (how === 'adopt') {
        // Two Node objects on one socket would race for the data: this one only checks the wrapping.
        await destroySocket(sock);
        continue;
      }
      await destroySocket(accepted); // closes its fd only; the socket lives on in the adopted dup
      const got = nextData(sock, 'data on the adopted socket');
      client.write('ping');
      assert.equal(await got, 'ping');
      const back = nextData(client, 'the reply');
      sock.write('pong');
      assert.equal(await back, 'pong');
      const ended = within(new Promise((resolve) => client.once('end', resolve)), 5000, 'FIN from the adopted socket');
      client.resume();
      sock.end();
      await ended;
      await destroySocket(sock);
      await destroySocket(client);
    }
    await closeServer(server);
    await expectFdsBackTo(baseline, `adopting a TCP connection over ${host}`);
  });
}

test('adoptSocket: a Unix connection becomes a net.Socket that reads and writes', async (t) => {
  const baseline = fdCount();
  const { client, accepted, server } = await connectedUnixPair(t);
  const sock = adoptSocket(dupFd(accepted));
  t.after(() => destroySocket(sock));
  await destroySocket(accepted);
  const got = nextData(sock, 'data on the adopted Unix socket');
  client.write('over unix');
  assert.equal(await got, 'over unix');
  const back = nextData(client, 'the Unix reply');
  sock.write('and back');
  assert.equal(await back, 'and back');
  await destroySocket(sock);
  await destroySocket(client);
  await closeServer(server);
  await expectFdsBackTo(baseline, 'adopting a Unix connection');
});

test('adopt: a FIFO becomes a net.Socket (a pipe) that reads what it writes', async (t) => {
  const baseline = fdCount();
  const fifo = openFifo(t, tmpDir(t)); // closed by the helper after the test
  const baselineWithFifo = fdCount();
  const sock = await adopt(dupFd(fifo));
  assert.ok(sock instanceof net.Socket);
  const got = nextData(sock, 'data through the FIFO');
  sock.write('through the fifo');
  assert.equal(await got, 'through the fifo');
  await destroySocket(sock);
  await expectFdsBackTo(baselineWithFifo, 'adopting a FIFO');
  assert.equal(baselineWithFifo, baseline + 1);
});

for (const type of ['udp4', 'udp6'] as const) {
  test(`adopt/adoptDgram: a ${type} socket becomes a bound dgram.Socket that receives`, async (t) => {
    if (type === 'udp6' && !(await ipv6Available())) return t.skip(NO_IPV6);
    const host = type === 'udp6' ? '::1' : '127.0.0.1';
    const baseline = fdCount();
    const original = await bindUdp(t, type);
    const port = original.address().port;
    const a = await adopt(dupFd(original));
    assert.ok(a instanceof dgram.Socket, 'adopt: a dgram.Socket');
    t.after(() => closeDgram(a));
    assert.equal(socketType(a), type);
    assert.deepEqual(a.address(), { address: host, family: type === 'udp6' ? 'IPv6' : 'IPv4', port });
    await closeDgram(a);

    const u = await adoptDgram(dupFd(original));
    t.after(() => closeDgram(u));
    assert.equal(socketType(u), type);
    await closeDgram(original);
    const sender = await bindUdp(t, type);
    const got = nextData(u, 'a datagram on the adopted socket');
    sender.send('datagram', port, host);
    assert.equal(await got, 'datagram');
    await closeDgram(u);
    await closeDgram(sender);
    await expectFdsBackTo(baseline, `adopting a ${type} socket`);
  });
}

test('adopt/adoptFile: a regular file becomes a FileHandle on the same open file description', async (t) => {
  const baseline = fdCount();
  const dir = tmpDir(t);
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, 'hello world');
  const original = await fs.promises.open(file, 'r');
  const FileHandle = original.constructor;
  const d = dupFd(original);
  const fh = await adoptFile(d);
  assert.ok(fh instanceof FileHandle, 'an instance of the class fs.promises.open returns');
  assert.equal(fh.fd, d);
  const buf = Buffer.alloc(5);
  const { bytesRead } = await fh.read(buf, 0, 5, null); // at the current offset
  assert.equal(bytesRead, 5);
  assert.equal(buf.toString(), 'hello');
  // The original fd shares the offset: it continues where the adopted handle stopped.
  const rest = Buffer.alloc(16);
  const n = fs.readSync(original.fd, rest, 0, 16, null);
  assert.equal(rest.toString('utf8', 0, n), ' world');
  assert.equal((await fh.stat()).size, 11);
  await fh.close();
  assert.equal(fdList().includes(d), false, 'closing the FileHandle closed the fd');
  assert.equal(await original.readFile({ encoding: 'utf8' }), '', 'the original is still open (at end of file)');
  await original.close();

  const g = (await adopt(dupFd(await keep(t, fs.promises.open(file, 'r'))))) as fs.promises.FileHandle;
  assert.ok(g instanceof FileHandle, 'adopt() makes a FileHandle of a file too');
  assert.equal(await g.readFile('utf8'), 'hello world');
  await g.close();

  // Directories and character devices are FileHandles as well.
  const dirHandle = (await adopt(dupFd(await keep(t, fs.promises.open(dir, 'r'))))) as fs.promises.FileHandle;
  assert.ok(dirHandle instanceof FileHandle);
  await rejectsCode(dirHandle.readFile(), Error, 'EISDIR');
  await dirHandle.close();
  const devNull = await adoptFile(dupFd(await keep(t, fs.promises.open('/dev/null', 'r'))));
  assert.equal((await devNull.read(Buffer.alloc(4), 0, 4, null)).bytesRead, 0);
  await devNull.close();
  await closeKept();
  await expectFdsBackTo(baseline, 'adopting files');
});

const kept: fs.promises.FileHandle[] = [];
async function keep(
  t: { after(fn: () => unknown): void },
  p: Promise<fs.promises.FileHandle>,
): Promise<fs.promises.FileHandle> {
  const fh = await p;
  kept.push(fh);
  t.after(closeKept);
  return fh;
}
async function closeKept(): Promise<void> {
  for (const fh of kept.splice(0)) await fh.close().catch(() => {});
}

test('typed variants reject a wrong kind with ERR_BATON_UNSUPPORTED_FD and close the fd', async (t) => {
  const baseline = fdCount();
  const { client, accepted, server } = await connectedPair(t);
  const udp = await bindUdp(t);
  const fh = await fs.promises.open('/dev/null', 'r');
  t.after(() => fh.close().catch(() => {}));
  const fifo = openFifo(t, tmpDir(t));
  const [chA, chB] = FdChannel.pair();
  t.after(() => {
    chA.close();
    chB.close();
  });
  const seqListenerPath = path.join(tmpDir(t), 'seq.sock');
  const seqListener = native.listen(seqListenerPath, 4);
  let seqListenerOpen = true;
  const closeSeqListener = () => {
    // Once only: a second close could hit an unrelated fd that reused the number.
    if (seqListenerOpen) native.closeMany([seqListener]);
    seqListenerOpen = false;
  };
  t.after(closeSeqListener);
  const baselineWithObjects = fdCount();

  type Case = [what: string, source: Parameters<typeof dupFd>[0], attempt: (fd: number) => Promise<unknown>];
  const cases: Case[] = [
    ['adoptServer(TCP connection)', accepted, (fd) => adoptServer(fd)],
    ['adoptServer(UDP)', udp, (fd) => adoptServer(fd)],
    ['adoptServer(file)', fh, (fd) => adoptServer(fd)],
    ['adoptServer(SEQPACKET listener)', seqListener, (fd) => adoptServer(fd)],
    ['adoptSocket(TCP listener)', server, async (fd) => adoptSocket(fd)],
    ['adoptSocket(UDP)', udp, async (fd) => adoptSocket(fd)],
    ['adoptSocket(file)', fh, async (fd) => adoptSocket(fd)],
    ['adoptSocket(SEQPACKET connection)', chA.fd, async (fd) => adoptSocket(fd)],
    ['adoptDgram(TCP listener)', server, (fd) => adoptDgram(fd)],
    ['adoptDgram(TCP connection)', client, (fd) => adoptDgram(fd)],
    ['adoptDgram(file)', fh, (fd) => adoptDgram(fd)],
    ['adoptFile(TCP connection)', client, (fd) => adoptFile(fd)],
    ['adoptFile(UDP)', udp, (fd) => adoptFile(fd)],
    ['adoptFile(FIFO)', fifo, (fd) => adoptFile(fd)],
    ['adopt(SEQPACKET connection)', chB.fd, (fd) => adopt(fd)],
    ['adopt(SEQPACKET listener)', seqListener, (fd) => adopt(fd)],
  ];
  for (const [what, source, attempt] of cases) {
    const d = dupFd(source);
    const inode = probe(d).inode;
    const err = await rejectsCode(attempt(d), Error, 'ERR_BATON_UNSUPPORTED_FD');
    assert.match(err.message, /it was closed/, what);
    assert.equal(stillOpen(d, inode), false, `${what}: the fd was closed`);
    assert.equal(fdCount(), baselineWithObjects, `${what}: no fd leaked`);
  }
  // adoptSocket is synchronous: it throws rather than rejects.
  const d = dupFd(server);
  throwsCode(() => adoptSocket(d), Error, 'ERR_BATON_UNSUPPORTED_FD');
  assert.equal(fdCount(), baselineWithObjects);

  // An fd Node has no object for at all (libuv's epoll fd): adopt() refuses it, and closes our dup.
  const epoll = fdList().find((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[eventpoll]';
    } catch {
      return false;
    }
  })!;
  const e = dupFd(epoll);
  await rejectsCode(adopt(e), Error, 'ERR_BATON_UNSUPPORTED_FD');
  assert.equal(fdCount(), baselineWithObjects);

  // The originals are unaffected by their dups being adopted-and-closed.
  const got = nextData(accepted, 'data on the original connection');
  client.write('still fine');
  assert.equal(await got, 'still fine');
  assert.equal(chA.closed, false);
  await destroySocket(client);
  await destroySocket(accepted);
  await closeServer(server);
  await closeDgram(udp);
  await fh.close();
  chA.close();
  chB.close();
  await expectFdsBackTo(baselineWithObjects - 7, 'the unsupported-kind cases');
  closeSeqListener();
  await expectFdsBackTo(baseline + 1 /* the FIFO, closed after the test */, 'the unsupported-kind cases');
});

test('adopt: a unix-dgram socket (from python3) is ERR_BATON_UNSUPPORTED_FD and is closed', async (t) => {
  const results = await runPythonUnixDgram(path.join(tmpDir(t), 'dgram.sock'));
  if (results === null) return t.skip('python3 is not available to create AF_UNIX SOCK_DGRAM sockets');
  assert.equal(results.length, 2);
  for (const r of results) {
    assert.equal(r.info.kind, 'unix-dgram');
    assert.deepEqual(r.adopt, { ok: false, code: 'ERR_BATON_UNSUPPORTED_FD', dupStillOpen: false });
  }
});

test('adopt: EBADF for a closed fd, argument errors before anything happens', async () => {
  const baseline = fdCount();
  for (const [what, attempt] of [
    ['adopt', (fd: number) => adopt(fd)],
    ['adoptServer', (fd: number) => adoptServer(fd)],
    ['adoptDgram', (fd: number) => adoptDgram(fd)],
    ['adoptFile', (fd: number) => adoptFile(fd)],
  ] as const) {
    const err = await rejectsCode(attempt(closedFd()), Error, 'EBADF');
    assert.equal(err.syscall, 'fstat', what);
  }
  const err = throwsCode(() => adoptSocket(closedFd()), Error, 'EBADF');
  assert.equal(err.syscall, 'fstat');
  await rejectsCode(adopt(-1), RangeError, 'ERR_OUT_OF_RANGE');
  await rejectsCode(adopt('3' as unknown as number), TypeError, 'ERR_INVALID_ARG_TYPE');
  await rejectsCode(adoptFile(1.5), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => adoptSocket(null as unknown as number), TypeError, 'ERR_INVALID_ARG_TYPE');
  await expectFdsBackTo(baseline, 'the EBADF and argument cases');
});

test(
  'adopt across processes: a child sends its TCP listener over an FdChannel; the parent serves HTTP on it after ' +
    'the child closed its copy',
  async (t) => {
    const baseline = fdCount();
    const dir = tmpDir(t);
    const channelPath = path.join(dir, 'ch.sock');
    const channels = await FdChannelServer.listen(channelPath);
    t.after(() => channels.close());
    const received = new Promise<{ meta: { port: number; pid: number }; fds: number[]; channel: FdChannel }>(
      (resolve) => {
        channels.once('channel', (channel) => {
          t.after(() => channel.close());
          channel.once('message', (data, fds) =>
            resolve({ meta: JSON.parse(String(data)) as { port: number; pid: number }, fds, channel }),
          );
        });
      },
    );
    const child = spawnNode(t, path.join(FIXTURES, 'send-listener.js'), [channelPath]);
    const { meta, fds, channel } = await within(received, 10_000, 'the listener from the child');
    assert.equal(meta.pid, child.pid);
    assert.equal(fds.length, 1);
    const info = probe(fds[0]!);
    assert.equal(info.kind, 'tcp-listener');
    assert.deepEqual(info.local, { family: 'IPv4', address: '127.0.0.1', port: meta.port });
    assert.equal(info.cloexec, true, 'received fds are close-on-exec');

    const server = await adoptServer(fds[0]!);
    t.after(() => closeServer(server));
    const web = http.createServer((req, res) => res.end(`served by ${process.pid} for ${req.url}`));
    server.on('connection', (s) => web.emit('connection', s));

    // The child closes its copy and exits: from then on the parent's is the only one.
    await child.line(/^closed (\d+)$/m);
    assert.equal(await within(child.exited, 10_000, 'the child to exit'), 0);
    const { body } = await within(get(meta.port, '/x'), 5000, 'an HTTP response from the adopted listener');
    assert.equal(body, `served by ${process.pid} for /x`);

    await closeServer(server);
    channels.close();
    await within(
      new Promise((resolve) => (channel.closed ? resolve(null) : channel.once('close', resolve))),
      5000,
      'the channel to close after the child exited',
    );
    await expectFdsBackTo(baseline, 'the cross-process adoption');
  },
);

test(
  "listenOnFd (the Upgrader's inherited listeners): a failed listen never closes the file that reused the fd " +
    'number',
  async (t) => {
    // Node's server.listen({ fd }) on a connected TCP socket: listen(2) fails with EINVAL, Node closes its handle
    // (and the fd) synchronously and reports the error a tick later. A file opened in between gets the same
    // number; closing "the fd" after the error would close that file (src/upgrader/sockets.ts did, before it
    // went through fd/adopt's inode check).
    const { client } = await connectedPair(t);
    const baseline = fdCount();
    const fd = dupFd(client);
    const server = net.createServer();
    const failed = listenOnFd(server, fd, 16);
    const p = path.join(tmpDir(t), 'reuser');
    fs.writeFileSync(p, 'mine');
    const opened: number[] = [];
    let reuser = -1;
    for (let i = 0; i < 64 && reuser < 0; i++) {
      const f = fs.openSync(p, 'r');
      if (f === fd) reuser = f;
      else opened.push(f);
    }
    for (const f of opened) fs.closeSync(f);
    assert.equal(reuser, fd, `a file got fd ${fd} back once Node closed it`);
    const inode = fs.fstatSync(reuser).ino;
    const err = await rejectsCode(failed, Error, 'EINVAL');
    assert.equal(err.syscall, 'listen');
    assert.ok(stillOpen(reuser, inode), 'the file that reused the number is still open');
    assert.equal(fs.readFileSync(reuser, 'utf8'), 'mine');
    fs.closeSync(reuser);
    await expectFdsBackTo(baseline, 'listenOnFd failure');
  },
);
