/**
 * The Node.js and `ws` internals baton relies on (src/fd/internals.ts, src/integrations/internals.ts, and
 * native/http2.c through src/fd/http2.ts), checked on the running Node and the installed ws: if a release
 * changes one, this fails by name rather than reloads quietly losing half-received requests, moving a
 * WebSocket mid-frame or refusing HTTP/2 streams. CI runs it on Node 20, 22 and 24.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import WebSocket, { WebSocketServer } from 'ws';
import {
  acceptingServerOf,
  acceptOptionsOf,
  dgramHandleOf,
  fileHandleParts,
  handleOf,
  setReadPending,
} from '../src/fd/internals.js';
import { HTTP2_CHECKED_SETTINGS, http2ShutdownNotice } from '../src/fd/http2.js';
import {
  connectionsList,
  http2HandleOf,
  http2SocketOf,
  MessageBegun,
  parserOf,
  responseHeadOf,
  setWsCloseReport,
  setWsProtocol,
  submitShutdownNotice,
  wsAtFrameBoundary,
  wsHasExtensions,
  wsProtocolOf,
  wsSocketOf,
} from '../src/integrations/internals.js';
import { waitFor } from './helpers.js';
import { selfSignedCert } from './tls-helpers.js';

test('http.Server: its ConnectionsList tells a connection in the middle of a request head from an idle one', async (t) => {
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  assert.ok(
    connectionsList(server),
    "http.Server has a ConnectionsList under Symbol('http.server.connections') once listening",
  );
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

/**
 * A minimal HTTP/2 client on a raw socket, so the test controls exactly which frames go out and when: Node's
 * own client stops opening streams the moment it reads a GOAWAY, and this test needs one that does not (a
 * stream already on its way when the notice arrived).
 */
class RawH2Client {
  frames: Array<{ type: number; flags: number; stream: number; payload: Buffer }> = [];
  #buf = Buffer.alloc(0);

  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => this.#read(d));
    socket.on('error', () => {});
    // The connection preface and an empty SETTINGS frame.
    socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(4, 0, 0)]));
  }

  /** A GET / with END_STREAM|END_HEADERS: :method GET, :scheme http, :path / (HPACK static table 2, 6, 4)
   * and :authority localhost (a literal with the static table's name 1). */
  request(stream: number): void {
    const block = Buffer.concat([Buffer.from([0x82, 0x86, 0x84, 0x01, 9]), Buffer.from('localhost', 'latin1')]);
    this.socket.write(frame(1, 0x5, stream, block));
  }

  goaways(): Array<{ last: number; code: number }> {
    return this.frames
      .filter((f) => f.type === 7)
      .map((f) => ({ last: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) }));
  }

  responded(stream: number): boolean {
    return this.frames.some((f) => f.type === 1 && f.stream === stream);
  }

  #read(d: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, d]);
    while (this.#buf.length >= 9) {
      const length = this.#buf.readUIntBE(0, 3);
      if (this.#buf.length < 9 + length) return;
      const f = {
        type: this.#buf[3]!,
        flags: this.#buf[4]!,
        stream: this.#buf.readUInt32BE(5) & 0x7fffffff,
        payload: this.#buf.subarray(9, 9 + length),
      };
      this.#buf = this.#buf.subarray(9 + length);
      this.frames.push(f);
      if (f.type === 4 && !(f.flags & 1)) this.socket.write(frame(4, 1, 0)); // SETTINGS ACK
      if (f.type === 6 && !(f.flags & 1)) this.socket.write(frame(6, 1, 0, f.payload)); // PING ACK
    }
  }
}

