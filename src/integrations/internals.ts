/**
 * Node.js private internals that the drain relies on, kept in this one module. Each is checked by
 * test/internals.test.ts, which fails loudly if a Node release changes it.
 *
 * Where the bytes of a half-received HTTP/1 request head are (verified on Node 20.20, 22.23 and 24.21):
 * not in the socket's read buffer. Node's HTTP server hands a plain TCP socket's libuv handle to its C++
 * parser (`parser.consume(socket._handle)`, lib/_http_server.js connectionListenerInternal), so bytes go from
 * the kernel straight into llhttp, which keeps no copy of them: only its state machine and the URL and header
 * strings parsed so far, none of which JavaScript can read. `socket.read()` returns nothing and
 * `socket.readableLength` is 0. Those bytes therefore cannot move with the connection; what can be known
 * is whether the parser is in the middle of a message, and the drain then keeps the connection until the
 * request is complete and answered (src/integrations/http.ts).
 *
 * How: every http.Server keeps a C++ ConnectionsList under the symbol `http.server.connections` (created on
 * 'listening' by setupConnectionsTracking; each parser joins it in parser.initialize()). Its `active()`
 * returns the parsers whose current message has begun (llhttp's on_message_begin, at the first byte of a
 * request line) and not completed — Node uses it for headersTimeout/requestTimeout. A parser is also active
 * from its connection's start, before any byte (so that headersTimeout covers a client that sends
 * nothing); `socket.bytesRead` (which counts bytes the parser consumed) tells those apart.
 * `parser.duration()`, which Node 20 has, is gone in Node 22: not used.
 */
import type http from 'node:http';
import type http2 from 'node:http2';
import type net from 'node:net';
import tls from 'node:tls';
import { HTTP2_CHECKED_SETTINGS, http2ShutdownNotice } from '../fd/http2.js';

/** The parser list Node's http.Server keeps: `active()` is the part of its interface used here. */
interface ConnectionsList {
  active(): unknown[];
}

const kConnectionsDescription = 'http.server.connections';
const symbols = new WeakMap<object, symbol | null>();

/** The server's ConnectionsList, or null if it has none (not listening yet, or Node changed). */
export function connectionsList(server: http.Server): ConnectionsList | null {
  const proto = Object.getPrototypeOf(server) as object;
  let sym = symbols.get(proto);
  if (sym === undefined) {
    sym = Object.getOwnPropertySymbols(server).find((s) => s.description === kConnectionsDescription) ?? null;
    // Only remember a hit: before 'listening' the property does not exist yet.
    if (sym) symbols.set(proto, sym);
  }
  const list = sym ? (server as unknown as Record<symbol, unknown>)[sym] : undefined;
  return list && typeof (list as ConnectionsList).active === 'function' ? (list as ConnectionsList) : null;
}

/** The HTTP parser Node attached to a server-side socket (lib/_http_server.js sets socket.parser). */
export function parserOf(socket: net.Socket): object | null {
  const parser = (socket as unknown as { parser?: unknown }).parser;
  return parser && typeof parser === 'object' ? parser : null;
}

/**
 * A snapshot of which connections of `server` have an HTTP/1 request begun and not yet complete. Take one
 * per turn of the event loop (bytes only arrive between turns) and ask it about each socket.
 */
export class MessageBegun {
  readonly #active: Set<unknown>;

  constructor(server: http.Server) {
    this.#active = new Set(connectionsList(server)?.active() ?? []);
  }

  /** Whether `socket`'s parser holds the first bytes of a request whose head or body is still incomplete. */
  has(socket: net.Socket): boolean {
    const parser = parserOf(socket);
    return parser !== null && socket.bytesRead > 0 && this.#active.has(parser);
  }
}

