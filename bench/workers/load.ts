/**
 * The client of one reload phase of `npm run bench:workers`, as its own process (spawned, no IPC) so that it
 * never shares an event loop with the driver that reloads: a WebSocket set (bench/workers/ws-set.ts) plus
 * keep-alive HTTP load (scripts/lib/http-load.ts: every request accounted for, sent = ok + non-2xx + errors,
 * each answer counted by the worker pid in its `x-worker` header). It prints `started` once every WebSocket
 * is open and the load runs; on `stop` (a line on stdin) it stops both, waits for the answers still due, and
 * prints one JSON line (PhaseResult).
 *
 *   argv: <port> <http connections> <websockets> <ws period ms>
 */
import readline from 'node:readline';
import { startLoad, type LoadResult } from '../../scripts/lib/http-load.js';
import { startWsSet, type WsSetResult } from './ws-set.js';

type Counters = 'sent' | 'ok' | 'non2xx' | 'errors' | 'errorCodes' | 'socketsOpened' | 'durationMs' | 'byHeader';

export interface PhaseResult {
  http: Pick<LoadResult, Counters>;
  ws: WsSetResult;
}

/** How long the WebSockets get to answer what is still due after the load stops. */
const SETTLE_MS = 3000;

async function main(): Promise<void> {
  const [port, connections, websockets, periodMs] = process.argv.slice(2).map(Number) as [
    number,
    number,
    number,
    number,
  ];
  const ws = await startWsSet(port, websockets, periodMs);
  const load = startLoad({ port, connections, timeoutMs: 10_000, countHeader: 'x-worker' });
  process.stdout.write('started\n');
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) if (line.trim() === 'stop') break;
  const [h, w] = await Promise.all([load.stop(), ws.stop(SETTLE_MS)]);
  const { sent, ok, non2xx, errors, errorCodes, socketsOpened, durationMs, byHeader } = h;
  const out: PhaseResult = {
    http: { sent, ok, non2xx, errors, errorCodes, socketsOpened, durationMs, byHeader },
    ws: w,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
