/**
 * Which live worker serves each worker slot that has none (`baton run --workers N`, docs/workers.md). A slot
 * with no serving worker — its worker crashed and its lane is respawning it, or a scale-down removed the slot —
 * keeps its sockets in the supervisor (SlotSockets: closing a reuseport socket would reset its queue), and
 * without a worker accepting from them the connections hashed there wait until one is back. So the supervisor
 * lends that slot's sockets to a live sibling (`lend`, src/upgrader/borrowed.ts: the sibling accepts from them
 * with its own servers) and takes them back (`unlend`) once the slot has its own worker again. Lending copies
 * fds: nothing the sibling opens or closes touches a queue.
 *
 * The choice is SlotSockets.assign: a slot stays with its borrower while that one serves, else it goes to the
 * serving worker with the fewest borrowed slots. Only a worker whose hello announced the 'lend' feature borrows.
 *
 * Call reassign() (or soon(), which runs it once after the events of this turn: the first start promotes every
 * lane in one turn, and one decision then lends nothing) whenever what serves may have changed:
 *   - a lane's generation starts serving (a respawn is back; a reload's new worker replaces a borrower, which
 *     stops serving its borrowed sockets at its drain: the slot is lent to a serving worker again);
 *   - a generation exits (a crash orphans its slot, and the slots it borrowed);
 *   - the slot count or the lanes change (`baton reload --workers M`: after SlotSockets.resize and the lanes are
 *     added or removed, call reassign(); the removed slots' kept sockets are lent to the remaining workers).
 * Each call compares the loans wanted with those made and sends only the difference (a name new to a slot is
 * lent on its own). Nothing is sent while the supervisor stops: every worker drains and closes what it borrowed.
 */
import type { LogFn } from '../handoff/server.js';
import type { HandoffSession } from '../handoff/session.js';
import type { Generation } from './generation.js';
import type { Generations } from './generations.js';
import type { SlotFd, SlotSockets } from './slots.js';

export interface SlotLendingHost {
  readonly slots: SlotSockets;
  /** The lanes: lane i's serving generation serves slot i. */
  lanes(): readonly Generations[];
  stopping(): boolean;
  log: LogFn;
}

/** A slot lent to a generation, and the names sent with it. */
interface Loan {
  g: Generation;
  names: Set<string>;
}

/** A slot served by another slot's worker (`baton status`). */
export interface LoanInfo {
  slot: number;
  /** The borrower: its slot, generation and pid. */
  worker: number;
  generation: number;
  pid: number;
  names: string[];
}

export class SlotLending {
  readonly #host: SlotLendingHost;
  readonly #loans = new Map<number, Loan>();
  /** Sessions whose `lent` answers are logged already. */
  readonly #heard = new WeakSet<HandoffSession>();
  #scheduled = false;
  /** A re-executed supervisor does not know what its predecessor lent (resumed()). */
  #unknown = false;

  constructor(host: SlotLendingHost) {
    this.#host = host;
  }

