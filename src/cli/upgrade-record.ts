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
}
