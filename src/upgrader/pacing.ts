/**
 * How many connections move in one batch, and moving a list of them batch by batch (src/upgrader/migrate.ts).
 *
 * A connection stops being served when its batch is prepared (reading stops) and is served again once the new
 * generation has adopted that batch and read what its client sent meanwhile. With two batches in flight, a
 * client waits about two batches' adoption: the batch size is the stall each connection feels. So batches
 * are sized by what adoption costs the new generation, which it measures and reports with each
 * acknowledgement (`cost`, CPU µs per connection: building the batch's sockets and objects, the app's
 * 'connection' handlers included): as many connections as fit in TARGET_BATCH_MS.
 */
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

/** The batch size from the costs the new generation reports (a moving average: one batch can be unlucky). */
export class BatchSizer {
  /** µs per connection, smoothed; null before the first report. */
  #cost: number | null = null;
  /** The receiver acknowledged a batch without a cost (an older baton): batches stay full, as it did. */
  #blind = false;

  get size(): number {
    if (this.#blind) return MAX_MIGRATION_BATCH;
    if (this.#cost === null) return FIRST_BATCH;
    const n = Math.floor((TARGET_BATCH_MS * 1000) / Math.max(1, this.#cost));
    return Math.min(MAX_MIGRATION_BATCH, Math.max(MIN_BATCH, n));
  }

  /** A batch of `count` was acknowledged, having cost `cost` µs per connection (undefined: not said). */
  observe(count: number, cost: number | undefined): void {
    if (count === 0) return; // the room announcement, before any batch
    if (cost === undefined) {
      this.#blind = true;
      return;
    }
    this.#cost = this.#cost === null ? cost : (this.#cost + cost) / 2;
  }
}

/** What pacing needs of the sender (MigrationSender). */
export interface PacedSender {
  readonly accepting: boolean;
  readonly batchSize: number;
  sendable(): Promise<void>;
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
  for (const item of items) {
    if (inBatch > 0 && inBatch >= (sender?.batchSize ?? MAX_MIGRATION_BATCH)) {
      await (sender?.accepting ? sender.sendable() : new Promise((r) => setImmediate(r)));
      inBatch = 0;
    }
    started.push(one(item));
    inBatch++;
  }
  await Promise.all(started);
}
