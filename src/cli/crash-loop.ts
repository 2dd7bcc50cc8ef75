/**
 * Crash-loop accounting and the respawn backoff of the supervisor. A start that fails while nothing serves
 * (a rollback, or a crash within --min-uptime of ready()) counts; --max-starts of them in a row and the
 * supervisor gives up, as PM2 stops a script that keeps failing, instead of retrying a missing file forever.
 * Respawns wait a backoff that doubles from 100 ms to 10 s; a generation that becomes ready resets it, and
 * one that has served --min-uptime resets the count.
 */
import type { SupervisorProcess, TimerHandle } from './process.js';

const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 10_000;
const DEFAULT_MAX_STARTS = 5;
const DEFAULT_MIN_UPTIME_MS = 1000;

export interface CrashLoopOptions {
  /** Failed starts in a row before giving up; 0: never. Default 5. */
  maxStarts?: number;
  /** A generation that exits sooner than this after ready() counts as a failed start. Default 1000. */
  minUptimeMs?: number;
}

export class CrashLoop {
  readonly #os: SupervisorProcess;
  readonly maxStarts: number;
  readonly minUptimeMs: number;
  /** The next respawn's delay. */
  backoffMs = FIRST_BACKOFF_MS;
  /** Starts that failed in a row; respawns so far; why the supervisor gave up. */
  failedStarts = 0;
  restarts = 0;
  failure: string | null = null;
  #timer: TimerHandle | null = null;

  constructor(os: SupervisorProcess, options: CrashLoopOptions) {
    this.#os = os;
    this.maxStarts = options.maxStarts ?? DEFAULT_MAX_STARTS;
    this.minUptimeMs = options.minUptimeMs ?? DEFAULT_MIN_UPTIME_MS;
  }

  /** Is a respawn waiting for its backoff? */
  get respawnDue(): boolean {
    return this.#timer !== null;
  }

  /** Call `respawn` after the backoff, which doubles for the next one. Returns the delay, or null if one is
   * already scheduled. */
  schedule(respawn: () => void): number | null {
    if (this.#timer) return null;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    this.#timer = this.#os.setTimeout(() => {
      this.#timer = null;
      respawn();
    }, delay);
    return delay;
  }

  /** Forget a scheduled respawn (a reload starts one now, or the supervisor stops). */
  cancel(): void {
    this.#os.clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** A generation became ready: the next respawn waits the first backoff again. */
  ready(): void {
    this.backoffMs = FIRST_BACKOFF_MS;
  }

  /** Once `readyAt` + min-uptime has passed with `stillServing()` true, the crash loop (if any) is over. */
  endAfterUptime(readyAt: number, stillServing: () => boolean): void {
    const left = readyAt + this.minUptimeMs - this.#os.now();
    this.#os
      .setTimeout(
        () => {
          if (stillServing()) this.failedStarts = 0;
        },
        Math.max(0, left),
      )
      .unref();
  }

  /** Did a generation ready at `readyAt` exit too soon (within min-uptime)? */
  tooSoon(readyAt: number | undefined): { upMs: number; early: boolean } {
    const upMs = this.#os.now() - (readyAt ?? 0);
    return { upMs, early: upMs < this.minUptimeMs };
  }

  /** Count a failed start of generation `generation` (`pid`), for `reason`. Returns the give-up reason once
   * max-starts failed in a row (also kept in `failure`), else null. */
  failedStart(generation: number, pid: number, reason: string): string | null {
    this.failedStarts++;
    if (this.maxStarts === 0 || this.failedStarts < this.maxStarts) return null;
    const n = this.failedStarts;
    this.failure = `${n} starts in a row failed; the last, generation ${generation} (pid ${pid}), ${reason}`;
    return this.failure;
  }
}
