/**
 * `baton run --workers N` (docs/workers.md, "How it is wired"): a Generations lane per worker slot. Lane 0 is the
 * supervisor's own; lanes 1..N-1 are made here, each with an inventory of copies of its slot's sockets. How a
 * start or reload replaces the workers is a plan (src/cli/reload-plans/: two-phase, rolling, rescale), run one at
 * a time; while it runs the lanes' questions (may this ready worker commit? one was rolled back; one committed)
 * go to it. A scale changes the number of lanes: grow() adds lanes (and binds their slot sockets), remove() takes
 * the last ones out — they stay listed (status, stop) until their last worker has exited.
 */
import { dupFd } from '../fd/fd-of.js';
import { Inventory } from '../handoff/inventory.js';
import type { InventoryEntry } from '../handoff/messages.js';
import type { Generation } from './generation.js';
import type { Generations } from './generations.js';
import type { PlanLanes, ReloadPlan } from './reload-plans/plan.js';
import type { SlotListenerSpec, SlotSockets } from './slots.js';
import type { UpgradeRecord } from './upgrade-record.js';

export class WorkerLanes implements PlanLanes {
  readonly lanes: Generations[] = [];
  readonly inventories: Inventory[];
  readonly #slots: SlotSockets;
  readonly #make: (slot: number, inventory: Inventory) => Generations;
  /** Lanes a scale-down removed, until their last generation has exited. */
  #retired: Generations[] = [];
  #plan: ReloadPlan | null = null;
  /** The plan that ran last: its workers' commits may come just after its run() resolved. */
  #last: ReloadPlan | null = null;

  /** `make(slot, inventory)`: lane `slot`'s Generations (slot 0: the supervisor's, with `inventory0`). */
  constructor(slots: SlotSockets, inventory0: Inventory, make: (slot: number, inventory: Inventory) => Generations) {
    this.#slots = slots;
    this.#make = make;
    this.inventories = [inventory0];
    for (let i = 1; i < slots.slots; i++) this.inventories.push(new Inventory());
    for (let i = 0; i < slots.slots; i++) this.lanes.push(make(i, this.inventories[i]!));
  }

  get count(): number {
    return this.lanes.length;
  }

  /** A plan is running (one reload at a time). */
  get busy(): boolean {
    return this.#plan !== null;
  }

  /** Every lane, those a scale-down removed included while a worker of theirs still runs. */
  all(): Generations[] {
    this.#retired = this.#retired.filter((l) => l.alive().length > 0);
    return [...this.lanes, ...this.#retired];
  }

  /** Run a start or reload; resolves with its outcome. */
  run(plan: ReloadPlan): Promise<UpgradeRecord> {
    this.#plan = plan;
    this.#last = plan;
    return plan.run(this).finally(() => {
      if (this.#plan === plan) this.#plan = null;
    });
  }

  beforeCommit(g: Generation): boolean | Promise<boolean> {
    return this.#plan ? this.#plan.beforeCommit(g) : true; // no plan: a respawn of one slot, commit at once
  }

  rolledBack(g: Generation, reason: string): void {
    this.#plan?.rolledBack(g, reason);
  }

  committed(g: Generation, migrationFd: number | null): void {
    for (const plan of new Set([this.#plan, this.#last])) plan?.committed?.(g, migrationFd);
  }

  /** The sockets worker 0 registered that no slot group holds yet become groups; each other slot's lane gets a
   * copy of its own. */
  makeGroups(g: Generation): void {
    for (const { entry, fd } of g.registered.entries()) {
      if (this.#slots.has(entry.name)) continue;
      this.#slots.join(entry.name, dupFd(fd), specOf(entry));
      for (let i = 1; i < Math.min(this.#slots.slots, this.count); i++) {
        const own = this.#slots.socketsOf(i).find((s) => s.name === entry.name)!;
        this.inventories[i]!.set({ entry, fd: dupFd(own.fd) });
      }
    }
  }

  /**
   * Grow to `count` lanes: every slot group gets a socket for each new slot (SlotSockets.resize, all or nothing:
   * throws the failing syscall's error with nothing changed), and each new lane an inventory of copies of its own.
   */
  grow(count: number): void {
    const from = this.count;
    this.#slots.resize(count);
    const entries = new Map(this.inventories[0]!.entries().map(({ entry }) => [entry.name, entry]));
    try {
      for (let i = from; i < count; i++) {
        const inventory = new Inventory();
        this.inventories.push(inventory);
        for (const s of this.#slots.socketsOf(i)) {
          const entry = entries.get(s.name);
          if (entry) inventory.set({ entry, fd: dupFd(s.fd) });
        }
        this.lanes.push(this.#make(i, inventory));
      }
    } catch (err) {
      for (const inv of this.inventories.splice(from)) inv.closeAll();
      this.lanes.splice(from);
      this.#slots.resize(from);
      throw err;
    }
  }

  /** The slots from `count` on leave; their reuseport sockets are kept (SlotSockets.resize says why). */
  resizeSlots(count: number): void {
    this.#slots.resize(count);
  }

  /**
   * Lanes `count`..N-1 leave (a scale-down committed, or a grow undone): no respawn there any more; a worker of
   * theirs still running is listed until it exits. Returns them.
   */
  remove(count: number, why: string): Generations[] {
    const removed = this.lanes.splice(count);
    for (const inv of this.inventories.splice(count)) inv.closeAll();
    for (const lane of removed) lane.retire(why);
    this.#retired.push(...removed);
    return removed;
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
