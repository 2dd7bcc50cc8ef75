/** The Upgrader's options, events and their checks (the public types; src/upgrader/upgrader.ts uses them). */
import type net from 'node:net';
import { argTypeError } from '../fd/errors.js';
import { DEFAULT_HELLO_TIMEOUT_MS } from '../handoff/session.js';
import type { Logger } from './logger.js';

export interface UpgraderOptions {
  /** Control socket path for standalone mode (default: BATON_SOCKET). Ignored under `baton run`. */
  socket?: string;
  /** How long a new generation may take to call ready(), in ms. Default 30000. */
  readyTimeout?: number;
  /** How long a replaced generation may take to drain before what is left is closed, in ms. Default 30000. */
  drainTimeout?: number;
  /**
   * Standalone: how long a process that connects to this generation's control socket (a successor, a `baton`
   * command) may take to say hello before the connection is closed, in ms (> 0). Default 5000. Under
   * `baton run` the supervisor's `--hello-timeout` applies instead.
   */
  helloTimeout?: number;
  /** While draining, how long an idle keep-alive connection may wait for its next request, in ms. Default 1000. */
  idleGrace?: number;
  /**
   * Before taking over from a predecessor, run this many requests through a private HTTP server on
   * 127.0.0.1 (its own trivial handler, never the app's), so that the keep-alive connections that move at
   * the handover meet warm code: see src/upgrader/warm-up.ts. Only when this generation serves HTTP and
   * has a predecessor. 0 turns it off. Default 100 (~45 ms on a small machine, while the old one serves).
   */
  warmUp?: number;
  /** Where log lines go; false for none. Default: one line per event on stderr. */
  logger?: Logger | false;
  /**
   * End each Server-Sent Events stream (a response with `content-type: text/event-stream`) the moment the
   * new generation is ready, after a `retry:` hint, so EventSource clients reconnect at once — to the new
   * generation — and resume with `Last-Event-ID`. Default true; false leaves them to the app's 'drain'
   * handler (or to drainTimeout). See docs/migration.md#server-sent-events.
   */
  endEventStreams?: boolean;
  /** The `retry:` hint (ms) an ended SSE stream gets: how soon EventSource clients reconnect. 0 sends none
   * (clients then wait their default, 3 s in browsers). Default 300. */
  eventStreamRetry?: number;
  /** Exit the process (code 0) once drained. Default true; with false, listen for 'drained' and exit yourself. */
  exitOnDrain?: boolean;
  /**
   * Without `baton run`: talk to the service manager (systemd) — READY=1, RELOADING=1, STOPPING=1, STATUS=,
   * MAINPID= at a standalone upgrade, WATCHDOG=1 — when NOTIFY_SOCKET is set, and take the sockets it
   * passed (socket activation, LISTEN_FDS). Default true. Under `baton run` the supervisor does this.
   */
  systemd?: boolean;
  /** Without `baton run`: also keep the listeners in systemd's fd store (FDSTORE=1), so that a restart of
   * the service keeps the ports open. Default false. (With `baton run`: `baton run --fdstore`.) */
  fdStore?: boolean;
}

export interface ListenOptions {
  port?: number;
  host?: string;
  /** A Unix socket path instead of host/port. */
  path?: string;
  backlog?: number;
  ipv6Only?: boolean;
  /** Mode of a Unix socket file this generation creates. Default 0o600. */
  mode?: number;
}

export interface DgramOptions {
  type: 'udp4' | 'udp6';
  port?: number;
  address?: string;
  /** Passed to dgram.createSocket. */
  recvBufferSize?: number;
  sendBufferSize?: number;
}

export interface UpgraderEvents {
  /** This generation was replaced (or is stopping): stop timers, flush. Connections drain after this. */
  drain: [];
  /** Drained; the process exits next unless exitOnDrain is false. */
  drained: [result: { forced: number }];
  /** Standalone: a successor took over. */
  upgraded: [info: { generation: number; pid: number }];
  /** Standalone: a successor failed before ready; this generation keeps serving. */
  rollback: [info: { pid: number; reason: string }];
  /** A raw connection moved here from the previous generation by its migrate(): continue it. `pending`
   * holds bytes the old generation had read but not processed; handle them before new data. */
  migrated: [socket: net.Socket, state: unknown, pending: Buffer];
}

/** Options of webSocketServer() (the `ws` integration, src/integrations/ws.ts, checks them). */
export interface WebSocketMigrationOptions<S = unknown> {
  /** The app's per-connection state, JSON-serialisable (at most 64 KiB). Called in the old generation. */
  // biome-ignore lint/suspicious/noExplicitAny: the app's own WebSocket class (ws's, or a subclass of it)
  save?: (ws: any) => S;
  /** Put the state back on the new WebSocket, before 'connection' is emitted. */
  // biome-ignore lint/suspicious/noExplicitAny: the app's own WebSocket class (ws's, or a subclass of it)
  restore?: (ws: any, state: S) => void;
}

/** The options after their checks, with their defaults. */
export interface Settings {
  readyTimeout: number;
  drainTimeout: number;
  helloTimeout: number;
  idleGrace: number;
  warmUp: number;
  endEventStreams: boolean;
  eventStreamRetry: number;
  exitOnDrain: boolean;
  systemd: boolean;
  fdStore: boolean;
}

/** Check start()'s options (TypeError naming the bad one) and fill in the defaults. */
export function settingsOf(options: UpgraderOptions): Settings {
  const readyTimeout = checkMs(options.readyTimeout, 'readyTimeout', 30_000);
  const drainTimeout = checkMs(options.drainTimeout, 'drainTimeout', 30_000);
  // Not 0: 0 means "no limit" to the handoff's timers, and a silent peer must not hold a connection forever.
  const helloTimeout = options.helloTimeout ?? DEFAULT_HELLO_TIMEOUT_MS;
  if (typeof helloTimeout !== 'number' || !Number.isFinite(helloTimeout) || helloTimeout <= 0) {
    throw argTypeError('options.helloTimeout', 'a number of milliseconds > 0', helloTimeout);
  }
  const idleGrace = checkMs(options.idleGrace, 'idleGrace', 1000);
  const eventStreamRetry = checkMs(options.eventStreamRetry, 'eventStreamRetry', 300);
  if (options.endEventStreams !== undefined && typeof options.endEventStreams !== 'boolean') {
    throw argTypeError('options.endEventStreams', 'a boolean', options.endEventStreams);
  }
  const warmUp = options.warmUp ?? 100;
  if (typeof warmUp !== 'number' || !Number.isInteger(warmUp) || warmUp < 0 || warmUp > 100_000) {
    throw argTypeError('options.warmUp', 'an integer from 0 to 100000', warmUp);
  }
  return {
    readyTimeout,
    drainTimeout,
    helloTimeout,
    idleGrace,
    warmUp,
    endEventStreams: options.endEventStreams ?? true,
    eventStreamRetry,
    exitOnDrain: options.exitOnDrain ?? true,
    systemd: options.systemd ?? true,
    fdStore: options.fdStore ?? false,
  };
}

function checkMs(v: unknown, name: string, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw argTypeError(`options.${name}`, 'a number of milliseconds >= 0', v);
  }
  return v;
}
