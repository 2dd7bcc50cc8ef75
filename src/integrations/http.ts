/**
 * Connection tracking and draining for the servers an Upgrader listens with.
 *
 * When a generation is replaced it stops accepting (its copy of the listener closes; the kernel socket
 * lives on in the new generation, so nothing in the accept queue is lost) and then drains:
 *
 * - HTTP/1 (http, https): a request in flight finishes; its response carries `Connection: close` and the
 *   connection closes after it. A connection that is idle between requests gets `idleGraceMs` to send its
 *   next request (which is answered, with `Connection: close`) and is closed after that. Closing an idle
 *   keep-alive connection at once would race a client that is sending its next request at that moment —
 *   the classic keep-alive race, where the client sees a reset. That is also why http.Server#close() is not
 *   used: since Node 19 it closes idle connections immediately.
 *   With migration (plain HTTP), an idle connection moves instead — but only at a message boundary: one
 *   whose parser holds the first bytes of a request head (internals.ts: those bytes cannot move) stays
 *   until that request is answered, and moves then. Those idle at the drain move paced, a batch at a time
 *   (src/upgrader/pacing.ts): each is served here until its own batch goes.
 * - HTTPS: a TLS connection never moves (its session keys and sequence numbers live in this process's
 *   OpenSSL; the raw bytes would be garbage to the new one). Every response from now on carries
 *   `Connection: close`, and an idle one is left to the keep-alive timeout the server announced in each
 *   response (`Keep-Alive: timeout=N`; Node closes it a second after that), not cut at idleGraceMs: a client
 *   may reuse it until then, and an earlier close would race that request (docs/migration.md).
 * - HTTP/2: each session gets a two-phase GOAWAY (RFC 9113 §6.8): first with the largest stream id, so the
 *   streams the client is opening right now are still served, then — after PING round trips — the real
 *   last stream id (session.close()): open streams finish, no new ones start, an idle session closes. The
 *   first is sent by nghttp2 itself (h2c and h2 over TLS; internals.ts, src/fd/http2.ts).
 * - Anything else (net.Server with a custom protocol): the app is told ('drain' event) and the connections
 *   close when the app or the client closes them.
 *
 * After `drainTimeout` whatever is left is destroyed.
 */
import http from 'node:http';
import type http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { MessageBegun, sendShutdownNotice } from './internals.js';
import { paced, type PacedSender } from '../upgrader/pacing.js';
import { LinkedSet, type ReadonlyLinkedSet } from './linked-set.js';

export interface DrainResult {
  /** Connections that were still open at the drain timeout and were destroyed. */
  forced: number;
}

interface Http2SessionLike {
  close(cb?: () => void): void;
  ping(cb: (err: Error | null) => void): boolean;
  destroy(): void;
  once(event: 'close' | 'localSettings', fn: () => void): unknown;
  pendingSettingsAck: boolean;
  closed: boolean;
  destroyed: boolean;
}

const kInflight = Symbol('baton.inflight');
const kIdleTimer = Symbol('baton.idleTimer');

const kMoving = Symbol('baton.moving');
const kUnmovable = Symbol('baton.unmovable');
const kUpgraded = Symbol('baton.upgraded');
const kGoaway = Symbol('baton.goaway');

/** If the client does not answer the PING (or it cannot be sent), the final GOAWAY goes after this long
 * anyway. A client acknowledges a PING at once (nghttp2 does it by itself), so this is only a bound. */
const GOAWAY_PING_TIMEOUT_MS = 2000;
/** Node closes an idle keep-alive connection this long after the keep-alive timeout it announced
 * (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER in lib/_http_server.js on Node 20; server.keepAliveTimeoutBuffer,
 * default 1000, on Node 22 and 24). */
const KEEP_ALIVE_BUFFER_MS = 1000;

