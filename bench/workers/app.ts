/**
 * The baton server of `npm run bench:workers`: bench/workers/serve.ts under an Upgrader, run by
 * `baton run --workers N -- node app.js` (every worker runs this same file). Its WebSockets move to the next
 * generation with their echo counts (`upgrader.webSocketServer` with save/restore), its keep-alive connections
 * with the upgrader's HTTP migration. Prints `ready <generation> <pid> <worker index>` once it serves.
 */
import type { WebSocket } from 'ws';
import { Upgrader } from '../../src/index.js';
import { portFromEnv } from '../upgrade/handler.js';
import { createApp, type EchoState } from './serve.js';

const upgrader = await Upgrader.start();
const { server, wss, state } = createApp();
upgrader.webSocketServer(wss as unknown, {
  save: (ws) => state.get(ws as unknown as WebSocket),
  restore: (ws, saved) => state.set(ws as unknown as WebSocket, saved as EchoState),
});
await upgrader.listen(server, 'web', { port: portFromEnv(), host: '127.0.0.1' });
await upgrader.ready();
process.stdout.write(`ready ${upgrader.generation} ${process.pid} ${upgrader.worker.index}\n`);
