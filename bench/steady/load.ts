/**
 * One measuring round of `npm run bench:steady`, as its own process (spawned; no IPC) so that the driver
 * never shares an event loop with the client: a warm-up, then `measureMs` of load with scripts/lib/http-load.ts
 * (every request accounted for: sent = ok + non2xx + errors), then one JSON line on stdout (RoundResult).
 *
 *   argv: <port> <connections> <warmupMs> <measureMs> <keepalive|close> [path (/)] [a header to count answers by]
 *
 * (bench/workers/run.ts passes a path and `x-worker`: its servers name the worker pid that answered.)
 */
import { percentile, startLoad, type LoadResult } from '../../scripts/lib/http-load.js';

type Counters =
  | 'sent'
  | 'ok'
  | 'non2xx'
  | 'errors'
  | 'errorCodes'
  | 'socketsOpened'
  | 'durationMs'
  | 'byHeader'
  | 'socketsByHeader';

export interface RoundResult extends Pick<LoadResult, Counters> {
  /** Answered requests (any status) per second of the measured phase. */
  reqPerSec: number;
  p50: number;
  p99: number;
}

async function main(): Promise<void> {
  const [portArg, connArg, warmArg, measureArg, mode, urlPath, countHeader] = process.argv.slice(2);
  if (mode !== 'keepalive' && mode !== 'close') throw new Error(`mode must be keepalive or close, got ${mode}`);
  const keepAlive = mode === 'keepalive';
  const base = { port: Number(portArg), connections: Number(connArg), keepAlive, timeoutMs: 10_000, path: urlPath };
  // Warm-up: the server's JIT and the client's both settle; its requests are not counted.
  await startLoad({ ...base, durationMs: Number(warmArg) }).done;
  const r = await startLoad({ ...base, durationMs: Number(measureArg), countHeader }).done;
  const answered = r.ok + r.non2xx;
  const out: RoundResult = {
    sent: r.sent,
    ok: r.ok,
    non2xx: r.non2xx,
    errors: r.errors,
    errorCodes: r.errorCodes,
    socketsOpened: r.socketsOpened,
    durationMs: r.durationMs,
    byHeader: r.byHeader,
    socketsByHeader: r.socketsByHeader,
    reqPerSec: answered / (r.durationMs / 1000),
    p50: percentile(r.latenciesMs, 50),
    p99: percentile(r.latenciesMs, 99),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
