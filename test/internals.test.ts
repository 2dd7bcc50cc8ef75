/**
 * The Node.js internals baton relies on (src/integrations/internals.ts), checked on the running Node: if a
 * release changes them, this fails by name rather than reloads quietly losing half-received requests.
 * CI runs it on Node 20 and 24; verified by hand on 22 too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import {
  connectionsList, http2SocketOf, MessageBegun, parserOf, sendShutdownNotice,
} from '../src/integrations/internals.js';
import { waitFor } from './helpers.js';

test('http.Server: its ConnectionsList tells a connection in the middle of a request head from an idle one', async (t) => {
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  assert.ok(connectionsList(server), "http.Server has a ConnectionsList under Symbol('http.server.connections') once listening");
  let socket: net.Socket | null = null;
  server.on('connection', (s: net.Socket) => (socket = s));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.after(() => client.destroy());
  await waitFor(() => socket !== null, 5000, 'the server has the connection');
  const s = socket!;
  assert.ok(parserOf(s), 'lib/_http_server.js sets socket.parser');
  const begun = () => new MessageBegun(server).has(s);
  assert.equal(begun(), false, 'a connection with no byte yet is at a message boundary');

  client.write('GET / HTTP/1.1\r\nHo');
  await waitFor(() => s.bytesRead > 0, 5000, 'the server read the first bytes');
  assert.equal(begun(), true, 'a partial head: the message has begun');
  assert.equal(s.readableLength, 0, "the partial head is not in the socket's read buffer (the parser consumed it)");

  let answered = '';
  client.on('data', (d: Buffer) => (answered += d.toString('latin1')));
  client.write('st: x\r\n\r\n');
  await waitFor(() => answered.endsWith('ok'), 5000, 'the response');
  assert.equal(begun(), false, 'after a complete request and its response: idle');

  client.write('G');
  await waitFor(() => begun(), 5000, 'a single byte begins the next message');
});

test("Http2Session: the socket under Symbol('socket') takes a GOAWAY frame that nghttp2 does not see", async (t) => {
  const server = http2.createServer();
  let held: http2.ServerHttp2Stream | null = null;
  server.on('stream', (stream) => (held = stream));
  const sessions: http2.ServerHttp2Session[] = [];
  server.on('session', (s) => sessions.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const client = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  t.after(() => client.destroy());
  const req = client.request({ ':path': '/' });
  req.setEncoding('utf8');
  let body = '';
  req.on('data', (d: string) => (body += d));
  const ended = new Promise<void>((resolve, reject) => {
    req.on('end', resolve);
    req.on('error', reject);
  });
  await waitFor(() => held !== null, 5000, 'the server has the stream');
  const session = sessions[0]!;
  const socket = http2SocketOf(session);
  assert.ok(socket instanceof net.Socket, "the session's socket is under Symbol('socket')");
  assert.notEqual(socket, session.socket, 'and is not the write-refusing Proxy that session.socket returns');
  const goaway = new Promise<[number, number]>((resolve) => client.once('goaway', (code: number, last: number) => resolve([code, last])));
  assert.equal(sendShutdownNotice(session), true);
  assert.deepEqual(await goaway, [0, 2 ** 31 - 1], 'the client reads GOAWAY(NO_ERROR, 2^31-1)');
  assert.equal(session.closed, false, 'nghttp2 and Node did not see it: the server session is not closing');
  held!.respond({ ':status': 200 });
  held!.end('served');
  await ended;
  assert.equal(body, 'served', 'the stream opened before the notice is served');
});
