/**
 * ReadinessWatch (src/fd/readiness.ts, native/readiness.c): which of many borrowed fds became readable, each
 * reported once, without reading or owning them. Real TCP connections on 127.0.0.1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { closeFds, isOpen } from '../src/fd/fds.js';
import { dupFd } from '../src/fd/fd-of.js';
import { ReadinessWatch } from '../src/fd/readiness.js';
import { closeServer, listenTcp } from './fd-helpers.js';
import { expectFdsBackTo, fdCount, within } from './helpers.js';

/** `n` connected TCP pairs: the test's clients, and a dup of each accepted socket's fd (the watched side). */
async function pairs(t: Parameters<typeof listenTcp>[0], n: number): Promise<{ clients: net.Socket[]; fds: number[] }> {
  const accepted: net.Socket[] = [];
  const listener = await listenTcp(t, '127.0.0.1', (s) => {
    s.pause();
    accepted.push(s);
  });
  const port = (listener.address() as net.AddressInfo).port;
  const clients: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    await new Promise((r) => c.once('connect', r));
    clients.push(c);
  }
  while (accepted.length < n) await new Promise((r) => setTimeout(r, 5));
  // A dup of each, with Node's socket then destroyed: nothing in Node reads the watched fds.
  const fds = accepted.map((s) => dupFd(s));
  for (const s of accepted) s.destroy();
  await closeServer(listener);
  return { clients, fds };
}

function collect(): { watch: ReadinessWatch; ready: number[]; next: (n: number) => Promise<void> } {
  const ready: number[] = [];
  let wake: (() => void) | null = null;
  const watch = new ReadinessWatch(
    (fds) => {
      ready.push(...fds);
      wake?.();
    },
    (err) => assert.fail(err),
  );
  const next = async (n: number) => {
    while (ready.length < n) await within(new Promise<void>((r) => (wake = r)), 5000, `${n} reports`);
  };
  return { watch, ready, next };
}

test('reports an fd once when its client sends, again not until removed and added; EOF and resets count', async (t) => {
  const base = fdCount();
  const { clients, fds } = await pairs(t, 4);
  const { watch, ready, next } = collect();
  for (const fd of fds) watch.add(fd);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(ready, [], 'idle connections are not reported');
  clients[2]!.write('x');
  await next(1);
  assert.deepEqual(ready, [fds[2]]);
  clients[2]!.write('y');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(ready, [fds[2]], 'one report per add (EPOLLONESHOT)');
  // Removed and added again: still readable (nothing read it), so reported again at once.
  watch.remove(fds[2]!);
  watch.add(fds[2]!);
  await next(2);
  assert.deepEqual(ready, [fds[2], fds[2]]);
  clients[0]!.end(); // FIN
  clients[3]!.resetAndDestroy(); // RST
  await next(4);
  assert.deepEqual(new Set(ready.slice(2)), new Set([fds[0], fds[3]]));
  // Removed before it becomes readable: never reported.
  watch.remove(fds[1]!);
  clients[1]!.write('z');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(ready.length, 4);
  watch.close();
  assert.ok(watch.closed);
  watch.close(); // idempotent
  assert.ok(
    fds.every((fd) => isOpen(fd)),
    'closing the watch closes none of the watched fds',
  );
  closeFds(fds);
  for (const c of clients) c.destroy();
  await expectFdsBackTo(base, 'the watch and the connections closed');
});

test('take() without blocking, and the callback: at most 64 at a time, each fd once', async (t) => {
  const { clients, fds } = await pairs(t, 150);
  const got: number[] = [];
  let largest = 0;
  const watch = new ReadinessWatch(
    (ready) => {
      largest = Math.max(largest, ready.length);
      got.push(...ready);
    },
    (err) => assert.fail(err),
  );
  assert.deepEqual(watch.take(), [], 'nothing readable: nothing, at once');
  for (const fd of fds) watch.add(fd);
  for (const c of clients) c.write('x');
  // Some are reported to the callback (a turn of the event loop each), the rest taken here.
  await new Promise((r) => setImmediate(r));
  for (let i = 0; i < 100 && got.length < fds.length; i++) {
    const batch = watch.take();
    largest = Math.max(largest, batch.length);
    got.push(...batch);
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(largest <= 64, `${largest} reported at once`);
  assert.deepEqual(
    [...got].sort((a, b) => a - b),
    [...fds].sort((a, b) => a - b),
    'every fd, once',
  );
  watch.close();
  closeFds(fds);
  for (const c of clients) c.destroy();
});

test('errors: epoll_ctl as the kernel says it (code, syscall); a closed watch says ERR_BATON_NOT_OPEN', async (t) => {
  const base = fdCount();
  const { clients, fds } = await pairs(t, 1);
  const watch = new ReadinessWatch(
    () => {},
    (err) => assert.fail(err),
  );
  watch.add(fds[0]!);
  assert.throws(() => watch.add(fds[0]!), { code: 'EEXIST', syscall: 'epoll_ctl' });
  watch.remove(fds[0]!);
  assert.throws(() => watch.remove(fds[0]!), { code: 'ENOENT', syscall: 'epoll_ctl' });
  closeFds(fds);
  assert.throws(() => watch.add(fds[0]!), { code: 'EBADF', syscall: 'epoll_ctl' });
  assert.throws(() => watch.add(-1), { name: 'RangeError' });
  watch.close();
  assert.throws(() => watch.add(0), { code: 'ERR_BATON_NOT_OPEN' });
  assert.throws(() => watch.take(), { code: 'ERR_BATON_NOT_OPEN' });
  for (const c of clients) c.destroy();
  await expectFdsBackTo(base, 'the watch closed');
});
