/**
 * Acceptance: an https server (examples/https) under `baton run`, reloaded while https keep-alive clients use
 * it. A TLS connection cannot move (its session lives in the old process's OpenSSL); each is handed back
 * cleanly instead. Before this was handled, every idle TLS connection was moved as raw bytes and the
 * client's next request on it failed with ERR_SSL_BAD_RECORD_TYPE (16 per reload with 16 connections).
 *
 * 1. 16 keep-alive connections send requests back to back through 3 reloads: sent = ok + non2xx + errors,
 *    with errors = non2xx = 0, and every old generation logs migrated=0 (nothing moved as raw bytes).
 * 2. The keep-alive race, made deterministic: a client holds an idle keep-alive connection across a reload
 *    and reuses it after the old generation began draining, at a moment when its own event loop was busy
 *    past the old generation's idleGrace (so a FIN sent by the server then is still unread when the request
 *    goes out, exactly like a client that sends just as the server closes). The request is answered — by
 *    the old generation, with `Connection: close` — and the next one goes to the new generation. Closing
 *    idle TLS connections at idleGrace fails this (socket hang up); moving them fails it too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import type net from 'node:net';
import path from 'node:path';
import { startLoad } from '../scripts/lib/http-load.js';
import { ROOT, waitFor } from './helpers.js';
import { HTTPS_SERVING, selfSignedCert } from './tls-helpers.js';
import { startSupervised } from './upgrade-helpers.js';

const APP = path.join(ROOT, 'examples/https/server.js');
const DRAINED = /baton drained gen=(\d+) pid=\d+ ms=\d+ forced=(\d+) migrated=(\d+)/g;

interface Answer {
  status: number;
  gen: number;
  connection: string | undefined;
  reused: boolean;
  socket: net.Socket;
}

function ask(agent: https.Agent, port: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: '/', agent, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => {
        const m = /generation (\d+)/.exec(body);
        resolve({
          status: res.statusCode!,
          gen: m ? Number(m[1]) : 0,
          connection: res.headers.connection,
          reused: req.reusedSocket,
          socket: req.socket!,
        });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end();
  });
}

test('https keep-alive: 3 reloads under load, no request fails, no TLS connection moves', {
  timeout: 180_000,
}, async (t) => {
  const cert = selfSignedCert(t);
  if (!cert) return t.skip('openssl is not installed: no test certificate');
  const s = await startSupervised(t, {
    app: APP,
    env: { TLS_KEY: cert.keyPath, TLS_CERT: cert.certPath },
    servingLine: HTTPS_SERVING(1),
  });
  const load = startLoad({ port: s.port, connections: 16, pauseMs: 2, timeoutMs: 15_000, tls: { ca: cert.cert } });
  t.after(() => load.stop());
  await waitFor(() => load.result.ok >= 100 || load.result.errors > 0, 20_000, 'the load is under way');
  for (let i = 0; i < 3; i++) {
    const r = await s.reload();
    assert.equal(r.code, 0, `reload ${i + 1} failed: ${r.stdout} ${r.stderr}`);
    // The old generation has drained (every TLS connection handed back) before the next reload.
    await waitFor(() => [...s.sup.stderr().matchAll(DRAINED)].length === i + 1, 30_000, `generation ${i + 1} drained`);
    const ok = load.result.ok;
    await waitFor(() => load.result.ok >= ok + 100, 20_000, `requests answered after reload ${i + 1}`);
  }
  const result = await load.stop();
  t.diagnostic(
    `https load: sent ${result.sent}, ok ${result.ok}, non-2xx ${result.non2xx}, errors ${result.errors} ` +
      `${JSON.stringify(result.errorCodes)}, connections opened ${result.socketsOpened}`,
  );
  assert.equal(result.sent, result.ok + result.non2xx + result.errors, 'every request is accounted for');
  assert.deepEqual(result.errorCodes, {}, 'no request failed');
  assert.equal(result.non2xx, 0);
  const drained = [...s.sup.stderr().matchAll(DRAINED)];
  assert.deepEqual(
    drained.map((m) => m[3]),
    ['0', '0', '0'],
    'no TLS connection was moved as raw bytes',
  );
  assert.deepEqual(
    drained.map((m) => m[2]),
    ['0', '0', '0'],
    'none had to be closed at the drain timeout',
  );
});

test('https: an idle keep-alive connection reused after the drain began is answered, with Connection: close', {
  timeout: 120_000,
}, async (t) => {
  const cert = selfSignedCert(t);
  if (!cert) return t.skip('openssl is not installed: no test certificate');
  const s = await startSupervised(t, {
    app: APP,
    env: { TLS_KEY: cert.keyPath, TLS_CERT: cert.certPath },
    servingLine: HTTPS_SERVING(1),
  });
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: cert.cert });
  t.after(() => agent.destroy());
  const first = await ask(agent, s.port);
  assert.equal(first.gen, 1);
  const r = await s.reload();
  assert.equal(r.code, 0, `reload failed: ${r.stdout} ${r.stderr}`);
  await waitFor(() => /baton drain gen=1 /.test(s.sup.stderr()), 20_000, 'generation 1 begins to drain');
  // Busy for longer than idleGrace (1000 ms): whatever the server does meanwhile stays unread in our kernel,
  // and the request below goes out on the pooled connection before any of it is read — the keep-alive race.
  const until = Date.now() + 2500;
  while (Date.now() < until) {
    // spin: this is the busy client
  }
  const second = await ask(agent, s.port);
  assert.equal(second.status, 200);
  assert.equal(second.reused, true, 'the request went out on the idle keep-alive connection');
  assert.ok(second.socket === first.socket, 'the same connection');
  assert.equal(second.gen, 1, 'answered by the old generation: a TLS connection does not move');
  assert.equal(second.connection, 'close', 'and handed back: its response says Connection: close');
  const third = await ask(agent, s.port);
  assert.equal(third.status, 200);
  assert.equal(third.gen, 2, 'the next request opens a connection to the new generation');
  assert.equal(third.reused, false);
  // Nothing was left for the drain timeout to close.
  await waitFor(() => /baton drained gen=1 /.test(s.sup.stderr()), 30_000, 'generation 1 drained');
  assert.match(s.sup.stderr(), /baton drained gen=1 pid=\d+ ms=\d+ forced=0 migrated=0/);
});
