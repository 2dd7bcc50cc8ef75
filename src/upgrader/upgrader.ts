/**
 * The application's API for zero-downtime upgrades.
 *
 *   const upgrader = await Upgrader.start();
 *   await upgrader.listen(server, 'web', { port: 8080, host: '127.0.0.1' });
 *   const udp = await upgrader.bindDgram('stats', { type: 'udp4', port: 8125, address: '127.0.0.1' });
 *   await upgrader.ready();
 *
 * Three modes, chosen by start():
 * - supervised: under `baton run` (BATON_SUPERVISOR is set). Sockets come from the supervisor, which
 *   keeps a copy of each; ready() tells it this generation serves; it sends 'drain' when a newer one is.
 * - standalone: `socket` option (or BATON_SOCKET) without a supervisor. The first process listens on the
 *   control socket; a second one started with the same path takes over from it (Envoy/Pingora style).
 * - plain: neither. listen() binds, ready() does nothing: the app runs unchanged with `node server.js`.
 *
 * State machine of one generation:
 *   starting --ready()--> serving --(successor ready | drain message | stop())--> draining --> exit
 *                            \--(successor joins)--> upgrading --(successor fails)--> serving   [standalone]
 */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { FdChannelServer } from '../fd/channel-server.js';
import { argTypeError, batonError } from '../fd/errors.js';
import { fdOf } from '../fd/fd-of.js';
import { acceptingServerOf } from '../fd/internals.js';
import { closeFds, socketpair } from '../fd/fds.js';
import { GenerationClient } from '../handoff/client.js';
import { CONTROL_CHANNEL_LIMITS, formatAddress, type InventoryEntry, type MigrationItem, type SocketAddress, type SocketKind } from '../handoff/messages.js';
import { checkSocketDir } from '../handoff/peer.js';
import { ConnectionCensus, type ConnectionKinds } from './census.js';
import { integrations, type ConnectionMover, type EventStreamTracker, type ListenerDrainer, type ReconnectingServers, type ServiceManager } from './integration.js';
import { MigrationReceiver, MigrationSender } from './migrate.js';
import { createLogger, silentLogger, type LogFields, type Logger } from './logger.js';
import { bindDgramFd, bindDgramFresh, bindUnix, listenOnFd, listenTcp } from './sockets.js';
import { listenForTakeover } from './orphan.js';
import { StandaloneHost } from './standalone-host.js';
import { LoopMonitor } from './loop-stats.js';
import { warmUpHttp } from './warm-up.js';
import type { UpgraderState } from './state.js';

export interface UpgraderOptions {
  /** Control socket path for standalone mode (default: BATON_SOCKET). Ignored under `baton run`. */
  socket?: string;
  /** How long a new generation may take to call ready(), in ms. Default 30000. */
  readyTimeout?: number;
  /** How long a replaced generation may take to drain before what is left is closed, in ms. Default 30000. */
  drainTimeout?: number;
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

export type UpgraderMode = 'plain' | 'standalone' | 'supervised';
export type { UpgraderState } from './state.js';

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

interface Managed {
  entry: InventoryEntry;
  object: net.Server | dgram.Socket;
  drainer: ListenerDrainer | null;
}

/** Stats go to the supervisor at least this often (the event-loop figures), sooner when something changes. */
const STATS_EVERY_MS = 1000;
const RESERVED = '__baton_control';

/** Options of webSocketServer() (the `ws` integration, src/integrations/ws.ts, checks them). */
export interface WebSocketMigrationOptions<S = unknown> {
  /** The app's per-connection state, JSON-serialisable (at most 64 KiB). Called in the old generation. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  save?: (ws: any) => S;
  /** Put the state back on the new WebSocket, before 'connection' is emitted. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  restore?: (ws: any, state: S) => void;
}

export class Upgrader extends EventEmitter<UpgraderEvents> {
  readonly mode: UpgraderMode;
  #generation: number;
  #inherited: boolean;
  #state: UpgraderState = 'starting';
  #client: GenerationClient | null;
  #host: StandaloneHost | null = null;
  #control: FdChannelServer | null;
  #socketPath: string | null;
  #sockets = new Map<string, Managed>();
  #logger: Logger;
  #readyTimeout: number;
  #drainTimeout: number;
  #idleGrace: number;
  #warmUp: number;
  #exitOnDrain: boolean;
  #statsTimer: NodeJS.Timeout | null = null;
  /** Supervised: the event loop's delay and utilisation, sent with each stats report (at least every second). */
  #loop: LoopMonitor | null = null;
  #lastStatsAt = 0;
  #drainPromise: Promise<void> | null = null;
  /** New generation: receive connections the old one moves here — and, after quick reloads, older ones
   * that were still handing connections over when their successor drained (the completion protocol in
   * src/upgrader/migrate.ts). */
  #receivers: MigrationReceiver[] = [];
  /** State older generations carried over (MigrationSender.carry), by name (one value per older
   * generation that sent one), and who waits for it. */
  #carried = new Map<string, unknown[]>();
  /** Socket.IO servers whose clients reconnect to the next generation with their state (socketIo()). */
  #socketIoServers: ReconnectingServers | null = null;
  #carryWaiters = new Set<() => void>();
  /** Old generation, once replaced: moves connections to the new one. */
  #sender: MigrationSender | null = null;
  /** Servers whose connections move as their own kind (webSocketServer()). */
  #movers: ConnectionMover[] = [];
  /** The service manager (no supervisor only). */
  #service: ServiceManager | null = null;
  /** Sockets this generation bound itself (not inherited, not passed in): they go to the fd store. */
  #fresh = new Set<string>();
  /** Inherited listeners not accepting yet (see listen()). */
  #deferred: Array<{ server: net.Server; fd: number; backlog: number }> = [];
  /** SSE streams of this generation's HTTP servers (ended at the drain unless endEventStreams is false). */
  #eventStreamTracker: EventStreamTracker | null = null;
  #endEventStreams: boolean;
  #eventStreamRetry: number;
  #census = new ConnectionCensus();
  /** While draining: what this generation waits for ('predecessor' first, then 'connections'). */
  #waiting: 'predecessor' | 'connections' = 'connections';
  /** The drain under way is a stop (no successor to pass older channels on to). */
  #drainStopping = false;

