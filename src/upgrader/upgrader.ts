/**
 * The application's API for zero-downtime upgrades.
 *
 *   const upgrader = await Upgrader.start();
 *   await upgrader.listen(server, 'web', { port: 8080, host: '127.0.0.1' });
 *   await upgrader.ready();
 *
 * Three modes, chosen by start() (src/upgrader/modes/): supervised (`baton run`), standalone (a control socket,
 * no supervisor) and plain. The Upgrader asks its mode at each step: it has no branch on which mode it runs in.
 * The generation's life is one state machine, its transitions in one table (state.ts). Where the rest lives:
 * listeners.ts (listen/bindDgram), moves.ts (the migration channels), arrivals.ts (connections that moved
 * here), stats.ts (what a supervised generation reports), options.ts (the types). See docs/architecture.md.
 */
import type dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { argTypeError, batonError } from '../fd/errors.js';
import { closeFds } from '../fd/fds.js';
import { acceptingServerOf } from '../fd/internals.js';
import type { GenerationClient } from '../handoff/client.js';
import { formatAddress, type InventoryEntry } from '../handoff/messages.js';
import { continueArrival, type ArrivalContext } from './arrivals.js';
import { ConnectionCensus, type ConnectionKinds } from './census.js';
import {
  integrations,
  type ConnectionMover,
  type EventStreamTracker,
  type ReconnectingServers,
  type ServiceManager,
} from './integration.js';
import { Listeners } from './listeners.js';
import { createLogger, silentLogger, type LogFields, type Logger } from './logger.js';
import { openMode, type Opened, type WorkerSlot } from './modes/index.js';
import type { Generation, GenerationMode, UpgraderMode } from './modes/mode.js';
import { ConnectionMoves } from './moves.js';
import {
  settingsOf,
  type DgramOptions,
  type ListenOptions,
  type Settings,
  type UpgraderEvents,
  type UpgraderOptions,
  type WebSocketMigrationOptions,
} from './options.js';
import { listenOnFd } from './sockets.js';
import { GenerationState, type UpgraderState } from './state.js';
import { paced } from './pacing.js';
import { warmUpHttp } from './warm-up.js';

export type { UpgraderMode } from './modes/mode.js';
export type { DgramOptions, ListenOptions, UpgraderEvents, UpgraderOptions } from './options.js';
export type { WebSocketMigrationOptions } from './options.js';
export type { UpgraderState } from './state.js';

export class Upgrader extends EventEmitter<UpgraderEvents> {
  readonly mode: UpgraderMode;
  readonly #mode: GenerationMode;
  readonly #generation: number;
  readonly #inherited: boolean;
  readonly #state = new GenerationState();
  #client: GenerationClient | null;
  readonly #socketPath: string | null;
  readonly #settings: Settings;
  readonly #logger: Logger;
  /** What the mode may use of this generation. */
  readonly #gen: Generation;
  readonly #listeners: Listeners;
  readonly #moves: ConnectionMoves;
  #drainPromise: Promise<void> | null = null;
  /** Socket.IO servers whose clients reconnect to the next generation with their state (socketIo()). */
  #socketIoServers: ReconnectingServers | null = null;
  /** Servers whose connections move as their own kind (webSocketServer()). */
  readonly #movers: ConnectionMover[] = [];
  /** The service manager (no supervisor only). */
  #service: ServiceManager | null = null;
  /** SSE streams of this generation's HTTP servers (ended at the drain unless endEventStreams is false). */
  #eventStreamTracker: EventStreamTracker | null = null;
  readonly #census = new ConnectionCensus();
  /** While draining: what this generation waits for ('predecessor' first, then 'connections'). */
  #waiting: 'predecessor' | 'connections' = 'connections';
  readonly #worker: WorkerSlot;

  /** Join the previous generation (if any) according to the environment and options. */
  static async start(options: UpgraderOptions = {}): Promise<Upgrader> {
    const settings = settingsOf(options);
    return new Upgrader(await openMode(options.socket, settings.readyTimeout), options.logger, settings);
  }