/**
 * HTTP/2's graceful shutdown notice (RFC 9113 §6.8): a GOAWAY frame naming the largest stream id, 2^31-1,
 * with NO_ERROR — "stop opening streams; every stream you have already opened will be served". Node offers no
 * way to send it that works: session.goaway(0, 2 ** 31 - 1) makes nghttp2 ignore the streams the client
 * opens after it, which the final GOAWAY then refuses (src/fd/http2.ts explains; measured with
 * test/reload-http2.test.ts: 16-48 NGHTTP2_REFUSED_STREAM in 3 reloads with a single GOAWAY, none with this).
 *
 * Two ways, the first preferred (verified on Node 20.20, 22.23 and 24.21, h2c and h2 over TLS):
 * 1. nghttp2 queues it (nghttp2_submit_shutdown_notice, through src/fd/http2.ts) and Node sends it in order
 *    with its other frames. What that needs from Node:
 *    - the session's native handle, under the session's Symbol('kHandle') (lib/internal/http2/core.js), an
 *      instance of the binding's Http2Session;
 *    - its settings as Node reports them (session.localSettings / remoteSettings, which Node reads with the
 *      same nghttp2 getters), to check the native session found;
 *    - since Node 22 (and 24), Http2Session::OnFrameSent treats a GOAWAY that it did not submit as nghttp2
 *      terminating the session on its own: it sets internal_goaway_sent_ and destroys the session with
 *      "Protocol error" (NGHTTP2_ERR_PROTO) — unless the session's Goaway() was called before, which sets
 *      the flag that says the application started a shutdown. So session.goaway(0, 2) is called first:
 *      Goaway() sets that flag, then nghttp2_submit_goaway() refuses the id (2 is a stream id of the
 *      server's own, NGHTTP2_ERR_INVALID_ARGUMENT; nghttp2's documentation says so) and queues nothing. On
 *      Node 20 OnFrameSent only counts frames, and the call is the same no-op.
 * 2. Where (1) is unavailable, h2c only: the frame is written to the session's TCP socket around nghttp2. It
 *    lands between whole frames (Node writes each batch nghttp2 serialises with one write to the same stream,
 *    and writes on a stream go out in order). The socket: `session.socket` is a Proxy that refuses write();
 *    the real one is under the session's Symbol('socket'). Over TLS this stalls the session (src/fd/http2.ts
 *    says why), so a TLS session then gets the single GOAWAY.
 */
const SHUTDOWN_NOTICE = Buffer.from([
  0,
  0,
  8, // length: 8
  7, // type: GOAWAY
  0, // flags
  0,
  0,
  0,
  0, // stream 0 (the connection)
  0x7f,
  0xff,
  0xff,
  0xff, // last stream id: 2^31-1
  0,
  0,
  0,
  0, // NO_ERROR
]);

/** A stream id the server itself would use: nghttp2_submit_goaway() refuses it and queues nothing. */
const NO_OP_GOAWAY_STREAM_ID = 2;

/** The socket under an Http2Session, or null if Node keeps it elsewhere now. */
export function http2SocketOf(session: object): net.Socket | null {
  const socket = ownSymbol(session, 'socket');
  return socket && typeof (socket as net.Socket).write === 'function' ? (socket as net.Socket) : null;
}

/** The native handle of an Http2Session (an instance of the binding's Http2Session), or null. */
export function http2HandleOf(session: object): object | null {
  const handle = ownSymbol(session, 'kHandle');
  return handle && typeof handle === 'object' && handle.constructor?.name === 'Http2Session' ? handle : null;
}

function ownSymbol(object: object, description: string): unknown {
  const sym = Object.getOwnPropertySymbols(object).find((s) => s.description === description);
  return sym ? (object as Record<symbol, unknown>)[sym] : undefined;
}

/** The session's settings ids 1-6 in order, as native/http2.c compares them with nghttp2's. */
function settingsArray(s: http2.Settings): Uint32Array {
  const values = [
    s.headerTableSize,
    s.enablePush ? 1 : 0,
    s.maxConcurrentStreams,
    s.initialWindowSize,
    s.maxFrameSize,
    s.maxHeaderListSize,
  ];
  const out = new Uint32Array(HTTP2_CHECKED_SETTINGS);
  for (let i = 0; i < out.length; i++) out[i] = values[i] ?? 0;
  return out;
}

/** Which way the notice went: through nghttp2, written to the socket, or not at all (with why). */
export type ShutdownNoticeResult = { via: 'nghttp2' | 'socket' } | { via: null; reason: string };

/** Way (1): nghttp2 queues the notice; 'submitted', or why not. Exposed for test/internals.test.ts. */
export function submitShutdownNotice(session: http2.Http2Session): string {
  const handle = http2HandleOf(session);
  if (!handle) return "not found: no native handle under Symbol('kHandle')";
  const local = settingsArray(session.localSettings);
  const result = http2ShutdownNotice(handle, local, settingsArray(session.remoteSettings));
  // Before anything is sent (frames go out on Node's next write, never during this call): see above.
  if (result === 'submitted') session.goaway(0, NO_OP_GOAWAY_STREAM_ID);
  return result;
}

