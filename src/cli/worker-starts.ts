/**
 * The start of one generation of N workers (`baton run --workers N`, docs/workers.md), as a reload or the first
 * start runs it: worker 0 first and alone (it binds the listeners new to the supervisor, which makes them slot
 * groups when it registers them), then the others, at most `parallel` starting at a time so that startup CPU does
 * not starve the workers serving meanwhile. Nobody commits until every worker is ready: each ready worker waits in
 * ready() (the handoff's async beforeAck), which resolves true for all of them at once when the last one is
 * ready, or false for all of them when any fails — then every started worker is aborted (the old ones never
 * stopped serving) and the outcome names the worker that failed and why. Pure bookkeeping: the caller spawns,
 * kills and times out (one --ready-timeout for the whole generation).
 */

export interface WorkerStartHooks {
  /** Spawn worker `slot` of this generation. */
  start(slot: number): void;
  /** The start failed: terminate these workers (started, not known to have exited). */
  abort(slots: number[]): void;
}

export type WorkerStartsOutcome = { ok: true } | { ok: false; slot: number; reason: string };

type SlotState = 'waiting' | 'starting' | 'ready' | 'exited';

export class WorkerStarts {
  readonly count: number;
  readonly #parallel: number;
  readonly #hooks: WorkerStartHooks;
  readonly #state: SlotState[];
  readonly #waiters: Array<(commit: boolean) => void> = [];
  #settled: WorkerStartsOutcome | null = null;
  #resolve!: (o: WorkerStartsOutcome) => void;
  /** Resolves once: every worker ready (commit), or the first failure. */
  readonly outcome: Promise<WorkerStartsOutcome>;

  constructor(count: number, hooks: WorkerStartHooks, parallel = 2) {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`count must be an integer >= 1, got ${count}`);
    if (!Number.isInteger(parallel) || parallel < 1) {
      throw new RangeError(`parallel must be an integer >= 1, got ${parallel}`);
    }
    this.count = count;
    this.#parallel = parallel;
    this.#hooks = hooks;
    this.#state = new Array<SlotState>(count).fill('waiting');
    this.outcome = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  /** Start worker 0 (alone: the pathfinder). */
  begin(): void {
    this.#start(0);
  }

  /**
   * Worker `slot` is ready. Resolves true when every worker is (commit: acknowledge it, drain the old worker of
   * its slot), false if the generation's start failed (roll back: do not acknowledge).
   */
  ready(slot: number): Promise<boolean> {
    this.#check(slot);
    if (this.#settled) return Promise.resolve(this.#settled.ok);
    if (this.#state[slot] !== 'starting') return Promise.resolve(false);
    this.#state[slot] = 'ready';
    const commit = new Promise<boolean>((resolve) => this.#waiters.push(resolve));
    if (this.#state.every((s) => s === 'ready')) this.#settle({ ok: true });
    else this.#fill();
    return commit;
  }

  /**
   * Worker `slot` failed: exited, crashed, lost its control connection, or the generation missed its deadline.
   * `exited`: it is gone already (nothing to kill). Before the commit this aborts the whole start; after it, it is
   * not this start's business (a crash of a serving worker) and is ignored.
   */
  failed(slot: number, reason: string, exited = true): void {
    this.#check(slot);
    if (exited) this.#state[slot] = 'exited';
    if (this.#settled) return;
    const running: number[] = [];
    this.#state.forEach((s, i) => {
      if (s === 'starting' || s === 'ready') running.push(i);
    });
    this.#settle({ ok: false, slot, reason });
    if (running.length > 0) this.#hooks.abort(running);
  }

  #fill(): void {
    if (this.#state[0] !== 'ready') return; // worker 0 starts alone
    let starting = this.#state.filter((s) => s === 'starting').length;
    for (let i = 1; i < this.count && starting < this.#parallel && !this.#settled; i++) {
      if (this.#state[i] !== 'waiting') continue;
      this.#start(i);
      starting++;
    }
  }

  #start(slot: number): void {
    this.#state[slot] = 'starting';
    this.#hooks.start(slot);
  }

  #settle(outcome: WorkerStartsOutcome): void {
    this.#settled = outcome;
    for (const resolve of this.#waiters.splice(0)) resolve(outcome.ok);
    this.#resolve(outcome);
  }

  #check(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.count) {
      throw new RangeError(`slot ${slot} is not one of 0..${this.count - 1}`);
    }
  }
}
