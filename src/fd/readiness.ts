/**
 * ReadinessWatch: learn which of many fds became readable (data, EOF, a reset), without reading them or
 * owning them — for fds nothing in Node watches yet (connections parked by the migration receiver until it
 * builds their net.Socket; src/upgrader/migrate-receiver.ts).
 *
 *   const watch = new ReadinessWatch((fds) => { for (const fd of fds) adopt(fd); });
 *   watch.add(fd);      // reported once, when readable; then removed (remove()) or never reported again
 *   watch.remove(fd);   // before handing the fd to anything else
 *   watch.close();      // closes the epoll fd and its watcher, never a watched fd
 *
 * An epoll set (native/readiness.c) holds the fds, each for one report (EPOLLONESHOT); the epoll fd polls
 * readable while it has reports, and a Poller (the uv_poll_t every other fd-layer watcher uses) on it calls
 * `onReady` with up to 64 of them per turn of the event loop — level-triggered, so more come on the next turn.
 * A watched fd closed elsewhere leaves the set by itself (the kernel drops the last reference's registrations).
 */
import util from 'node:util';
import { batonError } from './errors.js';
import { native, type NativePoller } from './native.js';

export class ReadinessWatch {
  /** Most fds one take() (or one callback) gives. */
  static readonly TAKE_MAX: number = native.READINESS_TAKE_MAX;
  #epfd: number;
  #poller: NativePoller | null;
  /** Scratch for readinessTake(). */
  readonly #out = new Int32Array(native.READINESS_TAKE_MAX);

  /**
   * `onReady(fds)`: fds that became readable (each reported once). `onError(err)`: the watcher failed (the
   * watch is closed then; what was watched must be handled some other way).
   */
  constructor(onReady: (fds: number[]) => void, onError: (err: Error) => void) {
    const epfd = native.readinessCreate();
    try {
      this.#poller = new native.Poller(epfd, (status) => {
        let fds: number[];
        try {
          if (status < 0) {
            const code = util.getSystemErrorName(status);
            throw Object.assign(new Error(`uv_poll ${code} on the readiness set`), {
              code,
              errno: status,
              syscall: 'uv_poll',
            });
          }
          fds = this.take();
        } catch (err) {
          // Thrown from a poll callback it would be an uncaught exception: the watch ends, its owner decides.
          this.close();
          onError(err as Error);
          return;
        }
        if (fds.length) onReady(fds);
      });
      this.#poller.start(native.pollEvents.READABLE);
    } catch (err) {
      native.closeMany([epfd]);
      throw err;
    }
    this.#epfd = epfd;
  }

  get closed(): boolean {
    return this.#poller === null;
  }

  /** Watch `fd` (borrowed) for one readable report. Throws as epoll_ctl(2) fails (EEXIST, EBADF, ENOMEM…). */
  add(fd: number): void {
    native.readinessAdd(this.#open(), fd);
  }

  /** Stop watching `fd`. Throws as epoll_ctl(2) fails (ENOENT: it was not watched). */
  remove(fd: number): void {
    native.readinessRemove(this.#open(), fd);
  }

  /** Without blocking: up to 64 fds reported readable (each once), in the order the kernel reports them. */
  take(): number[] {
    const n = native.readinessTake(this.#open(), this.#out);
    return Array.from(this.#out.subarray(0, n));
  }

  /** Close the epoll fd and its watcher; the watched fds are untouched. Idempotent. */
  close(): void {
    if (!this.#poller) return;
    // The Poller closes the epoll fd once its watcher is off Node's own epoll set (libuv requires that order).
    this.#poller.close(true);
    this.#poller = null;
    this.#epfd = -1;
  }

  #open(): number {
    if (this.#epfd < 0) {
      throw batonError('ERR_BATON_NOT_OPEN', 'the readiness watch is closed');
    }
    return this.#epfd;
  }
}
