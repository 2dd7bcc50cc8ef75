/**
 * WebSocket migration for the `ws` package (an optional peer dependency: baton never imports it; it works
 * with the app's own WebSocketServer and its WebSocket class, `wss.options.WebSocket`).
 *
 * Old generation: each open WebSocket moves at a frame boundary — when ws's receiver holds no partial frame
 * or fragmented message — with its subprotocol, the upgrade request's url and headers, and the app's state
 * (`save(ws)`). Reading stops at that instant, so every later byte waits in the kernel for the new owner;
 * frames the app already sent are flushed first. Nothing is lost, duplicated or reordered in either
 * direction, and the close handshake and ping/pong continue on the new side. The old `ws` object then
 * emits 'close' with code 1012 and reason 'baton: migrated' (its socket is gone; the connection is not).
 *
 * What cannot move closes politely with 1012 (Service Restart), which standard clients treat as "reconnect":
 * permessage-deflate (the compression context lives in this process's zlib streams), TLS (the session keys
 * live in this process's OpenSSL state), and anything still mid-frame at the drain deadline.
 *
 * New generation: a WebSocket object is built the way ws's own server builds one after a handshake
 * (`new WebSocket(null)` + `setSocket`), added to `wss.clients`, `restore(ws, state)` runs, and the server
 * emits 'connection' (ws, req) with `req.migrated === true`.
 */
import type net from 'node:net';
import tls from 'node:tls';
import { argTypeError, batonError } from '../fd/errors.js';
import {
  setWsCloseReport,
  setWsProtocol,
  wsAtFrameBoundary,
  wsHasExtensions,
  wsProtocolOf,
  wsSocketOf,
} from './internals.js';
import { socketIoPart } from './socket-io.js';
import type { ConnectionMover, MoverContext } from '../upgrader/integration.js';
import type { MigrationSender } from '../upgrader/migrate.js';
import { paced } from '../upgrader/pacing.js';
import type { WebSocketMigrationOptions } from '../upgrader/upgrader.js';

/** The parts of ws's WebSocketServer and WebSocket baton relies on (ws >= 8). */
export interface WsServerLike {
  clients?: Set<WsLike>;
  options: Record<string, unknown> & {
    WebSocket?: new (address: null, protocols: undefined, options: unknown) => WsLike;
  };
  emit(event: 'connection', ws: WsLike, req: MigratedRequest): boolean;
  prependListener(
    event: 'connection',
    fn: (ws: WsLike, req: { url?: string; headers: Record<string, unknown> }) => void,
  ): unknown;
}

/** Its private fields are reached only through src/integrations/internals.ts. */
export interface WsLike {
  readyState: number;
  protocol: string;
  setSocket(socket: net.Socket, head: Buffer, options: Record<string, unknown>): void;
  close(code?: number, reason?: string): void;
  on(event: 'close', fn: () => void): unknown;
}

/** What the new generation's 'connection' listeners get as `req` for a migrated WebSocket. */
export interface MigratedRequest {
  migrated: true;
  url: string;
  headers: Record<string, unknown>;
  method: 'GET';
  socket: net.Socket;
}

export interface WsState {
  protocol: string;
  url: string;
  headers: Record<string, unknown>;
  app?: unknown;
}

const OPEN = 1;
const kRequest = Symbol('baton.wsRequest');

/** Remember each connection's upgrade request (url, headers): the new generation gets them back. */
export function trackRequests(wss: WsServerLike): void {
  wss.prependListener('connection', (ws, req) => {
    (ws as unknown as Record<symbol, unknown>)[kRequest] = { url: req?.url ?? '/', headers: req?.headers ?? {} };
  });
}

/** Why this WebSocket cannot move at all (null if it can, now or at a later frame boundary). */
export function unmovable(ws: WsLike): string | null {
  const socket = wsSocketOf(ws);
  if (ws.readyState !== OPEN || !socket) return 'not open';
  if (wsHasExtensions(ws)) return 'permessage-deflate: its compression context cannot move';
  if (socket instanceof tls.TLSSocket) return 'TLS: its session cannot move';
  return null;
}

export function stateOf(ws: WsLike, save?: (ws: WsLike) => unknown): WsState {
  const req = (ws as unknown as Record<symbol, { url: string; headers: Record<string, unknown> } | undefined>)[
    kRequest
  ];
  const state: WsState = { protocol: wsProtocolOf(ws), url: req?.url ?? '/', headers: req?.headers ?? {} };
  if (save) state.app = save(ws);
  return state;
}

/** The old ws object's socket is gone because the connection moved: say so in its 'close' event. */
export function markMoved(ws: WsLike): void {
  setWsCloseReport(ws, 1012, 'baton: migrated');
}

