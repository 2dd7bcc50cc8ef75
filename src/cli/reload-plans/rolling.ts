/**
 * The rolling reload of N workers (`baton run --rolling`, `baton reload --rolling`; docs/workers.md): one slot at
 * a time — start new worker i, commit it as soon as it is ready (old worker i moves its connections to it and
 * drains), wait until old worker i has exited, then slot i + 1 — so at most N + 1 workers ever run, against 2N
 * for a two-phase reload. Slower, and the generations are mixed while it runs.
 *
 * A failure stops it there: the slots already replaced keep the new generation, the rest keep the old one (both
 * serve), and the outcome is 'stopped', naming the worker that failed. Every lane's generation number is its own
 * worker's: status lists the new number for slots 0..i-1 and the old ones from i on. The next reload, of any
 * kind, starts every slot again at one number past the newest, so it also brings the slots still on the old
 * version up to date.
 */
import type { Generation } from '../generation.js';
import { type UpgradeRecord, withWorkers } from '../upgrade-record.js';
import { groupsFailed, nextGeneration, type PlanLanes, type ReloadPlan, type StartFirst } from './plan.js';

export class RollingPlan implements ReloadPlan {
  readonly name = 'rolling';
  readonly #first: StartFirst;
  readonly #stopping: () => boolean;
  #lanes: PlanLanes | null = null;
  /** The new worker starting now, and its slot. */
  #member: { g: Generation; slot: number } | null = null;

  /** `first` starts worker 0 (the others are their lane's launch); `stopping`: the supervisor is stopping. */
  constructor(first: StartFirst, stopping: () => boolean) {
    this.#first = first;
    this.#stopping = stopping;
  }

  async run(lanes: PlanLanes): Promise<UpgradeRecord> {
    this.#lanes = lanes;
    const count = lanes.lanes.length;
    const generation = nextGeneration(lanes);
    let record0: UpgradeRecord | null = null;
    // Each slot's record as it is reached: all of them go on worker 0's.
    const records: UpgradeRecord[] = [];
    for (let slot = 0; slot < count; slot++) {
      const lane = lanes.lanes[slot]!;
      if (slot > 0 && (this.#stopping() || lane.attempt)) {
        const why = this.#stopping() ? 'the supervisor is stopping' : `worker ${slot} is being respawned`;
        return stopped(withWorkers(record0!, records), slot, count, `${why}; not started`);
      }
      const old = lane.current;
      lane.next = generation;
      const promise = slot === 0 ? this.#first() : lane.launch('reload');
      this.#member = lane.attempt ? { g: lane.attempt, slot } : null;
      const record = await promise;
      this.#member = null;
      if (slot === 0) record0 = record;
      records.push(record);
      withWorkers(record0!, records);
      // Stopped by `baton stop` or SIGTERM, the worker's own failure ("exited on SIGTERM") is only the effect.
      const stoppedBy = this.#stopping() ? 'the supervisor is stopping: ' : '';
      const reason = `worker ${slot} (pid ${record.pid}): ${stoppedBy}${record.reason ?? 'could not start'}`;
      if (record.outcome !== 'serving') {
        if (slot === 0) return { ...record, reason }; // nothing replaced: a plain rollback
        return stopped(record0!, slot, count, reason);
      }
      // At most N + 1 workers at once: the next slot starts once the worker this one replaced is gone.
      if (old && slot < count - 1) await lane.exitOf(old);
    }
    return record0!;
  }

  /** Worker 0 makes the slot groups of listeners new in this version; every worker commits once ready. */
  beforeCommit(g: Generation): boolean {
    const member = this.#member;
    if (member?.g !== g || member.slot !== 0) return true;
    try {
      this.#lanes!.makeGroups(g);
    } catch (err) {
      this.#lanes!.lanes[0]!.abortStart(groupsFailed(err));
      return false;
    }
    return true;
  }

  rolledBack(): void {
    // The lane's own launch resolves with the rolled-back record: run() sees it there.
  }
}

/**
 * The outcome of a rolling reload that stopped at worker `slot`: worker 0's record (in the history), marked
 * 'stopped' with the reason, which says which slots serve which generation.
 */
function stopped(record0: UpgradeRecord, slot: number, count: number, reason: string): UpgradeRecord {
  const replaced = slot === 1 ? 'worker 0 serves' : `workers 0-${slot - 1} serve`;
  const kept = slot === count - 1 ? `worker ${slot} keeps` : `workers ${slot}-${count - 1} keep`;
  record0.outcome = 'stopped';
  record0.reason = `${reason}; rolling reload stopped: ${replaced} generation ${record0.generation}, ${kept} theirs`;
  return record0;
}
