/**
 * `baton reload --workers M` (docs/workers.md, "Scale"): a two-phase reload of M workers where there were N, with
 * the slots changed around it.
 *
 * Grow (M > N): every slot group first gets a socket for each new slot (all or nothing: a failing bind fails the
 * reload with nothing changed), new lanes are made, then all M new workers start two-phase as always; slots N..M-1
 * have no old worker to replace. Shrink (M < N): the slots from M on leave first (their reuseport sockets are
 * kept: closing one would reset its accept queue), M new workers start two-phase, and at the commit the old
 * worker of each removed slot k moves its connections to new worker k mod M over a channel added to that worker's
 * own (src/handoff/migration-relay.ts) and drains; the removed lanes respawn nothing any more. Either way new
 * workers see BATON_WORKERS=M, and the supervisor's worker count is M from then on (a later plain reload runs M).
 * A failed start undoes it: N again (a grow's added sockets kept, as a shrink keeps them), the old workers served
 * throughout.
 */
import { addMigrationChannel } from '../../handoff/migration-relay.js';
import type { Generation } from '../generation.js';
import type { Generations } from '../generations.js';
import type { UpgradeRecord } from '../upgrade-record.js';
import type { PlanLanes, ReloadPlan, StartFirst } from './plan.js';
import { TwoPhasePlan } from './two-phase.js';

/** What a scale needs of the lanes besides a reload's. */
export interface ScalableLanes extends PlanLanes {
  /** Add lanes up to `count`, binding each group's sockets for the new slots. Throws with nothing changed. */
  grow(count: number): void;
  /** The slots from `count` on leave (their reuseport sockets are kept), or come back. */
  resizeSlots(count: number): void;
  /** Lanes `count`.. leave: no respawn there; they stay listed until their workers exit. */
  remove(count: number, why: string): Generations[];
}

export interface RescaleHost {
  /** The worker count new workers are told (BATON_WORKERS) and later reloads run. */
  setWorkers(count: number): void;
  /** The slots or the lanes changed: a slot with no serving worker is to be lent to one that serves (the new
   * slots until their workers commit; the removed slots' kept sockets for good). */
  slotsChanged(): void;
}

export class RescalePlan implements ReloadPlan {
  readonly name = 'rescale';
  readonly #to: number;
  readonly #inner: TwoPhasePlan;
  readonly #host: RescaleHost;
  /** Shrink: the lanes of the removed slots (slot M + i is removed[i]). */
  #removed: readonly Generations[] = [];

  /** `to`: the new number of workers. */
  constructor(to: number, first: StartFirst, host: RescaleHost) {
    this.#to = to;
    this.#inner = new TwoPhasePlan('reload', first);
    this.#host = host;
  }

  async run(lanes: ScalableLanes): Promise<UpgradeRecord> {
    const from = lanes.lanes.length;
    const to = this.#to;
    if (to > from) lanes.grow(to);
    else lanes.resizeSlots(to);
    this.#removed = lanes.lanes.slice(to);
    this.#host.setWorkers(to);
    this.#host.slotsChanged();
    const undo = () => {
      this.#host.setWorkers(from);
      this.#removed = [];
      if (to > from) lanes.remove(from, 'a scale-up that failed');
      lanes.resizeSlots(from);
      this.#host.slotsChanged();
    };
    let record: UpgradeRecord;
    try {
      record = await this.#inner.run({ lanes: lanes.lanes.slice(0, to), makeGroups: (g) => lanes.makeGroups(g) });
    } catch (err) {
      undo();
      throw err;
    }
    if (record.outcome !== 'serving') undo();
    else if (to < from) {
      lanes.remove(to, 'its slot was removed by a scale-down');
      this.#host.slotsChanged();
    }
    return record;
  }

  beforeCommit(g: Generation): boolean | Promise<boolean> {
    return this.#inner.beforeCommit(g);
  }

  rolledBack(g: Generation, reason: string): void {
    this.#inner.rolledBack(g, reason);
  }

  /** New worker j committed: the old workers of removed slots j + M, j + 2M, … move their connections to it. */
  committed(g: Generation, migrationFd: number | null): void {
    const slot = this.#inner.slotOf(g);
    if (slot === undefined) return;
    for (let i = slot; i < this.#removed.length; i += this.#to) {
      const lane = this.#removed[i]!;
      const old = lane.current;
      if (old?.state !== 'serving') continue;
      lane.drain(old, 'upgrade', migrationFd === null ? null : addMigrationChannel(migrationFd));
    }
  }
}
