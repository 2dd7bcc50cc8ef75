/**
 * FdChannel error paths: garbage records and unexpected fds from the peer, a peer that dies in the middle
 * of a message, argument errors, sends that fail or outlive the channel. Every path must leave the fd count
 * where it was and never crash the process.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { before, test, type TestContext } from 'node:test';
import { FdChannel } from '../src/fd/index.js';
import { native } from '../src/fd/native.js';
import { expectFdsBackTo, fdCount, tmpDir, within } from './helpers.js';
import {
  closeOf,
  collect,
  header,
  makeFiles,
  peerOverServer,
  readFd,
  rejection,
  sleep,
  turns,
  unusedFd,
  warmUpChannels,
} from './channel-helpers.js';

before(warmUpChannels);

/** An FdChannel whose peer is a raw native socket, so the test can send any record. */
function rawPeer(): { raw: number; ch: FdChannel } {
  const [raw, other] = native.socketpair();
  return { raw, ch: FdChannel.fromFd(other) };
}

interface Outcome {
  errors: Error[];
  closeErr: Error | undefined;
  messages: string[];
}

/** Wait for 'close', recording 'error' events (if `listenError`) and messages (closing their fds). */
function watch(ch: FdChannel, listenError: boolean): Promise<Outcome> {
  const out: Outcome = { errors: [], closeErr: undefined, messages: [] };
  if (listenError) ch.on('error', (e) => out.errors.push(e));
  ch.on('message', (data, fds) => {
    out.messages.push(data.toString());
    native.closeMany(fds);
  });
  return within(
    new Promise<Outcome>((resolve) => {
      ch.once('close', (err) => {
        out.closeErr = err;
        resolve(out);
      });
    }),
    5000,
    "the channel's 'close'",
  );
}

function fileFds(t: TestContext, n: number): { fds: number[]; close: () => void } {
  const dir = tmpDir(t);
  const [f] = makeFiles(dir, 1);
  const fds = Array.from({ length: n }, () => fs.openSync(f!.path, 'r'));
  return { fds, close: () => fds.forEach((fd) => fs.closeSync(fd)) };
}

const badRecords: { name: string; bytes: Buffer; why: RegExp }[] = [
  { name: 'bad magic', bytes: Buffer.concat([header(0, 0x00), Buffer.from('hello')]), why: /bad magic/ },
  { name: 'HTTP instead of baton', bytes: Buffer.from('GET / HTTP/1.1\r\n\r\n'), why: /bad magic/ },
  { name: 'unknown framing version', bytes: header(0, 0xba, 2), why: /version 2/ },
  { name: 'reserved byte set', bytes: header(0, 0xba, 1, 1), why: /reserved/ },
  { name: 'unknown flag bit', bytes: header(0x80), why: /reserved/ },
  { name: '3-byte record', bytes: Buffer.from([0xba, 1, 0]), why: /3-byte record/ },
  { name: '1-byte record', bytes: Buffer.from([0xba]), why: /1-byte record/ },
  { name: '0-byte record', bytes: Buffer.alloc(0), why: /0-byte record/ },
];

for (const rec of badRecords) {
  for (const withFds of [false, true]) {
    test(
      `bad record (${rec.name}${withFds ? ', with 3 fds' : ''}): 'error' ERR_BATON_BAD_RECORD, 'close', fds ` +
        `closed`,
      async (t) => {
        const files = fileFds(t, 3);
        const base = fdCount() - 3;
        const { raw, ch } = rawPeer();
        const outcome = watch(ch, true);
        native.sendRecord(raw, header(), Buffer.from('a good message first'), null);
        native.sendRecord(raw, rec.bytes, null, withFds ? files.fds : null);
        native.sendRecord(raw, header(), Buffer.from('after the bad record'), files.fds);
        files.close(); // only the copies in flight are left
        const o = await outcome;
        assert.deepEqual(o.messages, ['a good message first'], 'nothing after the bad record is delivered');
        assert.equal(o.errors.length, 1);
        assert.equal((o.errors[0] as { code?: string }).code, 'ERR_BATON_BAD_RECORD');
        assert.match(o.errors[0]!.message, rec.why);
        if (withFds) assert.match(o.errors[0]!.message, /closed 3 fds/);
        assert.equal(o.closeErr, o.errors[0], "'close' carries the same error");
        assert.equal(ch.closed, true);
        assert.equal(ch.fd, -1);
        await expectFdsBackTo(base + 1, `a bad record (${rec.name}) (the raw end is still open)`);
        native.close(raw);
        await expectFdsBackTo(base, `a bad record (${rec.name})`);
      },
    );
  }
}

