/**
 * How many more fds this process can take: the room a migration receiver announces with each acknowledgement
 * (src/upgrader/migrate-receiver.ts). The old generation never sends more fds than that, because past
 * RLIMIT_NOFILE the kernel silently cuts the fds of an SCM_RIGHTS message (MSG_CTRUNC) and closes them — the
 * connections with them, which the old generation believes moved.
 *
 * Measured at start from /proc (src/fd/fd-usage.ts), counted down by the fds that arrive, and measured again:
 * - at every acknowledgement when the count comes from stat() (Linux 6.2 and later): ~16 µs with the limit's
 *   read, ~2 ms over the 40-120 acknowledgements of a move of 10,000 connections, which costs the new
 *   generation ~200 ms of adoption; fds the app opens during the move are seen at the next acknowledgement;
 * - otherwise (a listing of /proc/self/fd: 8.4 ms at 10,000 fds — per acknowledgement, as much again as the
 *   10 ms a batch is sized to cost) only when the estimate is below two full batches — every acknowledgement
 *   from then on, so the end of the table is never guessed — or has fallen by a quarter since the last
 *   measurement: fds the app opens meanwhile (an upstream connection or a file per connection moved in) are
 *   seen before they take more than the room left, and a listing is paid for by a quarter of the room moved
 *   (none at all when the limit is far above what is moved: Node raises the soft limit to the hard one).
 *
 * A measurement that fails for want of an fd (EMFILE) means the table is full: room 0. So does one that fails
 * for any other reason once one has succeeded: /proc was there a moment ago, and a full table is what makes
 * it unreadable — an estimate of "no limit" then would send batches straight into the full table, where they
 * are cut; room 0 makes the old generation close the rest politely instead (ERR_BATON_NO_ROOM). Only a first
 * measurement that fails for another reason (no /proc at all) says nothing: no limit is assumed, as before.
 */
import { type FdUsageReading, readFdUsage } from '../fd/fd-usage.js';

/** fds the new generation keeps free for its own work (files, new connections, its own next upgrade). */
export const FD_RESERVE = 64;
/** Room that is "unknown: no limit" (no /proc) or unlimited (RLIMIT_NOFILE infinity). */
export const NO_LIMIT = Number.MAX_SAFE_INTEGER;

/**
 * The estimate of the room. `low`: below this it is measured again at every acknowledgement (what the sender may
 * have in flight); `read`: how the fd table is measured (a stand-in in tests).
 */
export class FdRoom {
  readonly #low: number;
  readonly #read: () => FdUsageReading;
  /** A measurement succeeded: /proc is there, and a later one that fails means the table is full. */
  #seen = false;
  /** The last measurement counted by stat() (cheap), not by a listing. */
  #cheap = false;
  /** What the last measurement found. */
  #measured: number;
  #room: number;
  /** The soft RLIMIT_NOFILE the last successful measurement read (Infinity before one, or when unlimited). */
  #limit = Number.POSITIVE_INFINITY;

  constructor(low: number, read: () => FdUsageReading = readFdUsage) {
    this.#low = low;
    this.#read = read;
    this.#room = this.#measured = this.#measure();
  }

  /** The soft RLIMIT_NOFILE as last read (Infinity when unlimited or never read): what else needs the limit at
   * the receiver's start takes it from here rather than read /proc again. */
  get limit(): number {
    return this.#limit;
  }

  /** fds this process can still take, as estimated now. */
  get room(): number {
    return this.#room;
  }

  /** `count` fds arrived (parked or adopted: open here either way); returns the room left. */
  took(count: number): number {
    this.#room = Math.max(0, this.#room - count);
    if (this.#cheap || this.#room < this.#low || this.#room <= this.#measured * 0.75)
      this.#room = this.#measured = this.#measure();
    return this.#room;
  }

  #measure(): number {
    const usage = this.#read();
    if (usage === 'full' || (usage === 'unreadable' && this.#seen)) return 0;
    if (usage === 'unreadable') return NO_LIMIT;
    this.#seen = true;
    this.#limit = usage.limit;
    this.#cheap = usage.counted === 'stat';
    if (usage.limit === Infinity) return NO_LIMIT;
    return Math.max(0, usage.limit - usage.open - FD_RESERVE);
  }
}