function frame(type: number, flags: number, stream: number, payload = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

for (const secure of [false, true]) {
  const name =
    `Http2Session${secure ? ' over TLS' : ' (h2c)'}: nghttp2 sends the shutdown notice, and still ` +
    'serves a stream the client sent after it';
  test(name, async (t) => {
    const cert = secure ? selfSignedCert(t) : null;
    if (secure && !cert) return t.skip('openssl is not installed: no test certificate');
    const server = cert ? http2.createSecureServer({ key: cert.key, cert: cert.cert }) : http2.createServer();
    const streams = new Map<number, http2.ServerHttp2Stream>();
    server.on('stream', (stream) => streams.set(stream.id!, stream));
    const sessions: http2.ServerHttp2Session[] = [];
    server.on('session', (s) => sessions.push(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const socket = cert
      ? tls.connect({ port, host: '127.0.0.1', ca: cert.cert, ALPNProtocols: ['h2'] })
      : net.connect(port, '127.0.0.1');
    t.after(() => socket.destroy());
    if (cert) await new Promise((resolve) => socket.once('secureConnect', resolve));
    const client = new RawH2Client(socket);
    client.request(1);
    await waitFor(() => streams.has(1), 5000, 'the server has stream 1');
    const session = sessions[0]!;
    await waitFor(() => !session.pendingSettingsAck, 5000, 'the client acknowledged the SETTINGS');
    assert.ok(http2HandleOf(session), "the session's native handle is under Symbol('kHandle')");
    const socketOf = http2SocketOf(session);
    assert.ok(socketOf instanceof net.Socket && socketOf !== session.socket, "the socket under Symbol('socket')");

    // If this fails, Node changed something native/http2.c or internals.ts relies on, and h2 over TLS
    // refuses streams on every reload again: the result says which step failed.
    assert.equal(submitShutdownNotice(session), 'submitted');
    await waitFor(() => client.goaways().length > 0, 5000, 'the notice');
    assert.deepEqual(client.goaways(), [{ last: 2 ** 31 - 1, code: 0 }], 'the client reads GOAWAY(2^31-1, NO_ERROR)');
    assert.equal(session.destroyed, false, 'Node did not take it for nghttp2 ending the session (22+: Protocol error)');

    client.request(3); // a stream that was on its way when the notice arrived
    // (After session.goaway(0, 2 ** 31 - 1) nghttp2 would ignore it.)
    await waitFor(() => streams.has(3), 5000, 'nghttp2 accepted stream 3');
    for (const id of [1, 3]) {
      streams.get(id)!.respond({ ':status': 200 });
      streams.get(id)!.end('served');
    }
    await waitFor(() => client.responded(1) && client.responded(3), 5000, 'both streams answered');
    session.close();
    // (Node's destroy() may send the same GOAWAY once more.)
    await waitFor(() => client.goaways().length >= 2, 5000, 'the final GOAWAY');
    assert.deepEqual(client.goaways()[1], { last: 3, code: 0 }, 'the final GOAWAY names the last stream processed');
  });
}

test('http2ShutdownNotice: anything but a server Http2Session handle is refused without a crash', async (t) => {
  const empty = new Uint32Array(HTTP2_CHECKED_SETTINGS);
  assert.match(http2ShutdownNotice({}, empty, empty), /^not found/, 'a plain object');
  assert.throws(() => http2ShutdownNotice({}, new Uint32Array(2), empty), TypeError);
  assert.throws(() => http2ShutdownNotice(null as unknown as object, empty, empty), TypeError);

  const server = http2.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const client = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  t.after(() => client.destroy());
  await new Promise((resolve) => client.once('localSettings', resolve));
  // Another kind of native object: a TCP handle has a C++ object too, but no nghttp2 session in it.
  const tcpHandle = (client.socket as unknown as { _handle?: object })._handle ?? {};
  assert.match(http2ShutdownNotice(tcpHandle, empty, empty), /^not found/, 'a TCP handle');
  // A client session has an nghttp2_session, but nghttp2 sends the notice from servers only.
  assert.match(submitShutdownNotice(client), /^not found/, 'a client session');
  assert.equal(client.destroyed, false);
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

test('net.Server: the accept options it keeps (allowHalfOpen, pauseOnConnect, noDelay, keepAlive, ...)', async (t) => {
  const custom = net.createServer({
    allowHalfOpen: true,
    pauseOnConnect: true,
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: 5000,
  });
  assert.deepEqual(
    { ...acceptOptionsOf(custom), highWaterMark: undefined },
    {
      allowHalfOpen: true,
      pauseOnConnect: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: 5000,
      highWaterMark: undefined,
    },
    'lib/net.js Server() keeps each option on the instance (keepAliveInitialDelay in seconds)',
  );
  const plain = acceptOptionsOf(net.createServer());
  assert.equal(plain.allowHalfOpen, false);
  assert.equal(plain.pauseOnConnect, false);
  // http.Server asks net.Server for half-open connections and no Nagle: a second listener must do the same.
  const web = acceptOptionsOf(http.createServer());
  assert.equal(web.allowHalfOpen, true, 'http.Server keeps allowHalfOpen true');
  assert.equal(web.noDelay, true, 'http.Server keeps noDelay true');
  assert.equal(acceptOptionsOf(http2.createServer()).allowHalfOpen, false);
  // A second net.Server made with them accepts connections with those options.
  const second = net.createServer(acceptOptionsOf(custom));
  await new Promise<void>((resolve) => second.listen(0, '127.0.0.1', resolve));
  t.after(() => second.close());
  let accepted: net.Socket | null = null;
  second.on('connection', (s: net.Socket) => (accepted = s));
  const client = net.connect((second.address() as net.AddressInfo).port, '127.0.0.1');
  t.after(() => client.destroy());
  await waitFor(() => accepted !== null, 5000, 'the second server accepts');
  t.after(() => accepted!.destroy());
  assert.equal(accepted!.allowHalfOpen, true, 'accepted half-open, as the first server would');
  assert.equal(accepted!.isPaused(), true, 'accepted paused (pauseOnConnect), as the first server would');
});

test("dgram: the handle under Symbol('state symbol') has the fd", async (t) => {
  const socket = dgram.createSocket('udp4');
  t.after(() => socket.close());
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const fd = dgramHandleOf(socket)?.fd;
  assert.ok(typeof fd === 'number' && fd >= 0, 'a bound dgram.Socket has its fd in the state symbol');
});

test("fs: process.binding('fs').FileHandle and the FileHandle class make a FileHandle of an fd", async (t) => {
  const parts = await fileHandleParts();
  assert.ok(parts, "process.binding('fs').FileHandle is a constructor (else adoptFile reopens the file instead)");
  const file = path.join(os.tmpdir(), `baton-internals-${process.pid}`);
  fs.writeFileSync(file, 'abcdef');
  t.after(() => fs.rmSync(file, { force: true }));
  const fd = fs.openSync(file, 'r');
  const fh = new parts.Wrapper(new parts.Native(fd));
  assert.equal(fh.fd, fd, 'the FileHandle wraps this very fd');
  const { bytesRead, buffer } = await fh.read(Buffer.alloc(3), 0, 3, null);
  assert.equal(buffer.subarray(0, bytesRead).toString(), 'abc');
  assert.equal(fs.readSync(fd, Buffer.alloc(3), 0, 3, null), 3, 'the same open file description: the offset moved');
  await fh.close();
  assert.throws(() => fs.fstatSync(fd), { code: 'EBADF' }, 'closing the FileHandle closed the fd');
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
    http
      .get(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, (res) => {
        res.resume();
        res.on('end', resolve);
      })
      .on('error', reject);
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
