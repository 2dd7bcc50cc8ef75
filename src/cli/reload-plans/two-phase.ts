/**
 * The two-phase reload of N workers (docs/workers.md, "Reload, two-phase"): every new worker starts through
 * WorkerStarts — worker 0 alone, then two at a time — and waits in beforeCommit until all are ready; then all
 * commit, old worker i moving its connections to new worker i. Any failure before that rolls back every new
 * worker (the old ones never stopped) and the outcome names the worker that failed. Also the first start.
 */
import type { Generation } from '../generation.js';
import { type UpgradeRecord, withWorkers } from '../upgrade-record.js';
import { WorkerStarts } from '../worker-starts.js';
import { groupsFailed, nextGeneration, type PlanLanes, type ReloadPlan, type StartFirst } from './plan.js';

export class TwoPhasePlan implements ReloadPlan {
  readonly name = 'two-phase';
  readonly #kind: UpgradeRecord['kind'];
  readonly #first: StartFirst;
  #lanes: PlanLanes | null = null;
  #starts: WorkerStarts | null = null;
  /** The generation each lane started for this reload, and its slot. */
  readonly #members = new Map<Generation, number>();
  readonly #records: Array<Promise<UpgradeRecord> | undefined> = [];

  /** `kind`: 'start', 'takeover' or 'reload'; `first` starts worker 0 (the others are their lane's launch). */
  constructor(kind: UpgradeRecord['kind'], first: StartFirst) {
    this.#kind = kind;
    this.#first = first;
  }

  /** The slot of `g`, if it is one of this reload's new workers. */
  slotOf(g: Generation): number | undefined {
    return this.#members.get(g);
  }

  run(lanes: PlanLanes): Promise<UpgradeRecord> {
    this.#lanes = lanes;
    const generation = nextGeneration(lanes);
    const starts = new WorkerStarts(lanes.lanes.length, {
      start: (slot) => {
        const lane = lanes.lanes[slot]!;
        lane.next = generation;
        const record = slot === 0 ? this.#first() : lane.launch(this.#kind);
        this.#records[slot] = record;
        if (lane.attempt) this.#members.set(lane.attempt, slot);
        else void record.then((r) => starts.failed(slot, r.reason ?? 'could not start'));
      },
      abort: (slots) => {
        const why = 'another worker of this generation failed to start';
        for (const slot of slots) lanes.lanes[slot]!.abortStart(why);
      },
    });
    this.#starts = starts;
    starts.begin();
    return starts.outcome.then(async (outcome) => {
      // Every worker started settles (committed, or rolled back with the rest): all of them go on the record.
      const records: Array<UpgradeRecord | undefined> = [];
      for (let slot = 0; slot < lanes.lanes.length; slot++) records.push(await this.#records[slot]);
      const record0 = withWorkers(records[0]!, records);
      if (outcome.ok) return record0;
      const failed = records[outcome.slot] ?? record0;
      const reason = `worker ${outcome.slot} (pid ${failed.pid}): ${outcome.reason}`;
      return { ...record0, outcome: 'rolled-back', reason };
    });
  }

  /** Worker 0 makes the slot groups first; then every worker waits for all to be ready. */
  beforeCommit(g: Generation): boolean | Promise<boolean> {
    const slot = this.#members.get(g);
    if (!this.#starts || slot === undefined) return true; // a respawn of one slot meanwhile: commit at once
    if (slot === 0) {
      try {
        this.#lanes!.makeGroups(g);
      } catch (err) {
        this.#starts.failed(0, groupsFailed(err), false);
        return false;
      }
    }
    return this.#starts.ready(slot);
  }

  rolledBack(g: Generation, reason: string): void {
    const slot = this.#members.get(g);
    if (this.#starts && slot !== undefined) this.#starts.failed(slot, reason);
  }
}
