/**
 * The room a migration receiver announces (src/upgrader/fd-room.ts) and what it is measured with
 * (src/fd/fd-usage.ts): a full fd table is room 0 — whether the measurement says so (EMFILE) or merely fails
 * after one succeeded — and only a first measurement that cannot read /proc at all means "no limit"; the
 * estimate is measured again at every acknowledgement when that is cheap (stat), else when it runs low or has
 * fallen by a quarter, so fds the app opens during a move are seen. The real full table:
 * test/migrate-full-table.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type FdUsageReading, readFdUsage } from '../src/fd/fd-usage.js';
import { FD_RESERVE, FdRoom, NO_LIMIT } from '../src/upgrader/fd-room.js';
import { openFds } from './helpers.js';
import { nofileLimit } from './migrate-helpers.js';

/** Room below which every acknowledgement measures (the receiver's: two full batches). */
const LOW = 506;

/** A stand-in for readFdUsage(): answers from `readings` in turn (the last one again once they run out). */
function script(readings: FdUsageReading[]): { read: () => FdUsageReading; calls: () => number } {
  let calls = 0;
  return { read: () => readings[Math.min(calls++, readings.length - 1)]!, calls: () => calls };
}
const listed = (open: number, limit = 10_000): FdUsageReading => ({ open, limit, counted: 'listing' });
const statted = (open: number, limit = 10_000): FdUsageReading => ({ open, limit, counted: 'stat' });

test('readFdUsage: the fds open and the soft limit, as the listing and /proc/self/limits say', () => {
  const usage = readFdUsage();
  assert.ok(typeof usage === 'object', `read: ${usage}`);
  assert.equal(usage.open, openFds().length);
  assert.equal(usage.limit, nofileLimit());
  assert.ok(usage.counted === 'stat' || usage.counted === 'listing');
});

test('room: the limit less the fds open and the reserve; none when the table is full', () => {
  assert.equal(new FdRoom(LOW, script([listed(1000)]).read).room, 10_000 - 1000 - FD_RESERVE);
  assert.equal(new FdRoom(LOW, script([listed(9990)]).read).room, 0);
  assert.equal(new FdRoom(LOW, script(['full']).read).room, 0);
  assert.equal(new FdRoom(LOW, script([listed(10, Infinity)]).read).room, NO_LIMIT);
  // The limit it read, for the fd table's growth (fd-table-ahead.ts): Infinity when it read none.
  assert.equal(new FdRoom(LOW, script([listed(1000)]).read).limit, 10_000);
  assert.equal(new FdRoom(LOW, script(['full']).read).limit, Number.POSITIVE_INFINITY);
});

test('room: no /proc from the start is "unknown: no limit"; a measurement that fails after one succeeded is 0', () => {
  const never = new FdRoom(LOW, script(['unreadable']).read);
  assert.equal(never.room, NO_LIMIT);
  assert.equal(never.took(253), NO_LIMIT - 253);
  // Measured once (room 536), then /proc cannot be read: the table is full (EMFILE on opening it), not unlimited.
  for (const failure of ['unreadable', 'full'] as const) {
    const room = new FdRoom(LOW, script([listed(9400), failure]).read);
    assert.equal(room.room, 536);
    assert.equal(room.took(32), 0, failure);
    assert.equal(room.took(0), 0, failure);
  }
});

test('room: counted down without measuring while high; measured at every acknowledgement once low', () => {
  const s = script([listed(1000), listed(3000), listed(9450), listed(9460)]);
  const room = new FdRoom(LOW, s.read);
  assert.equal(room.room, 8936);
  // Down by 2,000 (less than a quarter): no listing.
  for (let i = 0; i < 8; i++) room.took(250);
  assert.equal(room.room, 6936);
  assert.equal(s.calls(), 1);
  // Down by a quarter of what was measured: measured again (the app opened nothing: the same).
  assert.equal(room.took(250), 10_000 - 3000 - FD_RESERVE);
  assert.equal(s.calls(), 2);
  // The app opened 4,700 fds of its own meanwhile (more than the 1,750 moved): the next measurement sees them,
  // and below two full batches from then on, every acknowledgement measures.
  for (let i = 0; i < 7; i++) room.took(250);
  assert.equal(s.calls(), 3);
  assert.equal(room.room, 10_000 - 9450 - FD_RESERVE);
  assert.equal(room.took(50), 10_000 - 9460 - FD_RESERVE);
  assert.equal(s.calls(), 4);
});

test('room: measured at every acknowledgement when the count is a stat (cheap)', () => {
  const s = script([statted(1000), statted(1300), statted(1700)]);
  const room = new FdRoom(LOW, s.read);
  assert.equal(room.took(253), 10_000 - 1300 - FD_RESERVE);
  assert.equal(room.took(253), 10_000 - 1700 - FD_RESERVE);
  assert.equal(s.calls(), 3);
});
