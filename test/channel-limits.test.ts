/**
 * Limits: 1,000 fds in one message across two processes (split into records of at most 253 fds and
 * reassembled transparently), and the receiver's maxMessageBytes / maxMessageFds.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { FdChannel, FdChannelServer } from '../src/fd/index.js';
import { closeFds } from '../src/fd/fds.js';
import { expectFdsBackTo, fdCount, fdinfoFlags, O_CLOEXEC, tmpDir, within } from './helpers.js';
import { closeOf, collect, makeFiles, next, readFd, spawnPeer, turns, warmUpSpawn } from './channel-helpers.js';

before(async () => {
  await warmUpSpawn();
  const [a, b] = FdChannel.pair();
  a.close();
  b.close();
  await turns();
});

test('1,000 fds in one message from another process arrive complete and in order', async (t) => {
  const dir = tmpDir(t);
  const files = path.join(dir, 'files');
  fs.mkdirSync(files);
  const sock = path.join(dir, 's');
  const server = await FdChannelServer.listen(sock);
  t.after(() => server.close());
  const base = fdCount();
  const child = spawnPeer(t, 'send-many-fds', [sock, files, '1000']);
  const [ch] = await next<[FdChannel]>(server, 'channel', 10_000);
  const [m] = await collect(ch, 1, 20_000);
  const inos = JSON.parse(m!.data.toString()) as number[];
  assert.equal(inos.length, 1000);
  assert.equal(new Set(inos).size, 1000, '1,000 distinct files');
  assert.equal(m!.fds.length, 1000);
  assert.equal(new Set(m!.fds).size, 1000);
  for (let i = 0; i < 1000; i++) {
    const fd = m!.fds[i]!;
    assert.equal(fs.fstatSync(fd).ino, inos[i], `fd ${i} is the file sent at position ${i}`);
    assert.equal(readFd(fd), String(i));
    assert.ok(fdinfoFlags(fd) & O_CLOEXEC);
  }
  assert.ok(fdCount() >= base + 1000);
  closeFds(m!.fds);
  await ch.send('thanks');
  assert.equal(await within(child.exited, 10_000, 'child exit'), 0);
  await child.closed;
  await turns();
  ch.close();
  await expectFdsBackTo(base, '1,000 fds from a child');
});

test('1,000 fds in one message to another process arrive complete and in order', async (t) => {
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const server = await FdChannelServer.listen(sock);
  t.after(() => server.close());
  const list = makeFiles(dir, 1000, 'g');
  const base = fdCount();
  const child = spawnPeer(t, 'recv-many-fds', [sock]);
  const [ch] = await next<[FdChannel]>(server, 'channel', 10_000);
  const fds = list.map((f) => fs.openSync(f.path, 'r'));
  const inos = fds.map((fd) => fs.fstatSync(fd).ino);
  const ack = collect(ch, 1, 20_000);
  await within(ch.send(JSON.stringify(inos), fds), 10_000, 'send 1,000 fds');
  for (const fd of fds) fs.closeSync(fd);
  const line = await child.line(/received (\d+) ok=(\w+)/, 20_000);
  assert.equal(line[1], '1000');
  assert.equal(line[2], 'true', 'the child found each fd where the payload said, close-on-exec');
  assert.equal((await ack)[0]!.data.toString(), 'ack');
  assert.equal(await within(child.exited, 10_000, 'child exit'), 0);
  await child.closed;
  await turns();
  ch.close();
  await expectFdsBackTo(base, '1,000 fds to a child');
});

test('maxMessageBytes: a message at the limit is delivered, one byte over is ERR_BATON_MESSAGE_TOO_LARGE', async (t) => {
  const dir = tmpDir(t);
  const [file] = makeFiles(dir, 1);
  const fd = fs.openSync(file!.path, 'r');
  const base = fdCount() - 1;
  const [a, b] = FdChannel.pair({ maxMessageBytes: 100 });
  const got = collect(b, 1);
  await a.send(Buffer.alloc(100, 1), [fd]);
  const [m] = await got;
  assert.equal(m!.data.length, 100);
  closeFds(m!.fds);

  const errors: Error[] = [];
  b.on('error', (e) => errors.push(e));
  const closed = closeOf(b);
  let messages = 0;
  b.on('message', (_d, fds) => {
    messages++;
    closeFds(fds);
  });
  await a.send(Buffer.alloc(101, 2), [fd, fd, fd]);
  await a.send('after', [fd]);
  fs.closeSync(fd);
  const err = await closed;
  assert.equal(messages, 0);
  assert.equal(errors.length, 1);
  assert.equal((err as { code?: string }).code, 'ERR_BATON_MESSAGE_TOO_LARGE');
  assert.equal(err, errors[0]);
  a.close();
  await expectFdsBackTo(base, 'a message over maxMessageBytes');
});

test('maxMessageFds: a message at the limit is delivered, one fd over is ERR_BATON_MESSAGE_TOO_LARGE', async (t) => {
  const dir = tmpDir(t);
  const [file] = makeFiles(dir, 1);
  const fd = fs.openSync(file!.path, 'r');
  const base = fdCount() - 1;
  const [a, b] = FdChannel.pair({ maxMessageFds: 3 });
  const got = collect(b, 2);
  await a.send('three', [fd, fd, fd]);
  await a.send('none');
  const msgs = await got;
  assert.equal(msgs[0]!.fds.length, 3);
  closeFds(msgs[0]!.fds);
  const closed = closeOf(b);
  await a.send('four', [fd, fd, fd, fd]);
  fs.closeSync(fd);
  // No 'error' listener: no crash, 'close' carries the error.
  const err = await closed;
  assert.equal((err as { code?: string }).code, 'ERR_BATON_MESSAGE_TOO_LARGE');
  a.close();
  await turns(10);
  await expectFdsBackTo(base, 'a message over maxMessageFds');
});

test('limits on multi-record messages: the error comes as soon as the limit is passed; every fd is closed', async (t) => {
  const dir = tmpDir(t);
  const [file] = makeFiles(dir, 1);
  const fd = fs.openSync(file!.path, 'r');
  const base = fdCount() - 1;
  for (const options of [{ maxMessageBytes: 150 * 1024 }, { maxMessageFds: 400 }]) {
    const [a, b] = FdChannel.pair(options);
    a.on('error', () => {});
    const errors: Error[] = [];
    b.on('error', (e) => errors.push(e));
    b.on('message', (_d, fds) => closeFds(fds));
    const closed = closeOf(b);
    // 1 MiB and 1,000 fds: 16 records by size, 4 by fds.
    const sending = a.send(
      Buffer.alloc(1024 * 1024),
      Array.from({ length: 1000 }, () => fd),
    );
    sending.catch(() => {}); // the receiver closes mid-message: the sender may see EPIPE
    const err = await closed;
    assert.equal((err as { code?: string }).code, 'ERR_BATON_MESSAGE_TOO_LARGE', JSON.stringify(options));
    assert.deepEqual(errors, [err]);
    await within(
      sending.catch(() => {}),
      5000,
      'the sender settles',
    );
    a.close();
    await turns();
  }
  fs.closeSync(fd);
  await expectFdsBackTo(base, 'limits on multi-record messages');
});

test('invalid limits are refused, without leaking the socket', async (t) => {
  const base = fdCount();
  assert.throws(() => FdChannel.pair({ maxMessageBytes: -1 }), TypeError);
  assert.throws(() => FdChannel.pair({ maxMessageFds: 1.5 }), TypeError);
  assert.throws(() => FdChannel.pair({ maxMessageFds: '10' as unknown as number }), TypeError);
  await expectFdsBackTo(base, 'pair() with invalid limits');
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const server = await FdChannelServer.listen(sock);
  t.after(() => server.close());
  const base2 = fdCount();
  await assert.rejects(FdChannel.connect(sock, { maxMessageBytes: -5 }), TypeError);
  await turns(10);
  await expectFdsBackTo(base2, 'connect() with invalid limits');
});
