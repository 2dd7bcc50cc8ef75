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
 * request is complete and answered (src/upgrader/drain.ts).
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
import type net from 'node:net';

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