  private constructor(opened: Opened, logger: Logger | false | undefined, settings: Settings) {
    super();
    const { mode, client } = opened;
    this.mode = mode.name;
    this.#mode = mode;
    this.#generation = opened.generation;
    this.#worker = opened.worker;
    this.#client = client;
    this.#inherited = client?.inventory.some((e) => e.kind !== 'control') ?? false;
    this.#socketPath = opened.socketPath;
    this.#settings = settings;
    this.#logger = logger === false ? silentLogger : (logger ?? createLogger());
    this.#gen = this.#generationView();
    const log = this.#gen.log;
    // Inside the getters below, `this` is the object literal, not the Upgrader.
    const self = this;
    this.#listeners = new Listeners({
      client: () => this.#client,
      get service() {
        return self.#service;
      },
      idleGrace: settings.idleGrace,
      log,
      watchHttp: (server, drainer) => {
        this.#eventStreams.attach(server, drainer.responses);
        this.#census.attach(server);
      },
      register: (c, entry, fd) => mode.registerFresh(c, entry, fd),
      state: () => this.#state.current,
      worker: this.#worker,
    });
    const arrivals: ArrivalContext = {
      log,
      movers: this.#movers,
      census: this.#census,
      listeners: this.#listeners,
      hasMigratedListener: () => this.listenerCount('migrated') > 0,
      emitMigrated: (socket, state, pending) => this.emit('migrated', socket, state, pending),
    };
    this.#moves = new ConnectionMoves({
      log,
      ending: () => this.#state.ending,
      arrived: (socket, item, pending) => continueArrival(arrivals, socket, item, pending),
      reconnecting: () => this.#socketIoServers,
    });
    if (mode.notifiesServiceManager && settings.systemd) {
      // No supervisor: this process talks to the service manager itself. Sockets it passed are ours only
      // if LISTEN_PID is this process (a successor started later gets none: it inherits them instead).
      this.#service = integrations().serviceManager({
        logger: this.#logger,
        log,
        fields: () => ({ gen: this.#generation, pid: process.pid }),
        fdStore: settings.fdStore,
        inherited: client?.inventory ?? null,
      });
    }
    client?.on('drain', (msg, migrationFd) => {
      this.#log('info', 'drain-requested', { reason: msg.reason, migrate: migrationFd !== null });
      this.#moves.openSender(migrationFd);
      void this.#drain(msg.timeoutMs || settings.drainTimeout, msg.reason === 'stop');
    });
    // `baton run --workers N`: the supervisor lends this worker a slot with no live worker (borrowed.ts).
    if (client) this.#listeners.borrowed.follow(client);
    client?.on('close', (err) => {
      if (!this.#state.ending) mode.clientClosed(this.#gen, err);
    });
    this.#log('info', 'start', { mode: mode.name, inherited: this.#inherited, socket: opened.socketPath ?? undefined });
    mode.started(this.#gen);
  }

  #generationView(): Generation {
    return {
      generation: this.#generation,
      socketPath: this.#socketPath,
      readyTimeout: this.#settings.readyTimeout,
      drainTimeout: this.#settings.drainTimeout,
      helloTimeout: this.#settings.helloTimeout,
      logger: this.#logger,
      service: () => this.#service,
      client: () => this.#client,
      connections: () => this.connections,
      arriving: () => this.#moves.parked,
      accepted: () => this.#listeners.accepted,
      connectionKinds: () => this.connectionKinds,
      listeners: () => this.#listeners.size,
      waiting: () => this.#waiting,
      state: () => this.#state.current,
      setUpgrading: (on) => this.#setUpgrading(on),
      log: (level, event, fields) => this.#log(level, event, fields),
      status: () => this.#status(),
      inventory: () => this.#listeners.offered(),
      openSender: (fd) => this.#moves.openSender(fd),
      drain: (timeoutMs, stopping) => this.#drain(timeoutMs, stopping),
      stop: () => this.stop(),
      emitUpgraded: (info) => this.emit('upgraded', info),
      emitRollback: (info) => this.emit('rollback', info),
    };
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

  /** This process's worker slot, `index` of `count` per generation (`baton run --workers`; else 0 of 1). */
  get worker(): WorkerSlot {
    return this.#worker;
  }

  get state(): UpgraderState {
    return this.#state.current;
  }

  /** The control socket path (standalone and supervised modes), or null. */
  get socketPath(): string | null {
    return this.#socketPath;
  }

  /**
   * Open connections across all listeners, WebSockets moved here included: a moved WebSocket is handed to its
   * `ws` server, not to the listener's connection tracking, and was left out (a new generation that had taken
   * 200 WebSockets over reported 0 to `baton status`; test/migrate-status.test.ts).
   */
  get connections(): number {
    return this.#listeners.connections + this.#census.movedWebSockets;
  }

  /** Open connections by kind (http, sse, ws, h2, raw): what `baton status` shows a draining generation wait for. */
  get connectionKinds(): ConnectionKinds {
    return this.#census.count(this.#listeners.census(), this.#eventStreams.sockets());
  }

  /** The named sockets and where they are bound. */
  get sockets(): InventoryEntry[] {
    return this.#listeners.entries();
  }

  /**
   * Listen with `server` (net, http, https or http2) on the socket called `name`: inherited when the
   * predecessor has one with that name at the same address, else bound now. A fresh socket is listening
   * when this resolves; an inherited one starts accepting in ready(), once the handoff is acknowledged, so
   * that connections keep going to the old generation until then (server.address() is null until then).
   */
  listen<S extends net.Server>(server: S, name: string, options: ListenOptions): Promise<S> {
    return this.#listeners.listen(server, name, options);
  }

  /** A UDP socket called `name`: inherited when the predecessor has it at the same address, else bound. */
  bindDgram(name: string, options: DgramOptions): Promise<dgram.Socket> {
    return this.#listeners.bindDgram(name, options);
  }

  /**
   * This generation serves. Under a supervisor or in standalone mode, the predecessor now stops accepting
   * and drains. Inherited sockets this generation did not ask for are closed.
   */
  async ready(): Promise<void> {
    const current = this.#state.current;
    if (current !== 'starting') throw batonError('ERR_BATON_STATE', `ready() called in state ${current}`);
    const names = this.#listeners.names();
    const deferred = this.#listeners.takeDeferred();
    const client = this.#client;
    // The handoff broke before ready(): the supervisor died (no one will ever tell the old generation to stop),
    // or a standalone predecessor that is still alive rolled this one back. Accepting now would leave two
    // generations accepting on the same listeners (found by the fault matrix: supervisor SIGKILLed after
    // listen(), before ready()), so fail before accepting anything; the inherited fds are closed.
    this.#failIfHandoffBroke(client, deferred);
    if (this.#inherited && client && !client.link.closed && this.#settings.warmUp > 0 && this.#listeners.servesHttp()) {
      const started = Date.now();
      const requests = await warmUpHttp(this.#settings.warmUp);
      this.#log('info', 'warmed-up', { requests, ms: Date.now() - started });
      // The handoff may have broken while we warmed up (readyTimeout, the supervisor gone): check again.
      this.#failIfHandoffBroke(client, deferred);
    }
    if (client && client.state === 'welcomed' && !client.link.closed) {
      // A private channel for live connections: we keep one end, the old generation gets the other.
      const theirs = this.#moves.openChannel();
      // Socket.IO: a client of the old generation that reconnects here before its session has arrived waits.
      if (this.#socketIoServers) this.#moves.restoreAfterCarry(this.#socketIoServers);
      try {
        await client.ready(names, this.#settings.readyTimeout, theirs);
      } catch (err) {
        this.#moves.closeReceivers();
        if (this.#mode.handoffBroke(client).fatal) {
          this.#rolledBack(client, deferred, `the handoff did not complete: ${(err as Error).message}`);
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
    if (!this.#mode.keepsClient) {
      client?.close();
      this.#client = null;
    }
    await this.#mode.beforeServing(this.#gen);
    // stop() (or the supervisor's drain) while ready() was under way: the generation drains, never serves.
    if (this.#state.ending) return;
    this.#state.to('serving', 'ready()');
    this.#listeners.borrowed.open();
    this.#mode.serving(this.#gen);
    this.#log('info', 'ready', { listeners: names.length });
    this.#serviceReady(client);
  }

  /** Throw (closing the inherited listeners, which are not accepting yet) if the handoff is already over. */
  #failIfHandoffBroke(client: GenerationClient | null, deferred: ReadonlyArray<{ fd: number }>): void {
    if (!client?.link.closed) return;
    const broke = this.#mode.handoffBroke(client);
    if (broke.fatal) this.#rolledBack(client, deferred, `${broke.who} before ready()`);
  }

  /** The handoff failed before this generation accepted anything: close the inherited listeners (not accepting
   * yet) and the sockets lent meanwhile (later lends are refused), leave the control connection, fail ready(). */
  #rolledBack(client: GenerationClient, deferred: ReadonlyArray<{ fd: number }>, why: string): never {
    closeFds(deferred.map((d) => d.fd));
    this.#listeners.borrowed.close();
    client.close();
    throw batonError('ERR_BATON_ROLLED_BACK', why);
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
    if (pending !== undefined && !(pending instanceof Uint8Array)) {
      return Promise.reject(argTypeError('pending', 'a Buffer or Uint8Array', pending));
    }
    const sender = this.#moves.sender;
    if (!sender || sender.closed) {
      const why = 'no new generation to migrate to: migrate() works after this generation was replaced';
      return Promise.reject(batonError('ERR_BATON_NO_MIGRATION', `${why} (in the drain event)`));
    }
    // A connection that itself moved here has no .server: its listener is the one whose drain tracks it.
    const name = this.#listeners.nameOf(acceptingServerOf(socket), socket) ?? '-';
    return sender.move(socket, 'raw', name, state, pending);
  }

  /**
   * Move many raw connections to the new generation, paced: one batch at a time, each batch prepared only
   * when it would leave at once, so every connection is served here until its own batch goes (it stops
   * reading then) and each client pauses for about two batches' adoption instead of the whole move.
   * `prepare(socket)` runs at that moment — after reading stopped, so no more 'data' comes — and returns
   * what migrate() takes: `{ state, pending }` (or nothing). Call it from the 'drain' event handler.
   * Resolves, once every connection has moved or failed, with one result per socket in order
   * (Promise.allSettled's shape): a rejected one is still open here, paused — close it politely.
   */
  async migrateAll(
    sockets: Iterable<net.Socket>,
    prepare?: (socket: net.Socket) => { state?: unknown; pending?: Uint8Array } | undefined,
  ): Promise<PromiseSettledResult<void>[]> {
    if (sockets === null || typeof (sockets as Iterable<net.Socket>)?.[Symbol.iterator] !== 'function')
      throw argTypeError('sockets', 'an iterable of net.Socket', sockets);
    if (prepare !== undefined && typeof prepare !== 'function') throw argTypeError('prepare', 'a function', prepare);
    const list = [...sockets];
    const results: PromiseSettledResult<void>[] = new Array(list.length);
    const indexed = list.map((socket, i) => ({ socket, i }));
    await paced(this.#moves.sender, indexed, async ({ socket, i }) => {
      try {
        let moving: Promise<void>;
        if (socket.destroyed || !prepare) moving = this.migrate(socket);
        else {
          // migrate() stops reading synchronously: nothing the app sees can happen between prepare() and it.
          const { state, pending } = prepare(socket) ?? {};
          moving = this.migrate(socket, state, pending);
        }
        await moving;
        results[i] = { status: 'fulfilled', value: undefined };
      } catch (reason) {
        results[i] = { status: 'rejected', reason };
      }
    });
    return results;
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
    this.#movers.push(
      integrations().webSocketServer(wss, options, {
        log: (level, event, fields) => this.#log(level, event, fields),
        listenerName: (server) => this.#listeners.nameOf(server),
      }),
    );
  }

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
    const servers = (this.#socketIoServers ??= integrations().reconnectingServers());
    const server = servers.check(io);
    const current = this.#state.current;
    if (current !== 'starting') throw batonError('ERR_BATON_STATE', `socketIo() after ready() (state ${current})`);
    servers.add(server);
  }

  /** Stop this generation gracefully: stop accepting, drain, then exit (unless exitOnDrain is false). */
  stop(): Promise<void> {
    return this.#drain(this.#settings.drainTimeout, true);
  }

  /** A successor (or a takeover) joins this serving generation (`on`), or fails before ready (`!on`). */
  #setUpgrading(on: boolean): void {
    const current = this.#state.current;
    if (current !== 'serving' && current !== 'upgrading') return;
    if (on && current === 'serving') this.#service?.upgrading(this.#generation);
    const next = on ? 'upgrading' : 'serving';
    if (current !== next) this.#state.to(next, on ? 'a successor joins' : 'the successor failed');
  }

  /** ready() succeeded: tell the service manager (no supervisor only). */
  #serviceReady(predecessor: GenerationClient | null): void {
    this.#service?.serving({
      generation: this.#generation,
      sockets: new Set(this.#listeners.names()),
      fdOf: (name) => this.#listeners.fdOf(name),
      fresh: this.#listeners.fresh,
      predecessor: predecessor && { inventory: predecessor.inventory, pid: predecessor.link.peer.pid },
    });
  }

  #status() {
    return {
      mode: this.mode,
      generation: this.#generation,
      pid: process.pid,
      state: this.#state.current,
      connections: this.connections,
      kinds: this.connectionKinds,
      listeners: this.sockets.map((e) => ({ name: e.name, kind: e.kind, address: formatAddress(e.address) })),
    };
  }

  /** Stop accepting, drain every server, then exit (or emit 'drained'). Idempotent. */
  #drain(timeoutMs: number, stopping = false): Promise<void> {
    this.#drainPromise ??= (async () => {
      const from = this.#state.current;
      this.#state.to('draining', stopping ? 'stop()' : 'the drain');
      this.#log('info', 'drain', { from, reason: stopping ? 'stop' : 'replaced', connections: this.connections });
      this.#service?.draining(stopping, this.#generation, this.connections);
      // Completion protocol (src/upgrader/migrate.ts): tell the predecessor, if it is still handing
      // connections over, to move nothing more here — it closes the rest politely and says done at once.
      if (this.#moves.receiving) this.#waiting = 'predecessor';
      this.#moves.stepAside(stopping);
      this.#mode.draining(this.#gen, stopping);
      this.emit('drain');
      const retry = this.#settings.eventStreamRetry;
      if (this.#settings.endEventStreams) {
        const ended = this.#eventStreams.endAll(retry);
        if (ended) this.#log('info', 'sse-ended', { streams: ended, retryMs: retry });
      }
      // Stop accepting everywhere first, so the new generation takes every new connection at once.
      this.#listeners.stopAccepting();
      const started = Date.now();
      // Right after the previous upgrade, connections may still be arriving from the generation before this
      // one (it moves them in paced batches). It was told above to move the rest to this one's successor;
      // wait for its migrate-done, not for it to drain.
      await this.#moves.awaitPredecessors(timeoutMs);
      timeoutMs = Math.max(0, timeoutMs - (Date.now() - started));
      this.#waiting = 'connections';
      this.#mode.predecessorDone(this.#gen);
      const sender = stopping ? null : this.#moves.sender;
      // Responses on connections that arrived meanwhile may be SSE streams now: end them too.
      if (this.#settings.endEventStreams) this.#eventStreams.endAll(retry);
      const wsMoved = Promise.all(this.#movers.map((m) => m.drain(sender, stopping, timeoutMs)));
      const io = this.#socketIoServers;
      const socketIo = io?.size ? this.#moves.drainReconnecting(io, this.#generation, sender) : null;
      const results = await this.#listeners.drain(timeoutMs, sender);
      await wsMoved;
      await socketIo;
      const moving = this.#moves.sender;
      await moving?.settled();
      const forced = results.reduce((a, r) => a + r.forced, 0);
      this.#state.to('stopped', 'drained');
      // Connections that could not move were closed politely here; say why (e.g. no room in the new generation).
      // Those the client closed on the way, and those handed back because the new generation was itself
      // draining by then, are not failures: counted in 'drained' (closed, handedBack), not warned about.
      const notMoved = [...(moving?.notMoved ?? [])].map(([code, n]) => `${code}:${n}`).join(',');
      const notMovedCount = [...(moving?.notMoved.values() ?? [])].reduce((a, n) => a + n, 0);
      if (notMoved) this.#log('warn', 'not-moved', { count: notMovedCount, reasons: notMoved });
      this.#mode.drained(
        this.#gen,
        moving && {
          moved: moving.moved,
          notMoved: notMovedCount,
          notMovedReasons: Object.fromEntries(moving.notMoved),
        },
      );
      const extra: LogFields = {};
      if (moving?.closedMeanwhile) extra.closed = moving.closedMeanwhile;
      if (moving?.handedBack) extra.handedBack = moving.handedBack;
      // What moving cost this generation's own event loop, CPU µs per connection (preparing and sending a batch).
      const own = moving?.ownCostMean;
      if (own != null) extra.moveCpuUs = Math.round(own);
      this.#log('info', 'drained', { ms: Date.now() - started, forced, migrated: moving?.moved ?? 0, ...extra });
      moving?.close();
      this.#client?.close();
      this.emit('drained', { forced });
      if (this.#settings.exitOnDrain) setImmediate(() => process.exit(0));
    })();
    return this.#drainPromise;
  }

  #log(level: 'info' | 'warn' | 'error', event: string, fields: LogFields = {}): void {
    // With N workers per generation a line names its worker (as the supervisor's lines about it do).
    const worker = this.#worker.count > 1 ? { worker: this.#worker.index } : {};
    this.#logger.log(level, event, { gen: this.#generation, pid: process.pid, ...worker, ...fields });
  }
}