/**
 * Send the shutdown notice on `session` (a server session that has not sent a GOAWAY): through nghttp2 where
 * it can, else written to an h2c socket; `via: null` when neither is possible (a TLS session on a Node where
 * (1) does not work): the caller then sends the single GOAWAY. Node sends a queued notice with its next
 * batch of frames, which the caller's session.ping() schedules.
 */
export function sendShutdownNotice(session: http2.Http2Session): ShutdownNoticeResult {
  const reason = submitShutdownNotice(session);
  if (reason === 'submitted') return { via: 'nghttp2' };
  const socket = http2SocketOf(session);
  if (!socket || socket.destroyed || !socket.writable || socket instanceof tls.TLSSocket) return { via: null, reason };
  socket.write(SHUTDOWN_NOTICE);
  return { via: 'socket' };
}

/**
 * `res._header` (lib/_http_outgoing.js): the response head as sent, a string once the head is written.
 * Needed because `res.getHeader()` does not see headers given to writeHead() as an object when setHeader()
 * was never called (they are written straight into the head). Verified on Node 20.20, 22.23 and 24.21.
 * Used by src/integrations/sse.ts to recognise an event stream.
 */
export function responseHeadOf(res: http.ServerResponse): string {
  const head = (res as unknown as { _header?: unknown })._header;
  return typeof head === 'string' ? head : '';
}

/**
 * The `ws` package's private fields that WebSocket migration relies on (src/integrations/ws.ts), verified on
 * ws 8.23 (lib/websocket.js, lib/receiver.js, lib/sender.js):
 * - `ws._socket`: the net.Socket under the WebSocket (null before setSocket());
 * - `ws._extensions`: the negotiated extensions by name (permessage-deflate keeps zlib state here);
 * - `ws._protocol`: the subprotocol (the public `protocol` is a getter over it);
 * - `ws._closeCode` / `ws._closeMessage`: what the 'close' event reports;
 * - the receiver's parse state: `_state` (0 = GET_INFO: waiting for a new frame), `_bufferedBytes`,
 *   `_fragmented` (the opcode of a fragmented message in progress, 0 if none);
 * - the sender's `_queue` (frames waiting behind a compression) and `_state` (0 = DEFAULT, nothing in
 *   progress; an older ws without `_state` is treated as 0).
 */
interface WsInternals {
  _protocol: string;
  _socket: net.Socket | null;
  _extensions: Record<string, unknown>;
  _receiver: { _state: number; _bufferedBytes: number; _fragmented: number } | null;
  _sender: { _queue?: unknown[]; _state?: number } | null;
  _closeCode: number;
  _closeMessage: Buffer;
}

function wsInternals(ws: object): WsInternals {
  return ws as WsInternals;
}

/** The socket under a `ws` WebSocket, or null (not connected yet, or closed). */
export function wsSocketOf(ws: object): net.Socket | null {
  return wsInternals(ws)._socket ?? null;
}

/** Whether the WebSocket negotiated an extension (permessage-deflate): its context lives in this process. */
export function wsHasExtensions(ws: object): boolean {
  const ext = wsInternals(ws)._extensions;
  return !!ext && Object.keys(ext).length > 0;
}

/** At a frame boundary: no partial frame, no fragmented message, nothing waiting to be sent. */
export function wsAtFrameBoundary(ws: object): boolean {
  const { _receiver: r, _sender: s } = wsInternals(ws);
  if (r?._state !== 0 || r._bufferedBytes !== 0 || r._fragmented !== 0) return false;
  return !s || ((s._queue?.length ?? 0) === 0 && (s._state ?? 0) === 0);
}

/** The subprotocol, as ws keeps it (`_protocol`; '' when none). */
export function wsProtocolOf(ws: object): string {
  return wsInternals(ws)._protocol ?? '';
}

/** Set the subprotocol of a WebSocket built for a migrated connection (ws sets it only in its handshake). */
export function setWsProtocol(ws: object, protocol: string): void {
  wsInternals(ws)._protocol = protocol;
}

/** What the WebSocket's 'close' event will report (the connection is gone from this process, not closed);
 * without `reason` the one set before stays. */
export function setWsCloseReport(ws: object, code: number, reason?: string): void {
  const w = wsInternals(ws);
  w._closeCode = code;
  if (reason !== undefined) w._closeMessage = Buffer.from(reason);
}