test("bad record without an 'error' listener: no crash, 'close' gets the error, fds closed", async (t) => {
  const files = fileFds(t, 2);
  const base = fdCount() - 2;
  const { raw, ch } = rawPeer();
  const outcome = watch(ch, false);
  native.sendRecord(raw, header(0, 0x42), Buffer.from('x'), files.fds);
  files.close();
  const o = await outcome;
  assert.equal((o.closeErr as { code?: string } | undefined)?.code, 'ERR_BATON_BAD_RECORD');
  await turns(10); // an unhandled 'error' would have been thrown by now
  native.close(raw);
  await expectFdsBackTo(base, "a bad record with no 'error' listener");
});

test('a bad record in the middle of a message closes the fds of the records before it too', async (t) => {
  const files = fileFds(t, 1);
  const base = fdCount() - 1;
  const { raw, ch } = rawPeer();
  const outcome = watch(ch, true);
  const fd = files.fds[0]!;
  native.sendRecord(raw, header(0x01), Buffer.from('part 1'), [fd, fd, fd, fd]);
  native.sendRecord(raw, header(0x01), Buffer.from('part 2'), [fd, fd]);
  native.sendRecord(raw, header(0x01, 0xba, 7), Buffer.from('bad'), [fd]);
  files.close();
  const o = await outcome;
  assert.equal((o.errors[0] as { code?: string }).code, 'ERR_BATON_BAD_RECORD');
  assert.deepEqual(o.messages, []);
  native.close(raw);
  await expectFdsBackTo(base, 'a bad record after a partial message');
});

test('a record larger than any baton record: ERR_BATON_TRUNCATED, fds closed', async (t) => {
  const files = fileFds(t, 2);
  const base = fdCount() - 2;
  const { raw, ch } = rawPeer();
  // The default send buffer cannot hold a record this size; raise it (bounded by net.core.wmem_max).
  const { SOL_SOCKET, SO_SNDBUF } = native.constants;
  native.setsockoptInt(raw, SOL_SOCKET!, SO_SNDBUF!, 2 * 1024 * 1024);
  const big = Buffer.concat([header(), Buffer.alloc(300 * 1024)]);
  let sent: boolean;
  try {
    sent = native.sendRecord(raw, big, null, files.fds);
  } catch (err) {
    if ((err as { code?: string }).code === 'EMSGSIZE') {
      ch.close();
      native.close(raw);
      files.close();
      t.skip('net.core.wmem_max is too small for a 300 KiB record');
      return;
    }
    throw err;
  }
  assert.equal(sent, true);
  files.close();
  const o = await watch(ch, true);
  assert.equal((o.errors[0] as { code?: string }).code, 'ERR_BATON_TRUNCATED');
  native.close(raw);
  await expectFdsBackTo(base, 'a truncated record');
});

test("a message with fds and no 'message' listener: the fds are closed", async (t) => {
  const files = fileFds(t, 5);
  const base = fdCount() - 5;
  const [a, b] = FdChannel.pair();
  await a.send('nobody listens', files.fds);
  await a.send(
    'nobody listens either',
    Array.from({ length: 600 }, () => files.fds[0]!),
  );
  files.close();
  await sleep(50);
  await turns();
  assert.equal(b.closed, false, 'the channel stays open');
  // b is still usable: a listener added now gets the next message.
  const got = collect(b, 1);
  await a.send('now');
  assert.equal((await got)[0]!.data.toString(), 'now');
  await expectFdsBackTo(base + 2, 'messages nobody listened to (the pair is still open)');
  a.close();
  b.close();
  await expectFdsBackTo(base, 'messages nobody listened to');
});

