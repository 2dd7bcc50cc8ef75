/**
 * How many connections move in one batch, and moving a list of them batch by batch (src/upgrader/migrate.ts).
 *
 * A connection stops being served when its batch is prepared (reading stops) and is served again once the new
 * generation has adopted that batch and read what its client sent meanwhile. With two batches in flight, a
 * client waits about two batches' adoption: the batch size is the stall each connection feels. So batches
 * are sized by what adoption costs the new generation, which it measures and reports with each
 * acknowledgement (`cost`, CPU µs per connection: building the batch's sockets and objects, the app's
 * 'connection' handlers included): as many connections as fit in TARGET_BATCH_MS. The old generation's own work
 * for a batch blocks every client it still serves: batches are also no larger than fits in TARGET_OWN_SLICE_MS
 * of that (measured here with process.cpuUsage around the synchronous parts).
 *
 * A receiver with readiness-ordered adoption (src/upgrader/migrate-receiver.ts) adopts a batch's connections
 * when their clients send, else in the background; it acknowledges the batch once it has adopted those whose
 * clients spoke, and reports that cost (parking, 3-6 µs a connection warm, plus their adoption). Idle clients:
 * the new generation allows full batches (253) — none of them waits for the batch's adoption — and the old
 * generation's own slice sets the size; clients that all speak: ~10 ms batches, as with eager adoption, which
 * keeps the old generation from stopping more of them than the new one keeps up with. An older receiver
 * reports its adoption cost, and gets ~10 ms batches as before.
 */
import { threadCpuMicros } from '../fd/process.js';
import { MAX_MIGRATION_BATCH } from '../handoff/messages.js';

/**
 * One batch's adoption, in the new generation's event loop. Measured (bench:migrate, 1,000 WebSockets, 2026-12-07,
 * 2 shared cores): fixed batches of 253 cost 13-71 ms to adopt, and as much again for their first reads; each client's
 * slowest echo during the reload was p99 ~100 ms (10× the figure without a reload). A client waits about two
 * batches: 10 ms keeps that near 20-30 ms, and the cost per batch that does not depend on its size (one
 * message, one acknowledgement, a turn of the event loop: ~0.3 ms) stays a few percent of the move.
 */
export const TARGET_BATCH_MS = 10;
/**
 * The first batch, before the new generation has said what a connection costs it. Small because the new
 * generation is cold: its first 253 WebSockets took 71 ms to adopt, later batches 13-35 ms (V8 compiles each
 * function of net.Socket, ws and the app's 'connection' handler on its first call).
 */
export const FIRST_BATCH = 32;
/** Never smaller: below this the per-batch cost dominates (a slow 'connection' handler gets its own pace). */
export const MIN_BATCH = 8;

/**
 * The old generation's own work for one batch, in its event loop: preparing it (each connection's frame boundary,
 * state, stopReading, JSON) and sending it (late bytes, the message, sendmsg, destroying the batch's sockets and
 * the 'close' handlers that fires: ws, the app, connection tracking). Every client not moved yet is served by that
 * loop and waits for as long as it is blocked. Sized only by the new generation's cost, a batch of 253 cost the
 * old loop ~10 ms at ~40 µs per connection (bench:migrate profiles, 10,000 WebSockets: ~60 µs per connection
 * without its garbage collection, raw TCP ~40). 4 ms: at 1,000 connections a client's slowest echo without a
 * reload is p99 4.3 ms (raw TCP, quiet machine) and the goal during one is at most twice that; a block of 4 ms
 * (and the prepare and send of one batch can run back to back, so the two are counted together) stays within it.
 */
export const TARGET_OWN_SLICE_MS = 4;

/**
 * When this generation's own event loop is overloaded, a batch may take this share of one of its turns. Every
 * client still served here waits a turn per message whatever the batch size, and each one moved leaves that
 * queue for a new generation that is not overloaded; paced by the targets above, a move waits one such turn per
 * small batch and nearly stops. Measured (bench:migrate, 10,000 WebSockets, a message every 250 ms: 40,000 a
 * second, more than this 2-core machine serves): the old generation's turns took 2.3 s, batches of ~60 left one
 * per turn, and 321 of the 10,000 had moved after 30 s. A tenth of a turn leaves the targets in force while
 * turns are as short as a loaded but not overloaded loop's (up to 40 ms for the own slice, 100 ms for the
 * adoption: at 1,000 connections the old generation's longest delay was 8-28 ms) and gives full batches once
 * they take seconds.
 */
export const TURN_SHARE = 0.1;

/** The moving average every figure here keeps (one batch can be unlucky: a GC, a busy core): half the last
 * value, half the new one; the first taken as it is. */
function smoothed(last: number | null, next: number): number {
  return last === null ? next : (last + next) / 2;
}

/** µs per connection, as a moving average of per-batch figures. */
class CostAverage {
  value: number | null = null;
  /** Over every batch: µs and connections (the mean, for the drained log). */
  micros = 0;
  count = 0;
  add(count: number, micros: number): void {
    if (count <= 0 || !Number.isFinite(micros) || micros < 0) return;
    const per = micros / count;
    this.value = smoothed(this.value, per);
    this.micros += micros;
    this.count += count;
  }
  get mean(): number {
    return this.count ? this.micros / this.count : 0;
  }
}

