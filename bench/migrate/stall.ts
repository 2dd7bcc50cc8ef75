/**
 * What a reload costs each connection, for `npm run bench:migrate`: every client sends a message every
 * PERIOD_MS (the clients' slots spread evenly over the period) and times its answer; a client whose answer
 * is still outstanding at its next slot skips it, so a connection frozen by the reload shows as one long round
 * trip. Round trips are kept with their send time; a window's figure is, per client, the slowest round trip
 * among the messages it sent in the window, and of those the p50, p99 and max over the clients.
 *
 * One timer drives every client (a 2 ms interval walking the slots), not one timer per client: at 10,000
 * clients that is 40,000 messages a second, and the benchmark process must not become the bottleneck it
 * measures. Its own event-loop delay is recorded per window to show when it did anyway.
 */
import fs from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

export const PERIOD_MS = 250;
const TICK_MS = 2;

/** What the pinger needs of a client: send one message, resolve with the generation that answered. */
export interface Pingable {
  ask(): Promise<number>;
}

export interface Stall {
  /** Clients that sent at least one message in the window. */
  clients: number;
  /** Round trips started in the window. */
  roundTrips: number;
  /** Over the clients, of each one's slowest round trip: ms. */
  p50: number;
  p99: number;
  max: number;
}

/** Record this process's event-loop delay from now; the returned function stops and gives p99 and max, ms. */
export function watchLoop(): () => { p99: number; max: number } {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  return () => {
    h.disable();
    return { p99: h.percentile(99) / 1e6, max: h.max / 1e6 };
  };
}

export class Pinger {
  /** Per round trip: client index, send time and round trip (ms on performance.now()), answering generation. */
  readonly client: number[] = [];
  readonly sentAt: number[] = [];
  readonly rtt: number[] = [];
  readonly gen: number[] = [];
  readonly #outstanding: Uint8Array;
  #waiting = 0;
  #timer: NodeJS.Timeout | null = null;
  #t0 = 0;
  #cycle = 0;
  #next = 0;
  #onIdle: (() => void) | null = null;

  constructor(readonly clients: readonly Pingable[]) {
    this.#outstanding = new Uint8Array(clients.length);
  }

  start(): void {
    this.#t0 = performance.now();
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  /** Stop sending and wait for every outstanding answer (rejects after `ms`). */
  async stop(ms: number): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#waiting === 0) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.#waiting} echoes still unanswered after ${ms} ms`)), ms);
      this.#onIdle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** The figures of the messages sent in [from, to) (performance.now() ms), once they are answered. */
  window(from: number, to: number): Stall {
    const slowest = new Float64Array(this.clients.length).fill(-1);
    let roundTrips = 0;
    for (let i = 0; i < this.sentAt.length; i++) {
      const t = this.sentAt[i]!;
      if (t < from || t >= to) continue;
      roundTrips++;
      const c = this.client[i]!;
      if (this.rtt[i]! > slowest[c]!) slowest[c] = this.rtt[i]!;
    }
    const per = Array.from(slowest.filter((x) => x >= 0)).sort((a, b) => a - b);
    const q = (p: number) => (per.length ? per[Math.min(per.length - 1, Math.floor(p * per.length))]! : NaN);
    return { clients: per.length, roundTrips, p50: q(0.5), p99: q(0.99), max: per.length ? per[per.length - 1]! : NaN };
  }

  /** Every round trip sent in [from, to) as CSV lines, times in ms from `origin`. */
  writeSeries(file: string, from: number, to: number, origin: number): number {
    const lines = ['sent_ms,answered_ms,round_trip_ms,client,generation'];
    for (let i = 0; i < this.sentAt.length; i++) {
      const t = this.sentAt[i]!;
      if (t < from || t >= to) continue;
      const r = this.rtt[i]!;
      const at = (x: number) => (x - origin).toFixed(2);
      lines.push(`${at(t)},${at(t + r)},${r.toFixed(2)},${this.client[i]},${this.gen[i]}`);
    }
    fs.writeFileSync(file, `${lines.join('\n')}\n`);
    return lines.length - 1;
  }

  /** [answered at (ms from `origin`), round trip, 200] for every round trip sent in [from, to): the shape of
   * bench/upgrade/stats.ts's samples, for its buckets() and chart. */
  samples(from: number, to: number, origin: number): [number, number, number][] {
    const out: [number, number, number][] = [];
    for (let i = 0; i < this.sentAt.length; i++) {
      const t = this.sentAt[i]!;
      if (t >= from && t < to) out.push([t + this.rtt[i]! - origin, this.rtt[i]!, 200]);
    }
    return out;
  }

  #tick(): void {
    const n = this.clients.length;
    const now = performance.now();
    for (;;) {
      const due = this.#t0 + this.#cycle * PERIOD_MS + (this.#next * PERIOD_MS) / n;
      if (due > now) break;
      this.#send(this.#next);
      if (++this.#next === n) {
        this.#next = 0;
        this.#cycle++;
      }
    }
  }

  #send(c: number): void {
    if (this.#outstanding[c]) return; // still waiting: that round trip will show the stall
    this.#outstanding[c] = 1;
    this.#waiting++;
    const t = performance.now();
    void this.clients[c]!.ask().then((gen) => {
      this.client.push(c);
      this.sentAt.push(t);
      this.rtt.push(performance.now() - t);
      this.gen.push(gen);
      this.#outstanding[c] = 0;
      if (--this.#waiting === 0 && this.#onIdle) {
        const f = this.#onIdle;
        this.#onIdle = null;
        f();
      }
    });
  }
}
