/**
 * How a reload replaces the workers of `baton run --workers N` (docs/workers.md, "Reload plans"): one strategy
 * object per kind, chosen when the reload is asked for, instead of branches inside the lanes:
 *   two-phase.ts  every new worker starts (worker 0 first, then two at a time); all commit together or none does
 *   rolling.ts    one slot at a time: start new worker i, commit it, wait for old worker i to exit, then the next
 *   rescale.ts    `baton reload --workers M`: a two-phase start of M workers, the slots grown or shrunk around it
 * A plan drives the lanes through the PlanLanes that WorkerLanes gives it, and answers what the lanes ask while
 * it runs: may this ready generation commit (beforeCommit), one was rolled back (rolledBack), one committed and
 * its migration channel is about to go to the worker it replaces (committed).
 */
import type { Generation } from '../generation.js';
import type { Generations } from '../generations.js';
import type { UpgradeRecord } from '../upgrade-record.js';

/** What a plan may do with the lanes. */
export interface PlanLanes {
  /** Lane i runs worker slot i. */
  readonly lanes: readonly Generations[];
  /** The sockets worker 0 (`g`) registered that no slot group holds yet become groups, and every other lane
   * gets its copies. Throws (the syscall's error) when a group cannot be bound for every slot. */
  makeGroups(g: Generation): void;
}

export interface ReloadPlan {
  readonly name: 'two-phase' | 'rolling' | 'rescale';
  /** Start the new workers; resolves with the outcome (worker 0's record, or a failure naming the worker). */
  run(lanes: PlanLanes): Promise<UpgradeRecord>;
  /** A lane's starting generation is ready: true to commit it (acknowledge), false to abandon it. */
  beforeCommit(g: Generation): boolean | Promise<boolean>;
  /** A lane's starting generation was rolled back (exited, timed out, lost contact). */
  rolledBack(g: Generation, reason: string): void;
  /** `g` committed; `migrationFd` (not owned) is about to go to the worker it replaces. */
  committed?(g: Generation, migrationFd: number | null): void;
}

/** Starts worker 0 of the new generation: the supervisor's own reload (its RELOADING=1, its tallies, a SIGHUP
 * joining a reload in progress), or a first start. */
export type StartFirst = () => Promise<UpgradeRecord>;

/** The number of the next generation: past every lane's (a respawn of one slot took a number in its lane only;
 * the next start must not reuse it, it would replace that record). */
export function nextGeneration(lanes: PlanLanes): number {
  return Math.max(...lanes.lanes.map((l) => l.next));
}

/** What a plan says when worker 0's new listeners cannot be made slot groups. */
export function groupsFailed(err: unknown): string {
  return `its listeners could not be bound for every worker: ${(err as Error).message}`;
}
