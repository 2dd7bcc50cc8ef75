/**
 * What a supervised generation reports to its supervisor (`baton status`, /metrics): its connections (by
 * kind), the event loop's delay and utilisation while it serves, what it waits for while it drains, and
 * what it moved (or could not move) once drained.
 *
 * Its connections include those still arriving: moved here by the old generation but not continued yet
 * (parked until their client sends or the background adopts them, src/upgrader/migrate-receiver.ts), also
 * reported apart as `arriving`. Why: the old generation stops counting a connection once it has sent it, and
 * this one counted it only once adopted — during a move of 2,500 idle connections whose adoption took ~6 s,
 * the new generation's count climbed from 101 to 2,415 over 25 status samples while every one of them was
 * already here (test/migrate-status.test.ts), which looks like connections being lost.
 */
import { LoopMonitor } from './loop-stats.js';
import type { ConnectionKinds } from './census.js';
import type { Generation, MoveSummary } from './modes/mode.js';

/** Stats go to the supervisor at least this often (the event-loop figures), sooner when something changes. */
const STATS_EVERY_MS = 1000;

export class StatsReporter {
  readonly #g: Generation;
  #timer: NodeJS.Timeout | null = null;
  /** The event loop's delay and utilisation, sent with each report while serving. */
  #loop: LoopMonitor | null = null;
  #lastAt = 0;

  constructor(g: Generation) {
    this.#g = g;
  }

  serving(): void {
    this.#loop = new LoopMonitor();
    let last = '';
    this.#timer = setInterval(() => {
      // Both change while a move is adopted: connections stay, arriving ones become the app's.
      const n = `${this.#g.connections()} ${this.#g.arriving()}`;
      // A change in connections within 500 ms; the event-loop figures at least every second.
      if (n !== last || Date.now() - this.#lastAt >= STATS_EVERY_MS) this.send('serving');
      last = n;
    }, 500);
    this.#timer.unref();
    this.send('serving');
  }

  /** Draining: report connections by kind (and the wait for the predecessor) as they change. */
  draining(): void {
    this.#stop();
    if (!this.#g.client()) return;
    let last = '';
    const tick = () => {
      // Once per tick, not again in send(): the census walks every connection (10,000 while a large move
      // starts: 22 ms of self time in count() within one 50 ms task of the old generation's profile at the drain,
      // bench:migrate with BENCH_CPU_PROF, when it ran twice).
      const kinds = this.#g.connectionKinds();
      const key = `${this.#g.waiting()} ${this.#g.arriving()} ${JSON.stringify(kinds)}`;
      if (key !== last || Date.now() - this.#lastAt >= STATS_EVERY_MS) this.send('draining', kinds);
      last = key;
    };
    this.#timer = setInterval(tick, 250);
    this.#timer.unref();
    tick();
  }

  send(state: 'serving' | 'draining', kinds: ConnectionKinds = this.#g.connectionKinds()): void {
    const loop = this.#loop?.take();
    this.#lastAt = Date.now();
    const arriving = this.#g.arriving();
    this.#g.client()?.stats(this.#g.connections() + arriving, state, {
      accepted: this.#g.accepted(),
      arriving,
      kinds,
      ...(state === 'draining' ? { waiting: this.#g.waiting() } : {}),
      ...(loop ? { loop } : {}),
    });
  }

  /** The supervisor records the counts with the upgrade (baton status) and warns when some could not move;
   * /metrics adds them up by reason. */
  drained(moved: MoveSummary | null): void {
    this.#stop();
    this.#loop?.stop();
    if (moved) this.#g.client()?.stats(0, 'draining', { ...moved });
  }

  #stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
