/**
 * The same application (bench/workers/serve.ts) as a plain Node server, for the two columns of
 * `npm run bench:workers` that are not baton: each node:cluster worker of bench/upgrade/cluster.ts imports it
 * (WORKER_MODULE), and PM2 runs it in cluster mode (`-i 2`). Both stop a worker with a signal — PM2 with
 * SIGINT, the cluster primary here with SIGTERM — then kill it if it is not gone after 1.6 s (PM2's default
 * kill_timeout). On either signal it shuts down the way PM2's documentation asks of an app: stop accepting
 * and finish in-flight requests (`server.close()`, which since Node 19 also closes idle keep-alive
 * connections), and close each WebSocket with 1012 (Service Restart) so that clients know to reconnect
 * rather than wait for the kill. Prints `worker <pid> listening` once it listens.
 */
import { portFromEnv } from '../upgrade/handler.js';
import { createApp } from './serve.js';

const { server, wss } = createApp();
server.listen(portFromEnv(), '127.0.0.1', () => process.stdout.write(`worker ${process.pid} listening\n`));

let stopping = false;
const shutdown = () => {
  if (stopping) return;
  stopping = true;
  for (const ws of wss.clients) ws.close(1012, 'Service Restart');
  server.close(() => process.exit(0));
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
