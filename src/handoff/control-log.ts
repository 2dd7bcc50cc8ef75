/**
 * Logging for what a control socket's server reports on its own — connections dropped at its
 * `maxChannels` limit, accept errors (EMFILE near RLIMIT_NOFILE) — used by the handoff server (server.ts),
 * so by the supervisor and the standalone host alike. Both come in bursts (a peer opening connections in a
 * loop; an accept loop that retries every 100 ms while the fd table is full), so each kind is logged at most
 * once per second: the first occurrence at once, then one line per second with the count, while the burst
 * lasts.
 */
import type { DropInfo, FdChannelServer } from '../fd/channel-server.js';

/** How the handoff layer logs (the upgrader's Logger fits it): level, event, fields. */
export type LogFn = (
  level: 'info' | 'warn' | 'error',
  event: string,
  fields: Record<string, string | number | boolean | null | undefined>,
) => void;

const WINDOW_MS = 1000;

/** Calls `emit(1)` for the first event of a burst, then, once per window while the burst lasts, `emit(n)` with
 * how many came in that window. */
class Burst {
  #timer: NodeJS.Timeout | null = null;
  #count = 0;
  readonly #emit: (count: number) => void;

  constructor(emit: (count: number) => void) {
    this.#emit = emit;
  }

  add(): void {
    if (this.#timer) {
      this.#count++;
      return;
    }
    this.#emit(1);
    this.#arm();
  }

  #arm(): void {
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (this.#count === 0) return;
      const n = this.#count;
      this.#count = 0;
      this.#emit(n);
      this.#arm();
    }, WINDOW_MS);
    // A burst being logged never keeps the process alive.
    this.#timer.unref();
  }
}

/** Log `server`'s 'drop' events as `control-dropped` and its 'error' events as `control-accept-error`,
 * each at most once per second (`count`: how many since the previous line). */
export function logControlServer(server: FdChannelServer, log: LogFn): void {
  let lastDrop: DropInfo | null = null;
  const drops = new Burst((count) =>
    log('warn', 'control-dropped', {
      count,
      peer: lastDrop?.peer?.pid ?? null,
      reason:
        `the control socket already has ${server.maxChannels} connections open, the most it keeps: new ones ` +
        `are refused and closed`,
    }),
  );
  let lastError: Error | null = null;
  const errors = new Burst((count) =>
    log('warn', 'control-accept-error', { count, reason: lastError?.message ?? null }),
  );
  server.on('drop', (info) => {
    lastDrop = info;
    drops.add();
  });
  server.on('error', (err) => {
    lastError = err;
    errors.add();
  });
}