  /** Join the previous generation (if any) according to the environment and options. */
  static async start(options: UpgraderOptions = {}): Promise<Upgrader> {
    const readyTimeout = checkMs(options.readyTimeout, 'readyTimeout', 30_000);
    const drainTimeout = checkMs(options.drainTimeout, 'drainTimeout', 30_000);
    const idleGrace = checkMs(options.idleGrace, 'idleGrace', 1000);
    const eventStreamRetry = checkMs(options.eventStreamRetry, 'eventStreamRetry', 300);
    if (options.endEventStreams !== undefined && typeof options.endEventStreams !== 'boolean') throw argTypeError('options.endEventStreams', 'a boolean', options.endEventStreams);
    const warmUp = options.warmUp ?? 100;
    if (typeof warmUp !== 'number' || !Number.isInteger(warmUp) || warmUp < 0 || warmUp > 100_000) throw argTypeError('options.warmUp', 'an integer from 0 to 100000', warmUp);
    const env = process.env;
    const supervised = !!env.BATON_SUPERVISOR && !!env.BATON_SOCKET;
    const socketPath = supervised ? env.BATON_SOCKET! : (options.socket ?? env.BATON_SOCKET ?? null);
    if (socketPath !== null && typeof socketPath !== 'string') throw argTypeError('options.socket', 'a path string', socketPath);
    const mode: UpgraderMode = supervised ? 'supervised' : socketPath ? 'standalone' : 'plain';
    const common = { readyTimeout, drainTimeout, idleGrace, warmUp, endEventStreams: options.endEventStreams ?? true, eventStreamRetry, exitOnDrain: options.exitOnDrain ?? true, systemd: options.systemd ?? true, fdStore: options.fdStore ?? false };

    if (mode === 'plain') return new Upgrader('plain', 1, null, null, null, options.logger, common);

    // Standalone: the directory is checked (and a shared sticky one like /tmp swapped for a private
    // subdirectory) before anything listens or connects there; supervised: the supervisor did it.
    const resolved = mode === 'supervised' ? path.resolve(socketPath!) : checkSocketDir(socketPath!);
    if (mode === 'supervised') {
      // The supervisor reads this process's stderr (for the crash-output tail `baton reload` reports). If the
      // supervisor dies, writes to that pipe fail with EPIPE; the generation must keep serving, not crash.
      process.stderr.on('error', ignoreEpipe);
      const generation = Number(env.BATON_GENERATION) || undefined;
      const client = await GenerationClient.join(resolved, generation ? { generation } : {});
      return new Upgrader('supervised', client.generation, client, null, resolved, options.logger, common);
    }

    const client = await joinServing(resolved, readyTimeout);
    if (!client) {
      // The first generation: claim the control socket now, so a second process started too early gets
      // a clear "not ready yet" refusal instead of binding the same ports.
      const control = await FdChannelServer.listen(resolved, CONTROL_CHANNEL_LIMITS);
      return new Upgrader('standalone', 1, null, control, resolved, options.logger, common);
    }
    let control: FdChannelServer | null = null;
    try {
      const taken = client.take(RESERVED, 'control', { path: resolved }); // throws if the fd is not a Unix listener
      if (taken) control = FdChannelServer.fromFd(taken.fd, resolved, { ...CONTROL_CHANNEL_LIMITS, paused: true });
    } catch (err) {
      client.close();
      throw err;
    }
    return new Upgrader('standalone', client.generation, client, control, resolved, options.logger, common);
  }

