/**
 * The `cluster` approach of `npm run bench:upgrade`: a Node cluster primary with WORKERS (default 2)
 * workers serving the same handler, and the rolling restart PM2 and most hand-written setups do, on SIGHUP:
 * one worker at a time, fork a replacement, wait for its 'listening', then disconnect the old one (it stops
 * accepting, finishes what is in flight and exits) and wait for it to exit — killing it after KILL_TIMEOUT_MS
 * (1600 ms, PM2's default kill_timeout) — before the next worker. The primary owns the listening socket and
 * hands connections to the workers round-robin (Node's default on Linux).
 *
 * Prints `ready <pid>` once every worker listens and `restarted <ms>` after each rolling restart.
 *
 * `npm run bench:workers` runs it with WORKER_MODULE (a module each worker imports instead of serving the
 * handler here: bench/workers/plain-app.ts) and STOP_SIGNAL (stop an old worker with this signal, as PM2 does,
 * instead of `disconnect()`, so that the app's own shutdown can close its WebSockets).
 */
import cluster, { type Worker } from 'node:cluster';
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { handler, portFromEnv } from './handler.js';

const WORKERS = Number(process.env.WORKERS ?? 2);
const KILL_TIMEOUT_MS = 1600;
const STOP_SIGNAL = process.env.STOP_SIGNAL as NodeJS.Signals | undefined;

if (cluster.isPrimary) {
  const fork = () =>
    new Promise<Worker>((resolve, reject) => {
      const w = cluster.fork();
      const onExit = (code: number) => reject(new Error(`worker ${w.process.pid} exited (${code}) before listening`));
      w.once('exit', onExit);
      w.once('listening', () => {
        w.off('exit', onExit);
        resolve(w);
      });
    });
  const stop = (w: Worker) =>
    new Promise<void>((resolve) => {
      if (w.isDead()) return resolve();
      const timer = setTimeout(() => w.process.kill('SIGKILL'), KILL_TIMEOUT_MS);
      w.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      if (STOP_SIGNAL) w.process.kill(STOP_SIGNAL);
      else w.disconnect();
    });

  const workers = await Promise.all(Array.from({ length: WORKERS }, fork));
  process.stdout.write(`ready ${process.pid}\n`);

  let rolling: Promise<void> | null = null;
  const roll = async () => {
    const started = performance.now();
    for (let i = 0; i < workers.length; i++) {
      const next = await fork();
      const old = workers[i]!;
      workers[i] = next;
      await stop(old);
    }
    process.stdout.write(`restarted ${(performance.now() - started).toFixed(1)}\n`);
  };
  process.on('SIGHUP', () => {
    rolling ??= roll()
      .catch((err: Error) => {
        process.stderr.write(`rolling restart failed: ${err.message}\n`);
      })
      .finally(() => (rolling = null));
  });
  process.on('SIGTERM', () => {
    void Promise.all(workers.map(stop)).then(() => process.exit(0));
    setTimeout(() => process.exit(1), 5000).unref();
  });
} else if (process.env.WORKER_MODULE) {
  await import(pathToFileURL(process.env.WORKER_MODULE).href);
} else {
  http.createServer(handler).listen(portFromEnv(), '127.0.0.1');
}