for (const how of ['exit', 'hang'] as const) {
  test(
    `a peer that ${how === 'exit' ? 'exits' : 'is SIGKILLed'} mid-message: ERR_BATON_PEER_CLOSED_MID_MESSAGE, fds ` +
      `closed`,
    async (t) => {
      const { child, ch, base } = await peerOverServer(t, 'mid-message', [how]);
      const outcome = watch(ch, true);
      await child.line(/sent/);
      if (how === 'hang') {
        await sleep(20);
        assert.equal(ch.closed, false, 'the channel waits for the rest of the message');
        process.kill(child.pid, 'SIGKILL');
      }
      const o = await outcome;
      assert.deepEqual(o.messages, []);
      assert.equal(o.errors.length, 1);
      assert.equal((o.errors[0] as { code?: string }).code, 'ERR_BATON_PEER_CLOSED_MID_MESSAGE');
      assert.match(o.errors[0]!.message, /closed 5 fds/, 'all five fds of the two records arrived and were closed');
      assert.equal(o.closeErr, o.errors[0]);
      assert.equal(await within(child.exited, 10_000, 'child exit'), how === 'exit' ? 0 : 'SIGKILL');
      await child.closed;
      await expectFdsBackTo(base, `a peer that died mid-message (${how})`);
    },
  );
}

test('a peer that closes mid-message (one process, no error listener): close gets the error', async (t) => {
  const files = fileFds(t, 1);
  const base = fdCount() - 1;
  const { raw, ch } = rawPeer();
  const outcome = watch(ch, false);
  native.sendRecord(raw, header(0x01), Buffer.from('half'), [files.fds[0]!, files.fds[0]!]);
  files.close();
  native.close(raw);
  const o = await outcome;
  assert.equal((o.closeErr as { code?: string } | undefined)?.code, 'ERR_BATON_PEER_CLOSED_MID_MESSAGE');
  await turns(10);
  await expectFdsBackTo(base, 'a peer that closed mid-message');
});

test('send() argument errors throw synchronously', async () => {
  const base = fdCount();
  const [a, b] = FdChannel.pair();
  const bad = (fn: () => unknown, type: typeof TypeError | typeof RangeError, code: string) =>
    assert.throws(fn, (err: Error & { code?: string }) => err instanceof type && err.code === code);
  bad(() => a.send('x', 3 as unknown as number[]), TypeError, 'ERR_INVALID_ARG_TYPE');
  bad(() => a.send('x', 'fds' as unknown as number[]), TypeError, 'ERR_INVALID_ARG_TYPE');
  bad(() => a.send('x', { length: 1, 0: 1 } as unknown as number[]), TypeError, 'ERR_INVALID_ARG_TYPE');
  bad(() => a.send('x', [-1]), RangeError, 'ERR_OUT_OF_RANGE');
  bad(() => a.send('x', [0, 1, -5]), RangeError, 'ERR_OUT_OF_RANGE');
  bad(() => a.send('x', [2 ** 31]), RangeError, 'ERR_OUT_OF_RANGE');
  bad(() => a.send('x', [1.5]), TypeError, 'ERR_INVALID_ARG_TYPE');
  bad(() => a.send('x', [NaN]), TypeError, 'ERR_INVALID_ARG_TYPE');
  bad(() => a.send('x', ['1' as unknown as number]), TypeError, 'ERR_INVALID_ARG_TYPE');
  bad(() => a.send(42 as unknown as string), TypeError, 'ERR_INVALID_ARG_TYPE');
  bad(() => a.send({} as unknown as string), TypeError, 'ERR_INVALID_ARG_TYPE');
  // Nothing was sent and the channel is fine.
  const got = collect(b, 1);
  await a.send('ok');
  assert.equal((await got)[0]!.data.toString(), 'ok');
  a.close();
  b.close();
  await expectFdsBackTo(base, 'argument errors');
});