  private constructor(
    mode: UpgraderMode,
    generation: number,
    client: GenerationClient | null,
    control: FdChannelServer | null,
    socketPath: string | null,
    logger: Logger | false | undefined,
    opts: { readyTimeout: number; drainTimeout: number; idleGrace: number; warmUp: number; endEventStreams: boolean; eventStreamRetry: number; exitOnDrain: boolean; systemd: boolean; fdStore: boolean },
  ) {
    super();
    this.mode = mode;
    this.#generation = generation;
    this.#client = client;
    this.#inherited = client !== null && client.inventory.some((e) => e.kind !== 'control');
    this.#control = control;
    this.#socketPath = socketPath;
    this.#readyTimeout = opts.readyTimeout;
    this.#drainTimeout = opts.drainTimeout;
    this.#idleGrace = opts.idleGrace;
    this.#warmUp = opts.warmUp;
    this.#endEventStreams = opts.endEventStreams;
    this.#eventStreamRetry = opts.eventStreamRetry;
    this.#exitOnDrain = opts.exitOnDrain;
    this.#logger = logger === false ? silentLogger : (logger ?? createLogger());
    if (mode !== 'supervised' && opts.systemd) {
      // No supervisor: this process talks to the service manager itself. Sockets it passed are ours only
      // if LISTEN_PID is this process (a successor started later gets none: it inherits them instead).
      this.#service = integrations().serviceManager({
        logger: this.#logger,
        log: (level, event, fields) => this.#log(level, event, fields),
        fields: () => ({ gen: this.#generation, pid: process.pid }),
        fdStore: opts.fdStore,
        inherited: client?.inventory ?? null,
      });
    }
    if (client) {
      client.on('drain', (msg, migrationFd) => {
        this.#log('info', 'drain-requested', { reason: msg.reason, migrate: migrationFd !== null });
        this.#openSender(migrationFd);
        void this.#drain(msg.timeoutMs || this.#drainTimeout, msg.reason === 'stop');
      });
      client.on('close', (err) => {
        if (this.#state === 'draining' || this.#state === 'stopped') return;
        const code = (err as NodeJS.ErrnoException | undefined)?.code;
        if (this.mode === 'supervised' && this.#state === 'serving' && code === 'ERR_BATON_TRUNCATED') {
          // The supervisor sends fds after ready-ok only with `drain`: this was one whose migration channel
          // the kernel cut (fd table full despite the reserve). Drain politely without migrating, rather than
          // serve on as if the supervisor were gone and be killed with every connection at the drain deadline.
          this.#log('warn', 'drain-without-migration', { reason: err!.message });
          void this.#drain(this.#drainTimeout);
          return;
        }
        if (this.mode === 'supervised' && this.#state === 'serving') {
          this.#log('warn', 'supervisor-gone', { reason: err?.message ?? 'connection closed' });
          void this.#becomeOrphan();
        }
      });
    }
    this.#log('info', 'start', { mode, inherited: this.#inherited, socket: socketPath ?? undefined });
    // The first standalone generation answers on its control socket from the start: a successor that
    // arrives before ready() is refused with a clear reason, and `baton status` works.
    if (mode === 'standalone' && !client && control) this.#ensureHost().start();
  }

  /**
   * Supervised, serving, and the supervisor is gone: serve on, and wait on a takeover socket for a new
   * `baton run` with the same control socket to take over (see orphan.ts). A generation that cannot
   * listen there serves on all the same (its successor then binds the ports afresh once it is gone).
   */
  async #becomeOrphan(): Promise<void> {
    let server: FdChannelServer;
    try {
      server = await listenForTakeover(this.#socketPath!);
    } catch (err) {
      this.#log('warn', 'orphan-unreachable', { reason: (err as Error).message });
      return;
    }
    if (this.#state !== 'serving' || this.#host) {
      server.close();
      return;
    }
    this.#host = new StandaloneHost(server, this.#hostCallbacks());
    this.#host.start();
    this.#log('info', 'orphan-waiting', { takeover: server.path });
  }

  #ensureHost(): StandaloneHost {
    this.#host ??= new StandaloneHost(this.#control!, this.#hostCallbacks());
    return this.#host;
  }

  get #socketIo(): ReconnectingServers {
    return (this.#socketIoServers ??= integrations().reconnectingServers());
  }

  get #eventStreams(): EventStreamTracker {
    return (this.#eventStreamTracker ??= integrations().eventStreams());
  }

  /** 1-based generation number. */
  get generation(): number {
    return this.#generation;
  }

  /** Whether sockets came from a predecessor (or the supervisor). */
  get inherited(): boolean {
    return this.#inherited;
  }

  get state(): UpgraderState {
    return this.#state;
  }

  /** The control socket path (standalone and supervised modes), or null. */
  get socketPath(): string | null {
    return this.#socketPath;
  }

