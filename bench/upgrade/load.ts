/**
 * The load generator of `npm run bench:upgrade`, run as its own process (forked with an IPC channel) so the
 * benchmark driver's spawning and waiting never stalls the client's event loop.
 *
 *   argv: <mode> <port> <connections> [pauseMs]     mode: count | autocannon
 *
 * - count: scripts/lib/http-load.ts — every request accounted for (sent = ok + non2xx + errors) and recorded
 *   as [tMs, latencyMs, status] (tMs: completion, from startedAt; status 0: an error).
 * - autocannon: autocannon with the same number of keep-alive connections, for throughput (req/s). Its
 *   counters are what autocannon reports; it does not retry or account for a request that was in flight on
 *   a connection the server closed, so it cannot show "zero failed requests" the way `count` can.
 *
 * Messages: child → parent { type: 'started', startedAt } then, after the parent sends 'stop',
 * { type: 'result', ... }.
 */
import { startLoad, type LoadResult } from '../../scripts/lib/http-load.js';

export interface AutocannonSummary {
  durationS: number;
  sent: number;
  completed: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  resets: number;
  reqPerSec: number;
  p50: number;
  p99: number;
}

export type LoadMessage =
  | { type: 'started'; startedAt: number }
  | { type: 'result'; count?: LoadResult; autocannon?: AutocannonSummary }
  | { type: 'error'; message: string };

interface AutocannonResult {
  duration: number;
  requests: { sent: number; total: number; average: number };
  latency: { p50: number; p99: number };
  errors: number;
  timeouts: number;
  resets: number;
  non2xx: number;
  '2xx': number;
}
interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  stop(): void;
  on(event: 'done', fn: (r: AutocannonResult) => void): void;
}
type AutocannonFn = (
  opts: Record<string, unknown>,
  cb: (err: Error | null, r: AutocannonResult) => void,
) => AutocannonInstance;

const send = (msg: LoadMessage, then?: () => void) => process.send!(msg, undefined, {}, () => then?.());
/** The last message: sent, then the channel closes and the process exits. */
const finish = (msg: LoadMessage) => send(msg, () => process.disconnect());

async function main(): Promise<void> {
  const [mode, portArg, connArg, pauseArg] = process.argv.slice(2);
  const pauseMs = Number(pauseArg ?? 0);
  const port = Number(portArg);
  const connections = Number(connArg);
  if (mode === 'count') {
    const load = startLoad({ port, connections, record: true, timeoutMs: 10_000, pauseMs });
    send({ type: 'started', startedAt: load.result.startedAt });
    process.on('message', async () => {
      const count = await load.stop();
      finish({ type: 'result', count });
    });
    return;
  }
  if (mode === 'autocannon') {
    const name = 'autocannon'; // a variable: there are no types for it, and it is optional
    const mod = (await import(name)) as { default: AutocannonFn };
    let resolveDone!: (r: AutocannonResult) => void;
    const done = new Promise<AutocannonResult>((r) => (resolveDone = r));
    const startedAt = Date.now();
    const instance = mod.default(
      { url: `http://127.0.0.1:${port}/`, connections, duration: 3600, timeout: 10 },
      (err, r) => {
        if (err) {
          send({ type: 'error', message: err.message }, () => process.exit(1));
          return;
        }
        resolveDone(r);
      },
    );
    send({ type: 'started', startedAt });
    process.on('message', async () => {
      instance.stop();
      const r = await done;
      finish({
        type: 'result',
        autocannon: {
          durationS: r.duration,
          sent: r.requests.sent,
          completed: r.requests.total,
          ok2xx: r['2xx'],
          non2xx: r.non2xx,
          errors: r.errors,
          timeouts: r.timeouts,
          resets: r.resets,
          reqPerSec: r.requests.total / r.duration,
          p50: r.latency.p50,
          p99: r.latency.p99,
        },
      });
    });
    return;
  }
  throw new Error(`unknown mode ${mode}`);
}

main().catch((err: Error) => {
  send({ type: 'error', message: err.stack ?? err.message }, () => process.exit(1));
});