test('send() with an fd that is not open rejects with EBADF; the channel stays usable', async (t) => {
  const files = fileFds(t, 1);
  const good = files.fds[0]!;
  const base = fdCount() - 1;
  const [a, b] = FdChannel.pair();
  const dead = unusedFd();
  assert.equal(native.isOpen(dead), false);
  const seen: string[] = [];
  b.on('message', (data, fds) => {
    seen.push(`${data.length > 100 ? `${data.length} bytes` : data.toString()}:${fds.length}`);
    native.closeMany(fds);
  });
  // Direct path (nothing queued).
  let err = await rejection(a.send('direct', [good, dead]));
  assert.equal(err.code, 'EBADF');
  assert.equal(err.syscall, 'sendmsg');
  assert.equal(a.closed, false);
  // A multi-record message whose bad fd is in the first record: nothing went out.
  err = await rejection(a.send('multi', [dead, ...Array.from({ length: 300 }, () => good)]));
  assert.equal(err.code, 'EBADF');
  assert.equal(a.closed, false);
  // Queued path (the socket is full, so the fds are dup()ed into the queue).
  b.pause();
  const filler = a.send(Buffer.alloc(4 * 1024 * 1024));
  assert.ok(a.pendingRecords > 0);
  const pending = a.pendingRecords;
  err = await rejection(a.send('queued', [good, dead]));
  assert.equal(err.code, 'EBADF');
  assert.equal(a.pendingRecords, pending, 'the failed message left the queue as it was');
  const after = a.send('after', [good]);
  b.resume();
  await within(Promise.all([filler, after]), 10_000, 'sends after EBADF');
  await within(
    (async () => {
      while (seen.length < 2) await sleep(5);
    })(),
    5000,
    'delivery',
  );
  assert.deepEqual(seen, [`${4 * 1024 * 1024} bytes:0`, 'after:1'], 'the failed sends sent nothing');
  files.close();
  a.close();
  b.close();
  await expectFdsBackTo(base, 'EBADF sends');
});

test('a bad fd in a later record of a multi-record message ends the channel; the peer closes what arrived', async (t) => {
  const files = fileFds(t, 1);
  const good = files.fds[0]!;
  const base = fdCount() - 1;
  const [a, b] = FdChannel.pair();
  const dead = unusedFd();
  const bOutcome = watch(b, true);
  const aClosed = closeOf(a);
  a.on('error', () => {});
  const fds = [...Array.from({ length: 300 }, () => good), dead];
  const err = await rejection(a.send('half', fds));
  assert.equal(err.code, 'EBADF');
  assert.equal(a.closed, true, 'half a message went out: the channel cannot continue');
  assert.equal(await aClosed, err);
  const o = await bOutcome;
  assert.equal((o.errors[0] as { code?: string }).code, 'ERR_BATON_PEER_CLOSED_MID_MESSAGE');
  assert.match(o.errors[0]!.message, /closed 253 fds/);
  files.close();
  await expectFdsBackTo(base, 'a bad fd in a later record');
});

test('send() after close() rejects with ERR_BATON_CHANNEL_CLOSED; close() is idempotent', async () => {
  const base = fdCount();
  const [a, b] = FdChannel.pair();
  const bClosed = closeOf(b);
  let closes = 0;
  a.on('close', () => closes++);
  a.close();
  a.close();
  assert.equal(a.closed, true);
  assert.equal(a.fd, -1);
  const err = await rejection(a.send('late', [0]));
  assert.equal(err.code, 'ERR_BATON_CHANNEL_CLOSED');
  await turns();
  assert.equal(closes, 1);
  // The peer sees a clean end of stream.
  assert.equal(await bClosed, undefined);
  await expectFdsBackTo(base, 'send after close');
});

