/**
 * Helpers for the `baton run --workers N` tests (workers-run, workers-traffic): which worker answers fresh
 * connections (test/fixtures/worker-app.ts answers with its pid), the serving workers' pids, and the check that a
 * keep-alive load through reloads counted every request and failed none.
 */
import assert from 'node:assert/strict';
import type { LoadResult } from '../scripts/lib/http-load.js';
import { get, type Supervised } from './upgrade-helpers.js';

/** Which worker pids answer `n` fresh connections, with how many each. */
export async function servedBy(port: number, n: number): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const { status, body } = await get(port);
    assert.equal(status, 200);
    const pid = Number(body.split(' ')[0]);
    counts.set(pid, (counts.get(pid) ?? 0) + 1);
  }
  return counts;
}

/** The pids of the serving workers, as `baton status` lists them. */
export async function servingPids(s: Supervised): Promise<number[]> {
  return (await s.serving()).map((g) => g.pid).sort((a, b) => a - b);
}

/** Every request of `result` counted (sent = ok + non-2xx + errors), some sent, none failed. */
export function assertNoFailedRequests(result: LoadResult): void {
  assert.equal(result.sent, result.ok + result.non2xx + result.errors, 'every request counted');
  assert.ok(result.ok > 0, 'requests were served');
  assert.deepEqual(
    { non2xx: result.non2xx, errors: result.errors },
    { non2xx: 0, errors: 0 },
    JSON.stringify(result.errorCodes),
  );
}
