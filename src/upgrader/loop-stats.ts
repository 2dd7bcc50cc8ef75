/**
 * How busy this process's event loop is, for the supervisor's status and /metrics: the p99 of the event
 * loop's delay and its utilisation (the fraction of time it ran JavaScript or callbacks rather than waiting
 * in epoll), both over the window since the previous take().
 */
import { monitorEventLoopDelay, performance, type EventLoopUtilization, type IntervalHistogram } from 'node:perf_hooks';
import type { LoopStats } from '../handoff/messages.js';

/** The delay histogram's timer period: each period is a wake-up. Measured on an idle process over 20 s:
 * 0.4% of a core with Node's (and prom-client's) default of 10 ms, 0.25% with 20 ms, 0 without. A stall of
 * a few ms still shows in the p99 at 20 ms; shorter ones do not matter to an operator. */
const RESOLUTION_MS = 20;

/** A window shorter than a few timer periods has too few samples for a p99. */
const MIN_WINDOW_MS = 5 * RESOLUTION_MS;

const round = (n: number, scale: number) => Math.round(n * scale) / scale;

export class LoopMonitor {
  #histogram: IntervalHistogram;
  #elu: EventLoopUtilization;
  #since = performance.now();

  constructor() {
    this.#histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    this.#histogram.enable();
    this.#elu = performance.eventLoopUtilization();
  }

  /** The figures since the previous call (or since the monitor started), and start a new window; null
   * when the window is too short to say anything (the first report, sent at ready()). */
  take(): LoopStats | null {
    const now = performance.now();
    const window = now - this.#since;
    if (window < MIN_WINDOW_MS) return null;
    const h = this.#histogram;
    // The histogram records the time between the timer's runs, which includes the period itself: the delay
    // is what exceeds it. No run at all in the window: the loop was blocked for all of it.
    const p99 = h.count > 0 ? h.percentile(99) / 1e6 - RESOLUTION_MS : window - RESOLUTION_MS;
    const elu = performance.eventLoopUtilization(this.#elu);
    this.#elu = performance.eventLoopUtilization();
    this.#since = now;
    h.reset();
    return {
      delayP99Ms: round(Math.max(0, p99), 1000),
      utilization: round(Math.min(1, Math.max(0, elu.utilization)), 1e4),
    };
  }

  stop(): void {
    this.#histogram.disable();
  }
}
