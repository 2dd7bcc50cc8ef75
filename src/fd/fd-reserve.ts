/**
 * A few fds held back (copies of /dev/null) and let go only for the moment a receive needs them — the
 * classic EMFILE trick, as libuv keeps one for accept(). A process at RLIMIT_NOFILE otherwise cannot take
 * a single fd from a message: the kernel cuts it (MSG_CTRUNC). Measured: a generation at `prlimit
 * --nofile=64` holding 42 connections lost the `drain` message's migration channel that way, took it for
 * "supervisor gone", kept accepting, and was SIGKILLed with every connection at drain-timeout + 3 s.
 *
 * release() is called right before recvmsg() and refill() right after, on the same tick: nothing on the
 * event loop can take the freed slots in between (libuv's threadpool could, but only baton's own fs calls
 * run there, and none is in flight at a receive on the control connection).
 */
import fs from 'node:fs';
import { native } from './native.js';

export class FdReserve {
  readonly #size: number;
  #fds: number[] = [];

  constructor(size: number) {
    this.#size = size;
    this.refill();
  }

  /** How many are held now (fewer than asked after a receive used the room, until fds are free again). */
  get held(): number {
    return this.#fds.length;
  }

  /** Let the held fds go: the room they took is free for the next receive. */
  release(): void {
    if (this.#fds.length) native.closeMany(this.#fds);
    this.#fds = [];
  }

  /** Take the room back, as far as the fd table allows (EMFILE here is expected and harmless). */
  refill(): void {
    while (this.#fds.length < this.#size) {
      try {
        this.#fds.push(fs.openSync('/dev/null', 'r') /* libuv opens with O_CLOEXEC */);
      } catch {
        return;
      }
    }
  }
}
