/**
 * start(): which mode this generation runs in, from the environment and options, and what it joins.
 * - supervised: under `baton run` (BATON_SUPERVISOR and BATON_SOCKET are set).
 * - standalone: a control socket path (option `socket` or BATON_SOCKET) without a supervisor.
 * - plain: neither.
 */
import cluster from 'node:cluster';
import path from 'node:path';
import { FdChannelServer } from '../../fd/channel-server.js';
import { argTypeError, batonError } from '../../fd/errors.js';
import { GenerationClient } from '../../handoff/client.js';
import { CONTROL_CHANNEL_LIMITS } from '../../handoff/messages.js';
import { checkSocketDir } from '../../handoff/peer.js';
import type { GenerationMode } from './mode.js';
import { PlainMode } from './plain.js';
import { RESERVED, StandaloneMode } from './standalone.js';
import { SupervisedMode } from './supervised.js';

/** What start() found: the mode and what it joined. */
export interface Opened {
  mode: GenerationMode;
  generation: number;
  client: GenerationClient | null;
  socketPath: string | null;
  worker: WorkerSlot;
}

/** A process's worker slot: `index` of `count` workers per generation (docs/workers.md). */
export interface WorkerSlot {
  index: number;
  count: number;
}

export async function openMode(socketOption: unknown, readyTimeout: number): Promise<Opened> {
  const env = process.env;
  const supervised = !!env.BATON_SUPERVISOR && !!env.BATON_SOCKET;
  const socketPath = supervised ? env.BATON_SOCKET! : (socketOption ?? env.BATON_SOCKET ?? null);
  if (socketPath !== null && typeof socketPath !== 'string') {
    throw argTypeError('options.socket', 'a path string', socketPath);
  }
  if (socketPath && cluster.isWorker) throw clusterWorker();
  if (supervised) return { ...(await openSupervised(path.resolve(socketPath!))), worker: workerSlot(env) };
  if (socketPath) return { ...(await openStandalone(socketPath, readyTimeout)), worker: ONE_WORKER };
  return { mode: new PlainMode(), generation: 1, client: null, socketPath: null, worker: ONE_WORKER };
}

const ONE_WORKER: WorkerSlot = Object.freeze({ index: 0, count: 1 });

/**
 * This process was forked by node:cluster (cluster.isWorker: the primary set NODE_UNIQUE_ID, which Node removes
 * from process.env before the app runs, so only the cluster module can tell): joining the handoff from here
 * would make each cluster worker look like a new generation to the supervisor (or the serving process) and
 * take its sockets. baton runs the workers itself.
 */
function clusterWorker(): Error {
  return batonError(
    'ERR_BATON_CLUSTER_WORKER',
    'Upgrader.start() in a node:cluster worker: under baton, let baton run the workers ' +
      '(baton run --workers N, docs/workers.md) instead of forking them with node:cluster',
  );
}

/** The slot `baton run` gave this worker (BATON_WORKER of BATON_WORKERS); one worker when a supervisor
 * older than these variables set neither. */
function workerSlot(env: NodeJS.ProcessEnv): WorkerSlot {
  if (env.BATON_WORKER === undefined && env.BATON_WORKERS === undefined) return ONE_WORKER;
  const index = Number(env.BATON_WORKER);
  const count = Number(env.BATON_WORKERS);
  if (!Number.isInteger(index) || !Number.isInteger(count) || index < 0 || count < 1 || index >= count) {
    throw batonError(
      'ERR_BATON_PROTOCOL',
      `the supervisor gave no valid worker slot: BATON_WORKER=${env.BATON_WORKER} BATON_WORKERS=${env.BATON_WORKERS}`,
    );
  }
  return Object.freeze({ index, count });
}

async function openSupervised(resolved: string): Promise<Omit<Opened, 'worker'>> {
  // The supervisor checked the socket's directory. It reads this process's stderr (for the crash-output
  // tail `baton reload` reports). If the supervisor dies, writes to that pipe fail with EPIPE; the
  // generation must keep serving, not crash.
  process.stderr.on('error', ignoreEpipe);
  const generation = Number(process.env.BATON_GENERATION) || undefined;
  const client = await GenerationClient.join(resolved, generation ? { generation } : {});
  return { mode: new SupervisedMode(), generation: client.generation, client, socketPath: resolved };
}

async function openStandalone(socketPath: string, readyTimeout: number): Promise<Omit<Opened, 'worker'>> {
  // The directory is checked (and a shared sticky one like /tmp swapped for a private subdirectory)
  // before anything listens or connects there.
  const resolved = checkSocketDir(socketPath);
  const client = await joinServing(resolved, readyTimeout);
  if (!client) {
    // The first generation: claim the control socket now, so a second process started too early gets
    // a clear "not ready yet" refusal instead of binding the same ports.
    const control = await FdChannelServer.listen(resolved, CONTROL_CHANNEL_LIMITS);
    return { mode: new StandaloneMode(control, true), generation: 1, client: null, socketPath: resolved };
  }
  let control: FdChannelServer | null = null;
  try {
    const taken = client.take(RESERVED, 'control', { path: resolved }); // throws if the fd is not a Unix listener
    if (taken) control = FdChannelServer.fromFd(taken.fd, resolved, { ...CONTROL_CHANNEL_LIMITS, paused: true });
  } catch (err) {
    client.close();
    throw err;
  }
  return { mode: new StandaloneMode(control, false), generation: client.generation, client, socketPath: resolved };
}

function ignoreEpipe(err: NodeJS.ErrnoException): void {
  if (err.code !== 'EPIPE') throw err;
}

/**
 * Standalone: join the generation serving on `socketPath`, or null when there is none (no socket, or nobody
 * listening on it). One that closes the connection before its welcome is asked again: if it died in the
 * middle of the handshake, the socket soon refuses and this process starts as the first generation instead
 * of failing — otherwise nothing would serve (found by the fault matrix: generation 1 SIGKILLed right after
 * its successor's hello). A few attempts, because a dying process closes its connections and its listener
 * one at a time: a retry can still be queued on the listener that is about to close. A live generation
 * answers a retry as it answered the first attempt.
 */
async function joinServing(socketPath: string, timeoutMs: number): Promise<GenerationClient | null> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await GenerationClient.join(socketPath, { timeoutMs });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ECONNREFUSED') return null;
      if (!JOIN_RETRY.has(code ?? '') || attempt >= JOIN_ATTEMPTS) throw err;
      await new Promise((r) => setTimeout(r, 50 * attempt));
    }
  }
}

const JOIN_ATTEMPTS = 4;
/** The serving side closed the connection (or died) before its welcome. */
const JOIN_RETRY = new Set(['ERR_BATON_HANDOFF_FAILED', 'EPIPE', 'ECONNRESET']);
