/**
 * A lane's respawns: what happens when nothing serves. A start that fails while nothing serves, or a serving
 * generation that crashes, counts against the crash loop (crash-loop.ts: --max-starts, --min-uptime, the
 * backoff); the next generation starts after the backoff, or the supervisor gives up. The lane (generations.ts)
 * tells it what happened; it reaches the lane's state only through RespawnLane.
 */
import type { LogFn } from '../handoff/server.js';
import type { ServiceNotifier } from '../integrations/systemd.js';
import type { CrashLoop } from './crash-loop.js';
import type { Generation } from './generation.js';
import type { UpgradeRecord } from './upgrade-record.js';

/** What the respawns ask of their lane. */
export interface RespawnLane {
  stopping(): boolean;
  /** The lane's serving generation, and the one starting now. */
  current(): Generation | null;
  attempt(): Generation | null;
  /** Start the next generation now, as a respawn. */
  respawn(): void;
  /** --max-starts failed starts in a row, the last generation `generation`'s for `reason`: stop, exit 1. */
  giveUp(failedStarts: number, generation: number, reason: string): void;
  /** The listeners the supervisor keeps open meanwhile (for the log). */
  listeners(): number;
  /** The lane's exit code becomes 1: a serving generation crashed (not with code 0), or the supervisor gave up. */
  failed(): void;
  notifier: ServiceNotifier;
  log: LogFn;
}

export class Respawner {
  readonly #crash: CrashLoop;
  readonly #lane: RespawnLane;
  /** A scale-down removed this lane (retire()). */
  #retired = false;

  constructor(crash: CrashLoop, lane: RespawnLane) {
    this.#crash = crash;
    this.#lane = lane;
  }

  /** Generations started in this lane because none was serving. */
  get restarts(): number {
    return this.#crash.restarts;
  }

  /** A generation of `kind` starts. */
  started(kind: UpgradeRecord['kind']): void {
    if (kind === 'respawn') this.#crash.restarts++;
  }

  /** A reload starts a generation now (or the lane stops respawning): forget a scheduled respawn. */
  cancel(): void {
    this.#crash.cancel();
  }

  /** `g` became the serving generation: the next respawn waits the first backoff again, and the crash loop (if
   * any) is over once `g` has served --min-uptime. */
  served(g: Generation): void {
    this.#crash.endAfterUptime(g.readyAt!, () => this.#lane.current() === g);
    this.#crash.ready();
  }

  /** The start of `g` was rolled back for `reason`: if nothing serves, it counts, and another starts (or the
   * supervisor gives up). */
  rolledBack(g: Generation, reason: string): void {
    if (!this.#lane.current() && !this.#lane.stopping() && !this.#failedStart(g, reason)) this.schedule();
  }

  /** The serving generation `g` exited `how` (with `code`, its last output in `output`): start another, unless
   * it served less than --min-uptime, nothing else serves and that makes --max-starts failed starts in a row. */
  crashed(g: Generation, how: string, code: number | null, output: string): void {
    if (this.#lane.stopping()) return;
    const status = `generation ${g.generation} exited ${how} while serving`;
    this.#lane.notifier.status(`${status}; starting another (the listeners stay open)`);
    if (code !== 0) this.#lane.failed();
    const { upMs, early } = this.#crash.tooSoon(g.readyAt);
    const why = `exited ${how} ${upMs} ms after ready(), sooner than --min-uptime ${this.#crash.minUptimeMs} ms`;
    const failed = !this.#lane.current() && early && this.#failedStart(g, `${why}${output}`);
    if (!failed && !this.#lane.attempt()) this.schedule();
  }

  /** Count a start that failed while nothing serves; true once the supervisor gives up (crash-loop.ts). */
  #failedStart(g: Generation, reason: string): boolean {
    const failure = this.#crash.failedStart(g.generation, g.pid, reason);
    if (failure === null) return false;
    this.#lane.failed();
    this.#lane.giveUp(this.#crash.failedStarts, g.generation, reason);
    return true;
  }

  /** Nothing serves: start another after the backoff (unless stopping, or one is scheduled already). */
  schedule(): void {
    const lane = this.#lane;
    if (lane.stopping() || this.#retired) return;
    const delay = this.#crash.schedule(() => {
      if (!lane.stopping() && !lane.attempt() && !lane.current()) lane.respawn();
    });
    if (delay === null) return;
    lane.log('info', 'respawn-scheduled', { inMs: delay, listenersKept: lane.listeners() });
  }

  /** This lane's slot was removed (a scale-down): no respawn here any more. */
  retire(): void {
    this.#retired = true;
    this.#crash.cancel();
  }
}
