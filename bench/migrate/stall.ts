/**
 * What a reload costs each connection, for `npm run bench:migrate`: every client sends a message every
 * period (250 ms unless told; the clients' slots spread evenly over the period) and times its answer; a client whose answer
 * is still outstanding at its next slot skips it, so a connection frozen by the reload shows as one long round
 * trip. Round trips are kept with their send time; a window's figure is, per client, the slowest round trip
 * among the messages it sent in the window, and of those the p50, p99 and max over the clients.
 *
 * Two drivers fill the same RoundTrips: Pinger here, with the benchmark's Node clients (`--client=node`), and
 * bench/migrate/pinger.c, one C process holding its own connections (`--client=c`, the default; pinger.ts).
 * Each records how late it sent every message after its slot: when the clients' process is late, so is every
 * echo it times.
 *
 * Pinger: one timer drives every client (a 2 ms interval walking the slots), not one timer per client: at 10,000
 * clients that is 40,000 messages a second, and the benchmark process must not become the bottleneck it
 * measures (it did anyway: hence the C driver).
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';

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

/** What a stall driver gives: its round trips, once stopped. */
export interface StallClients {
  readonly trips: RoundTrips;
  start(): void;
  /** Stop sending and wait for every outstanding answer (rejects after `ms`). */
  stop(ms: number): Promise<void>;
}

/** A stall driver as bench:migrate's measureStall() uses it: its round trips, and what went wrong on its
 * connections. */
export interface StallSource extends StallClients {
  /** Connections the server closed since the source was made. */
  dropped(): number;
  /** Answers whose per-connection count did not follow on (state lost, or a message answered twice). */
  wrongCount(): number;
  close(): Promise<void>;
  /** The clients' CPU time, ms, once stopped (pinger.c only). */
  readonly cpuMs?: number;
}

/** Every round trip of a run: client index, send time and round trip (ms on this process's performance.now()),
 * answering generation, and how late the message left after its slot (ms). */
export class RoundTrips {
  readonly client: number[] = [];
  readonly sentAt: number[] = [];
  readonly rtt: number[] = [];
  readonly gen: number[] = [];
  readonly late: number[] = [];

  constructor(readonly clients: number) {}

  add(client: number, sentAt: number, rtt: number, gen: number, late: number): void {
    this.client.push(client);
    this.sentAt.push(sentAt);
    this.rtt.push(rtt);
    this.gen.push(gen);
    this.late.push(late);
  }

  /** The figures of the messages sent in [from, to) (performance.now() ms). */
  window(from: number, to: number): Stall {
    const slowest = new Float64Array(this.clients).fill(-1);
    let roundTrips = 0;
    for (let i = 0; i < this.sentAt.length; i++) {
      const t = this.sentAt[i]!;
      if (t < from || t >= to) continue;
      roundTrips++;
      const c = this.client[i]!;
      if (this.rtt[i]! > slowest[c]!) slowest[c] = this.rtt[i]!;
    }
    const per = Array.from(slowest.filter((x) => x >= 0)).sort((a, b) => a - b);
    return {
      clients: per.length,
      roundTrips,
      p50: quantile(per, 0.5),
      p99: quantile(per, 0.99),
      max: per.at(-1) ?? NaN,
    };
  }

  /** How late the clients sent the messages sent in [from, to): p99 and max, ms. */
  lateness(from: number, to: number): { p99: number; max: number } {
    const late = this.late.filter((_, i) => this.sentAt[i]! >= from && this.sentAt[i]! < to).sort((a, b) => a - b);
    return { p99: quantile(late, 0.99), max: late.at(-1) ?? NaN };
  }

  /** Every round trip sent in [from, to) as CSV lines, times in ms from `origin`. */
  writeSeries(file: string, from: number, to: number, origin: number): number {
    const lines = ['sent_ms,answered_ms,round_trip_ms,client,generation,late_ms'];
    for (let i = 0; i < this.sentAt.length; i++) {
      const t = this.sentAt[i]!;
      if (t < from || t >= to) continue;
      const r = this.rtt[i]!;
      const at = (x: number) => (x - origin).toFixed(2);
      lines.push(`${at(t)},${at(t + r)},${r.toFixed(2)},${this.client[i]},${this.gen[i]},${this.late[i]!.toFixed(2)}`);
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
}

/** The `p` quantile of sorted `xs` (NaN if empty). */
function quantile(xs: number[], p: number): number {
  return xs.length ? xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]! : NaN;
}

/** The Node driver: the benchmark's own clients. */
export class Pinger implements StallClients {
  readonly trips: RoundTrips;
  readonly #outstanding: Uint8Array;
  #waiting = 0;
  #timer: NodeJS.Timeout | null = null;
  #t0 = 0;
  #cycle = 0;
  #next = 0;
  #onIdle: (() => void) | null = null;

  constructor(
    readonly clients: readonly Pingable[],
    readonly period: number,
  ) {
    this.#outstanding = new Uint8Array(clients.length);
    this.trips = new RoundTrips(clients.length);
  }

  start(): void {
    this.#t0 = performance.now();
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

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

  #tick(): void {
    const n = this.clients.length;
    const now = performance.now();
    for (;;) {
      const due = this.#t0 + this.#cycle * this.period + (this.#next * this.period) / n;
      if (due > now) break;
      this.#send(this.#next, due);
      if (++this.#next === n) {
        this.#next = 0;
        this.#cycle++;
      }
    }
  }

  #send(c: number, due: number): void {
    if (this.#outstanding[c]) return; // still waiting: that round trip will show the stall
    this.#outstanding[c] = 1;
    this.#waiting++;
    const t = performance.now();
    void this.clients[c]!.ask().then((gen) => {
      this.trips.add(c, t, performance.now() - t, gen, t - due);
      this.#outstanding[c] = 0;
      if (--this.#waiting === 0 && this.#onIdle) {
        const f = this.#onIdle;
        this.#onIdle = null;
        f();
      }
    });
  }
}
