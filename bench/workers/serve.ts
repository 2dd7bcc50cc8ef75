/**
 * The application every server of `npm run bench:workers` runs, whatever runs it (baton, a node:cluster worker,
 * PM2): an HTTP handler and a `ws` echo server on one http.Server.
 *
 * - Every HTTP answer carries `x-worker: <pid>`, so the client can count the requests each worker served.
 * - `GET /cpu` burns about a millisecond of CPU first (CPU_ROUNDS of SHA-256 over 1 KiB: a CPU-bound handler);
 *   anything else answers at once (the handler of bench/upgrade/handler.ts, plus the header).
 * - A WebSocket message `<n>` is answered with `<n> <count>`: `count` is how many messages this connection had
 *   echoed, per-connection state that must survive a reload for a connection to be really kept.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import { type WebSocket, WebSocketServer } from 'ws';
import { handler } from '../upgrade/handler.js';

/** SHA-256 rounds per /cpu request: about 1 ms on the 2-CPU machine of docs/performance.md. */
export const CPU_ROUNDS = 400;
const BLOCK = crypto.randomBytes(1024);

export interface EchoState {
  echoed: number;
}

export interface App {
  server: http.Server;
  wss: WebSocketServer;
  /** Each open WebSocket's echo state (`upgrader.webSocketServer`'s save/restore move it). */
  state: WeakMap<WebSocket, EchoState>;
}

function burn(): string {
  let digest: Buffer = BLOCK;
  for (let i = 0; i < CPU_ROUNDS; i++) digest = crypto.createHash('sha256').update(BLOCK).update(digest).digest();
  return digest.toString('hex', 0, 4);
}

export function createApp(): App {
  const server = http.createServer((req, res) => {
    res.setHeader('x-worker', String(process.pid));
    if (req.url === '/cpu') {
      res.setHeader('content-type', 'text/plain');
      res.end(`${burn()} from ${process.pid}\n`);
    } else handler(req, res);
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  const state = new WeakMap<WebSocket, EchoState>();
  wss.on('connection', (ws: WebSocket, req: http.IncomingMessage & { migrated?: boolean }) => {
    // A migrated connection had its state restored already (save/restore); a new one starts at 0.
    if (!req.migrated) state.set(ws, { echoed: 0 });
    ws.on('message', (data) => {
      const s = state.get(ws)!;
      s.echoed++;
      ws.send(`${String(data)} ${s.echoed}`);
    });
  });
  return { server, wss, state };
}
