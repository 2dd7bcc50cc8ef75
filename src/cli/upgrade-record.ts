/** One start, reload, respawn or takeover and its outcome: kept by the supervisor (supervisor.ts), counted by
 * tallies.ts, shown by `baton status`. Its own module, so that tallies.ts need not import supervisor.ts (a cycle). */
export interface UpgradeRecord {
  generation: number;
  pid: number;
  kind: 'start' | 'reload' | 'respawn' | 'takeover';
  /** 'stopped': a rolling reload (--rolling) stopped at a worker that failed: the workers before it serve this
   * generation, the others keep theirs (the reason says which). */
  outcome: 'serving' | 'rolled-back' | 'stopped' | 'pending';
  reason?: string;
  startedAt: string;
  readyMs?: number;
  drainMs?: number;
  /** Connections the replaced generation moved to this one, and those it could not (closed politely). */
  moved?: number;
  notMoved?: number;
  /** With --workers N > 1: every new worker this start or reload started, by slot (worker 0's is this record's
   * own pid); a rolling reload that stopped lists the slots it reached. Absent with one worker. */
  workers?: WorkerStart[];
}

/** One worker of a start or reload of N workers: its slot, its process and how its start ended. */
export interface WorkerStart {
  worker: number;
  pid: number;
  outcome: UpgradeRecord['outcome'];
  readyMs?: number;
}

/** What a start or reload of N workers records of each worker it started (`records[slot]`, none for a slot it
 * never reached), on worker 0's record: the one in the history and in `baton reload`'s answer. */
export function withWorkers(record0: UpgradeRecord, records: ReadonlyArray<UpgradeRecord | undefined>): UpgradeRecord {
  const workers: WorkerStart[] = [];
  records.forEach((r, worker) => {
    if (!r) return;
    const { pid, outcome, readyMs } = r;
    workers.push(readyMs === undefined ? { worker, pid, outcome } : { worker, pid, outcome, readyMs });
  });
  record0.workers = workers;
  return record0;
}