/** Build the WebSocket for a migrated connection and hand it to the app. */
export function continueWebSocket(
  wss: WsServerLike,
  socket: net.Socket,
  state: WsState,
  pending: Buffer,
  restore?: (ws: WsLike, state: unknown) => void,
): WsLike {
  const WebSocket = wss.options.WebSocket;
  if (typeof WebSocket !== 'function')
    throw batonError(
      'ERR_BATON_UNSUPPORTED_VERSION',
      'the WebSocketServer has no options.WebSocket class (ws >= 8 is needed)',
    );
  const o = wss.options;
  const ws = new WebSocket(null, undefined, o);
  setWsProtocol(ws, state.protocol);
  ws.setSocket(socket, pending, {
    allowSynchronousEvents: o.allowSynchronousEvents,
    maxBufferedChunks: o.maxBufferedChunks,
    maxFragments: o.maxFragments,
    maxPayload: o.maxPayload,
    skipUTF8Validation: o.skipUTF8Validation,
  });
  if (wss.clients) {
    const clients = wss.clients;
    clients.add(ws);
    ws.on('close', () => clients.delete(ws));
  }
  (ws as unknown as Record<symbol, unknown>)[kRequest] = { url: state.url, headers: state.headers };
  if (restore && state.app !== undefined) restore(ws, state.app);
  wss.emit('connection', ws, { migrated: true, url: state.url, headers: state.headers, method: 'GET', socket });
  return ws;
}

/**
 * One WebSocketServer registered with Upgrader.webSocketServer(): its connections move to the next
 * generation at a frame boundary (or close with 1012/1001), and arrive there as kind 'ws'.
 */
export class WebSocketMover implements ConnectionMover {
  readonly kind = 'ws' as const;
  readonly #wss: WsServerLike;
  readonly #options: WebSocketMigrationOptions<unknown>;
  readonly #name: string | undefined;
  readonly #context: MoverContext;

  constructor(wss: unknown, options: unknown, context: MoverContext) {
    // Socket.IO's parts look enough like a ws server to be accepted, and then nothing would move (engine.io's
    // ws server tracks no clients): say what it is and what to use.
    const sio = socketIoPart(wss);
    if (sio) {
      const err = new TypeError(
        `upgrader.webSocketServer() needs a WebSocketServer from the 'ws' package that tracks its clients; ` +
          `it got ${sio}. For Socket.IO, call upgrader.socketIo(io) with the socket.io Server.`,
      ) as TypeError & { code: string };
      err.code = 'ERR_INVALID_ARG_TYPE';
      throw err;
    }
    const server = wss as WsServerLike;
    if (
      typeof wss !== 'object' ||
      wss === null ||
      typeof server.prependListener !== 'function' ||
      typeof server.options !== 'object'
    ) {
      throw argTypeError('wss', "a WebSocketServer from the 'ws' package", wss);
    }
    const o = (options ?? {}) as WebSocketMigrationOptions<unknown> & { name?: string };
    if (o.save !== undefined && typeof o.save !== 'function') throw argTypeError('options.save', 'a function', o.save);
    if (o.restore !== undefined && typeof o.restore !== 'function')
      throw argTypeError('options.restore', 'a function', o.restore);
    trackRequests(server);
    this.#wss = server;
    this.#options = o;
    this.#name = o.name;
    this.#context = context;
  }

  name(): string {
    if (this.#name) return this.#name;
    return this.#context.listenerName((this.#wss.options as { server?: unknown }).server) ?? 'ws';
  }

  /** Move (or close with 1012/1001) every WebSocket; resolves when each has moved or closed. */
  async drain(sender: MigrationSender | null, stopping: boolean, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    const log = this.#context.log;
    let moved = 0;
    const one = async (ws: WsLike): Promise<void> => {
      const why = unmovable(ws);
      if (why === 'not open') return;
      if (!sender?.accepting || why) {
        if (why && sender) log('info', 'ws-not-moved', { reason: why });
        ws.close(stopping ? 1001 : 1012, stopping ? 'Going Away' : 'Service Restart');
        return;
      }
      // Wait for a frame boundary (a partial frame or fragmented message completes as data flows).
      while (!wsAtFrameBoundary(ws)) {
        if (ws.readyState !== 1) return;
        if (Date.now() > deadline) {
          ws.close(1012, 'Service Restart');
          return;
        }
        await new Promise((r) => setTimeout(r, 2));
      }
      const state: WsState = stateOf(ws, this.#options.save);
      markMoved(ws);
      try {
        await sender.move(wsSocketOf(ws)!, 'ws', this.name(), state);
        moved++;
      } catch (err) {
        const code = (err as { code?: string }).code;
        // Not a failure: the client closed meanwhile, or the new generation is itself draining (its
        // successor accepts: 1012 sends the client there).
        if (code !== 'ERR_BATON_NOT_OPEN' && code !== 'ERR_BATON_SUCCESSOR_DRAINING') {
          log('warn', 'ws-move-failed', { reason: (err as Error).message });
        }
        setWsCloseReport(ws, 1006);
        wsSocketOf(ws)?.resume(); // move() left it paused: read on, so the close handshake can complete
        if (ws.readyState === 1) ws.close(1012, 'Service Restart');
      }
    };
    // One batch's worth at a time, each only once it would leave at once (paced(): sender.sendable()): a
    // WebSocket is served here until its own batch is prepared (its reading stops then), so each client waits
    // about two batches' adoption rather than the whole move. Measured (bench:migrate, 1,000 WebSockets):
    // moving all at once paused the last client for the whole move (p99 of each client's slowest echo ~ the
    // move). The batch size follows what adoption costs the new generation (src/upgrader/pacing.ts).
    await paced(sender, [...(this.#wss.clients ?? [])], one);
    return moved;
  }

  continue(socket: net.Socket, state: unknown, pending: Buffer): void {
    continueWebSocket(this.#wss, socket, state as WsState, pending, this.#options.restore);
  }
}
