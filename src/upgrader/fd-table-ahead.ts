/**
 * Grows a new generation's fd table ahead of the connections a move brings in (src/upgrader/migrate-receiver.ts).
 *
 * The kernel grows a process's fd table by doubling it when an fd is needed past its end, and in a process
 * with more than one thread — every Node process — each growth first waits for an RCU grace period, in the
 * thread that needed the fd. Received with recvmsg() on the event loop, 10,000 connections grew the table 7
 * times (256, 512, ... 8,192 fds): 7 blocks of 7-22 ms (Linux 6.18; native/fdutil.c), which every client
 * already moved waits behind. Here the table is grown by growFdTable() on a threadpool thread instead, before
 * the fds need it: to START_FDS when the receiver is made (the first batches, 32 and at most 253 fds, then fit),
 * and by FACTOR whenever the highest fd received passes half of what is grown. The event loop only waits if it
 * needs an fd past the old end while a growth is under way.
 *
 * It is an optimisation only: a growth that fails (RLIMIT_NOFILE below the target, EMFILE) stops the growing,
 * and the kernel grows the table itself, as before. It never goes within FD_RESERVE of the soft limit, where
 * the copy it makes and closes could take a number a batch is about to need.
 */
import { growFdTable } from '../fd/fds.js';
import { FD_RESERVE } from './fd-room.js';

/** The table covers at least this many fds from the start: two full batches and then some (8 KiB of table). */
export const START_FDS = 1024;
/**
 * Each growth multiplies the table by this: 1,024, 8,192, 65,536 fds (512 KiB of table), each started once half
 * of the one before is used — a grace period (~10 ms) is over long before the other half is (a move takes in
 * ~10-15 connections a ms).
 */
export const FACTOR = 8;
/** With no soft limit to stop at: Linux's default fs.nr_open, the most a table may hold unless raised. */
const NO_LIMIT_CAP = 1 << 20;

export class FdTableAhead {
  readonly #viaFd: number;
  /** Grow no further than this (fd numbers below it). */
  readonly #cap: number;
  /** The table covers fds below this, as far as this object made it (the kernel's own growths aside). */
  #covered = 0;
  /** The highest fd received so far. */
  #highest = 0;
  #growing = false;
  /** A growth failed: leave the table to the kernel. */
  #off = false;

  /** `viaFd`: an fd of the caller's, open for as long as this is used (the receiver's channel); `limit`: the soft
   * RLIMIT_NOFILE (Infinity when unlimited or unknown). */
  constructor(viaFd: number, limit: number) {
    this.#viaFd = viaFd;
    this.#cap = Number.isFinite(limit) ? Math.max(0, limit - FD_RESERVE) : NO_LIMIT_CAP;
    this.#grow(START_FDS);
  }

  /** fds arrived, the highest of them `highest`. */
  arrived(highest: number): void {
    if (highest > this.#highest) this.#highest = highest;
    this.#growIfNeeded();
  }

  /** Past half of what is grown: grow by FACTOR. Also once a growth is done, for the fds that arrived meanwhile
   * (one batch can be all there is: the first growth, from the constructor, was still under way when it came
   * beside 2 busy loops). */
  #growIfNeeded(): void {
    if (this.#off || this.#growing || this.#highest * 2 < this.#covered) return;
    this.#grow(Math.max(this.#covered, this.#highest) * FACTOR);
  }

  #grow(to: number): void {
    const target = Math.min(to, this.#cap);
    if (target <= this.#covered) return;
    this.#growing = true;
    growFdTable(this.#viaFd, target - 1).then(
      () => {
        this.#growing = false;
        this.#covered = target;
        this.#growIfNeeded();
      },
      () => {
        this.#growing = false;
        this.#off = true;
      },
    );
  }
}
