/**
 * What the upgrader needs from the integrations layer (src/integrations: HTTP drain, `ws`, systemd, SSE, Socket.IO), as
 * interfaces. The layers go fd -> handoff -> upgrader -> integrations -> cli: the upgrader never imports an
 * integration. The integrations implement these and install themselves when the package entry
 * (src/index.ts) loads src/integrations/index.ts, so `Upgrader` works the same whichever way it is imported
 * from there, and a new integration is a new implementation, not new branches here.
 */
import type http from 'node:http';
import type net from 'node:net';
import { batonError } from '../fd/errors.js';
import type { Held } from '../handoff/inventory.js';
import type { InventoryEntry, MigrationKind, SocketAddress, SocketKind } from '../handoff/messages.js';
import type { LogFields, Logger } from './logger.js';
import type { MigrationSender } from './migrate.js';
import type { PacedSender } from './pacing.js';

/** One listener's connections: counted, and drained (or moved on) when the generation is replaced. */
export interface ListenerDrainer {
  readonly connections: number;
  /** Its open connections (null for HTTP/2, whose sessions are tracked instead). */
  readonly sockets: Iterable<net.Socket> | null;
  /** The HTTP/1 responses in flight on them, oldest first (none for other servers): what the SSE tracker looks
   * through, so that a request is tracked once, here. */
  readonly responses: Iterable<http.ServerResponse>;
  /** Count `socket` (one that moved here, not accepted by the server) as this listener's. */
  track(socket: net.Socket): void;
  has(socket: net.Socket): boolean;
  stopAccepting(): void;
  /** Resolves when every connection closed or moved (`move`), or at `timeoutMs` with the rest closed. Connections
   * idle at the drain move paced by `pacer` (one batch at a time, src/upgrader/pacing.ts). */
  drain(
    timeoutMs: number,
    move: ((socket: net.Socket) => Promise<void>) | null,
    pacer: PacedSender | null,
  ): Promise<{ forced: number }>;
}

export type LogFn = (level: 'info' | 'warn' | 'error', event: string, fields?: LogFields) => void;

/** What a server whose connections move themselves (a WebSocket server) gets from the upgrader. */
export interface MoverContext {
  log: LogFn;
  /** The name of the listener `server` listens on, if it is one of this generation's. */
  listenerName(server: unknown): string | undefined;
}

/** A server whose connections move as their own kind (not as HTTP or raw connections of a listener). */
export interface ConnectionMover {
  readonly kind: MigrationKind;
  /** The name its connections travel under (the new generation's mover of the same name continues them). */
  name(): string;
  /** While draining: move (or close) every connection; resolves with how many moved once each is gone. */
  drain(sender: MigrationSender | null, stopping: boolean, timeoutMs: number): Promise<number>;
  /** A connection of this mover's kind and name arrived from the previous generation. */
  continue(socket: net.Socket, state: unknown, pending: Buffer): void;
}

/** The service manager (systemd) of a generation without a supervisor: what to tell it when. */
export interface ServiceManager {
  /** A socket the manager passed for listen()/bindDgram() `name`, or null. */
  take(name: string, kind: SocketKind, requested: SocketAddress): Held | null;
  /** A standalone successor joined: the service is reloading. */
  upgrading(generation: number): void;
  /** The successor failed before ready: this generation serves on. */
  rolledBack(generation: number, listeners: number, pid: number, reason: string): void;
  /** The successor is ready: it becomes the main process before this one acknowledges. */
  handingOver(generation: number, pid: number): Promise<void>;
  /** ready() succeeded. */
  serving(info: ServingInfo): void;
  /** The generation drains (`stopping`: it was asked to stop, not replaced). */
  draining(stopping: boolean, generation: number, connections: number): void;
}

export interface ServingInfo {
  generation: number;
  /** The names of this generation's sockets. */
  sockets: ReadonlySet<string>;
  fdOf(name: string): number | undefined;
  /** Names of the sockets this generation bound itself. */
  fresh: ReadonlySet<string>;
  predecessor: { inventory: readonly InventoryEntry[]; pid: number } | null;
}

export interface ServiceOptions {
  logger: Logger;
  log: LogFn;
  fields: () => LogFields;
  fdStore: boolean;
  /** What the predecessor handed over (none for a first generation). */
  inherited: readonly InventoryEntry[] | null;
}

/** The Server-Sent Events streams of a generation's HTTP servers (src/integrations/sse.ts). */
export interface EventStreamTracker {
  /** Watch `server`, whose responses in flight are `responses` (its drainer's: ListenerDrainer.responses). */
  attach(server: http.Server, responses: Iterable<http.ServerResponse>): void;
  /** Sockets that carry an SSE stream now. */
  sockets(): Set<net.Socket>;
  /** End every stream, now and as later responses turn out to be streams, after a `retry:` hint (ms; 0 for
   * none). Returns how many were ended now. */
  endAll(retryMs: number): number;
}

/**
 * Servers whose clients reconnect to the next generation and get their sessions back there (Socket.IO,
 * src/integrations/socket-io.ts): closed at the drain; their recovery state travels on the migration
 * channel as `carryName` (MigrationSender.carry).
 */
export interface ReconnectingServers {
  readonly carryName: string;
  readonly size: number;
  /** The server, if it is one (TypeError otherwise). */
  check(server: unknown): object;
  /** Register a checked server (once; again is a no-op). */
  add(server: object): void;
  /** ready(): a session a client brings back waits (bounded) for `arrived()`; `carriedSoFar()`: the states
   * merged so far, for parts created later. */
  awaitCarried(arrived: () => Promise<unknown>, carriedSoFar: () => unknown[]): void;
  /** An older generation's state arrived. */
  merge(state: unknown): void;
  /** The drain: close every connection; how many, and the state to carry on (null: none kept in memory). */
  closeAll(generation: number): Promise<{ closed: number; state: unknown }>;
}

export interface Integrations {
  drainer(server: net.Server, idleGraceMs: number): ListenerDrainer;
  /** Validates its arguments (TypeError) like the public webSocketServer() it backs. */
  webSocketServer(wss: unknown, options: unknown, context: MoverContext): ConnectionMover;
  serviceManager(options: ServiceOptions): ServiceManager;
  eventStreams(): EventStreamTracker;
  reconnectingServers(): ReconnectingServers;
}

let installed: Integrations | null = null;

/** Called once by src/integrations/index.ts. */
export function installIntegrations(integrations: Integrations): void {
  installed = integrations;
}

export function integrations(): Integrations {
  if (!installed) {
    throw batonError('ERR_BATON_STATE', "baton's integrations are not loaded: import Upgrader from the package entry");
  }
  return installed;
}
