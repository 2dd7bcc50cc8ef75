/**
 * The Node.js and `ws` internals baton relies on (src/fd/internals.ts, src/integrations/internals.ts), checked
 * on the running Node and the installed ws: if a release changes one, this fails by name rather than reloads
 * quietly losing half-received requests or moving a WebSocket mid-frame.
 * CI runs it on Node 20 and 24; verified by hand on 22 too.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { acceptingServerOf, dgramHandleOf, handleOf, setReadPending } from '../src/fd/internals.js';
import {
  connectionsList, http2SocketOf, MessageBegun, parserOf, responseHeadOf, sendShutdownNotice, setWsCloseReport,
  setWsProtocol, wsAtFrameBoundary, wsHasExtensions, wsProtocolOf, wsSocketOf,
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

// ---- src/fd/internals.ts: net and dgram (Node 20.20, 22.23, 24.21) ----

test('net: _handle (fd, readStop, reading, writeQueueSize), socket.server, and the pending-read flag', async (t) => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  assert.equal(typeof handleOf(server)?.fd, 'number', 'a listening net.Server has _handle.fd');
  let accepted: net.Socket | null = null;
  server.on('connection', (s: net.Socket) => (accepted = s));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.after(() => client.destroy());
  await waitFor(() => accepted !== null, 5000, 'the server has the connection');
  const s = accepted!;
  t.after(() => s.destroy());
  assert.equal(acceptingServerOf(s), server, 'lib/net.js sets socket.server on an accepted socket');
  const h = handleOf(s)!;
  assert.equal(typeof h.fd, 'number', 'a connected socket has _handle.fd');
  assert.equal(typeof h.readStop, 'function', '_handle.readStop() exists');
  assert.equal(typeof h.reading, 'boolean', '_handle.reading is a boolean');
  assert.equal(typeof h.writeQueueSize, 'number', '_handle.writeQueueSize is a number');

  // What migrate.ts stopReading() does: stop the handle and mark a read pending; then resume() reads nothing.
  s.pause();
  h.reading = false;
  h.readStop!();
  setReadPending(s, true);
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString()));
  s.resume();
  client.write('held');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(got, '', 'with a read marked pending, resume() does not restart the handle');
  setReadPending(s, false);
  s.pause();
  s.resume();
  await waitFor(() => got === 'held', 5000, 'once the flag is cleared, resume() reads what waited in the kernel');
  s.destroy();
  await waitFor(() => handleOf(s) === null, 5000, '_handle is null once the socket is closed');
});

test("dgram: the handle under Symbol('state symbol') has the fd", async (t) => {
  const socket = dgram.createSocket('udp4');
  t.after(() => socket.close());
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const fd = dgramHandleOf(socket)?.fd;
  assert.ok(typeof fd === 'number' && fd >= 0, 'a bound dgram.Socket has its fd in the state symbol');
});

// ---- src/integrations/internals.ts: the response head and ws ----

test('http: res._header is the head as sent, where getHeader() misses writeHead() headers', async (t) => {
  let head = '';
  let viaGetHeader: unknown = 'unset';
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    head = responseHeadOf(res);
    viaGetHeader = res.getHeader('content-type');
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  await new Promise<void>((resolve, reject) => {
    http.get(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, (res) => {
      res.resume();
      res.on('end', resolve);
    }).on('error', reject);
  });
  assert.match(head, /^HTTP\/1\.1 200/, 'res._header is the head');
  assert.match(head, /content-type: text\/event-stream/i);
  assert.equal(viaGetHeader, undefined, 'getHeader() does not see it (the reason _header is read)');
});

async function wsPair(t: TestContext, deflate: boolean): Promise<{ server: WebSocket; client: WebSocket }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: deflate });
  t.after(() => wss.close());
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const serverSide = new Promise<WebSocket>((resolve) => wss.once('connection', resolve));
  const port = (wss.address() as net.AddressInfo).port;
  const client = new WebSocket(`ws://127.0.0.1:${port}/`, 'chat', { perMessageDeflate: deflate });
  t.after(() => client.terminate());
  await new Promise<void>((resolve, reject) => {
    client.once('open', resolve);
    client.once('error', reject);
  });
  const server = await serverSide;
  t.after(() => server.terminate());
  return { server, client };
}

test('ws: _socket, _extensions, _protocol, receiver/sender state at a frame boundary, close report', async (t) => {
  const { server, client } = await wsPair(t, false);
  assert.ok(wsSocketOf(server) instanceof net.Socket, 'ws._socket is the net.Socket');
  assert.equal(wsHasExtensions(server), false, 'no extension negotiated: ws._extensions is empty');
  assert.equal(wsProtocolOf(server), 'chat', 'ws._protocol holds the subprotocol');
  setWsProtocol(server, 'other');
  assert.equal(server.protocol, 'other', 'the public protocol reads ws._protocol');
  assert.equal(wsAtFrameBoundary(server), true, 'idle: the receiver waits for a frame, the sender is idle');

  // Half a masked text frame (FIN, opcode 1, 5 bytes): the receiver is in the middle of it.
  const raw = wsSocketOf(client)!;
  const mask = Buffer.from([1, 2, 3, 4]);
  const payload = Buffer.from('hello').map((b, i) => b ^ mask[i % 4]!);
  const frame = Buffer.concat([Buffer.from([0x81, 0x85]), mask, payload]);
  const messages: string[] = [];
  server.on('message', (d) => messages.push(String(d)));
  // The head and mask only: the receiver has consumed every byte (nothing buffered) and waits for the payload,
  // which only its _state shows.
  raw.write(frame.subarray(0, 6));
  await waitFor(() => !wsAtFrameBoundary(server), 5000, 'a frame head without its payload: not at a boundary');
  raw.write(frame.subarray(6));
  await waitFor(() => messages.length === 1, 5000, 'the rest of the frame completes the message');
  assert.equal(messages[0], 'hello');
  assert.equal(wsAtFrameBoundary(server), true, 'after a whole frame: at a boundary again');

  // A first fragment (FIN clear): a fragmented message is in progress.
  const first = Buffer.concat([Buffer.from([0x01, 0x82]), mask, Buffer.from('he').map((b, i) => b ^ mask[i]!)]);
  raw.write(first);
  await waitFor(() => !wsAtFrameBoundary(server), 5000, 'a fragmented message in progress: not at a boundary');

  const closed = new Promise<[number, string]>((resolve) => {
    server.once('close', (code, reason) => resolve([code, String(reason)]));
  });
  setWsCloseReport(server, 1012, 'baton: migrated');
  wsSocketOf(server)!.destroy();
  assert.deepEqual(await closed, [1012, 'baton: migrated'], "'close' reports ws._closeCode and ws._closeMessage");
});

test('ws: permessage-deflate shows in _extensions', async (t) => {
  const { server } = await wsPair(t, true);
  assert.equal(wsHasExtensions(server), true, 'ws._extensions names permessage-deflate');
});
