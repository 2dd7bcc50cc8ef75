/**
 * SlotSockets (src/cli/slots.ts): per listener name, a reuseport socket per slot (or one socket dup'ed into every
 * slot), all held for the service's life; slot i's sockets for worker i; the sockets of slots without a live worker
 * handed to siblings; resize; all-or-nothing binds that leave no fd open.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { dupFd } from '../src/fd/fd-of.js';
import { listenOnFd } from '../src/fd/adopt.js';
import { probe } from '../src/fd/index.js';
import { SlotSockets, type SlotFd } from '../src/cli/slots.js';
import { bindReusePort } from '../src/fd/reuseport.js';
import { tmpDir, within } from './helpers.js';
import { closeServer, connectMany, countAccepts, fdList, isOpen, throwsCode, warmUp } from './fd-helpers.js';

type Cleanup = { after(fn: () => unknown): void };

function slotSockets(t: Cleanup, slots: number, balance?: 'reuseport' | 'shared'): SlotSockets {
  const s = new SlotSockets({ slots, ...(balance ? { balance } : {}) });
  t.after(() => s.close());
  return s;
}

const inode = (fd: number) => probe(fd).inode;
const fdsOf = (list: SlotFd[] | undefined) => (list ?? []).map((s) => s.fd);

/** Serve a copy of each fd (as a worker serves its received copy), counting the connections each accepts. */
function serveCopies(t: Cleanup, fds: number[]): Promise<number[]> {
  return countAccepts(
    t,
    fds.map((fd) => dupFd(fd)),
  );
}

test.before(warmUp);

test("reuseport: a distinct socket per slot on one port; every slot's worker gets connections", async (t) => {
  const slots = slotSockets(t, 2);
  const { port } = slots.bind('web', { kind: 'tcp', host: '127.0.0.1', port: 0 });
  assert.ok(port && port > 0);
  const [a, b] = [slots.socketsOf(0), slots.socketsOf(1)];
  assert.equal(a.length, 1);
  assert.deepEqual({ ...a[0], fd: 0 }, { name: 'web', kind: 'tcp', slot: 0, fd: 0 });
  assert.notEqual(inode(a[0]!.fd), inode(b[0]!.fd), 'two sockets, not two copies of one');
  for (const s of [a[0]!, b[0]!]) assert.equal((probe(s.fd).local as { port: number }).port, port);
  const counts = await serveCopies(t, [a[0]!.fd, b[0]!.fd]);
  await connectMany(port!, '127.0.0.1', 200);
  for (const c of counts) assert.ok(c >= 30, `connections per slot: ${counts.join(', ')}`);
  assert.deepEqual(slots.info(), [
    { name: 'web', kind: 'tcp', shared: false, address: `127.0.0.1:${port}`, sockets: 2 },
  ]);
});

test("shared: one socket dup'ed into every slot; a Unix path is always shared", async (t) => {
  const shared = slotSockets(t, 3, 'shared');
  shared.bind('web', { kind: 'tcp', host: '127.0.0.1', port: 0 });
  const fds = [0, 1, 2].map((i) => shared.socketsOf(i)[0]!.fd);
  assert.equal(new Set(fds).size, 3, 'a copy per slot');
  assert.equal(new Set(fds.map(inode)).size, 1, 'of one socket');

  const slots = slotSockets(t, 2);
  const sock = path.join(tmpDir(t), 'app.sock');
  assert.deepEqual(slots.bind('local', { kind: 'unix', path: sock, mode: 0o660 }), { port: null });
  const [u0, u1] = [slots.socketsOf(0)[0]!, slots.socketsOf(1)[0]!];
  assert.equal(inode(u0.fd), inode(u1.fd));
  assert.equal(fs.statSync(sock).mode & 0o777, 0o660);
  assert.equal(slots.info()[0]!.shared, true);
});

test('UDP: a reuseport socket per slot', (t) => {
  const slots = slotSockets(t, 2);
  const { port } = slots.bind('stats', { kind: 'udp', host: '127.0.0.1', port: 0 });
  const [a, b] = [slots.socketsOf(0)[0]!, slots.socketsOf(1)[0]!];
  assert.equal(probe(a.fd).kind, 'udp');
  assert.notEqual(inode(a.fd), inode(b.fd));
  assert.equal((probe(b.fd).local as { port: number }).port, port);
});

