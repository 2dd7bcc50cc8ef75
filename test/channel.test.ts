/**
 * FdChannel: messages with bytes and fds arrive intact and in order, whatever their size; backpressure;
 * close-on-exec received fds; no fd leaks over many messages; pause/resume; ref/unref; a peer that closes
 * right after its last message.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { FdChannel, FdChannelServer } from '../src/fd/index.js';
import { native } from '../src/fd/native.js';
import { FLAG_MORE, HEADER_SIZE, RECORD_FDS_MAX, RECORD_PAYLOAD_MAX } from '../src/fd/framing.js';
import { expectFdsBackTo, fdCount, fdinfoFlags, O_CLOEXEC, tmpDir, within } from './helpers.js';
import {
  closeOf,
  collect,
  fdTargets,
  makeFiles,
  peerOverServer,
  readFd,
  rejection,
  sleep,
  spawnPeer,
  turns,
  warmUpChannels,
} from './channel-helpers.js';

before(warmUpChannels);

function closePair(a: FdChannel, b: FdChannel): void {
  a.close();
  b.close();
}

test('messages with bytes and fds arrive intact and in order', async (t) => {
  const dir = tmpDir(t);
  const files = makeFiles(dir, 6);
  const base = fdCount();
  const [a, b] = FdChannel.pair();
  const opened = files.map((f) => fs.openSync(f.path, 'r'));
  const N = 60;
  const sent: { data: Buffer; files: number[] }[] = [];
  const got = collect(b, N);
  const sends: Promise<void>[] = [];
  for (let i = 0; i < N; i++) {
    const data = randomBytes(4 + ((i * 37) % 500));
    data.writeUInt32BE(i, 0);
    const which = Array.from({ length: i % 4 }, (_, k) => (i + k) % files.length);
    sent.push({ data, files: which });
    sends.push(
      a.send(
        data,
        which.map((w) => opened[w]!),
      ),
    );
  }
  await within(Promise.all(sends), 5000, 'sends');
  for (const fd of opened) fs.closeSync(fd);
  const msgs = await got;
  for (let i = 0; i < N; i++) {
    const m = msgs[i]!;
    assert.deepEqual(m.data, sent[i]!.data, `message ${i}: bytes`);
    assert.equal(m.fds.length, sent[i]!.files.length, `message ${i}: fd count`);
    m.fds.forEach((fd, k) => assert.equal(readFd(fd), files[sent[i]!.files[k]!]!.content, `message ${i} fd ${k}`));
    // Every received fd is a new descriptor, distinct from the others of the same message.
    assert.equal(new Set(m.fds).size, m.fds.length);
    for (const fd of m.fds) fs.closeSync(fd);
  }
  closePair(a, b);
  await expectFdsBackTo(base, 'ordered messages');
});

test('empty messages, strings and Uint8Arrays', async (t) => {
  const dir = tmpDir(t);
  const [file] = makeFiles(dir, 1);
  const [a, b] = FdChannel.pair();
  t.after(() => closePair(a, b));
  const got = collect(b, 6);
  const fd = fs.openSync(file!.path, 'r');
  await a.send();
  await a.send('');
  await a.send(Buffer.alloc(0), [fd]);
  await a.send('héllo, wörld ✓ 🚀');
  await a.send(new Uint8Array([1, 2, 3, 255]));
  await a.send(new Uint8Array(new ArrayBuffer(16), 4, 3).fill(7));
  fs.closeSync(fd);
  const m = await got;
  assert.equal(m[0]!.data.length, 0);
  assert.deepEqual(m[0]!.fds, []);
  assert.equal(m[1]!.data.length, 0);
  assert.deepEqual(m[1]!.fds, []);
  assert.equal(m[2]!.data.length, 0);
  assert.equal(m[2]!.fds.length, 1);
  assert.equal(readFd(m[2]!.fds[0]!), file!.content);
  fs.closeSync(m[2]!.fds[0]!);
  assert.ok(Buffer.isBuffer(m[3]!.data));
  assert.equal(m[3]!.data.toString('utf8'), 'héllo, wörld ✓ 🚀');
  assert.deepEqual([...m[4]!.data], [1, 2, 3, 255]);
  assert.deepEqual([...m[5]!.data], [7, 7, 7]);
});

test('large messages are cut into records of at most 64 KiB and 253 fds', async (t) => {
  const dir = tmpDir(t);
  const [file] = makeFiles(dir, 1);
  const fd = fs.openSync(file!.path, 'r');
  t.after(() => fs.closeSync(fd));
  const [raw, other] = native.socketpair();
  // Raise the raw end's receive buffer is not needed: read records as they come.
  const ch = FdChannel.fromFd(other);
  t.after(() => {
    ch.close();
    native.close(raw);
  });
  const data = randomBytes(3 * RECORD_PAYLOAD_MAX + 1000);
  const fds = Array.from({ length: 600 }, () => fd);
  const sending = ch.send(data, fds);
  const records: { bytes: Buffer; fds: number[] }[] = [];
  const deadline = Date.now() + 5000;
  for (;;) {
    const recs = native.recvRecords(raw, 64);
    for (let i = 0; i < recs.length; i += 3) {
      assert.notEqual(recs[i], null, 'unexpected end of stream');
      assert.equal(recs[i], 0, 'record status');
      records.push({ bytes: recs[i + 1] as Buffer, fds: (recs[i + 2] as number[] | null) ?? [] });
    }
    if (records.length && !(records[records.length - 1]!.bytes[2]! & FLAG_MORE)) break;
    assert.ok(Date.now() < deadline, 'timed out reading records');
    await sleep(5);
  }
  await within(sending, 5000, 'send');
  assert.equal(records.length, 4, 'max(ceil(197608 / 65536), ceil(600 / 253)) records');
  let joined = Buffer.alloc(0);
  let fdTotal = 0;
  records.forEach((r, i) => {
    assert.ok(r.bytes.length <= HEADER_SIZE + RECORD_PAYLOAD_MAX);
    assert.ok(r.fds.length <= RECORD_FDS_MAX);
    assert.equal(r.bytes[0], 0xba);
    assert.equal(r.bytes[1], 1);
    assert.equal(r.bytes[2], i < records.length - 1 ? FLAG_MORE : 0, `MORE flag on record ${i}`);
    assert.equal(r.bytes[3], 0);
    joined = Buffer.concat([joined, r.bytes.subarray(HEADER_SIZE)]);
    fdTotal += r.fds.length;
    native.closeMany(r.fds);
  });
  assert.deepEqual(
    records.map((r) => r.fds.length),
    [253, 253, 94, 0],
  );
  assert.deepEqual(joined, data);
  assert.equal(fdTotal, 600);
});

test('large payloads (> 64 KiB, several MiB) with fds are reassembled', async (t) => {
  const dir = tmpDir(t);
  const files = makeFiles(dir, 3);
  const base = fdCount();
  const [a, b] = FdChannel.pair();
  const opened = files.map((f) => fs.openSync(f.path, 'r'));
  const sizes = [RECORD_PAYLOAD_MAX - 1, RECORD_PAYLOAD_MAX, RECORD_PAYLOAD_MAX + 1, 100 * 1024, 5 * 1024 * 1024 + 3];
  const payloads = sizes.map((n) => randomBytes(n));
  const got = collect(b, payloads.length + 1, 20_000);
  const sends = payloads.map((p, i) => a.send(p, [opened[i % 3]!]));
  // A message that is large both ways: 300 fds (two records' worth) and 200 KiB.
  const manyFds = Array.from({ length: 300 }, (_, i) => opened[i % 3]!);
  const big = randomBytes(200 * 1024);
  sends.push(a.send(big, manyFds));
  for (const fd of opened) fs.closeSync(fd); // the queue holds its own dups
  await within(Promise.all(sends), 20_000, 'large sends');
  const msgs = await got;
  for (let i = 0; i < payloads.length; i++) {
    assert.equal(msgs[i]!.data.length, sizes[i], `size of message ${i}`);
    assert.ok(msgs[i]!.data.equals(payloads[i]!), `bytes of message ${i}`);
    assert.equal(msgs[i]!.fds.length, 1);
    assert.equal(readFd(msgs[i]!.fds[0]!), files[i % 3]!.content);
  }
  const last = msgs[payloads.length]!;
  assert.ok(last.data.equals(big));
  assert.equal(last.fds.length, 300);
  last.fds.forEach((fd, i) => assert.equal(readFd(fd), files[i % 3]!.content, `fd ${i} of 300`));
  for (const m of msgs) native.closeMany(m.fds);
  closePair(a, b);
  await expectFdsBackTo(base, 'large messages');
});

test('backpressure: unawaited large sends queue up, all arrive in order, all promises resolve', async (t) => {
  const dir = tmpDir(t);
  const [file] = makeFiles(dir, 1);
  const base = fdCount();
  const [a, b] = FdChannel.pair();
  const fd = fs.openSync(file!.path, 'r');
  const N = 24;
  const MiB = 1024 * 1024;
  const got = collect(b, N, 30_000);
  const sends: Promise<void>[] = [];
  let resolved = 0;
  for (let i = 0; i < N; i++) {
    const p = a.send(Buffer.alloc(MiB, i), [fd]);
    void p.then(() => resolved++);
    sends.push(p);
  }
  fs.closeSync(fd);
  assert.ok(a.pendingRecords > 0, 'some records wait in the queue');
  assert.ok(a.pendingRecords <= N * 17, 'at most the records of these messages');
  assert.equal(resolved, 0, 'nothing resolves synchronously');
  const msgs = await got;
  await within(Promise.all(sends), 30_000, 'all sends resolve');
  assert.equal(resolved, N);
  assert.equal(a.pendingRecords, 0);
  msgs.forEach((m, i) => {
    assert.equal(m.data.length, MiB);
    assert.equal(m.data[0], i % 256, `message ${i} in order`);
    assert.equal(m.data[MiB - 1], i % 256);
    assert.equal(m.fds.length, 1);
    assert.equal(readFd(m.fds[0]!), file!.content);
    fs.closeSync(m.fds[0]!);
  });
  closePair(a, b);
  await expectFdsBackTo(base, 'backpressure');
});

test('the caller may close its fds as soon as send() returns, even while queued', async (t) => {
  const dir = tmpDir(t);
  const files = makeFiles(dir, 40, 'distinct');
  const base = fdCount();
  const [a, b] = FdChannel.pair();
  // Fill the socket so that every following send is queued.
  const filler = a.send(Buffer.alloc(4 * 1024 * 1024));
  assert.ok(a.pendingRecords > 0, 'the socket is full');
  const numbers = new Set<number>();
  const sends: Promise<void>[] = [];
  for (let i = 0; i < files.length; i++) {
    const fd = fs.openSync(files[i]!.path, 'r');
    numbers.add(fd);
    // A payload that is reused (overwritten) right after send(), like the fd number.
    const scratch = Buffer.from(`msg ${i}`);
    sends.push(a.send(scratch, [fd]));
    scratch.fill(0);
    fs.closeSync(fd); // its number is reused by the next openSync
  }
  assert.ok(numbers.size < files.length, 'fd numbers were reused (so the test can tell files apart only by content)');
  assert.ok(a.pendingRecords > files.length, 'the messages are queued, not sent');
  const got = collect(b, files.length + 1, 20_000);
  const msgs = await got;
  await within(Promise.all([filler, ...sends]), 10_000, 'sends');
  assert.equal(msgs[0]!.data.length, 4 * 1024 * 1024);
  for (let i = 0; i < files.length; i++) {
    const m = msgs[i + 1]!;
    assert.equal(m.data.toString(), `msg ${i}`);
    assert.equal(m.fds.length, 1);
    assert.equal(readFd(m.fds[0]!), files[i]!.content, `message ${i} carries its own file`);
    fs.closeSync(m.fds[0]!);
  }
  closePair(a, b);
  await expectFdsBackTo(base, 'closing fds after send');
});

test('received fds are close-on-exec and not inherited by a child spawned afterwards', async (t) => {
  const dir = tmpDir(t);
  const unique = path.join(dir, `cloexec-${process.pid}-${Date.now()}`);
  fs.writeFileSync(unique, 'secret');
  const [a, b] = FdChannel.pair();
  t.after(() => closePair(a, b));
  const fd = fs.openSync(unique, 'r');
  const got = collect(b, 2);
  await a.send('one', [fd]);
  await a.send(
    'many',
    Array.from({ length: 300 }, () => fd),
  ); // also through a multi-record message
  fs.closeSync(fd);
  const msgs = await got;
  const received = msgs.flatMap((m) => m.fds);
  assert.equal(received.length, 301);
  for (const r of received) assert.ok(fdinfoFlags(r) & O_CLOEXEC, `fd ${r} is close-on-exec`);
  // While they are open here, a new child must not hold them.
  assert.ok(fdTargets('self').includes(unique), 'this process holds the file (the check below can see it)');
  const child = spawnPeer(t, 'sleep');
  await child.line(/ready/);
  const targets = fdTargets(child.pid);
  assert.ok(targets.length >= 3, 'the child has its stdio');
  assert.ok(!targets.includes(unique), `child ${child.pid} inherited a received fd: ${targets.join(', ')}`);
  native.closeMany(received);
});

test('no fd leak over 10,000 messages with fds (one process)', async (t) => {
  const dir = tmpDir(t);
  const [file] = makeFiles(dir, 1);
  const base = fdCount();
  const [a, b] = FdChannel.pair();
  const fd = fs.openSync(file!.path, 'r');
  const N = 10_000;
  let received = 0;
  let fdsReceived = 0;
  let outOfOrder = 0;
  b.on('message', (data, fds) => {
    if (Number(data.toString()) !== received) outOfOrder++;
    received++;
    fdsReceived += fds.length;
    native.closeMany(fds);
  });
  let window: Promise<void>[] = [];
  for (let i = 0; i < N; i++) {
    window.push(a.send(String(i), i % 10 === 0 ? [fd, fd, fd] : [fd]));
    if (window.length === 500) {
      await within(Promise.all(window), 10_000, 'a window of sends');
      window = [];
    }
  }
  await within(Promise.all(window), 10_000, 'the last sends');
  fs.closeSync(fd);
  await within(
    (async () => {
      while (received < N) await sleep(5);
    })(),
    10_000,
    'all messages received',
  );
  assert.equal(outOfOrder, 0);
  assert.equal(fdsReceived, N + 2 * (N / 10));
  closePair(a, b);
  await expectFdsBackTo(base, '10,000 messages');
});

test('no fd leak over 1,000 messages with fds from another process', async (t) => {
  const { child, ch, file, base } = await peerOverServer(t, 'stream', ['1000']);
  let count = 0;
  let bad = 0;
  const done = new Promise<void>((resolve) => {
    ch.on('message', (data, fds) => {
      if (data.toString() === 'done') return resolve();
      if (Number(data.toString()) !== count || fds.length !== 2 || readFd(fds[0]!) !== file!.content) bad++;
      count++;
      native.closeMany(fds);
    });
  });
  await within(done, 20_000, 'the stream from the child');
  assert.equal(count, 1000);
  assert.equal(bad, 0);
  ch.close();
  assert.equal(await within(child.exited, 10_000, 'child exit'), 0);
  await child.closed;
  await expectFdsBackTo(base, '1,000 messages from a child');
});

test('peer credentials of a pair are this process', () => {
  const [a, b] = FdChannel.pair();
  try {
    assert.deepEqual(a.peer, { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    assert.deepEqual(b.peer, a.peer);
  } finally {
    closePair(a, b);
  }
});

test('pause() holds back delivery and makes the sender queue; resume() delivers in order', async (t) => {
  const dir = tmpDir(t);
  const [file] = makeFiles(dir, 1);
  const base = fdCount();
  const [a, b] = FdChannel.pair();
  const fd = fs.openSync(file!.path, 'r');
  const seen: string[] = [];
  b.on('message', (data, fds) => {
    seen.push(data.subarray(0, 8).toString());
    native.closeMany(fds);
  });
  b.pause();
  const small = [a.send('small-0', [fd]), a.send('small-1', [fd])];
  // More than the socket holds: the rest must wait in a's queue while b does not read.
  const bigData = Buffer.alloc(4 * 1024 * 1024, 'x');
  bigData.write('big-....');
  const big = a.send(bigData, [fd]);
  fs.closeSync(fd);
  await within(Promise.all(small), 5000, 'the small sends (they fit in the socket)');
  await sleep(100);
  await turns();
  assert.deepEqual(seen, [], 'nothing delivered while paused');
  assert.ok(a.pendingRecords > 0, 'the sender backs up while the receiver is paused');
  let bigDone = false;
  void big.then(() => (bigDone = true));
  await turns();
  assert.equal(bigDone, false);
  b.resume();
  await within(big, 10_000, 'the big send after resume');
  await within(
    (async () => {
      while (seen.length < 3) await sleep(5);
    })(),
    5000,
    'delivery after resume',
  );
  assert.deepEqual(seen, ['small-0', 'small-1', 'big-....']);
  closePair(a, b);
  await expectFdsBackTo(base, 'pause/resume');
});

test('pause() inside a listener holds back the rest of a batch already read', async (t) => {
  const [a, b] = FdChannel.pair();
  t.after(() => closePair(a, b));
  const seen: string[] = [];
  b.on('message', (data) => {
    seen.push(data.toString());
    if (seen.length === 1) b.pause();
  });
  // All in the kernel before b reads: one readable event reads them as one batch.
  for (let i = 0; i < 5; i++) await a.send(`m${i}`);
  await within(
    (async () => {
      while (seen.length < 1) await sleep(5);
    })(),
    5000,
    'first message',
  );
  await sleep(50);
  await turns();
  assert.deepEqual(seen, ['m0'], 'the rest of the batch is held back');
  await a.send('m5');
  await sleep(20);
  assert.deepEqual(seen, ['m0']);
  b.resume();
  await within(
    (async () => {
      while (seen.length < 6) await sleep(5);
    })(),
    5000,
    'the rest',
  );
  assert.deepEqual(seen, ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
});

test('messages held back by pause() survive the peer closing; resume() delivers them, then close', async (t) => {
  const dir = tmpDir(t);
  const [file] = makeFiles(dir, 1);
  const base = fdCount();
  const [a, b] = FdChannel.pair();
  const fd = fs.openSync(file!.path, 'r');
  const seen: string[] = [];
  const contents: string[] = [];
  let closedWith: Error | undefined | null = null;
  b.on('message', (data, fds) => {
    seen.push(data.toString());
    for (const f of fds) contents.push(readFd(f));
    native.closeMany(fds);
    if (seen.length === 1) b.pause();
  });
  b.on('close', (err) => (closedWith = err));
  for (let i = 0; i < 4; i++) await a.send(`m${i}`, [fd]);
  fs.closeSync(fd);
  a.close(); // the end of stream is read in the same batch as the messages
  await within(
    (async () => {
      while (seen.length < 1) await sleep(5);
    })(),
    5000,
    'first message',
  );
  await sleep(50);
  assert.deepEqual(seen, ['m0']);
  assert.equal(closedWith, null, "no 'close' while messages are held back");
  b.resume();
  await within(
    (async () => {
      while (closedWith === null) await sleep(5);
    })(),
    5000,
    "'close' after resume",
  );
  assert.deepEqual(seen, ['m0', 'm1', 'm2', 'm3']);
  assert.deepEqual(contents, Array(4).fill(file!.content));
  assert.equal(closedWith, undefined, 'a clean close');
  assert.equal(b.closed, true);
  await expectFdsBackTo(base, 'pause, then peer close');
});

test('a peer that closes with our records unread: its last message still arrives (one process)', async (t) => {
  const dir = tmpDir(t);
  const [file] = makeFiles(dir, 1);
  const base = fdCount();
  const [a, b] = FdChannel.pair();
  const errors: Error[] = [];
  a.on('error', (e) => errors.push(e));
  b.pause(); // b never reads what a sends
  await a.send('unread');
  await a.send('unread too');
  const fd = fs.openSync(file!.path, 'r');
  await b.send('final', [fd]);
  fs.closeSync(fd);
  b.close(); // with unread records: the kernel reports ECONNRESET to a before the final message
  const got = collect(a, 1);
  const closed = closeOf(a);
  const [m] = await got;
  assert.equal(m!.data.toString(), 'final');
  assert.equal(m!.fds.length, 1);
  assert.equal(readFd(m!.fds[0]!), file!.content);
  native.closeMany(m!.fds);
  const err = await closed;
  assert.equal(err, undefined, 'the peer closed normally');
  assert.deepEqual(errors, []);
  await expectFdsBackTo(base, 'peer closed with unread records');
});

test('a peer that reads everything, sends a last message and closes while we have sends queued', async (t) => {
  const dir = tmpDir(t);
  const [file] = makeFiles(dir, 1);
  const base = fdCount();
  const [raw, other] = native.socketpair();
  const a = FdChannel.fromFd(other);
  const errors: Error[] = [];
  a.on('error', (e) => errors.push(e));
  const got = collect(a, 1);
  const closed = closeOf(a);
  const big = a.send(Buffer.alloc(4 * 1024 * 1024));
  big.catch(() => {});
  assert.ok(a.pendingRecords > 0, 'a has records queued');
  // The peer drains what reached it (so it closes with nothing unread: no ECONNRESET), answers and closes,
  // all before a's next poll callback, which then sees the socket both writable and readable.
  for (let n = 0; n < 1000; n++) {
    const recs = native.recvRecords(raw, 64);
    if (recs.length === 0) break;
  }
  const fd = fs.openSync(file!.path, 'r');
  assert.equal(native.sendRecord(raw, Buffer.from([0xba, 1, 0, 0]), Buffer.from('final'), [fd]), true);
  fs.closeSync(fd);
  native.close(raw);
  const [m] = await got;
  assert.equal(m!.data.toString(), 'final');
  assert.equal(readFd(m!.fds[0]!), file!.content);
  native.closeMany(m!.fds);
  assert.equal(await closed, undefined, 'a clean end of stream, not EPIPE');
  assert.deepEqual(errors, []);
  const err = await rejection(big);
  assert.equal(err.code, 'ERR_BATON_CHANNEL_CLOSED');
  await expectFdsBackTo(base, 'a peer closing while sends are queued');
});

test('a child that sends a last message and exits at once, with our records unread: it still arrives', async (t) => {
  const { child, ch, file } = await peerOverServer(t, 'final');
  const errors: Error[] = [];
  ch.on('error', (e) => errors.push(e));
  await ch.send('hello');
  await child.line(/paused/);
  await ch.send('unread'); // stays in the child's socket: it is paused
  const got = collect(ch, 1, 10_000);
  const closed = closeOf(ch, 10_000);
  process.kill(child.pid, 'SIGUSR2');
  const [m] = await got;
  assert.equal(m!.data.toString(), 'final');
  assert.equal(readFd(m!.fds[0]!), file!.content);
  native.closeMany(m!.fds);
  const err = await closed;
  assert.equal(err, undefined);
  assert.deepEqual(errors, []);
  assert.equal(await within(child.exited, 10_000, 'child exit'), 0);
});

test('an unref()ed channel lets the process exit; a ref()ed one keeps it alive', async (t) => {
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const server = await FdChannelServer.listen(sock);
  t.after(() => server.close());
  const channels: FdChannel[] = [];
  server.on('channel', (ch) => channels.push(ch));
  t.after(() => channels.forEach((c) => c.close()));

  const unref = spawnPeer(t, 'unref', [sock]);
  await unref.line(/ready/);
  assert.equal(await within(unref.exited, 10_000, 'the unref child exits on its own'), 0);

  const refd = spawnPeer(t, 'ref', [sock]);
  await refd.line(/ready/);
  await within(
    (async () => {
      while (channels.length < 2) await sleep(5);
    })(),
    5000,
    'second connection',
  );
  let exited = false;
  void refd.exited.then(() => (exited = true));
  await sleep(300);
  assert.equal(exited, false, 'the ref()ed child stays alive while its channel is open');
  await channels[1]!.send('bye');
  await refd.line(/got bye/);
  assert.equal(await within(refd.exited, 10_000, 'the ref child exits once its channel is closed'), 0);
});

test('an unref()ed server lets the process exit', async (t) => {
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const child = spawnPeer(t, 'listen-unref', [sock]);
  await child.line(/listening/);
  assert.equal(await within(child.exited, 10_000, 'child exit'), 0);
  const ref = spawnPeer(t, 'listen', [path.join(dir, 's2')]);
  await ref.line(/listening/);
  let exited = false;
  void ref.exited.then(() => (exited = true));
  await sleep(300);
  assert.equal(exited, false, 'a listening server keeps the process alive');
});

test('send() resolves only once the message is in the kernel; rejects pending sends on close', async () => {
  const [a, b] = FdChannel.pair();
  b.pause();
  const p = a.send(Buffer.alloc(4 * 1024 * 1024));
  assert.ok(a.pendingRecords > 0);
  a.close();
  const err = await rejection(p);
  assert.equal(err.code, 'ERR_BATON_CHANNEL_CLOSED');
  assert.equal(a.pendingRecords, 0);
  b.close();
});
