/**
 * The app of `npm run soak` (and test/soak.test.ts), run under `baton run`: one process serving
 *
 * - HTTP (node:http) on the listener 'web': `GET /` answers `ok <generation>`; `GET /stats` answers this
 *   generation's figures as JSON (below);
 * - WebSockets (`ws`) on the same server, moved to the next generation with upgrader.webSocketServer():
 *   each message from a client is `<client seq>`; the answer is `<server seq> <client seq>`, where the
 *   server seq is per-connection state that moves with the connection (save/restore). The client checks
 *   both numbers: a gap or a repeat in the server seq shows a lost or replayed answer (or lost state), one in
 *   the client seq a lost or duplicated message on the way in. The server checks the client seq too, and
 *   counts what is out of order in `wsOutOfOrder`;
 * - UDP (upgrader.bindDgram, 'echo'): every datagram is echoed back unchanged.
 *
 * PORT and UDP_PORT (default 0: generation 1 picks free ports, the next ones inherit them). Once it serves
 * it prints `soak generation G pid P http PORT udp PORT` on stdout (the supervisor's stdout).
 *
 * /stats: { pid, generation, fds, connections, rss, heapUsed, ws, httpConnections, wsOutOfOrder, udpEchoed,
 * atReady } where fds, connections, rss and heapUsed are measured now and `atReady` holds the same four
 * measured right after ready(). Connections are counted here (one fd each), so that `fds - connections` —
 * what the process holds apart from its connections — can be compared between any two moments: right after
 * ready() the previous generation's connections are usually still on their way, but not always.
 */
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { Upgrader } from '../../src/index.js';

export interface Footprint {
  /** Entries of /proc/self/fd (the directory listing's own fd excluded). */
  fds: number;
  /** Open TCP connections (accepted here or moved here): one fd each. */
  connections: number;
  rss: number;
  heapUsed: number;
}

export interface SoakStats extends Footprint {
  pid: number;
  generation: number;
  /** Open WebSockets. */
  ws: number;
  /** Connections the upgrader tracks on 'web' (HTTP keep-alive and WebSocket). */
  httpConnections: number;
  /** Client messages whose seq was not the one expected next, on this generation. */
  wsOutOfOrder: number;
  udpEchoed: number;
  atReady: Footprint | null;
}

/** What moves with a WebSocket: the next seq each side expects to send / receive. */
interface WsState {
  serverSeq: number;
  expectClientSeq: number;
}

const sockets = new Set<net.Socket>();

function trackSocket(socket: net.Socket): void {
  if (sockets.has(socket)) return;
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
}

function footprint(): Footprint {
  const m = process.memoryUsage();
  // readdirSync holds one fd of its own while it lists the directory.
  return {
    fds: fs.readdirSync('/proc/self/fd').length - 1,
    connections: sockets.size,
    rss: m.rss,
    heapUsed: m.heapUsed,
  };
}

const upgrader = await Upgrader.start();
const generation = upgrader.generation;
let atReady: Footprint | null = null;
let wsOutOfOrder = 0;
let udpEchoed = 0;

const server = http.createServer((req, res) => {
  if (req.url === '/stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(stats()));
    return;
  }
  res.end(`ok ${generation}\n`);
});
// Accepted here, or an HTTP connection moved here (the upgrader emits 'connection' for those too).
server.on('connection', trackSocket);
// permessage-deflate off (ws's server default, said explicitly): a compressed connection cannot move.
const wss = new WebSocketServer({ server, perMessageDeflate: false });
const states = new WeakMap<WebSocket, WsState>();

upgrader.webSocketServer(wss as unknown, {
  save: (ws) => states.get(ws as unknown as WebSocket),
  restore: (ws, saved) => states.set(ws as unknown as WebSocket, saved as WsState),
});

wss.on('connection', (ws: WebSocket, req: http.IncomingMessage & { migrated?: boolean }) => {
  if (req.migrated) trackSocket(req.socket);
  else states.set(ws, { serverSeq: 0, expectClientSeq: 0 });
  ws.on('message', (data) => {
    const s = states.get(ws)!;
    const seq = Number(String(data));
    if (seq !== s.expectClientSeq) wsOutOfOrder++;
    s.expectClientSeq = seq + 1;
    ws.send(`${s.serverSeq++} ${seq}`);
  });
});

function stats(): SoakStats {
  return {
    pid: process.pid,
    generation,
    ...footprint(),
    ws: wss.clients.size,
    httpConnections: upgrader.connections,
    wsOutOfOrder,
    udpEchoed,
    atReady,
  };
}

await upgrader.listen(server, 'web', { port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
const udp = await upgrader.bindDgram('echo', {
  type: 'udp4',
  port: Number(process.env.UDP_PORT ?? 0),
  address: '127.0.0.1',
});
// Attached right away: the socket receives from the moment it is bound (see bindDgram).
udp.on('message', (msg, rinfo) => {
  udpEchoed++;
  udp.send(msg, rinfo.port, rinfo.address);
});

await upgrader.ready();
atReady = footprint();
process.stdout.write(
  `soak generation ${generation} pid ${process.pid} http ${(server.address() as { port: number }).port} udp ` +
    `${udp.address().port}\n`,
);