type Tracked = net.Socket & {
  [kInflight]?: number;
  [kIdleTimer]?: NodeJS.Timeout | undefined;
  [kMoving]?: boolean;
  [kUnmovable]?: boolean;
  [kUpgraded]?: boolean;
};

function isHttp1(server: net.Server): boolean {
  // https.Server extends tls.Server and listens for 'request' like http.Server.
  return (
    server instanceof http.Server ||
    (server instanceof tls.Server &&
      typeof (server as unknown as { setTimeout?: unknown }).setTimeout === 'function' &&
      'maxHeadersCount' in server)
  );
}

function isHttp2(server: net.Server): boolean {
  // Http2Server / Http2SecureServer have no exported classes; they emit 'session' and 'stream'.
  const name = server.constructor?.name ?? '';
  return name === 'Http2Server' || name === 'Http2SecureServer';
}

export class ServerDrainer {
  readonly server: net.Server;
  // Lists, not Sets: a Set that churns with every connection keeps closed ones alive through scavenges
  // (linked-set.ts: it doubled what node:http promotes per `Connection: close` request).
  #sockets = new LinkedSet<Tracked>();
  #sessions = new LinkedSet<Http2SessionLike>();
  #draining = false;
  #idleGraceMs: number;
  #http1: boolean;
  #http2: boolean;
  #done: (() => void) | null = null;
  #onResponseClose: (this: http.ServerResponse) => void;
  #onSocketClose: (this: Tracked) => void;