  /** The loans now: which slot is served by which generation besides its own. */
  loans(): LoanInfo[] {
    return [...this.#loans]
      .sort((a, b) => a[0] - b[0])
      .map(([slot, { g, names }]) => ({
        slot,
        worker: g.worker ?? 0,
        generation: g.generation,
        pid: g.pid,
        names: [...names],
      }));
  }

  /** reassign() once, after the other events of this turn. */
  soon(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.reassign();
    });
  }

  /**
   * The supervisor was re-executed: the loans its predecessor made are not carried. Every serving worker is told
   * to return every slot not lent to it now (an unlend of a slot it does not hold changes nothing), and the
   * empty slots are lent again (a worker that holds one already keeps it).
   */
  resumed(): void {
    this.#unknown = true;
    this.reassign();
  }

  /** Lend every slot with no serving worker to a serving one, and take back what is lent no more. */
  reassign(): void {
    if (this.#host.stopping()) return;
    const lanes = this.#host.lanes();
    const serving = (slot: number): Generation | null => {
      const g = lanes[slot]?.current;
      return g?.state === 'serving' ? g : null;
    };
    const current = new Map<number, number>();
    for (const [slot, loan] of this.#loans) {
      const lane = lanes.findIndex((l) => l.current === loan.g);
      if (lane >= 0) current.set(slot, lane);
    }
    const plan = this.#host.slots.assign((i) => serving(i) !== null, {
      current,
      borrows: (i) => reachable(serving(i)),
    });
    const wanted = new Map<number, { g: Generation; sockets: SlotFd[] }>();
    for (const [worker, sockets] of plan) {
      for (const s of sockets) {
        if (s.slot === worker) continue;
        let want = wanted.get(s.slot);
        if (!want) wanted.set(s.slot, (want = { g: serving(worker)!, sockets: [] }));
        want.sockets.push(s);
      }
    }
    if (this.#unknown) {
      this.#unknown = false;
      this.#returnAll(lanes.length, serving, wanted);
    }
    for (const [slot, loan] of this.#loans) {
      if (wanted.get(slot)?.g === loan.g) continue;
      this.#loans.delete(slot);
      const why = serving(slot)
        ? 'its worker serves again'
        : wanted.has(slot)
          ? 'lent to another worker'
          : 'no serving worker can take it';
      this.#unlend(slot, loan.g, why);
    }
    for (const [slot, { g, sockets }] of wanted) {
      const loan = this.#loans.get(slot) ?? { g, names: new Set<string>() };
      const missing = sockets.filter((s) => !loan.names.has(s.name));
      if (missing.length === 0) continue;
      for (const s of missing) loan.names.add(s.name);
      this.#loans.set(slot, loan);
      this.#lend(slot, g, missing);
    }
  }

  /** After a re-exec: unlend every slot from every serving worker it is not to stay with. */
  #returnAll(lanes: number, serving: (slot: number) => Generation | null, wanted: Map<number, { g: Generation }>) {
    const slots = Math.max(lanes, ...this.#host.slots.info().map((l) => l.sockets));
    for (let worker = 0; worker < lanes; worker++) {
      const g = serving(worker);
      if (!g || !reachable(g)) continue;
      for (let slot = 0; slot < slots; slot++) {
        if (slot !== worker && wanted.get(slot)?.g !== g) g.session!.unlend(slot).catch(() => {});
      }
    }
  }

  #lend(slot: number, g: Generation, sockets: SlotFd[]): void {
    const session = g.session!;
    this.#listen(session, g);
    const names = sockets.map((s) => s.name);
    this.#host.log('info', 'slot-lend', { slot, generation: g.generation, child: g.pid, names: names.join(',') });
    session.lend(slot, sockets).catch((err: Error) => {
      // The link is down: the generation is exiting or lost; its exit reassigns the slot.
      this.#host.log('warn', 'slot-lend-failed', { slot, child: g.pid, reason: err.message });
    });
  }

  /** Take slot `slot` back from `g`: it closes its copies. One that no longer serves closed them at its drain. */
  #unlend(slot: number, g: Generation, why: string): void {
    const fields = { slot, generation: g.generation, child: g.pid, reason: why };
    if (g.state !== 'serving' || !g.session || g.session.link.closed) {
      this.#host.log('info', 'slot-unlent', { ...fields, reason: `${why}; it was served by a worker gone since` });
      return;
    }
    this.#host.log('info', 'slot-unlent', fields);
    g.session.unlend(slot).catch(() => {}); // the link is down: the generation is going, its copies with it
  }

  /** Log a borrower's answers: what it serves, and why it refused a name. */
  #listen(session: HandoffSession, g: Generation): void {
    if (this.#heard.has(session)) return;
    this.#heard.add(session);
    session.on('lent', ({ slot, served, refused }) => {
      const fields = { slot, generation: g.generation, child: g.pid, served: served.join(',') || '-' };
      if (refused.length === 0) this.#host.log('info', 'slot-lent', fields);
      else {
        const why = refused.map((r) => `${r.name}: ${r.reason} (${r.code})`).join('; ');
        this.#host.log('warn', 'slot-lent', { ...fields, refused: why });
      }
    });
  }
}

/** Can `g` be sent a lend: serving, its control connection up, and it announced the feature. */
function reachable(g: Generation | null): boolean {
  return !!g?.session && !g.session.link.closed && g.session.has('lend');
}
