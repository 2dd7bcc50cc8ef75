/**
 * The channel's hot path in src/fd/native.ts: sendRecord, recvRecords and closeMany are TypeScript over
 * typed-array primitives of the addon (sendRecordInt32, recvBatch, closeInt32). These tests pin down that
 * they behave as the plain N-API versions did: records and fds intact and in order across batch limits
 * (fds scratch full, small records packed into one Buffer, large ones not), the same argument errors, and
 * closeMany's count and skipping rules.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { native, RECORD_OK } from '../src/fd/native.js';
import { expectFdsBackTo, fdCount, fdinfoFlags, O_CLOEXEC, tmpDir } from './helpers.js';

const HEADER = Buffer.from([0xba, 1, 0, 0]);

type Rec = { status: number; data: Buffer; fds: number[] | null };

/** Every record queued on `fd` now, through as many recvRecords calls as it takes; `sizes` gets the
 * number of records each call returned. */
function drain(fd: number, max: number, sizes: number[] = []): Rec[] {
  const out: Rec[] = [];
  for (;;) {
    const recs = native.recvRecords(fd, max);
    if (recs.length === 0) return out;
    assert.equal(recs.length % 3, 0, 'no end of stream here');
    sizes.push(recs.length / 3);
    for (let i = 0; i < recs.length; i += 3) {
      out.push({ status: recs[i] as number, data: recs[i + 1] as Buffer, fds: recs[i + 2] as number[] | null });
    }
  }
}

function openFile(t: Parameters<typeof tmpDir>[0], content: string): number {
  const p = path.join(tmpDir(t), 'f');
  fs.writeFileSync(p, content);
  return fs.openSync(p, 'r');
}

function readAll(fd: number): string {
  const buf = Buffer.alloc(256);
  return buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)).toString();
}

/** Open file descriptors allowed in this process (soft limit), from /proc/self/limits. */
function nofileLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

test('records with more fds than one read holds come over several reads, complete and in order', async (t) => {
  const N = 35; // 35 x 253 fds: more than one recvRecords call collects
  if (nofileLimit() < N * 253 + 2000) {
    t.skip(`needs ${N * 253 + 2000} open files, the limit is ${nofileLimit()}`);
    return;
  }
  const file = openFile(t, 'hot-path');
  const base = fdCount();
  const [a, b] = native.socketpair();
  const fds = Array.from({ length: native.SCM_MAX_FD }, () => file);
  for (let i = 0; i < N; i++) {
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(i, 0);
    assert.equal(native.sendRecord(a, HEADER, payload, fds), true, `record ${i} goes into the kernel`);
  }
  const sizes: number[] = [];
  const recs = drain(b, 64, sizes);
  assert.equal(recs.length, N);
  assert.ok(
    sizes.length > 1 && sizes[0]! < N,
    `the first read stops before the fds overflow (reads: ${sizes.join(', ')})`,
  );
  const seen = new Set<number>();
  recs.forEach((r, i) => {
    assert.equal(r.status, RECORD_OK);
    assert.equal(r.data.length, HEADER.length + 8);
    assert.deepEqual(r.data.subarray(0, 4), HEADER);
    assert.equal(r.data.readUInt32BE(4), i, 'in order');
    assert.equal(r.fds?.length, native.SCM_MAX_FD);
    for (const fd of r.fds!) {
      assert.ok(!seen.has(fd), 'every received fd is a new descriptor');
      seen.add(fd);
    }
  });
  // Spot-check that they are the file, and close-on-exec.
  for (const r of [recs[0]!, recs[N - 1]!]) {
    assert.equal(readAll(r.fds![0]!), 'hot-path');
    assert.ok(fdinfoFlags(r.fds![252]!) & O_CLOEXEC);
  }
  let closed = 0;
  for (const r of recs) closed += native.closeMany(r.fds!);
  assert.equal(closed, N * native.SCM_MAX_FD);
  native.closeMany([a, b]);
  fs.closeSync(file);
  await expectFdsBackTo(base - 1, 'records over several reads');
});

