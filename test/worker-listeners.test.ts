/**
 * With `baton run --workers N` (N > 1), worker 0's listen()/bindDgram() bind a fresh TCP/UDP socket with
 * SO_REUSEPORT, so that the supervisor can bind the other slots' sockets into its group when it is registered
 * (docs/workers.md; SlotSockets.join); a socket Node binds itself would block them. A later worker is offered
 * every name worker 0 listens on: a name it was not offered is refused. With one worker nothing changes.
 * Real sockets on 127.0.0.1; the Listeners are driven without a supervisor (no offer, nothing registered).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { closeFds } from '../src/fd/fds.js';
import { bindReusePort } from '../src/fd/reuseport.js';
import { Listeners } from '../src/upgrader/listeners.js';
import { closeServer } from './fd-helpers.js';

type Cleanup = { after(fn: () => unknown): void };

function listeners(worker: { index: number; count: number }): Listeners {
  return new Listeners({
    client: () => null,
    service: null,
    idleGrace: 100,
    log: () => {},
    watchHttp: () => {},
    register: async () => {},
    state: () => 'starting',
    worker,
  });
}

/** Can another socket join host:port's reuseport group (what the supervisor does for slots 1..N-1)? */
function joinable(type: 'tcp' | 'udp', port: number): boolean {
  try {
    closeFds([bindReusePort({ type, host: '127.0.0.1', port }).fd]);
    return true;
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, 'EADDRINUSE');
    return false;
  }
}

async function listenHttp(t: Cleanup, l: Listeners): Promise<number> {
  const server = http.createServer((_req, res) => res.end('ok'));
  t.after(() => closeServer(server));
  await l.listen(server, 'web', { host: '127.0.0.1', port: 0 });
  return (server.address() as { port: number }).port;
}

async function bindUdp(t: Cleanup, l: Listeners): Promise<number> {
  const socket = await l.bindDgram('dns', { type: 'udp4', address: '127.0.0.1', port: 0 });
  t.after(() => socket.close());
  return socket.address().port;
}

test('worker 0 of 2 binds its fresh TCP and UDP sockets with SO_REUSEPORT; one worker binds as before', async (t) => {
  const zero = listeners({ index: 0, count: 2 });
  const port = await listenHttp(t, zero);
  assert.ok(joinable('tcp', port), 'the supervisor can bind slot 1 into the TCP group');
  const res = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(await res.text(), 'ok', 'the reuseport listener serves');
  assert.ok(joinable('udp', await bindUdp(t, zero)), 'and into the UDP group');
  const one = listeners({ index: 0, count: 1 });
  assert.ok(!joinable('tcp', await listenHttp(t, one)), 'one worker: an exclusive socket, as Node binds it');
  assert.ok(!joinable('udp', await bindUdp(t, one)));
});

test('worker 1 of 2 listening on a name it was not offered is refused with ERR_BATON_WORKER_LISTENER', async (t) => {
  const l = listeners({ index: 1, count: 2 });
  const server = http.createServer();
  t.after(() => closeServer(server));
  const err = await l.listen(server, 'web', { host: '127.0.0.1', port: 0 }).then(
    () => assert.fail('listen() should be refused'),
    (e: NodeJS.ErrnoException) => e,
  );
  assert.equal(err.code, 'ERR_BATON_WORKER_LISTENER');
  assert.match(err.message, /worker 1 of 2 listens on "web", which worker 0 did not/);
  assert.equal(server.listening, false);
  const udp = await l.bindDgram('dns', { type: 'udp4', address: '127.0.0.1', port: 0 }).then(
    () => assert.fail('bindDgram() should be refused'),
    (e: NodeJS.ErrnoException) => e,
  );
  assert.equal(udp.code, 'ERR_BATON_WORKER_LISTENER');
});