  /** Open connections across all listeners. */
  get connections(): number {
    let n = 0;
    for (const m of this.#sockets.values()) n += m.drainer?.connections ?? 0;
    return n;
  }

  /** Open connections by kind (http, sse, ws, h2, raw): what `baton status` shows a draining generation wait for. */
  get connectionKinds(): ConnectionKinds {
    const servers = [...this.#sockets.values()].filter((m) => m.drainer).map((m) => ({ object: m.object, sockets: m.drainer!.sockets, connections: m.drainer!.connections }));
    return this.#census.count(servers, this.#eventStreams.sockets());
  }

  /** The named sockets and where they are bound. */
  get sockets(): InventoryEntry[] {
    return [...this.#sockets.values()].map((m) => m.entry);
  }

  /**
   * Listen with `server` (net, http, https or http2) on the socket called `name`: inherited when the
   * predecessor has one with that name at the same address, else bound now. A fresh socket is listening
   * when this resolves; an inherited one starts accepting in ready(), once the handoff is acknowledged, so
   * that connections keep going to the old generation until then (server.address() is null until then).
   */
  async listen<S extends net.Server>(server: S, name: string, options: ListenOptions): Promise<S> {
    if (!(server instanceof net.Server)) throw argTypeError('server', 'a net.Server (or http/https/http2 server)', server);
    this.#checkName(name);
    if (typeof options !== 'object' || options === null) throw argTypeError('options', 'an object with port/host or path', options);
    const backlog = options.backlog ?? 511;
    let kind: SocketKind;
    let requested: SocketAddress;
    if (options.path !== undefined) {
      if (typeof options.path !== 'string' || !options.path) throw argTypeError('options.path', 'a non-empty string', options.path);
      kind = 'unix';
      requested = { path: path.resolve(options.path) };
    } else {
      const port = options.port ?? 0;
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw argTypeError('options.port', 'an integer from 0 to 65535', port);
      kind = 'tcp';
      requested = { host: options.host ?? '', port };
    }
    const inherited = this.#client?.take(name, kind, requested) ?? null;
    const taken = inherited ?? this.#service?.take(name, kind, requested) ?? null;
    const drainer = integrations().drainer(server, this.#idleGrace);
    if (server instanceof http.Server || server instanceof https.Server) {
      this.#eventStreams.attach(server);
      this.#census.attach(server);
    }
    let address: SocketAddress;
    if (taken) {
      // An inherited listener starts accepting at ready(): until then the old generation takes every
      // connection, so a new generation that fails before ready() loses none. One the service manager
      // passed has no old generation to wait for.
      if (inherited) this.#deferred.push({ server, fd: taken.fd, backlog });
      else await listenOnFd(server, taken.fd, backlog);
      address = taken.entry.address;
    } else {
      this.#warnIfMoved(name, requested);
      if (kind === 'unix') {
        const p = (requested as { path: string }).path;
        const fd = bindUnix(p, backlog, options.mode ?? 0o600);
        await listenOnFd(server, fd, backlog);
        address = requested;
      } else {
        const r = requested as { host: string; port: number };
        await listenTcp(server, r.host, r.port, backlog, options.ipv6Only ?? false);
        address = { host: r.host, port: (server.address() as net.AddressInfo).port };
      }
    }
    const entry: InventoryEntry = { name, kind: taken?.entry.kind ?? kind, address, ...(taken?.entry.origin ? { origin: taken.entry.origin } : {}) };
    this.#sockets.set(name, { entry, object: server, drainer });
    if (!taken) this.#fresh.add(name);
    // A socket taken by position (an unnamed activated one) is registered under its new name.
    // (An inherited listener has no fd in `server` until ready(): the one taken is registered.)
    await this.#registerIfFresh(entry, server, !taken || taken.entry.name !== name, taken?.fd);
    this.#log('info', 'listen', { name, address: formatAddress(address), inherited: !!taken, origin: taken?.entry.origin });
    return server;
  }

  /** A UDP socket called `name`: inherited when the predecessor has it at the same address, else bound. */
  async bindDgram(name: string, options: DgramOptions): Promise<dgram.Socket> {
    this.#checkName(name);
    if (typeof options !== 'object' || options === null || (options.type !== 'udp4' && options.type !== 'udp6')) {
      throw argTypeError('options.type', "'udp4' or 'udp6'", options?.type);
    }
    const port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw argTypeError('options.port', 'an integer from 0 to 65535', port);
    const requested = { host: options.address ?? '', port };
    const socket = dgram.createSocket({
      type: options.type,
      ...(options.recvBufferSize ? { recvBufferSize: options.recvBufferSize } : {}),
      ...(options.sendBufferSize ? { sendBufferSize: options.sendBufferSize } : {}),
    });
    const taken = this.#client?.take(name, options.type, requested) ?? this.#service?.take(name, options.type, requested) ?? null;
    let address: SocketAddress;
    if (taken) {
      await bindDgramFd(socket, taken.fd);
      address = taken.entry.address;
    } else {
      this.#warnIfMoved(name, requested);
      await bindDgramFresh(socket, requested.host, requested.port);
      address = { host: requested.host, port: socket.address().port };
    }
    const entry: InventoryEntry = { name, kind: options.type, address, ...(taken?.entry.origin ? { origin: taken.entry.origin } : {}) };
    this.#sockets.set(name, { entry, object: socket, drainer: null });
    if (!taken) this.#fresh.add(name);
    await this.#registerIfFresh(entry, socket, !taken || taken.entry.name !== name);
    this.#log('info', 'bind', { name, kind: options.type, address: formatAddress(address), inherited: !!taken, origin: taken?.entry.origin });
    return socket;
  }

  /**
   * This generation serves. Under a supervisor or in standalone mode, the predecessor now stops accepting
   * and drains. Inherited sockets this generation did not ask for are closed.
   */
  async ready(): Promise<void> {
    if (this.#state !== 'starting') throw batonError('ERR_BATON_STATE', `ready() called in state ${this.#state}`);
    const names = [...this.#sockets.keys()];
    const deferred = this.#deferred;
    this.#deferred = [];
    const client = this.#client;
    // The handoff broke before ready(): the supervisor died (no one will ever tell the old generation to stop),
    // or a standalone predecessor that is still alive rolled this one back. Accepting now would leave two
    // generations accepting on the same listeners (found by the fault matrix: supervisor SIGKILLed after
    // listen(), before ready()), so fail before accepting anything; the inherited fds are closed.
    this.#failIfHandoffBroke(client, deferred);
    if (this.#inherited && client && !client.link.closed && this.#warmUp > 0 && this.#servesHttp()) {
      const started = Date.now();
      const requests = await warmUpHttp(this.#warmUp);
      this.#log('info', 'warmed-up', { requests, ms: Date.now() - started });
      // The handoff may have broken while we warmed up (readyTimeout, the supervisor gone): check again.
      this.#failIfHandoffBroke(client, deferred);
    }
    if (client && client.state === 'welcomed' && !client.link.closed) {
      // A private channel for live connections: we keep one end, the old generation gets the other.
      const [mine, theirs] = socketpair();
      this.#addReceiver(mine);
      // Socket.IO: a client of the old generation that reconnects here before its session has arrived waits.
      const io = this.#socketIoServers;
      io?.awaitCarried(() => this.#awaitCarried(io.carryName, SOCKET_IO_CARRY_WAIT_MS), () => this.#carried.get(io.carryName) ?? []);
      try {
        await client.ready(names, this.#readyTimeout, theirs);
      } catch (err) {
        for (const r of this.#receivers.splice(0)) r.close();
        if (this.mode === 'supervised' || predecessorAlive(client)) {
          closeFds(deferred.map((d) => d.fd));
          client.close();
          throw batonError('ERR_BATON_ROLLED_BACK', `the handoff did not complete: ${(err as Error).message}`);
        }
        this.#log('warn', 'predecessor-gone', { pid: client.link.peer.pid });
      } finally {
        closeFds([theirs]);
      }
    }
    // Inherited listeners accept only now, once the handoff is acknowledged: the old generation has been told
    // to stop accepting by then, and connections that arrive in between wait in the listener's backlog (the
    // same kernel socket). Had this generation accepted before the acknowledgement, a rollback at that point
    // (readyTimeout, the supervisor gone) would take the connections it had accepted down with it.
    await Promise.all(deferred.map((d) => listenOnFd(d.server, d.fd, d.backlog)));
    if (this.mode === 'standalone') {
      client?.close();
      this.#client = null;
      if (!this.#control) this.#control = await FdChannelServer.listen(this.#socketPath!, CONTROL_CHANNEL_LIMITS);
      this.#state = 'serving';
      this.#ensureHost().start();
    }
    this.#state = 'serving';
    if (this.mode === 'supervised') this.#startStats();
    this.#log('info', 'ready', { listeners: names.length });
    this.#serviceReady(client);
  }

  /** Throw (closing the inherited listeners, which are not accepting yet) if the handoff is already over. */
  #failIfHandoffBroke(client: GenerationClient | null, deferred: ReadonlyArray<{ fd: number }>): void {
    if (!client || !client.link.closed || (this.mode !== 'supervised' && !predecessorAlive(client))) return;
    closeFds(deferred.map((d) => d.fd));
    client.close();
    const who = this.mode === 'supervised' ? `the supervisor (pid ${client.link.peer.pid}) closed the control connection` : `the serving generation (pid ${client.link.peer.pid}) ended the handoff`;
    throw batonError('ERR_BATON_ROLLED_BACK', `${who} before ready()`);
  }

  /** Does one of this generation's listeners serve HTTP (http or https: the same node:http code)? */
  #servesHttp(): boolean {
    return [...this.#sockets.values()].some((m) => m.object instanceof http.Server || m.object instanceof https.Server);
  }

  /**
   * Move a live connection to the new generation, open, with a JSON-serialisable `state` (at most 64 KiB)
   * and any bytes already read from it but not yet processed (`pending`). Call it from the 'drain' event
   * handler. The new generation's 'migrated' event gets (socket, state, pending). Writes queued here are
   * flushed first; bytes the client sends meanwhile wait in the kernel for the new owner, so nothing is
   * lost or duplicated. Resolves once moved (this process's socket object is then destroyed without
   * closing the connection); rejects with the socket still open here if it cannot move
   * (ERR_BATON_NO_MIGRATION when there is no successor to move to).
   */
  migrate(socket: net.Socket, state?: unknown, pending?: Uint8Array): Promise<void> {
    if (!(socket instanceof net.Socket)) return Promise.reject(argTypeError('socket', 'a net.Socket', socket));
    if (pending !== undefined && !(pending instanceof Uint8Array)) return Promise.reject(argTypeError('pending', 'a Buffer or Uint8Array', pending));
    const sender = this.#sender;
    if (!sender || sender.closed) {
      return Promise.reject(batonError('ERR_BATON_NO_MIGRATION', 'no new generation to migrate to: migrate() works after this generation was replaced (in the drain event)'));
    }
    const from = acceptingServerOf(socket);
    // A connection that itself moved here has no .server: its listener is the one whose drain tracks it.
    const name = [...this.#sockets.values()].find((m) => m.object === from || m.drainer?.has(socket))?.entry.name ?? '-';
    return sender.move(socket, 'raw', name, state, pending);
  }

  /**
   * Move this `ws` WebSocketServer's connections to the next generation, open, at a frame boundary, with
   * the app's state: `save(ws)` (old generation) returns JSON, `restore(ws, state)` (new generation) puts it
   * back before the server emits 'connection' (ws, req) with `req.migrated === true`. Connections that
   * cannot move (permessage-deflate, TLS) are closed with 1012 (Service Restart) once the new generation is
   * ready, so standard clients reconnect. Call it in every generation, before ready(). `name`: the
   * listener the WebSocket server is attached to (default: found from `wss.options.server`, else 'ws').
   */
  webSocketServer<S = unknown>(wss: unknown, options: WebSocketMigrationOptions<S> & { name?: string } = {}): void {
    this.#movers.push(integrations().webSocketServer(wss, options, this.#moverContext));
  }

  readonly #moverContext = {
    log: (level: 'info' | 'warn' | 'error', event: string, fields?: LogFields) => this.#log(level, event, fields),
    listenerName: (server: unknown) => [...this.#sockets.values()].find((m) => m.object === server)?.entry.name,
  };

  /**
   * Let this socket.io `Server`'s clients continue in the next generation: the moment it is ready, this
   * generation closes every engine.io connection (clients reconnect by themselves, after their
   * reconnectionDelay, to the new generation), and — with `connectionStateRecovery` on and the default
   * in-memory adapter — carries the recovery state (sessions: socket id, rooms, `socket.data`; the packets
   * broadcast lately) over, so each client gets its session back with the packets it missed
   * (`socket.recovered` is true on both sides). Call it in every generation, before ready().
   * See docs/migration.md#socketio.
   */
  socketIo(io: unknown): void {
    const server = this.#socketIo.check(io);
    if (this.#state !== 'starting') throw batonError('ERR_BATON_STATE', `socketIo() after ready() (state ${this.#state})`);
    this.#socketIo.add(server);
  }

  /** Close every Socket.IO connection (clients reconnect to the successor) and carry the recovery state. */
  async #drainSocketIo(sender: MigrationSender | null): Promise<void> {
    const io = this.#socketIoServers;
    if (!io?.size) return;
    // State an older generation is still carrying here belongs in what this one carries on.
    if (this.#receivers.some((r) => r.sending)) await this.#awaitCarried(io.carryName, SOCKET_IO_CARRY_WAIT_MS);
    const { closed, state } = await io.closeAll(this.#generation);
    let carried = false;
    if (sender && !sender.closed && state !== null) {
      try {
        await sender.carry(io.carryName, state);
        carried = true;
      } catch (err) {
        this.#log('warn', 'socket-io-carry-failed', { reason: (err as Error).message });
      }
    }
    this.#log('info', 'socket-io-closed', { connections: closed, recovery: state === null ? 'off' : carried ? 'carried' : sender ? 'not carried' : 'no successor' });
  }

  #openSender(migrationFd: number | null): void {
    if (migrationFd === null) return;
    if (this.#sender) {
      closeFds([migrationFd]);
      return;
    }
    try {
      this.#sender = new MigrationSender(migrationFd);
    } catch (err) {
      this.#log('warn', 'migrate-unavailable', { reason: (err as Error).message });
    }
  }

  /** Receive connections on `fd`, one end of a migration channel (owned). */
  #addReceiver(fd: number): void {
    let receiver: MigrationReceiver;
    try {
      receiver = new MigrationReceiver(fd);
    } catch (err) {
      closeFds([fd]);
      this.#log('warn', 'migrate-unavailable', { reason: (err as Error).message });
      return;
    }
    this.#receivers.push(receiver);
    receiver.on('connection', (socket, item, pending) => this.#continueMigrated(socket, item, pending));
    receiver.on('error', (err) => this.#log('warn', 'migrate-adopt-failed', { reason: err.message }));
    receiver.on('carry', (name, value) => {
      this.#carried.set(name, [...(this.#carried.get(name) ?? []), value]);
      if (this.#socketIoServers && name === this.#socketIoServers.carryName) this.#socketIoServers.merge(value);
      for (const wake of this.#carryWaiters) wake();
    });
    const wakeAll = () => {
      for (const wake of this.#carryWaiters) wake();
    };
    receiver.on('done', wakeAll);
    // An older generation's channel, passed on by a predecessor that drained while it was still in use.
    receiver.on('channel', (channelFd) => {
      this.#addReceiver(channelFd);
      if (this.#state === 'draining' || this.#state === 'stopped') this.#stepAside(this.#receivers.at(-1)!, this.#drainStopping);
    });
  }

  /**
   * Draining while `receiver`'s sender still hands connections over: point it at this generation's
   * successor (a new channel, one end each) — or, without one, tell it to move nothing more — so this
   * generation waits one round trip for it, not for everything it still holds.
   */
  #stepAside(receiver: MigrationReceiver, stopping: boolean): void {
    if (!receiver.sending) return;
    const sender = stopping ? null : this.#sender;
    let redirect: number | null = null;
    if (sender?.accepting && !sender.closed) {
      const [mine, theirs] = socketpair();
      redirect = theirs;
      sender.forwardChannel(mine).catch((err: Error) => this.#log('warn', 'migrate-forward-failed', { reason: err.message }));
    }
    receiver.end(redirect);
  }

  /**
   * What older generations carried over as `name` (MigrationSender.carry): at once if something is here,
   * else when it arrives; [] once no older generation is sending any more (or after `ms`).
   */
  #awaitCarried(name: string, ms: number): Promise<unknown[]> {
    return new Promise((resolve) => {
      const check = () => {
        if (!this.#carried.has(name) && this.#receivers.some((r) => r.sending)) return;
        clearTimeout(timer);
        this.#carryWaiters.delete(check);
        resolve(this.#carried.get(name) ?? []);
      };
      const timer = setTimeout(() => {
        this.#carryWaiters.delete(check);
        resolve(this.#carried.get(name) ?? []);
      }, ms);
      this.#carryWaiters.add(check);
      check();
    });
  }

  /** A connection moved here: give it to the server it belongs to, or to the app ('migrated'). */
  #continueMigrated(socket: net.Socket, item: MigrationItem, pending: Buffer): void {
    if (item.kind === 'ws') {
      const mover = this.#movers.find((m) => m.kind === item.kind && m.name() === item.name);
      if (!mover) {
        this.#log('warn', 'migrate-no-wss', { name: item.name, reason: 'a WebSocket arrived but no webSocketServer() is registered for it' });
        socket.destroy();
        return;
      }
      try {
        this.#census.addMovedWebSocket(socket);
        mover.continue(socket, item.state, pending);
      } catch (err) {
        this.#log('warn', 'migrate-ws-failed', { reason: (err as Error).message });
        socket.destroy();
      }
      return;
    }
    if (item.kind === 'http') {
      const server = this.#sockets.get(item.name)?.object;
      if (server instanceof net.Server) {
        // As if accepted here: the http server attaches its parser; 'connection' listeners run.
        server.emit('connection', socket);
        if (pending.length) socket.emit('data', pending);
        return;
      }
      this.#log('warn', 'migrate-no-server', { name: item.name });
      socket.destroy();
      return;
    }
    if (this.listenerCount('migrated') === 0) {
      this.#log('warn', 'migrate-no-listener', { name: item.name, reason: "a raw connection arrived but nothing listens for 'migrated'" });
      socket.destroy();
      return;
    }
    // Counted as a connection of its listener, like one accepted here: this generation's drain waits for it
    // (the app moves it on in its 'drain' handler) instead of finishing — and exiting — without it.
    this.#sockets.get(item.name)?.drainer?.track(socket);
    this.emit('migrated', socket, item.state, pending);
  }

  /** Stop this generation gracefully: stop accepting, drain, then exit (unless exitOnDrain is false). */
  stop(): Promise<void> {
    return this.#drain(this.#drainTimeout, true);
  }

  #hostCallbacks() {
    return {
      generation: () => this.#generation,
      state: () => this.#state,
      readyTimeout: this.#readyTimeout,
      logger: this.#logger,
      inventory: (): Array<{ entry: InventoryEntry; fd: number }> => {
        const list = [...this.#sockets.values()].map((m) => ({ entry: m.entry, fd: fdOf(m.object) }));
        // An orphan (supervised) has no control listener to hand over: the new supervisor owns that one.
        const control = this.#control;
        if (control) list.push({ entry: { name: RESERVED, kind: 'control', address: { path: this.#socketPath! } }, fd: control.fd });
        return list;
      },
      status: () => this.#status(),
      setUpgrading: (on: boolean) => {
        if (on && this.#state === 'serving') this.#service?.upgrading(this.#generation);
        if (this.#state === 'serving' || this.#state === 'upgrading') this.#state = on ? 'upgrading' : 'serving';
      },
      onRollback: (pid: number, reason: string) => {
        this.#service?.rolledBack(this.#generation, this.#sockets.size, pid, reason);
        this.emit('rollback', { pid, reason });
      },
      beforeHandover: async (generation: number, pid: number) => {
        await this.#service?.handingOver(generation, pid);
      },
      onHandover: (generation: number, pid: number, migrationFd: number | null) => {
        this.#openSender(migrationFd);
        this.emit('upgraded', { generation, pid });
        void this.#drain(this.#drainTimeout);
      },
      onStop: () => void this.stop(),
    };
  }

  /** ready() succeeded: tell the service manager (no supervisor only). */
  #serviceReady(predecessor: GenerationClient | null): void {
    this.#service?.serving({
      generation: this.#generation,
      sockets: new Set(this.#sockets.keys()),
      fdOf: (name) => {
        const m = this.#sockets.get(name);
        return m ? fdOf(m.object) : undefined;
      },
      fresh: this.#fresh,
      predecessor: predecessor && { inventory: predecessor.inventory, pid: predecessor.link.peer.pid },
    });
  }

  #status() {
    return {
      mode: this.mode,
      generation: this.#generation,
      pid: process.pid,
      state: this.#state,
      connections: this.connections,
      kinds: this.connectionKinds,
      listeners: this.sockets.map((e) => ({ name: e.name, kind: e.kind, address: formatAddress(e.address) })),
    };
  }

  /** Stop accepting, drain every server, then exit (or emit 'drained'). Idempotent. */
  #drain(timeoutMs: number, stopping = false): Promise<void> {
    this.#drainPromise ??= (async () => {
      const from = this.#state;
      this.#state = 'draining';
      if (this.#statsTimer) clearInterval(this.#statsTimer);
      this.#log('info', 'drain', { from, reason: stopping ? 'stop' : 'replaced', connections: this.connections });
      this.#service?.draining(stopping, this.#generation, this.connections);
      // Completion protocol (src/upgrader/migrate.ts): tell the predecessor, if it is still handing
      // connections over, to move nothing more here — it closes the rest politely and says done at once.
      this.#drainStopping = stopping;
      if (this.#receivers.some((r) => r.sending)) this.#waiting = 'predecessor';
      for (const r of this.#receivers) this.#stepAside(r, stopping);
      this.#startDrainStats();
      this.emit('drain');
      if (this.#endEventStreams) {
        const ended = this.#eventStreams.endAll(this.#eventStreamRetry);
        if (ended) this.#log('info', 'sse-ended', { streams: ended, retryMs: this.#eventStreamRetry });
      }
      // Stop accepting everywhere first, so the new generation takes every new connection at once.
      for (const m of this.#sockets.values()) {
        if (m.drainer) m.drainer.stopAccepting();
        else (m.object as dgram.Socket).close();
      }
      // A standalone generation handed the control listener over: keep its file for the successor. An
      // orphan's takeover socket is its own: it goes.
      this.#host?.close({ unlink: stopping || this.mode === 'supervised' });
      const started = Date.now();
      // Right after the previous upgrade, connections may still be arriving from the generation before this
      // one (it moves them in paced batches). It was told above to move the rest to this one's successor;
      // wait for its migrate-done — one round trip plus the batches already on their way, each of which is
      // this generation's to move on or close — not for it to drain. (A channel passed on meanwhile joins
      // #receivers and is stepped aside from at once: wait for it too.) Measured before: 20 SSE streams in
      // generation 1 kept generation 2, holding nothing, draining for 8.8 s.
      for (let sending = this.#receivers.filter((r) => r.sending); sending.length; sending = this.#receivers.filter((r) => r.sending)) {
        const left = timeoutMs - (Date.now() - started);
        if (left <= 0) break;
        await Promise.all(sending.map((r) => r.finished(left)));
      }
      timeoutMs = Math.max(0, timeoutMs - (Date.now() - started));
      this.#waiting = 'connections';
      this.#sendStats('draining');
      const sender = stopping ? null : this.#sender;
      // Responses on connections that arrived meanwhile may be SSE streams now: end them too.
      if (this.#endEventStreams) this.#eventStreams.endAll(this.#eventStreamRetry);
      const wsMoved = Promise.all(this.#movers.map((m) => m.drain(sender, stopping, timeoutMs)));
      const socketIo = this.#drainSocketIo(sender);
      const results = await Promise.all(
        [...this.#sockets.values()].map(
          (m) => m.drainer?.drain(timeoutMs, sender && !sender.closed ? (socket) => sender.move(socket, 'http', m.entry.name) : null) ?? { forced: 0 },
        ),
      );
      await wsMoved;
      await socketIo;
      await this.#sender?.settled();
      const forced = results.reduce((a, r) => a + r.forced, 0);
      this.#state = 'stopped';
      if (this.#statsTimer) clearInterval(this.#statsTimer);
      const notMoved = [...(this.#sender?.notMoved ?? [])].map(([code, n]) => `${code}:${n}`).join(',');
      // Connections that could not move were closed politely here; say why (e.g. no room in the new generation).
      // Those the client closed on the way, and those handed back because the new generation was itself
      // draining by then, are not failures: counted in 'drained' (closed, handedBack), not warned about.
      const notMovedCount = [...(this.#sender?.notMoved.values() ?? [])].reduce((a, n) => a + n, 0);
      if (notMoved) this.#log('warn', 'not-moved', { count: notMovedCount, reasons: notMoved });
      // The supervisor records the counts with the upgrade (baton status) and warns when some could not move;
      // /metrics adds them up by reason.
      this.#loop?.stop();
      const moving = this.#sender;
      if (moving) {
        const notMovedReasons = Object.fromEntries(moving.notMoved);
        this.#client?.stats(0, 'draining', { moved: moving.moved, notMoved: notMovedCount, notMovedReasons });
      }
      const extra: LogFields = {};
      if (this.#sender?.closedMeanwhile) extra.closed = this.#sender.closedMeanwhile;
      if (this.#sender?.handedBack) extra.handedBack = this.#sender.handedBack;
      this.#log('info', 'drained', { ms: Date.now() - started, forced, migrated: this.#sender?.moved ?? 0, ...extra });
      this.#sender?.close();
      this.#client?.close();
      this.emit('drained', { forced });
      if (this.#exitOnDrain) setImmediate(() => process.exit(0));
    })();
    return this.#drainPromise;
  }

  /** Draining: report connections by kind (and the wait for the predecessor) as they change. */
  #startDrainStats(): void {
    if (!this.#client || this.mode !== 'supervised') return;
    let last = '';
    const tick = () => {
      const key = `${this.#waiting} ${JSON.stringify(this.connectionKinds)}`;
      if (key !== last || Date.now() - this.#lastStatsAt >= STATS_EVERY_MS) this.#sendStats('draining');
      last = key;
    };
    this.#statsTimer = setInterval(tick, 250);
    this.#statsTimer.unref();
    tick();
  }

  #sendStats(state: 'serving' | 'draining'): void {
    if (this.mode !== 'supervised') return;
    const loop = this.#loop?.take();
    this.#lastStatsAt = Date.now();
    this.#client?.stats(this.connections, state, {
      kinds: this.connectionKinds,
      ...(state === 'draining' ? { waiting: this.#waiting } : {}),
      ...(loop ? { loop } : {}),
    });
  }

  #startStats(): void {
    this.#loop = new LoopMonitor();
    let last = -1;
    this.#statsTimer = setInterval(() => {
      const n = this.connections;
      // A change in connections within 500 ms; the event-loop figures at least every second.
      if (n !== last || Date.now() - this.#lastStatsAt >= STATS_EVERY_MS) this.#sendStats('serving');
      last = n;
    }, 500);
    this.#statsTimer.unref();
    this.#sendStats('serving');
  }

  async #registerIfFresh(entry: InventoryEntry, object: net.Server | dgram.Socket, fresh: boolean, fd?: number): Promise<void> {
    if (!fresh || this.mode !== 'supervised' || !this.#client) return;
    // The supervisor keeps its own copy, so the port stays open even if this generation crashes.
    await this.#client.register(entry, fd ?? fdOf(object));
  }

  #warnIfMoved(name: string, requested: SocketAddress): void {
    const old = this.#client?.offered(name);
    if (old) {
      this.#log('warn', 'address-changed', { name, was: formatAddress(old.address), now: formatAddress(requested) });
    }
  }

  #checkName(name: string): void {
    if (typeof name !== 'string' || name.length === 0 || name.length > 200) throw argTypeError('name', 'a non-empty string of at most 200 characters', name);
    if (name === RESERVED) throw argTypeError('name', `not the reserved name ${RESERVED}`, name);
    if (this.#sockets.has(name)) {
      const err = new Error(`a socket named ${JSON.stringify(name)} is already in use by this generation`) as NodeJS.ErrnoException;
      err.code = 'ERR_BATON_DUPLICATE_NAME';
      throw err;
    }
    if (this.#state !== 'starting') throw batonError('ERR_BATON_STATE', `listen()/bindDgram() after ready() (state ${this.#state})`);
  }

  #log(level: 'info' | 'warn' | 'error', event: string, fields: LogFields = {}): void {
    this.#logger.log(level, event, { gen: this.#generation, pid: process.pid, ...fields });
  }
}

function ignoreEpipe(err: NodeJS.ErrnoException): void {
  if (err.code !== 'EPIPE') throw err;
}

/**
 * Standalone: join the generation serving on `socketPath`, or null when there is none (no socket, or nobody
 * listening on it). One that closes the connection before its welcome is asked again: if it died in the
 * middle of the handshake, the socket soon refuses and this process starts as the first generation instead
 * of failing — otherwise nothing would serve (found by the fault matrix: generation 1 SIGKILLed right after
 * its successor's hello). A few attempts, because a dying process closes its connections and its listener
 * one at a time: a retry can still be queued on the listener that is about to close. A live generation
 * answers a retry as it answered the first attempt.
 */
async function joinServing(socketPath: string, timeoutMs: number): Promise<GenerationClient | null> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await GenerationClient.join(socketPath, { timeoutMs });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ECONNREFUSED') return null;
      if (!JOIN_RETRY.has(code ?? '') || attempt >= JOIN_ATTEMPTS) throw err;
      await new Promise((r) => setTimeout(r, 50 * attempt));
    }
  }
}

const JOIN_ATTEMPTS = 4;
/** Socket.IO: how long a draining generation (or a reconnecting client) waits for an older generation's
 * recovery state. It is sent right after that generation closed its connections: normally milliseconds. */
const SOCKET_IO_CARRY_WAIT_MS = 3000;
/** The serving side closed the connection (or died) before its welcome. */
const JOIN_RETRY = new Set(['ERR_BATON_HANDOFF_FAILED', 'EPIPE', 'ECONNRESET']);

function predecessorAlive(client: GenerationClient): boolean {
  try {
    process.kill(client.link.peer.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function checkMs(v: unknown, name: string, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw argTypeError(`options.${name}`, 'a number of milliseconds >= 0', v);
  return v;
}
