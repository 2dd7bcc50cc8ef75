/**
 * The "naive restart" server of `npm run bench:upgrade`: a plain node:http server. The restart is what
 * most deploy scripts do: SIGTERM → server.close() (stop accepting, finish what is in flight; since Node 19
 * idle keep-alive connections are closed at once) → exit, then start the next process, which binds the
 * port again. Between the old process closing its listener and the new one listening, the port is closed.
 * Prints `ready <pid>` on stdout once listening.
 */
import http from 'node:http';
import { handler, portFromEnv } from './handler.js';

const server = http.createServer(handler);
server.listen(portFromEnv(), '127.0.0.1', () => process.stdout.write(`ready ${process.pid}\n`));
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  // What a process manager does when a graceful stop takes too long (PM2's kill_timeout is 1.6 s).
  setTimeout(() => process.exit(1), 5000).unref();
});
