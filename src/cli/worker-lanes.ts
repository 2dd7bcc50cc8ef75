/**
 * `baton run --workers N` (docs/workers.md, "How it is to be wired"): a Generations lane per worker slot. Lane 0
 * is the supervisor's own; lanes 1..N-1 are made here, each with an inventory of copies of its slot's sockets.
 * A start (the first one, or a reload) runs through WorkerStarts: lane 0 first; when worker 0 is ready the
 * sockets it registered become slot groups (SlotSockets.join) and lanes 1..N-1 get their copies and start, two
 * at a time; every worker is committed only when all are ready; any failure rolls back every new worker.
 */
import { dupFd } from '../fd/fd-of.js';
import { Inventory } from '../handoff/inventory.js';
import type { InventoryEntry } from '../handoff/messages.js';
import type { Generation } from './generation.js';
import type { Generations } from './generations.js';
import type { SlotListenerSpec, SlotSockets } from './slots.js';
import type { UpgradeRecord } from './upgrade-record.js';
import { WorkerStarts } from './worker-starts.js';

interface Start {
  starts: WorkerStarts;
  /** The generation each lane started for this start. */
  members: Map<Generation, number>;
  records: Array<Promise<UpgradeRecord> | undefined>;
  kind: UpgradeRecord['kind'];
}

export class WorkerLanes {
  readonly lanes: Generations[] = [];
  readonly inventories: Inventory[];
  readonly #slots: SlotSockets;
  #start: Start | null = null;

  /** `make(slot, inventory)`: lane `slot`'s Generations (slot 0: the supervisor's, with `inventory0`). */
  constructor(slots: SlotSockets, inventory0: Inventory, make: (slot: number, inventory: Inventory) => Generations) {
    this.#slots = slots;
    this.inventories = [inventory0];
    for (let i = 1; i < slots.slots; i++) this.inventories.push(new Inventory());
    for (let i = 0; i < slots.slots; i++) this.lanes.push(make(i, this.inventories[i]!));
  }

  get count(): number {
    return this.lanes.length;
  }

  /** Start a generation of N workers (kind 'start' or, with trigger, a reload). Resolves with the outcome:
   * worker 0's record, or on failure a rolled-back record naming the worker that failed. */
  run(kind: UpgradeRecord['kind'], first: () => Promise<UpgradeRecord>): Promise<UpgradeRecord> {
    // Every lane's next number: a respawn of one slot took a number in its lane only (worker 1 respawned as
    // generation 2 while worker 0 is 1); the next start must not reuse it (it would replace that record).
    const generation = Math.max(...this.lanes.map((l) => l.next));
    const start: Start = { starts: null as unknown as WorkerStarts, members: new Map(), records: [], kind };
    start.starts = new WorkerStarts(this.count, {
      start: (slot) => {
        const lane = this.lanes[slot]!;
        lane.next = generation;
        const record = slot === 0 ? first() : lane.launch(kind);
        start.records[slot] = record;
        if (lane.attempt) start.members.set(lane.attempt, slot);
        else void record.then((r) => start.starts.failed(slot, r.reason ?? 'could not start'));
      },
      abort: (slotsToAbort) => {
        const why = 'another worker of this generation failed to start';
        for (const slot of slotsToAbort) this.lanes[slot]!.abortStart(why);
      },
    });
    this.#start = start;
    start.starts.begin();
    return start.starts.outcome.then(async (outcome) => {
      if (this.#start === start) this.#start = null;
      const record0 = await start.records[0]!;
      if (outcome.ok) return record0;
      const failed = start.records[outcome.slot] ? await start.records[outcome.slot]! : record0;
      const reason = `worker ${outcome.slot} (pid ${failed.pid}): ${outcome.reason}`;
      return { ...record0, outcome: 'rolled-back', reason };
    });
  }

  /** A lane's generation is ready: worker 0 makes the slot groups first; then wait for every worker. */
  beforeCommit(g: Generation): boolean | Promise<boolean> {
    const start = this.#start;
    const slot = start?.members.get(g);
    if (!start || slot === undefined) return true; // a respawn of one slot: commit at once
    if (slot === 0) {
      try {
        this.#makeGroups(g);
      } catch (err) {
        start.starts.failed(0, `its listeners could not be bound for every worker: ${(err as Error).message}`, false);
        return false;
      }
    }
    return start.starts.ready(slot);
  }

  rolledBack(g: Generation, reason: string): void {
    const start = this.#start;
    const slot = start?.members.get(g);
    if (start && slot !== undefined) start.starts.failed(slot, reason);
  }

  /** The sockets worker 0 registered that no slot group holds yet become groups; each other lane gets a copy. */
  #makeGroups(g: Generation): void {
    for (const { entry, fd } of g.registered.entries()) {
      if (this.#slots.has(entry.name)) continue;
      this.#slots.join(entry.name, dupFd(fd), specOf(entry));
      const sockets = this.#slots.socketsOf(0).find((s) => s.name === entry.name);
      if (!sockets) continue;
      for (let i = 1; i < this.count; i++) {
        const own = this.#slots.socketsOf(i).find((s) => s.name === entry.name)!;
        this.inventories[i]!.set({ entry, fd: dupFd(own.fd) });
      }
    }
  }
}

function specOf(entry: InventoryEntry): SlotListenerSpec {
  const a = entry.address as { host?: string; port?: number; path?: string };
  if (entry.kind === 'unix') return { kind: 'unix', path: a.path! };
  if (entry.kind === 'udp4' || entry.kind === 'udp6') {
    return { kind: 'udp', host: a.host || (entry.kind === 'udp4' ? '0.0.0.0' : '::'), port: a.port ?? 0 };
  }
  return { kind: 'tcp', host: a.host ?? '', port: a.port ?? 0 };
}