test("assign: each live worker its own slot; a dead worker's reuseport socket goes to a sibling", (t) => {
  const slots = slotSockets(t, 3);
  slots.bind('web', { kind: 'tcp', host: '127.0.0.1', port: 0 });
  slots.bind('local', { kind: 'unix', path: path.join(tmpDir(t), 'a.sock') });
  const all = slots.assign();
  assert.deepEqual([...all.keys()], [0, 1, 2]);
  for (const w of [0, 1, 2]) assert.deepEqual(all.get(w), slots.socketsOf(w));

  const web1 = slots.socketsOf(1)[0]!;
  const withoutOne = slots.assign((i) => i !== 1);
  assert.deepEqual([...withoutOne.keys()], [0, 2]);
  assert.ok(fdsOf(withoutOne.get(0)).includes(web1.fd), "worker 0 also serves slot 1's web socket");
  // The Unix socket is shared: every live worker holds it already, nobody gets slot 1's copy.
  const local1 = slots.socketsOf(1)[1]!;
  assert.ok(![...withoutOne.values()].some((l) => fdsOf(l).includes(local1.fd)));
  assert.ok(isOpen(web1.fd), 'the orphaned slot socket stays open here');
  assert.equal(slots.assign(() => false).size, 0, 'no live worker: the sockets wait here');
});

test('assign: a lent slot stays with its borrower while it is live; others go to the least loaded', (t) => {
  const slots = slotSockets(t, 4);
  slots.bind('web', { kind: 'tcp', host: '127.0.0.1', port: 0 });
  slots.bind('udp', { kind: 'udp', host: '127.0.0.1', port: 0 });
  const lent = (plan: Map<number, SlotFd[]>) =>
    Object.fromEntries(
      [...plan].map(([w, list]) => [w, [...new Set(list.filter((s) => s.slot !== w).map((s) => s.slot))]]),
    );
  // Slots 1 and 2 down: each goes whole (every name) to one worker, the least loaded (ties: the lowest index).
  const down = (i: number) => i !== 1 && i !== 2;
  assert.deepEqual(lent(slots.assign(down)), { 0: [1], 3: [2] });
  for (const list of slots.assign(down).values()) {
    for (const slot of [1, 2]) assert.ok([0, 2].includes(list.filter((s) => s.slot === slot).length));
  }
  // The current borrower keeps its slot while it is live, even if another is less loaded.
  assert.deepEqual(lent(slots.assign(down, { current: new Map([[1, 3]]) })), { 0: [2], 3: [1] });
  // A borrower that is gone: its slot goes to another live worker.
  const twoDown = (i: number) => i === 0 || i === 3;
  assert.deepEqual(lent(slots.assign((i) => i === 0, { current: new Map([[1, 3]]) })), { 0: [1, 2, 3] });
  // Only workers that borrow are given other slots; with none, the orphaned sockets wait here.
  assert.deepEqual(lent(slots.assign(twoDown, { borrows: (i) => i === 3 })), { 0: [], 3: [1, 2] });
  assert.deepEqual(lent(slots.assign(twoDown, { borrows: () => false })), { 0: [], 3: [] });
});

test('resize: growing joins the group; shrinking keeps reuseport sockets for siblings and closes shared copies', async (t) => {
  const slots = slotSockets(t, 2);
  const { port } = slots.bind('web', { kind: 'tcp', host: '127.0.0.1', port: 0 });
  slots.bind('copy', { kind: 'unix', path: path.join(tmpDir(t), 'b.sock') });
  slots.resize(4);
  assert.equal(slots.slots, 4);
  const web = [0, 1, 2, 3].map((i) => slots.socketsOf(i)[0]!.fd);
  assert.equal(new Set(web.map(inode)).size, 4);
  const counts = await serveCopies(t, web);
  await connectMany(port!, '127.0.0.1', 200);
  for (const c of counts) assert.ok(c > 0, `connections per slot after growing: ${counts.join(', ')}`);

  const copies = [2, 3].map((i) => slots.socketsOf(i)[1]!.fd);
  slots.resize(2);
  for (const fd of web) assert.ok(isOpen(fd), 'no reuseport socket is closed by a scale-down');
  for (const fd of copies) assert.ok(!isOpen(fd), "the removed slots' shared copies are closed");
  const assigned = slots.assign();
  assert.deepEqual(
    fdsOf(assigned.get(0))
      .filter((fd) => web.includes(fd))
      .sort(),
    [web[0]!, web[2]!].sort(),
  );
  assert.deepEqual(
    fdsOf(assigned.get(1))
      .filter((fd) => web.includes(fd))
      .sort(),
    [web[1]!, web[3]!].sort(),
  );
  throwsCode(() => slots.socketsOf(2), RangeError, 'ERR_OUT_OF_RANGE');
  slots.resize(3);
  assert.equal(slots.socketsOf(2)[0]!.fd, web[2], 'growing again reuses the kept socket');
});

