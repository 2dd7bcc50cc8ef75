/**
 * A load generator that accounts for every request: `sent = ok + non2xx + errors`, always. Each of
 * `connections` loops sends one request at a time over a keep-alive http.Agent (or, with `keepAlive: false`,
 * each on a connection of its own) and records the outcome and latency. (autocannon is faster but silently drops
 * requests in flight when a server closes a connection,
 * so it cannot prove "zero failed requests"; this can.) Used by the tests, the upgrade benchmark and npm start.
 */
import http from 'node:http';
import https from 'node:https';

export interface LoadOptions {
  host?: string;
  port: number;
  path?: string;
  connections: number;
  /** Stop after this many ms (the loops finish their current request). */
  durationMs?: number;
  /** Pause between a loop's requests, in ms (0: back to back). */
  pauseMs?: number;
  /** Per-request timeout, ms. */
  timeoutMs?: number;
  /** Record every request's [startMs, latencyMs, status] (for charts). */
  record?: boolean;
  /** Speak HTTPS with these TLS options for the agent (e.g. `{ ca }` to trust a test certificate). */
  tls?: https.AgentOptions;
  /** false: every request on a new connection, sent with `Connection: close` (default true: keep-alive). */
  keepAlive?: boolean;
  /** Count answers by the value of this response header (e.g. the pid of the worker that served it): `byHeader`. */
  countHeader?: string;
}

export interface LoadResult {
  sent: number;
  ok: number;
  non2xx: number;
  errors: number;
  errorCodes: Record<string, number>;
  /** Distinct TCP connections the client opened. */
  socketsOpened: number;
  latenciesMs: number[];
  samples: Array<[number, number, number]>;
  /** Answers per value of `countHeader` (`''` when an answer lacks it); empty without `countHeader`. */
  byHeader: Record<string, number>;
  /** Connections per value of `countHeader` in the first answer each one carried (e.g. connections per worker). */
  socketsByHeader: Record<string, number>;
  startedAt: number;
  durationMs: number;
}

export interface Load {
  /** Live counters. */
  readonly result: LoadResult;
  /** Ask the loops to stop; resolves when every request in flight has finished. */
  stop(): Promise<LoadResult>;
  done: Promise<LoadResult>;
}

export function startLoad(opts: LoadOptions): Load {
  const keepAlive = opts.keepAlive ?? true;
  const agentOpts = { keepAlive, maxSockets: opts.connections, maxFreeSockets: opts.connections };
  const headers = keepAlive ? undefined : { connection: 'close' };
  const agent = opts.tls ? new https.Agent({ ...opts.tls, ...agentOpts }) : new http.Agent(agentOpts);
  const request = opts.tls ? https.request : http.request;
  const startedAt = Date.now();
  const result: LoadResult = {
    sent: 0,
    ok: 0,
    non2xx: 0,
    errors: 0,
    errorCodes: {},
    socketsOpened: 0,
    latenciesMs: [],
    samples: [],
    byHeader: {},
    socketsByHeader: {},
    startedAt,
    durationMs: 0,
  };
  let stopping = false;
  const seen = new WeakSet<object>();
  const attributed = new WeakSet<object>();
  const deadline = opts.durationMs ? setTimeout(() => (stopping = true), opts.durationMs) : null;

  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      result.sent++;
      let socket: object | null = null;
      const req = request(
        {
          host: opts.host ?? '127.0.0.1',
          port: opts.port,
          path: opts.path ?? '/',
          agent,
          headers,
          timeout: opts.timeoutMs ?? 10_000,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            const ms = performance.now() - t0;
            if (res.statusCode! >= 200 && res.statusCode! < 300) result.ok++;
            else result.non2xx++;
            result.latenciesMs.push(ms);
            if (opts.record) result.samples.push([Date.now() - startedAt, ms, res.statusCode!]);
            if (opts.countHeader) {
              const v = String(res.headers[opts.countHeader] ?? '');
              result.byHeader[v] = (result.byHeader[v] ?? 0) + 1;
              if (socket && !attributed.has(socket)) {
                attributed.add(socket);
                result.socketsByHeader[v] = (result.socketsByHeader[v] ?? 0) + 1;
              }
            }
            resolve();
          });
          res.on('error', fail);
        },
      );
      req.on('socket', (s) => {
        socket = s;
        if (!seen.has(s)) {
          seen.add(s);
          result.socketsOpened++;
        }
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', fail);
      req.end();
      let failed = false;
      function fail(err: NodeJS.ErrnoException) {
        if (failed) return;
        failed = true;
        result.errors++;
        const code = err.code ?? err.message;
        result.errorCodes[code] = (result.errorCodes[code] ?? 0) + 1;
        if (opts.record) result.samples.push([Date.now() - startedAt, performance.now() - t0, 0]);
        resolve();
      }
    });

  const loop = async () => {
    while (!stopping) {
      await one();
      if (opts.pauseMs) await new Promise((r) => setTimeout(r, opts.pauseMs));
    }
  };
  const done = Promise.all(Array.from({ length: opts.connections }, loop)).then(() => {
    if (deadline) clearTimeout(deadline);
    agent.destroy();
    result.durationMs = Date.now() - startedAt;
    return result;
  });
  return {
    result,
    done,
    stop() {
      stopping = true;
      return done;
    },
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
