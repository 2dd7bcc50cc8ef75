/**
 * Growing the fd table ahead of need: growFdTable() (native/fdutil.c, on a threadpool thread) and the migration
 * receiver's use of it (src/upgrader/fd-table-ahead.ts). The table's size is what /proc/self/status says
 * (FDSize: how many fds the kernel's table holds now); it only grows, so each step checks it grew past a
 * target this process had not reached. This file runs in its own process (node --test isolates files), the
 * receiver's test first: it needs a table smaller than START_FDS to see the receiver grow it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { closeFds, growFdTable, socketpair } from '../src/fd/fds.js';
import { fdOf } from '../src/fd/index.js';
import { FD_RESERVE } from '../src/upgrader/fd-room.js';
import { FACTOR, START_FDS } from '../src/upgrader/fd-table-ahead.js';
import { MigrationReceiver, MigrationSender } from '../src/upgrader/migrate.js';
import { closeServer, listenTcp } from './fd-helpers.js';
import { fdTableSize as tableSize } from './fixtures/fd-table.js';
import { nofileLimit } from './migrate-helpers.js';
import { FIXTURES, fdCount, spawnNode, waitFor, within } from './helpers.js';
import path from 'node:path';

test('a migration receiver grows the table ahead: to START_FDS when made, by FACTOR once fds past half of it arrive', async (t) => {
  const limit = nofileLimit();
  const need = (START_FDS / 2 + 20) * FACTOR + FD_RESERVE;
  if (limit < need) return t.skip(`RLIMIT_NOFILE ${limit}: the growth by ${FACTOR} needs ${need}`);
  const initial = tableSize();
  assert.ok(initial < START_FDS, `FDSize ${initial} at the start: the receiver's growth to ${START_FDS} cannot show`);
  const [senderFd, receiverFd] = socketpair();
  const sender = new MigrationSender(senderFd);
  const receiver = new MigrationReceiver(receiverFd);
  const fillers: number[] = [];
  const accepted: net.Socket[] = [];
  const clients: net.Socket[] = [];
  const listener = await listenTcp(t, '127.0.0.1', (s) => accepted.push(s));
  t.after(async () => {
    for (const c of clients) c.destroy();
    sender.close();
    receiver.close();
    closeFds(fillers);
    await closeServer(listener);
  });
  // Before anything fills it: this process holds a few dozen fds, so only the receiver grows the table this far.
  await waitFor(() => tableSize() >= START_FDS, 5000, `FDSize ${START_FDS} once the receiver is made`);

  // Push this process's fds past half of that: the next fds received are numbered above START_FDS / 2.
  const fill = () => fillers.push(fs.openSync('/dev/null', 'r'));
  while (fillers.length === 0 || fillers.at(-1)! < START_FDS / 2 + 10) fill();
  const grownBefore = tableSize();
  assert.ok(grownBefore < (START_FDS / 2) * FACTOR, `FDSize ${grownBefore} not yet grown by FACTOR`);

  const port = (listener.address() as net.AddressInfo).port;
  for (let i = 0; i < 3; i++) {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    clients.push(c);
    await new Promise((r) => c.once('connect', r));
  }
  await waitFor(() => accepted.length === 3, 5000, 'the 3 connections accepted');
  const arrived: number[] = [];
  receiver.on('connection', (socket) => {
    arrived.push(fdOf(socket));
    clients.push(socket);
    socket.on('error', () => {});
  });
  await Promise.all(accepted.map((s, i) => sender.move(s, 'raw', 'x', { i })));
  receiver.close(); // adopts what is parked
  await waitFor(() => arrived.length === 3, 5000, 'the 3 connections adopted');
  const highest = Math.max(...arrived);
  assert.ok(highest > START_FDS / 2, `the fds arrived as ${arrived.join(', ')}`);
  await waitFor(
    () => tableSize() >= highest * FACTOR,
    5000,
    `FDSize ≥ ${highest * FACTOR} (fd ${highest} arrived, × ${FACTOR}); it is ${tableSize()}`,
  );
});

test('a batch that arrives while the first growth waits for the threadpool is grown for once it ran', async (t) => {
  const need = START_FDS * FACTOR + FD_RESERVE;
  if (nofileLimit() < need) return t.skip(`RLIMIT_NOFILE ${nofileLimit()}: the growth by ${FACTOR} needs ${need}`);
  // In a process of its own: its table starts small. Before, the growth was asked for only as a batch arrived,
  // and skipped while one was under way: this one stayed at 1,024.
  const child = spawnNode(t, path.join(FIXTURES, 'fd-table-busy-pool.js'));
  assert.equal(await within(child.exited, 60_000, 'the fixture exits'), 0, child.stderr());
  const busy = /^busy (\d+)(.*)$/m.exec(child.stdout());
  const done = /^done (\d+)$/m.exec(child.stdout());
  assert.ok(busy && done, child.stdout());
  t.diagnostic(`FDSize with the pool busy: ${busy[1]}${busy[2]}; once it was free: ${done[1]}`);
  assert.ok(Number(done[1]) >= START_FDS * FACTOR, `FDSize ${done[1]}, expected at least ${START_FDS * FACTOR}`);
});

test('growFdTable: the table covers minFd afterwards, and the copy it made is closed', async (t) => {
  const before = tableSize();
  const target = before * 2 + 100;
  if (target >= nofileLimit()) return t.skip(`RLIMIT_NOFILE ${nofileLimit()}: no room to grow the table to ${target}`);
  const open = fdCount();
  await growFdTable(0, target);
  assert.ok(tableSize() > target, `FDSize ${tableSize()} after growing to cover fd ${target} (was ${before})`);
  assert.equal(fdCount(), open, 'no fd left open by the growth');
  // A table already that large: nothing to do, and still no fd left behind.
  await growFdTable(0, 10);
  assert.equal(fdCount(), open);
});

test('growFdTable: bad arguments are TypeErrors or RangeErrors; a failing growth rejects with code and syscall', async () => {
  assert.throws(() => growFdTable(0, 1.5), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => growFdTable(0, '8' as unknown as number), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => growFdTable(0, -1), { name: 'RangeError' });
  assert.throws(() => growFdTable(-1, 8), { name: 'RangeError' });
  const limit = nofileLimit();
  if (Number.isFinite(limit) && limit < 0x7fffffff) {
    // At or above RLIMIT_NOFILE: fcntl(F_DUPFD) says EINVAL.
    await assert.rejects(growFdTable(0, limit), { code: 'EINVAL', syscall: 'fcntl' });
  }
  // An fd that is not open: EBADF, nothing made.
  const [a, b] = socketpair();
  closeFds([a, b]);
  const open = fdCount();
  await assert.rejects(growFdTable(a, 8), { code: 'EBADF', syscall: 'fcntl' });
  assert.equal(fdCount(), open);
});