test('a bind that fails leaves nothing open and the other listeners as they were', async (t) => {
  const plain = net.createServer();
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  t.after(() => closeServer(plain));
  const busy = (plain.address() as net.AddressInfo).port;
  const slots = slotSockets(t, 3);
  slots.bind('web', { kind: 'tcp', host: '127.0.0.1', port: 0 });
  const before = fdList();
  const err = throwsCode(() => slots.bind('api', { kind: 'tcp', host: '127.0.0.1', port: busy }), Error, 'EADDRINUSE');
  assert.equal(err.syscall, 'bind');
  assert.deepEqual(fdList(), before);
  assert.deepEqual(slots.names(), ['web']);
  throwsCode(() => slots.bind('web', { kind: 'udp', port: 0 }), Error, 'ERR_BATON_DUPLICATE_NAME');
  assert.deepEqual(fdList(), before);
});

test('a second service on a port a group holds fails with EADDRINUSE instead of joining the group', (t) => {
  const first = slotSockets(t, 2);
  const { port } = first.bind('web', { kind: 'tcp', host: '127.0.0.1', port: 0 });
  for (const balance of ['reuseport', 'shared'] as const) {
    const second = slotSockets(t, 2, balance);
    const before = fdList();
    const err = throwsCode(
      () => second.bind('web', { kind: 'tcp', host: '127.0.0.1', port: port! }),
      Error,
      'EADDRINUSE',
    );
    assert.equal(err.syscall, 'bind');
    assert.deepEqual(fdList(), before);
  }
});

test('adopt: an fd from outside (systemd) is shared by every slot; a non-listener is refused and closed', async (t) => {
  const slots = slotSockets(t, 2);
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => closeServer(server));
  const fd = dupFd(server);
  slots.adopt('web', fd);
  assert.equal(inode(slots.socketsOf(1)[0]!.fd), inode(fd));
  assert.equal(slots.info()[0]!.shared, true);
  const file = fs.openSync('/dev/null', 'r');
  throwsCode(() => slots.adopt('file', file), Error, 'ERR_BATON_UNSUPPORTED_FD');
  assert.ok(!isOpen(file), 'the refused fd was closed');
});

test("join: worker 0's reuseport socket becomes slot 0 and the other slots join its group; a plain one is refused", async (t) => {
  const slots = slotSockets(t, 2);
  // What worker 0's listen() binds for a name new to the supervisor (docs/workers.md), registered to it.
  const first = bindReusePort({ type: 'tcp', host: '127.0.0.1', port: 0, exclusive: true });
  slots.join('web', first.fd, { kind: 'tcp', host: '127.0.0.1', port: 0 });
  const [a, b] = [slots.socketsOf(0)[0]!, slots.socketsOf(1)[0]!];
  assert.equal(a.fd, first.fd, 'slot 0 is the registered socket');
  assert.notEqual(inode(a.fd), inode(b.fd), 'slot 1 has a socket of its own');
  assert.equal((probe(b.fd).local as { port: number }).port, first.port, 'on the port port 0 picked for slot 0');
  const counts = await serveCopies(t, [a.fd, b.fd]);
  await connectMany(first.port, '127.0.0.1', 200);
  for (const c of counts) assert.ok(c >= 30, `connections per slot: ${counts.join(', ')}`);
  // A socket bound without SO_REUSEPORT (Node's own listen) blocks the group: refused, closed, nothing left.
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => closeServer(server));
  const plain = dupFd(server);
  const before = fdList().filter((fd) => fd !== plain);
  const port = (server.address() as net.AddressInfo).port;
  const err = throwsCode(() => slots.join('api', plain, { kind: 'tcp', host: '127.0.0.1', port }), Error, 'EADDRINUSE');
  assert.equal(err.syscall, 'bind');
  assert.ok(!isOpen(plain), 'the refused fd was closed');
  assert.deepEqual(fdList(), before);
  const udp = bindReusePort({ type: 'udp', host: '127.0.0.1', port: 0 });
  throwsCode(() => slots.join('dns', udp.fd, { kind: 'tcp', port: 0 }), Error, 'ERR_BATON_UNSUPPORTED_FD');
  assert.ok(!isOpen(udp.fd));
  assert.deepEqual(slots.names(), ['web']);
});

