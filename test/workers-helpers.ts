/**
 * Helpers for the `baton run --workers N` tests (workers-run, workers-traffic, workers-rolling, workers-scale): which
 * worker answers fresh connections (test/fixtures/worker-app.ts answers with its pid and index), the serving
 * workers' pids, how many app processes run at once, and the check that a keep-alive load through reloads counted
 * every request and failed none.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { LoadResult } from '../scripts/lib/http-load.js';
import { FIXTURES } from './helpers.js';
import { get, type Supervised } from './upgrade-helpers.js';

export const WORKER_APP = path.join(FIXTURES, 'worker-app.js');

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

/** The pid answering for each worker index, over `n` fresh connections (the last seen, if several). */
export async function pidByWorker(port: number, n: number): Promise<Map<number, Set<number>>> {
  const out = new Map<number, Set<number>>();
  for (let i = 0; i < n; i++) {
    const { status, body } = await get(port);
    assert.equal(status, 200);
    const [pid, index] = body.split(' ').map(Number) as [number, number];
    out.set(index, (out.get(index) ?? new Set()).add(pid));
  }
  return out;
}

/** The pids of the serving workers, as `baton status` lists them. */
export async function servingPids(s: Supervised): Promise<number[]> {
  return (await s.serving()).map((g) => g.pid).sort((a, b) => a - b);
}

/** Live (not zombie) children of `parent`: the supervisor's app processes. */
export function childrenOf(parent: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(ppid) === parent && state !== 'Z') out.push(Number(name));
  }
  return out;
}

/** Sample how many app processes run at once, every few ms, until stop(): returns the most seen. */
export function sampleChildren(parent: number): { stop(): number } {
  let most = childrenOf(parent).length;
  const timer = setInterval(() => {
    most = Math.max(most, childrenOf(parent).length);
  }, 5);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(most, childrenOf(parent).length);
    },
  };
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