  constructor(server: net.Server, idleGraceMs: number) {
    this.server = server;
    this.#idleGraceMs = idleGraceMs;
    this.#http1 = isHttp1(server);
    this.#http2 = isHttp2(server);
    // Listeners shared by every response and socket of this server ('this' is the emitter) instead of a closure
    // and a once() wrapper per request and per connection. Counted under callgrind (bench/steady/instructions.ts,
    // docs/performance.md "Steady state"): keep-alive 418k -> 401k instructions per request, Connection: close
    // 743k -> 707k. 'close' fires at most once, so on() does what once() did.
    const drainer = this;
    // A response's end is its 'close' alone: node:http emits it on the tick after 'finish' (resOnFinish), or when
    // the connection closes first. A 'finish' listener as well was a second one next to node:http's own, which
    // turns the response's listeners into an array: raw, keep-alive 384-387k -> 379-382k instructions per request.
    this.#onResponseClose = function (this: http.ServerResponse) {
      if (drainer.#responses.has(this)) drainer.#responseDone(this);
    };
    this.#onSocketClose = function (this: Tracked) {
      if (this[kIdleTimer]) clearTimeout(this[kIdleTimer]);
      drainer.#sockets.delete(this);
      // Pipelined requests answered while an earlier response was still being written: their responses never
      // got the socket, and node:http emits neither 'finish' nor 'close' for them when it closes (Node 20.20 and
      // 22.23; 24.21 emits 'close'; the one writing gets it in all). Without this they stayed in the list, with
      // their socket, for good (test/drainer-responses.test.ts).
      if ((this[kInflight] ?? 0) > 1) drainer.#forgetResponsesOf(this);
      drainer.#check();
    };
    const connectionEvent = server instanceof tls.Server ? 'secureConnection' : 'connection';
    server.on(connectionEvent, (socket: Tracked) => this.#onConnection(socket));
    if (this.#http1) {
      // prepend: our listener must run before the application's handler writes the response head.
      server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) =>
        this.#onRequest(req, res),
      );
      // An upgraded connection (WebSocket) speaks another protocol now: never treat it as an idle HTTP
      // connection. It drains when it closes (or moves with upgrader.webSocketServer()).
      server.prependListener('upgrade', (req: http.IncomingMessage) => {
        (req.socket as Tracked)[kUpgraded] = true;
        const t = (req.socket as Tracked)[kIdleTimer];
        if (t) clearTimeout(t);
      });
    }
    if (this.#http2) {
      server.on('session', (session: Http2SessionLike) => {
        this.#sessions.add(session);
        session.once('close', () => {
          this.#sessions.delete(session);
          this.#check();
        });
        if (this.#draining) this.#goaway(session);
      });
    }
  }

  /** Open connections (HTTP/2: sessions). */
  get connections(): number {
    return this.#http2 ? this.#sessions.size : this.#sockets.size;
  }

  /**
   * Count `socket` as one of this server's connections although it did not come through 'connection': a
   * raw connection the previous generation moved here (upgrader 'migrated'). The drain then waits for it,
   * as for any connection of this server, and `connections` includes it.
   */
  track(socket: net.Socket): void {
    const s = socket as Tracked;
    if (this.#sockets.has(s) || s.destroyed) return;
    // Not #onConnection: the app continues this connection with its own protocol, so an HTTP server's
    // draining logic (idle moves, Connection: close) must not touch it.
    this.#sockets.add(s);
    s.once('close', () => {
      this.#sockets.delete(s);
      this.#check();
    });
  }

  /** This server's open connections (null for HTTP/2, whose sessions are tracked instead). */
  get sockets(): ReadonlyLinkedSet<net.Socket> | null {
    return this.#http2 ? null : this.#sockets;
  }

  /** The HTTP/1 responses in flight, oldest first: the SSE tracker (sse.ts) finds the streams among them. */
  get responses(): ReadonlyLinkedSet<http.ServerResponse> {
    return this.#responses;
  }

  /** Whether `socket` is one of this server's open connections. */
  has(socket: net.Socket): boolean {
    return this.#sockets.has(socket as Tracked);
  }

  /** Stop accepting: close this process's copy of the listener only. */
  stopAccepting(): void {
    if (!this.server.listening) return;
    // net.Server's close, not http.Server's: the latter also closes idle keep-alive connections at once.
    net.Server.prototype.close.call(this.server);
  }

  /**
   * Drain as described above; resolves when no connection is left. With `migrate` (HTTP/1 only), each
   * keep-alive connection moves to the new generation at its first idle moment instead of being closed;
   * a connection that cannot move falls back to the polite close.
   */
  drain(
    timeoutMs: number,
    migrate: ((socket: net.Socket) => Promise<void>) | null = null,
    pacer: PacedSender | null = null,
  ): Promise<DrainResult> {
    this.#draining = true;
    this.stopAccepting();
    if (this.#http2) for (const s of this.#sessions) this.#goaway(s);
    if (this.#http1) {
      this.#migrate = migrate;
      for (const res of this.#responses) {
        if (!res.headersSent && (!migrate || (res.socket as Tracked | null)?.[kUnmovable])) res.shouldKeepAlive = false;
      }
      const idle: Tracked[] = [];
      for (const socket of this.#sockets) if (!socket[kInflight]) idle.push(socket);
      if (migrate && pacer) {
        // Paced like WebSockets (ws.ts) and migrateAll(): one batch's worth at a time, each when it would leave at
        // once; until then an idle connection is served here as before (a request it sends is answered, and it
        // moves once idle again). Moving every idle connection at the drain stopped reading all of them in one
        // task — 10,000 × stopReading and the rest of move() (~20-40 µs each: a 200-400 ms block of this event
        // loop) — and each then waited for every batch ahead of it, the last ones for the whole move.
        void paced(pacer, idle, async (socket) => {
          if (!socket[kInflight]) this.#idle(socket);
        });
      } else for (const socket of idle) this.#idle(socket);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        let forced = 0;
        for (const s of this.#sockets) {
          s.destroy();
          forced++;
        }
        for (const s of this.#sessions) {
          s.destroy();
          forced++;
        }
        this.#done = null;
        resolve({ forced });
      }, timeoutMs);
      this.#done = () => {
        clearTimeout(timer);
        this.#done = null;
        resolve({ forced: 0 });
      };
      this.#check();
    });
  }

  #check(): void {
    if (this.#done && this.#sockets.size === 0 && this.#sessions.size === 0) this.#done();
  }

  #onConnection(socket: Tracked): void {
    if (this.#http2) return; // sessions are tracked instead
    this.#sockets.add(socket);
    socket[kInflight] = 0;
    // TLS state (keys, sequence numbers) lives in this process's OpenSSL: the bytes alone cannot move.
    if ((socket as net.Socket) instanceof tls.TLSSocket) socket[kUnmovable] = true;
    socket.on('close', this.#onSocketClose);
    // A connection accepted while draining (the listener was shared until now): serve it and close.
    if (this.#draining && this.#http1) this.#idle(socket);
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const socket = req.socket as Tracked;
    socket[kInflight] = (socket[kInflight] ?? 0) + 1;
    if (socket[kIdleTimer]) {
      clearTimeout(socket[kIdleTimer]);
      socket[kIdleTimer] = undefined;
    }
    if (this.#draining && (!this.#migrate || socket[kUnmovable])) res.shouldKeepAlive = false;
    this.#responses.add(res);
    res.on('close', this.#onResponseClose);
  }

  /** Take `socket`'s responses out of the list: it closed (a walk of the responses in flight; only ever after
   * pipelining, see #onSocketClose). */
  #forgetResponsesOf(socket: Tracked): void {
    for (const res of this.#responses) if (res.req.socket === socket) this.#responses.delete(res);
    socket[kInflight] = 0;
  }

  #responseDone(res: http.ServerResponse): void {
    // res.req.socket: the response's own socket is detached by the time it has finished.
    const socket = res.req.socket as Tracked;
    this.#responses.delete(res);
    socket[kInflight] = Math.max(0, (socket[kInflight] ?? 1) - 1);
    // A keep-alive response that was already under way when the drain began leaves the connection idle.
    if (this.#draining && socket[kInflight] === 0 && !socket.destroyed) this.#idle(socket);
  }

  /**
   * Responses in flight (until their 'close'): at the drain, those whose head is not out yet get Connection:
   * close; the SSE tracker (sse.ts) ends the streams among them. One list for both: the tracker had its own
   * 'request' listener, list and 'close' listener per response, which turned the response's 'close' listeners
   * into an array and put a second symbol property on it (raw, keep-alive 393k -> 384k instructions per request).
   */
  #responses = new LinkedSet<http.ServerResponse>();

  /** Connections moved to the new generation. */
  get migrated(): number {
    return this.#migrated;
  }

  #migrate: ((socket: net.Socket) => Promise<void>) | null = null;
  #migrated = 0;

  /** A draining connection has nothing in flight: move it, or give it idleGrace and close it. */
  #idle(socket: Tracked): void {
    if (socket[kUpgraded]) return;
    if (!this.#migrate || !this.#http1 || socket.destroyed || socket[kUnmovable]) {
      this.#armIdle(socket);
      return;
    }
    if (socket[kMoving]) return;
    // The parser holds the first bytes of the next request, which cannot move with the socket (internals.ts):
    // keep the connection until that request is answered; its response finishing brings it back here.
    if (this.#messageBegun().has(socket)) return;
    socket[kMoving] = true;
    this.#migrate(socket).then(
      () => this.#migrated++,
      () => {
        // Could not move (closed meanwhile, the channel is gone, no room in the new generation): close it
        // politely instead, as without migration — read on, so that a request the client sent meanwhile is
        // answered (with Connection: close), and close it if none comes within idleGraceMs. Ending it at
        // once would race that request: the keep-alive race the polite close exists to avoid.
        socket[kMoving] = false;
        socket[kUnmovable] = true;
        if (socket.destroyed) return;
        socket.resume();
        this.#armIdle(socket);
      },
    );
  }

  #armIdle(socket: Tracked): void {
    if (socket[kIdleTimer] || socket.destroyed || socket[kUpgraded]) return;
    socket[kIdleTimer] = setTimeout(() => {
      socket[kIdleTimer] = undefined;
      // A request whose head is still arriving: let it finish; its response brings the socket back to #idle.
      if (!socket[kInflight] && !socket[kUpgraded] && !this.#messageBegun().has(socket)) socket.end();
    }, this.#idleMs(socket));
    socket[kIdleTimer].unref?.();
  }

  /**
   * How long a draining idle connection may wait for its next request. TLS: until the keep-alive timeout
   * the server announced in its responses (`Keep-Alive: timeout=N`) — a client may reuse the connection
   * until then, so an earlier close races it (test/reload-https.test.ts: a request sent on an idle connection
   * just past idleGrace failed with "socket hang up" when it was closed at idleGrace). Node's own
   * keep-alive timer usually closes it first. Plain HTTP only waits here when it could not move.
   */
  #idleMs(socket: Tracked): number {
    const server = this.server as http.Server & { keepAliveTimeoutBuffer?: number };
    const keepAlive = server.keepAliveTimeout;
    const buffer = server.keepAliveTimeoutBuffer ?? KEEP_ALIVE_BUFFER_MS;
    if (socket instanceof tls.TLSSocket && keepAlive > 0) return Math.max(this.#idleGraceMs, keepAlive + buffer);
    return this.#idleGraceMs;
  }

  #begun: MessageBegun | null = null;

  /** Which connections are in the middle of a request, as of this tick (bytes arrive only between ticks). */
  #messageBegun(): MessageBegun {
    if (!this.#begun) {
      this.#begun = new MessageBegun(this.server as http.Server);
      process.nextTick(() => (this.#begun = null));
    }
    return this.#begun;
  }

  /**
   * Graceful HTTP/2 shutdown in two phases (RFC 9113 §6.8). A single GOAWAY naming the last stream this
   * server processed refuses every stream the client opened while it was on its way (measured: 16-48
   * NGHTTP2_REFUSED_STREAM in 3 reloads, 16 streams in flight, Node's client). So: GOAWAY with 2^31-1
   * first — the client stops opening streams and everything it already sent is still served — then PINGs;
   * the last acknowledgement comes after every frame the client sent before it saw the GOAWAY, so the final
   * GOAWAY (session.close(): the last stream id processed) refuses nothing. The session closes once its
   * streams finish; an idle one at once. Node's lib/internal/http2/core.js: close() submits a GOAWAY with
   * the last stream id nghttp2 processed and destroys the session when no stream is left (also what Node
   * does when the client's own GOAWAY arrives). The first phase cannot go through Node: see internals.ts.
   */
  #goaway(session: Http2SessionLike & { [kGoaway]?: boolean }): void {
    if (session[kGoaway] || session.closed || session.destroyed) return;
    session[kGoaway] = true;
    let timer: NodeJS.Timeout | undefined;
    const final = () => {
      clearTimeout(timer);
      if (!session.closed && !session.destroyed) session.close();
    };
    timer = setTimeout(final, GOAWAY_PING_TIMEOUT_MS);
    const ping = (then: () => void) => {
      try {
        if (!session.ping((err) => (err ? final() : then()))) final();
      } catch {
        final();
      }
    };
    const notice = () => {
      if (session.closed || session.destroyed) return;
      // Phase 1 (internals.ts): through nghttp2, or written around it on h2c. Without either, one GOAWAY.
      if (sendShutdownNotice(session as unknown as http2.Http2Session).via === null) return final();
      // Two round trips: nghttp2 sends a PING ahead of the other frames queued with it (its urgent queue),
      // so the first may reach the client before the notice does; the second leaves after the notice, and
      // its acknowledgement follows every frame the client sent before it read the notice.
      ping(() => ping(final));
    };
    // A server's first frame must be its SETTINGS (RFC 9113 §3.4), which Node sends on its next write: for a
    // session that new, write the notice once the client acknowledged them.
    if (session.pendingSettingsAck) session.once('localSettings', notice);
    else notice();
  }
}