test('pending sends reject when the channel closes, and their dup()ed fds are closed', async (t) => {
  const files = fileFds(t, 1);
  const base = fdCount() - 1;
  const [a, b] = FdChannel.pair();
  b.pause();
  const sends = [a.send(Buffer.alloc(2 * 1024 * 1024), [files.fds[0]!])];
  for (let i = 0; i < 20; i++)
    sends.push(
      a.send(
        `queued ${i}`,
        Array.from({ length: 10 }, () => files.fds[0]!),
      ),
    );
  assert.ok(a.pendingRecords >= 20);
  assert.ok(fdCount() >= base + 2 + 200, 'the queue holds dups of the fds');
  files.close();
  a.close();
  const results = await within(Promise.allSettled(sends), 5000, 'pending sends settle');
  for (const r of results.slice(1)) {
    assert.equal(r.status, 'rejected');
    assert.equal((r as PromiseRejectedResult).reason.code, 'ERR_BATON_CHANNEL_CLOSED');
  }
  b.close();
  await expectFdsBackTo(base, 'pending sends at close');
});

test('pending sends reject when the peer goes away', async (t) => {
  const files = fileFds(t, 1);
  const base = fdCount() - 1;
  const [a, b] = FdChannel.pair();
  b.pause();
  const sends: Promise<void>[] = [];
  for (let i = 0; i < 10; i++) sends.push(a.send(Buffer.alloc(512 * 1024), [files.fds[0]!]));
  assert.ok(a.pendingRecords > 0);
  files.close();
  const aClosed = closeOf(a);
  const errors: Error[] = [];
  a.on('error', (e) => errors.push(e));
  b.close();
  await aClosed;
  const results = await within(Promise.allSettled(sends), 5000, 'pending sends settle');
  const rejected = results.filter((r) => r.status === 'rejected');
  assert.ok(rejected.length > 0, 'the queued sends reject');
  for (const r of rejected) assert.equal((r as PromiseRejectedResult).reason.code, 'ERR_BATON_CHANNEL_CLOSED');
  assert.deepEqual(errors, [], 'the peer closing is a normal end, not an error');
  assert.equal(a.pendingRecords, 0);
  await expectFdsBackTo(base, 'pending sends when the peer goes away');
});

test(
  'a send that finds the peer gone (EPIPE) still delivers every message the peer sent before closing, fds ' +
    'included',
  async (t) => {
    // The migration channel's case: the old generation sends its last batches of connections and closes;
    // the new one acknowledges an earlier batch before it has read them. That send fails with EPIPE — and
    // must not close the channel, which would discard the unread batches and every connection in them.
    const base = fdCount();
    const files = fileFds(t, 3);
    // All synchronous: the peer's records are queued and its socket closed before `a` gets a chance to read.
    const { raw, ch: a } = rawPeer();
    for (let i = 0; i < 3; i++) native.sendRecord(raw, header(), Buffer.from(`batch ${i}`), [files.fds[i]!]);
    files.close();
    native.closeMany([raw]);
    const received: string[] = [];
    const contents: string[] = [];
    a.on('message', (data, fds) => {
      received.push(data.toString());
      for (const fd of fds) contents.push(readFd(fd));
      native.closeMany(fds);
    });
    const closed = closeOf(a);
    const err = await rejection(a.send('ack'));
    assert.ok(err.code === 'EPIPE' || err.code === 'ECONNRESET', `the send fails with the peer gone (got ${err.code})`);
    assert.equal((await rejection(a.send('again'))).code, err.code, 'later sends fail the same way');
    assert.equal(await closed, undefined, 'the channel then ends normally, at the end of the stream');
    assert.deepEqual(received, ['batch 0', 'batch 1', 'batch 2']);
    assert.equal(contents.length, 3, 'the fds that came with them are open and readable');
    await expectFdsBackTo(base, 'messages read after a failed send');
  },
);

test('fromFd() refuses what is not a connected SEQPACKET socket, and leaves the fd open', async (t) => {
  const dir = tmpDir(t);
  const [f] = makeFiles(dir, 1);
  const fd = fs.openSync(f!.path, 'r');
  assert.throws(() => FdChannel.fromFd(fd), { code: 'ERR_BATON_UNSUPPORTED_FD' });
  assert.equal(native.isOpen(fd), true);
  assert.equal(readFd(fd), f!.content);
  fs.closeSync(fd);
  assert.throws(() => FdChannel.fromFd(-1), RangeError);
});