test('small records share one read Buffer, large ones get their own; every byte is right', async () => {
  const base = fdCount();
  const [a, b] = native.socketpair();
  const devnull = fs.openSync('/dev/null', 'r');
  // Around the 4 KiB packing limit, and enough small records to fill the 64 KiB packing area within one
  // read; then a full 64 KiB payload on its own (together they would not fit the socket buffer).
  const phases = [
    [0, 1, 20, 4091, 4092, 4093, 5000, 7, ...Array.from({ length: 20 }, (_, i) => 3000 + i), 1],
    [65536, 3],
  ];
  let i = 0;
  for (const sizes of phases) {
    const sent = sizes.map((n) => {
      const p = Buffer.alloc(n);
      for (let j = 0; j < n; j++) p[j] = (i * 31 + j * 7) & 0xff;
      i++;
      return p;
    });
    // Some with an fd, to check fds stay with their record.
    sent.forEach((p, k) =>
      assert.equal(native.sendRecord(a, HEADER, p.length ? p : null, k % 3 === 0 ? [devnull] : null), true),
    );
    const recs = drain(b, 64);
    assert.equal(recs.length, sent.length);
    recs.forEach((r, k) => {
      assert.equal(r.status, RECORD_OK);
      assert.deepEqual(r.data, Buffer.concat([HEADER, sent[k]!]), `record ${k} (${sizes[k]} bytes)`);
      if (k % 3 === 0) {
        assert.equal(r.fds?.length, 1, `record ${k} carries its fd`);
        assert.equal(native.closeMany(r.fds!), 1);
      } else assert.equal(r.fds, null, `record ${k} carries no fd`);
    });
    // A record's Buffer holds its own bytes: writing into one does not change the next.
    recs[0]!.data.fill(0);
    assert.deepEqual(recs[1]!.data, Buffer.concat([HEADER, sent[1]!]));
  }
  fs.closeSync(devnull);
  native.closeMany([a, b]);
  await expectFdsBackTo(base, 'mixed record sizes');
});

test('recvRecords: end of stream after the last records; max bounds a read', () => {
  const [a, b] = native.socketpair();
  for (let i = 0; i < 5; i++) native.sendRecord(a, HEADER, Buffer.from([i]), null);
  native.closeMany([a]);
  const first = native.recvRecords(b, 2);
  assert.equal(first.length, 6, 'two records');
  const rest = native.recvRecords(b, 64);
  assert.equal(rest.length, 3 * 3 + 1);
  assert.equal(rest[rest.length - 1], null, 'then the end of stream');
  assert.deepEqual(native.recvRecords(b, 0), [], 'max 0 reads nothing');
  native.closeMany([b]);
});

test('sendRecord: bad fds give the same errors as before, and nothing is sent', () => {
  const [a, b] = native.socketpair();
  throwsCode(() => native.sendRecord(a, HEADER, null, ['3' as unknown as number]), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => native.sendRecord(a, HEADER, null, [1.5]), RangeError, 'ERR_OUT_OF_RANGE');
  throwsCode(() => native.sendRecord(a, HEADER, null, [-1]), RangeError, 'ERR_OUT_OF_RANGE');
  throwsCode(() => native.sendRecord(a, HEADER, null, [2 ** 31]), RangeError, 'ERR_OUT_OF_RANGE');
  throwsCode(
    () => native.sendRecord(a, HEADER, null, new Array(native.SCM_MAX_FD + 1).fill(a)),
    RangeError,
    'ERR_OUT_OF_RANGE',
  );
  throwsCode(() => native.sendRecord(a, HEADER, null, {} as unknown as number[]), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => native.sendRecord(a, 'x' as unknown as Buffer, null, [a]), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(() => native.sendRecord(-1, HEADER, null, [a]), RangeError, 'ERR_OUT_OF_RANGE');
  assert.deepEqual(native.recvRecords(b, 64), [], 'nothing was sent');
  // A closed fd: EBADF from sendmsg.
  const [x, y] = native.socketpair();
  native.closeMany([x, y]);
  assert.throws(() => native.sendRecord(a, HEADER, null, [x]), { code: 'EBADF' });
  // Empty and null fd lists both send a record without fds.
  assert.equal(native.sendRecord(a, HEADER, null, []), true);
  assert.equal(native.sendRecord(a, HEADER, Buffer.from('z'), null), true);
  const recs = native.recvRecords(b, 64);
  assert.equal(recs.length, 6);
  assert.equal(recs[2], null);
  assert.equal(recs[5], null);
  native.closeMany([a, b]);
});

function throwsCode(fn: () => unknown, type: ErrorConstructor, code: string): void {
  assert.throws(fn, (err: Error & { code?: string }) => err instanceof type && err.code === code);
}

test('closeMany: counts the fds that were open, skips negatives and non-numbers, any length', async () => {
  const base = fdCount();
  const [a, b] = native.socketpair();
  const c = native.dup(a);
  assert.equal(native.closeMany([a, -1, 'x' as unknown as number, null as unknown as number, b, b, c]), 3);
  assert.equal(native.isOpen(a) || native.isOpen(b) || native.isOpen(c), false);
  assert.equal(native.closeMany([]), 0);
  assert.throws(() => native.closeMany('1' as unknown as number[]), TypeError);
  // More than the wrapper's scratch array holds at once.
  const [p, q] = native.socketpair();
  const many = Array.from({ length: 2500 }, () => native.dup(p));
  assert.equal(native.closeMany(many), 2500);
  assert.ok(many.every((fd) => !native.isOpen(fd)));
  native.closeMany([p, q]);
  await expectFdsBackTo(base, 'closeMany');
});
