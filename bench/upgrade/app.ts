/**
 * The server for the two baton approaches of `npm run bench:upgrade`, the same code in both:
 * - `baton run -- node dist/bench/upgrade/app.js` (supervised; `baton reload` upgrades it), and
 * - `BATON_SOCKET=… node dist/bench/upgrade/app.js` (standalone: starting it again takes over).
 * It prints `ready <generation> <pid>` on stdout once it serves; the benchmark waits for that line.
 */
import http from 'node:http';
import { Upgrader } from '../../src/index.js';
import { handler, portFromEnv } from './handler.js';

const upgrader = await Upgrader.start();
const server = http.createServer(handler);
await upgrader.listen(server, 'web', { port: portFromEnv(), host: '127.0.0.1' });
await upgrader.ready();
process.stdout.write(`ready ${upgrader.generation} ${process.pid}\n`);
