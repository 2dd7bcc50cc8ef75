/**
 * A generation's process as the supervisor starts and follows it: the environment it gets, its output
 * copied through (keeping the tail a rollback reports), and its exit reported once its output has ended.
 */
import { SD_LISTEN_ENV, SD_NOTIFY_ENV } from '../fd/systemd.js';
import type { Generation } from './generation.js';
import type { SupervisorProcess } from './process.js';

/** How much of a generation's output is kept for a rollback reason. */
const STDERR_TAIL = 4096;
/** How long a generation's stderr may lag behind its exit. */
const STDERR_GRACE_MS = 500;

type Exited = (code: number | null, signal: NodeJS.Signals | null) => void;

/** The environment of generation `generation`: the supervisor's, with where to find it. */
export function generationEnv(
  opts: { socket: string; logFormat: 'text' | 'json' },
  generation: number,
  supervisorPid: number,
  worker: { index: number; count: number } = { index: 0, count: 1 },
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    BATON_SOCKET: opts.socket,
    BATON_SUPERVISOR: String(supervisorPid),
    BATON_GENERATION: String(generation),
    BATON_LOG_FORMAT: opts.logFormat,
    // Its worker slot (upgrader.worker; docs/workers.md).
    BATON_WORKER: String(worker.index),
    BATON_WORKERS: String(worker.count),
  };
  // The supervisor is the service's main process: it alone talks to the service manager.
  for (const name of [...SD_NOTIFY_ENV, ...SD_LISTEN_ENV]) delete env[name];
  // A worker is never a node:cluster worker: with this variable (from a --config file's env, say) a worker
  // started as `node app.js` takes itself for one and its Upgrader.start() refuses (ERR_BATON_CLUSTER_WORKER).
  delete env.NODE_UNIQUE_ID;
  return env;
}

/**
 * Copy `g`'s stderr through (keeping its tail), and call `onExit` once it exited (`onChildExit` says how to
 * hear that: a ChildProcess's 'exit', or a pidfd for one adopted across a re-exec) and its stderr ended.
 * `label` (`[gen 3 w1] `, with N workers) starts each line copied through; the tail is kept without it.
 */
export function followOutput(
  os: SupervisorProcess,
  g: Generation,
  onChildExit: (exited: Exited) => void,
  onExit: Exited,
  label = '',
): void {
  const labelled = label ? lineLabeller(label) : null;
  g.stderr?.on('data', (chunk: Buffer) => {
    os.writeStderr(labelled ? labelled(chunk) : chunk);
    g.stderrTail = (g.stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL);
  });
  onChildExit((code, signal) => {
    // Its last output (the tail a rollback reports) may still be in the pipe: wait briefly for the end of stderr.
    const stderr = g.stderr;
    if (!stderr || stderr.readableEnded || stderr.destroyed) return onExit(code, signal);
    const done = () => {
      os.clearTimeout(timer);
      stderr.off('end', done);
      stderr.off('close', done);
      onExit(code, signal);
    };
    const timer = os.setTimeout(done, STDERR_GRACE_MS);
    stderr.once('end', done);
    stderr.once('close', done);
  });
}

/** `label` before each line of a stream that arrives in chunks (a line may span chunks: labelled once). */
export function lineLabeller(label: string): (chunk: Buffer) => Buffer {
  const prefix = Buffer.from(label);
  let atStart = true;
  return (chunk) => {
    const parts: Buffer[] = [];
    let from = 0;
    while (from < chunk.length) {
      if (atStart) parts.push(prefix);
      const nl = chunk.indexOf(0x0a, from);
      const to = nl === -1 ? chunk.length : nl + 1;
      parts.push(chunk.subarray(from, to));
      atStart = nl !== -1;
      from = to;
    }
    return Buffer.concat(parts);
  };
}
