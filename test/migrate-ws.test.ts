/**
 * WebSocket migration (the ws package) under `baton run`: open connections move to each new generation
 * with their app state, at a frame boundary, with no message lost, duplicated or reordered in either
 * direction; with permessage-deflate they cannot move and get 1012 (Service Restart), and reconnect.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { waitFor } from './helpers.js';
import { startSupervised } from './upgrade-helpers.js';
import { connect, expectEchoedIntact, WS_APP as APP, WS_SERVING as SERVING, type Client } from './ws-helpers.js';

test(
  '1,000 WebSockets exchange numbered messages through 5 upgrades: no disconnect, no gap, duplicate or ' + 'reordering',
  async (t) => {
    const s = await startSupervised(t, { app: APP, servingLine: SERVING });
    const clients: Client[] = [];
    for (let i = 0; i < 1000; i += 100) {
      clients.push(...(await Promise.all(Array.from({ length: 100 }, (_, k) => connect(s.port, i + k)))));
    }
    let running = true;
    const timer = setInterval(() => {
      if (!running) return;
      for (const c of clients) if (c.ws.readyState === WebSocket.OPEN) c.ws.send(String(c.sent++));
    }, 200);
    t.after(() => clearInterval(timer));
    await waitFor(() => clients.every((c) => c.expected > 0), 20_000, 'every client got an echo');
    for (let i = 0; i < 5; i++) {
      const r = await s.reload();
      assert.equal(r.code, 0, `reload ${i + 1}: ${r.stderr}`);
      await new Promise((res) => setTimeout(res, 300));
    }
    // A WebSocket is served by the old generation until its own batch moves (paced moves): keep sending until
    // the last move is over, which shows as every client answered by generation 6.
    await waitFor(() => clients.every((c) => c.generations.has(6)), 60_000, 'every client answered by generation 6');
    running = false;
    clearInterval(timer);
    await expectEchoedIntact(clients);
    const total = clients.reduce((a, c) => a + c.sent, 0);
    assert.ok(total >= 5000, `only ${total} messages were exchanged`);
    // Every connection was served by the last generation by the end.
    const last = (await s.serving())[0]!;
    assert.equal(last.generation, 6);
    assert.ok(
      clients.every((c) => c.generations.has(6)),
      'every connection reached generation 6',
    );
    assert.ok(
      clients.every((c) => c.generations.has(1)),
      'every connection started on generation 1',
    );
    for (const c of clients) c.ws.terminate();
    assert.equal(await s.shutdown(), 0);
  },
);

test(
  'with permessage-deflate, WebSockets cannot move: they get 1012 (Service Restart) and reconnect to the new ' +
    'generation',
  async (t) => {
    const s = await startSupervised(t, { app: APP, servingLine: SERVING, env: { WS_DEFLATE: '1' } });
    const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => connect(s.port, i, true)));
    for (const c of clients) c.ws.send(String(c.sent++));
    await waitFor(() => clients.every((c) => c.expected === 1), 10_000, 'first echoes');
    const r = await s.reload();
    assert.equal(r.code, 0, r.stderr);
    await waitFor(() => clients.every((c) => c.closes.length === 1), 10_000, 'every client closed');
    assert.deepEqual([...new Set(clients.flatMap((c) => c.closes))], [1012]);
    // A standard client reconnects: the new connection is served by generation 2.
    const again = await connect(s.port, 99, true);
    again.ws.send('0');
    again.sent = 1;
    await waitFor(() => again.expected === 1, 10_000, 'echo after reconnecting');
    assert.deepEqual([...again.generations], [2]);
    again.ws.terminate();
    assert.equal(await s.shutdown(), 0);
  },
);
