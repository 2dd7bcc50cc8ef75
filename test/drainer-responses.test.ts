/**
 * The HTTP drainer's list of responses in flight (src/integrations/http.ts; the SSE tracker reads it too) holds
 * a response only until it ends: a connection that closes with pipelined requests still queued behind a response
 * being written must not leave their responses (and its socket) in the list, as node:http emits neither 'finish'
 * nor 'close' for a response that never got the socket (Node 20.20 and 22.23; Node 24.21 emits 'close').
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { ServerDrainer } from '../src/integrations/http.js';
import { waitFor } from './helpers.js';

async function serve(t: { after(fn: () => unknown): void }) {
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests++;
    // The first request's response is still being written when the ones pipelined behind it are answered.
    if (req.url === '/slow') setTimeout(() => res.end('slow\n'), 300).unref();
    else res.end('fast\n');
  });
  const drainer = new ServerDrainer(server, 5000);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as net.AddressInfo).port;
  return { drainer, port, requests: () => requests };
}

test('responses pipelined behind one in progress leave the list when their connection closes', async (t) => {
  const { drainer, port, requests } = await serve(t);
  const client = net.connect(port, '127.0.0.1');
  t.after(() => client.destroy());
  await new Promise<void>((resolve) => client.once('connect', resolve));
  const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
  client.write(get('/slow') + get('/a') + get('/b'));
  await waitFor(() => requests() === 3, 5000, 'the three requests');
  assert.equal(drainer.responses.size, 3);
  client.destroy();
  await waitFor(() => drainer.connections === 0, 5000, 'the connection closed on the server');
  // Before the fix the two queued responses stayed: 2.
  await waitFor(() => drainer.responses.size === 0, 2000, `an empty list (${drainer.responses.size} left)`);
});

test('responses leave the list once answered, one after another or pipelined', async (t) => {
  const { drainer, port } = await serve(t);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve, reject) => {
      http
        .get({ port, host: '127.0.0.1', path: '/x', agent }, (res) => res.resume().on('end', resolve))
        .on('error', reject);
    });
  }
  await waitFor(() => drainer.responses.size === 0, 2000, `an empty list (${drainer.responses.size} left)`);
  const client = net.connect(port, '127.0.0.1');
  t.after(() => client.destroy());
  let got = '';
  client.on('data', (d: Buffer) => (got += d.toString('latin1')));
  client.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n');
  await waitFor(() => (got.match(/HTTP\/1\.1 200/g) ?? []).length === 2, 5000, 'both answers');
  await waitFor(() => drainer.responses.size === 0, 2000, `an empty list (${drainer.responses.size} left)`);
  assert.equal(drainer.connections, 2, 'the keep-alive connections stay open');
});