/**
 * The batch size from what a batch costs: the new generation's adoption (reported with each acknowledgement) and
 * this generation's own preparing and sending (measured here, CPU time: the machine may be shared), the smaller.
 */
export class BatchSizer {
  /** µs per connection, smoothed; null before the first report. */
  #cost: number | null = null;
  /** The receiver acknowledged a batch without a cost (an older baton): batches stay full, as it did. */
  #blind = false;
  #prepare = new CostAverage();
  #send = new CostAverage();
  /** How long this generation's event loop took to come round, ms, smoothed; null before a report. */
  #turnMs: number | null = null;

  get size(): number {
    const share = (this.#turnMs ?? 0) * TURN_SHARE;
    // Connections of `micros` µs each that fit in `targetMs` (or in the share of a long turn).
    const fit = (targetMs: number, micros: number) =>
      Math.floor((Math.max(targetMs, share) * 1000) / Math.max(1, micros));
    let n: number;
    if (this.#blind) n = MAX_MIGRATION_BATCH;
    else if (this.#cost === null) n = FIRST_BATCH;
    else n = fit(TARGET_BATCH_MS, this.#cost);
    const own = this.ownCost;
    if (own !== null) n = Math.min(n, fit(TARGET_OWN_SLICE_MS, own));
    return Math.min(MAX_MIGRATION_BATCH, Math.max(MIN_BATCH, n));
  }

  /**
   * This generation's event loop took `ms` to come round (from a batch prepared to the next turn): what every
   * client still served here waits anyway. Long turns allow bigger batches (TURN_SHARE).
   */
  observeTurn(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    this.#turnMs = smoothed(this.#turnMs, ms);
  }

  /** This generation's CPU µs per connection moved (preparing + sending), smoothed; null before any batch. */
  get ownCost(): number | null {
    const p = this.#prepare.value;
    const s = this.#send.value;
    return p === null && s === null ? null : (p ?? 0) + (s ?? 0);
  }

  /** This generation's CPU µs per connection moved over the whole move (preparing + sending); null before any. */
  get ownCostMean(): number | null {
    return this.#prepare.count || this.#send.count ? this.#prepare.mean + this.#send.mean : null;
  }

  /** Preparing `count` connections (stopReading, state, …) took `micros` µs of this process's CPU. */
  observePrepare(count: number, micros: number): void {
    this.#prepare.add(count, micros);
  }

  /** Sending a batch of `count` (the message, destroying its sockets and their 'close' handlers) took `micros`. */
  observeSend(count: number, micros: number): void {
    this.#send.add(count, micros);
  }

  /** A batch of `count` was acknowledged, having cost `cost` µs per connection (undefined: not said). */
  observe(count: number, cost: number | undefined): void {
    if (count === 0) return; // the room announcement, before any batch
    if (cost === undefined) {
      this.#blind = true;
      return;
    }
    this.#cost = smoothed(this.#cost, cost);
  }
}

/** What pacing needs of the sender (MigrationSender). */
export interface PacedSender {
  readonly accepting: boolean;
  readonly batchSize: number;
  sendable(): Promise<void>;
  /** `count` connections were prepared (each `one` up to its first await) in `micros` µs of CPU. */
  prepared(count: number, micros: number): void;
}

/**
 * The event loop's CPU time now, µs: the main thread's (CLOCK_THREAD_CPUTIME_ID), which is what blocks the
 * clients it serves. Not process.cpuUsage(): it sums every thread (GC and compiler helpers too) and cost a mean
 * 61-138 µs a call, up to 9 ms, in generations moving 10,000 connections (native/process.c).
 */
export const cpuNow: () => number = threadCpuMicros;

/** The event loop's CPU time since `from` (cpuNow()), µs. */
export function cpuSince(from: number): number {
  return threadCpuMicros() - from;
}

/**
 * Call `one` for each item, one batch's worth at a time, each batch only once it would leave at once
 * (sender.sendable()): an item's connection is served where it is until `one` runs for it. Resolves when every
 * `one` has settled (their rejections are theirs to handle: `one` should not reject).
 */
export async function paced<T>(
  sender: PacedSender | null,
  items: Iterable<T>,
  one: (item: T) => Promise<void>,
): Promise<void> {
  const started: Promise<void>[] = [];
  let inBatch = 0;
  // Read once per batch, not per item: the getter showed as 17 ms of self time in a profile of the old generation
  // moving 10,000 raw connections (bench:migrate, BENCH_CPU_PROF).
  let size = Math.max(1, sender?.batchSize ?? MAX_MIGRATION_BATCH);
  // What preparing a batch costs this process (each `one` runs synchronously up to its first await: the
  // sender's move() is synchronous until the connection is queued): it sizes the next batches (BatchSizer).
  let cpu = cpuNow();
  for (const item of items) {
    if (inBatch >= size) {
      sender?.prepared(inBatch, cpuSince(cpu));
      await (sender?.accepting ? sender.sendable() : new Promise((r) => setImmediate(r)));
      inBatch = 0;
      size = Math.max(1, sender?.batchSize ?? MAX_MIGRATION_BATCH);
      cpu = cpuNow();
    }
    started.push(one(item));
    inBatch++;
  }
  if (inBatch) sender?.prepared(inBatch, cpuSince(cpu));
  await Promise.all(started);
}
