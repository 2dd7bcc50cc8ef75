/**
 * A connection an older generation moved here (src/upgrader/migrate.ts): give it to whoever continues it —
 * the WebSocket server of its name (kind 'ws'), the HTTP server of its listener (kind 'http', as if accepted
 * here), or the app's 'migrated' handler (kind 'raw'). One that nobody here can continue is closed, and said.
 */
import type net from 'node:net';
import type { MigrationItem } from '../handoff/messages.js';
import type { ConnectionCensus } from './census.js';
import type { ConnectionMover, LogFn } from './integration.js';
import type { Listeners } from './listeners.js';

export interface ArrivalContext {
  log: LogFn;
  readonly movers: readonly ConnectionMover[];
  readonly census: ConnectionCensus;
  readonly listeners: Listeners;
  /** Does the app listen for 'migrated'? */
  hasMigratedListener(): boolean;
  emitMigrated(socket: net.Socket, state: unknown, pending: Buffer): void;
}

export function continueArrival(ctx: ArrivalContext, socket: net.Socket, item: MigrationItem, pending: Buffer): void {
  if (item.kind === 'ws') {
    const mover = ctx.movers.find((m) => m.kind === item.kind && m.name() === item.name);
    if (!mover) {
      const reason = 'a WebSocket arrived but no webSocketServer() is registered for it';
      ctx.log('warn', 'migrate-no-wss', { name: item.name, reason });
      socket.destroy();
      return;
    }
    try {
      ctx.census.addMovedWebSocket(socket);
      mover.continue(socket, item.state, pending);
    } catch (err) {
      ctx.log('warn', 'migrate-ws-failed', { reason: (err as Error).message });
      socket.destroy();
    }
    return;
  }
  if (item.kind === 'http') {
    const server = ctx.listeners.server(item.name);
    if (server) {
      // As if accepted here: the http server attaches its parser; 'connection' listeners run (not counted as
      // accepted: it was accepted by an older generation).
      ctx.listeners.arrived(socket);
      server.emit('connection', socket);
      if (pending.length) socket.emit('data', pending);
      return;
    }
    ctx.log('warn', 'migrate-no-server', { name: item.name });
    socket.destroy();
    return;
  }
  if (!ctx.hasMigratedListener()) {
    const reason = "a raw connection arrived but nothing listens for 'migrated'";
    ctx.log('warn', 'migrate-no-listener', { name: item.name, reason });
    socket.destroy();
    return;
  }
  // Counted as a connection of its listener, like one accepted here: this generation's drain waits for it
  // (the app moves it on in its 'drain' handler) instead of finishing — and exiting — without it.
  ctx.listeners.track(item.name, socket);
  ctx.emitMigrated(socket, item.state, pending);
}