test('close() closes every socket; bad arguments are TypeError/RangeError', (t) => {
  const slots = slotSockets(t, 2);
  slots.bind('web', { kind: 'tcp', host: '127.0.0.1', port: 0 });
  const fds = [0, 1].map((i) => slots.socketsOf(i)[0]!.fd);
  slots.close();
  for (const fd of fds) assert.ok(!isOpen(fd));
  throwsCode(() => slots.bind('x', { kind: 'tcp', port: 0 }), Error, 'ERR_BATON_STATE');
  throwsCode(() => new SlotSockets({ slots: 0 }), RangeError, 'ERR_OUT_OF_RANGE');
  throwsCode(() => new SlotSockets({ slots: 1.5 }), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsCode(
    () => new SlotSockets({ slots: 2, balance: 'round-robin' as 'shared' }),
    TypeError,
    'ERR_INVALID_ARG_VALUE',
  );
});

test("scaling down loses no queued connection: the removed slot's queue is served by the remaining worker", async (t) => {
  // Closing the last fd of an SO_REUSEPORT listener resets its accept queue (here: 206 of 400 connections
  // queued on a group of two, tcp_migrate_req=0), so resize() must keep the removed slot's socket.
  const slots = slotSockets(t, 2);
  const { port } = slots.bind('web', { kind: 'tcp', host: '127.0.0.1', port: 0, backlog: 1024 });
  const total = 200;
  let connected = 0;
  let failed = 0;
  const clients: net.Socket[] = [];
  t.after(() => clients.forEach((c) => c.destroy()));
  await within(
    Promise.all(
      Array.from(
        { length: total },
        () =>
          new Promise<void>((resolve) => {
            const c = net.connect(port!, '127.0.0.1', () => {
              connected++;
              resolve();
            });
            c.on('error', () => {
              failed++;
              resolve();
            });
            clients.push(c);
          }),
      ),
    ),
    10_000,
    'connections queued with nobody accepting',
  );
  assert.equal(connected, total, 'the kernel completed every handshake into the two queues');
  slots.resize(1);
  const [only] = [...slots.assign().values()];
  assert.equal(only!.length, 2, "worker 0 serves its own socket and the removed slot's");
  let accepted = 0;
  for (const s of only!) {
    const server = net.createServer((c) => {
      accepted++;
      c.destroy();
    });
    await listenOnFd(server, dupFd(s.fd));
    t.after(() => closeServer(server));
  }
  for (let i = 0; i < 500 && accepted < total; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(accepted, total, `accepted ${accepted} of ${total} queued connections`);
  assert.equal(failed, 0, 'no client saw an error');
});

test("carry/restore (a supervisor re-exec): every slot's sockets, the kept ones and the balance come back", async (t) => {
  const slots = slotSockets(t, 3);
  const { port } = slots.bind('web', { kind: 'tcp', host: '127.0.0.1', port: 0 });
  slots.bind('copy', { kind: 'unix', path: path.join(tmpDir(t), 'c.sock') });
  slots.resize(2); // slot 2's reuseport socket is kept
  // The exec carries the very fds; here the new image's copy gets dups, so that each side closes its own.
  const carried = slots.carry().map((g) => ({ ...g, fds: g.fds.map((fd) => dupFd(fd)) }));
  assert.deepEqual(
    carried.map((g) => [g.name, g.fds.length, g.shared]),
    [
      ['web', 3, false],
      ['copy', 2, true],
    ],
  );
  const restored = slotSockets(t, 2);
  restored.restore(carried);
  for (const i of [0, 1]) {
    assert.deepEqual(
      restored.socketsOf(i).map((s) => inode(s.fd)),
      slots.socketsOf(i).map((s) => inode(s.fd)),
    );
  }
  assert.deepEqual(restored.info(), slots.info());
  restored.resize(3);
  assert.equal(inode(restored.socketsOf(2)[0]!.fd), inode(carried[0]!.fds[2]!), 'growing reuses the kept socket');
  const counts = await serveCopies(
    t,
    [0, 1, 2].map((i) => restored.socketsOf(i)[0]!.fd),
  );
  await connectMany(port!, '127.0.0.1', 100);
  for (const c of counts) assert.ok(c > 0, `connections per restored slot: ${counts.join(', ')}`);
  throwsCode(() => restored.restore([{ ...carried[0]!, fds: [] }]), Error, 'ERR_BATON_DUPLICATE_NAME');
});
