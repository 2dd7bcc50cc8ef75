/**
 * What a generation's open connections are, by kind — what a draining generation is waiting for, shown by
 * `baton status`: http (HTTP/1, https included), sse (an HTTP connection with an SSE stream in flight), ws
 * (upgraded: WebSocket, Socket.IO's websocket transport, any other upgrade), h2 (HTTP/2 sessions), raw
 * (connections of a plain net.Server, and raw connections moved here).
 */
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';

export type ConnectionKinds = Record<string, number>;

export interface CensusServer {
  object: unknown;
  sockets: Iterable<net.Socket> | null;
  connections: number;
}

export class ConnectionCensus {
  #upgraded = new WeakSet<net.Socket>();
  /** WebSockets moved here: not connections of any listener's drainer. */
  #movedWs = new Set<net.Socket>();

  /** Remember which of `server`'s connections were upgraded. */
  attach(server: http.Server): void {
    server.prependListener('upgrade', (req: http.IncomingMessage) => this.#upgraded.add(req.socket));
  }

  /** A WebSocket moved here (it belongs to no listener's drainer): count it until it closes. */
  addMovedWebSocket(socket: net.Socket): void {
    this.#movedWs.add(socket);
    socket.once('close', () => this.#movedWs.delete(socket));
  }

  /** WebSockets moved here and open: connections of this generation that no listener's drainer counts. */
  get movedWebSockets(): number {
    return this.#movedWs.size;
  }

  count(servers: Iterable<CensusServer>, sse: ReadonlySet<net.Socket>): ConnectionKinds {
    const kinds: ConnectionKinds = {};
    const add = (k: string, n = 1) => {
      if (n > 0) kinds[k] = (kinds[k] ?? 0) + n;
    };
    for (const s of servers) {
      if (!s.sockets) {
        // HTTP/2: sessions, not sockets, are what it tracks.
        add('h2', s.connections);
        continue;
      }
      if (!(s.object instanceof http.Server || s.object instanceof https.Server)) {
        // Every connection of a plain net.Server is raw: counted, not walked (the walk copied the set into an
        // array, 10,000 entries at the drain of a generation moving 10,000 raw connections).
        add('raw', s.connections);
        continue;
      }
      for (const socket of s.sockets) {
        if (this.#upgraded.has(socket)) add('ws');
        else if (sse.has(socket)) add('sse');
        else add('http');
      }
    }
    add('ws', this.#movedWs.size);
    return kinds;
  }
}

/** "sse 20, http 1" */
export function formatKinds(kinds: ConnectionKinds | undefined): string {
  const parts = Object.entries(kinds ?? {})
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`);
  return parts.length ? parts.join(', ') : 'nothing';
}
