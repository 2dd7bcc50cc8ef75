/**
 * HTTP keep-alive connections idle at the drain move paced, like WebSockets and migrateAll(): one batch's worth
 * at a time, each only when the sender says it would leave at once (src/upgrader/pacing.ts). Before, every idle
 * connection was handed to move() at the drain — each stopped reading there and waited for every batch ahead of
 * it, and the drain ran 10,000 of them in one task. Here, with a sender that holds its batches of 3: only 3 start
 * moving, and a connection not in that batch is still answered by this server meanwhile.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { ServerDrainer } from '../src/integrations/http.js';
import { manualSender, waitFor, within } from './helpers.js';

const N = 7;

/** Send one request on a raw connection and resolve with the response's status line. */
function ask(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const onData = (d: Buffer) => {
      got += d.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/content-length: (\d+)/i.exec(got)?.[1] ?? 0);
      if (got.length < end + 4 + length) return;
      socket.off('data', onData);
      resolve(got.slice(0, got.indexOf('\r\n')));
    };
    socket.on('data', onData);
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  });
}

test('HTTP connections idle at the drain move one batch at a time; the others are served meanwhile', async (t) => {
  const server = http.createServer((_req, res) => res.end('ok'));
  const drainer = new ServerDrainer(server, 5000);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.closeAllConnections());
  const port = (server.address() as net.AddressInfo).port;
  const clients: net.Socket[] = [];
  for (let i = 0; i < N; i++) {
    const c = net.connect(port, '127.0.0.1');
    c.on('end', () => {}).resume();
    clients.push(c);
    t.after(() => c.destroy());
    assert.equal(await within(ask(c), 5000, 'a first answer'), 'HTTP/1.1 200 OK');
  }
  await waitFor(() => drainer.connections === N, 5000, 'every connection tracked');

  const moving: net.Socket[] = [];
  const pacer = manualSender(3);
  // The move itself is not under test: record it and close the connection (as the old side's socket object is).
  const migrate = async (socket: net.Socket) => {
    moving.push(socket);
    socket.destroy();
  };
  const drained = drainer.drain(10_000, migrate, pacer);
  await new Promise((r) => setImmediate(r));
  assert.equal(moving.length, 3, 'only the first batch starts moving (before: all 7 at the drain)');

  // A connection not in that batch is still served here while the batch is on its way.
  await waitFor(() => clients.filter((c) => c.readableEnded).length === 3, 5000, 'the batch left (closed here)');
  const unmoved = clients.find((c) => !c.readableEnded);
  assert.ok(unmoved);
  assert.equal(moving.length, 3);
  assert.equal(await within(ask(unmoved), 5000, 'an answer while the first batch moves'), 'HTTP/1.1 200 OK');

  // Released batch by batch, every connection moves, each once (the one that asked moves at its next idle moment).
  while (moving.length < N) {
    await waitFor(() => pacer.waiting || moving.length === N, 5000, 'the next batch waits for the sender');
    if (pacer.waiting) pacer.release();
    await new Promise((r) => setImmediate(r));
  }
  assert.equal(new Set(moving).size, N, 'each connection moved once');
  assert.ok(pacer.releases >= 2, `released ${pacer.releases} times`);
  const { forced } = await within(drained, 5000, 'the drain ends once every connection moved');
  assert.equal(forced, 0);
  await new Promise<void>((r) => server.close(() => r()));
});
