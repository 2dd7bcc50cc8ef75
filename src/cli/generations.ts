/**
 * The supervisor's generations and the sequence each goes through (its states and their table are in
 * generation.ts): spawn -> join the control socket -> offer the inventory -> ready -> promote (its sockets
 * join the inventory, the one it replaces drains) or roll back (the serving one is untouched) -> exit;
 * a crash of the serving one respawns after the backoff (respawn.ts). One start at a time: a reload
 * asked for by SIGHUP and one asked for by `baton reload` while it runs are the same reload.
 *
 * Every OS call goes through `os` (process.ts); what belongs to the supervisor as a whole (stopping, giving
 * up, finishing, a takeover) it asks of its host.
 */
import { batonError } from '../fd/errors.js';
import { closeFds } from '../fd/fds.js';
import type { Inventory } from '../handoff/inventory.js';
import { handOver, type LogFn } from '../handoff/server.js';
import type { HandoffSession } from '../handoff/session.js';
import { listeners, oneLine, type ServiceNotifier } from '../integrations/systemd.js';
import type { CrashLoop } from './crash-loop.js';
import { moveTo, newGeneration, type Generation } from './generation.js';
import { promoteListeners } from './listeners.js';
import { outputTail } from './output-tail.js';
import type { SpawnedChild, SupervisorProcess } from './process.js';
import { Respawner } from './respawn.js';
import { followOutput, generationEnv } from './spawn-generation.js';
import type { Tallies } from './tallies.js';
import { addressInUseHint } from './takeover.js';
import type { UpgradeRecord } from './upgrade-record.js';

/** What started a generation: the supervisor itself (start, respawn), `baton reload`, or SIGHUP. */
export type Trigger = 'auto' | 'command' | 'signal';

export const KILL_GRACE_MS = 3000;
/** How long a generation's exit may lag behind its control connection closing. */
const EXIT_GRACE_MS = 1000;
const HISTORY = 50;

export interface GenerationsOptions {
  command: string[];
  /** Read at each start: the supervisor settles it (checkSocketDir) before the first. */
  socket: string;
  logFormat: 'text' | 'json';
  readyTimeoutMs: number;
  drainTimeoutMs: number;
  /** This lane's worker slot of `workers` (`baton run --workers N`: a Generations per slot); default 0 of 1. */
  slot?: number;
  workers?: number;
}

/** What the generations ask of the supervisor. */
export interface GenerationsHost {
  stopping(): boolean;
  /** --max-starts failed starts in a row, the last generation `generation`'s for `reason`: stop, exit 1. */
  giveUp(failedStarts: number, generation: number, reason: string): void;
  /** The first generation to serve after a takeover: hand the orphan over. False: there is no takeover. */
  takeOver(names: string[], migrationFd: number | null): boolean;
  /** A generation exited (the supervisor may be done). */
  exited(): void;
  /** With N workers: `g` is ready; resolve true to commit it (every worker of its start is ready), false to
   * abandon it (the start failed elsewhere). Absent: commit at once (one worker). */
  beforeCommit?(g: Generation): boolean | Promise<boolean>;
  /** With N workers: a starting generation was rolled back (the whole start fails). */
  rolledBack?(g: Generation, reason: string): void;
  /** With N workers: `g` was committed and `migrationFd` (its migration channel, not owned) is about to go to the
   * generation it replaces. A scale-down passes more channels to `g` over it, for the removed slots' workers. */
  committed?(g: Generation, migrationFd: number | null): void;
  /** With N workers: `g` became this lane's serving generation (the slot lending reassigns). */
  serving?(g: Generation): void;
  log: LogFn;
}

export class Generations {
  readonly #os: SupervisorProcess;
  readonly #opts: GenerationsOptions;
  readonly #inventory: Inventory;
  readonly #notifier: ServiceNotifier;
  readonly #tallies: Tallies;
  readonly #respawner: Respawner;
  readonly #host: GenerationsHost;
  readonly all = new Map<number, Generation>();
  next = 1;
  current: Generation | null = null;
  /** The generation starting now. */
  attempt: Generation | null = null;
  history: UpgradeRecord[] = [];
  /** Has READY=1 been sent (the first generation served)? */
  readySent = false;
  /** 1 once a serving generation crashed, or the supervisor gave up (respawn.ts). */
  exitCode = 0;
  /** exitOf() callers, by generation. */
  readonly #exitWaiters = new Map<Generation, Array<() => void>>();
  /** Upgrades somebody asked for (reload, SIGHUP): their outcome ends a RELOADING=1 with READY=1. */
  readonly #requested = new WeakSet<UpgradeRecord>();
  /** The generation starting now: its outcome, and what started it. */
  #pending: { promise: Promise<UpgradeRecord>; record: UpgradeRecord; trigger: Trigger } | null = null;

  /** The supervisor's parts it shares; `opts` is read at each use (the socket is settled at start). */
  constructor(parts: {
    os: SupervisorProcess;
    opts: GenerationsOptions;
    inventory: Inventory;
    notifier: ServiceNotifier;
    tallies: Tallies;
    crash: CrashLoop;
    host: GenerationsHost;
  }) {
    this.#os = parts.os;
    this.#opts = parts.opts;
    this.#inventory = parts.inventory;
    this.#notifier = parts.notifier;
    this.#tallies = parts.tallies;
    this.#host = parts.host;
    this.#respawner = new Respawner(parts.crash, {
      stopping: () => this.#host.stopping(),
      current: () => this.current,
      attempt: () => this.attempt,
      respawn: () => void this.launch('respawn'),
      giveUp: (failedStarts, generation, reason) => this.#host.giveUp(failedStarts, generation, reason),
      listeners: () => this.#inventory.size,
      failed: () => {
        this.exitCode = 1;
      },
      notifier: this.#notifier,
      log: this.#host.log,
    });
  }

  /** Generations started in this lane because none was serving (respawn.ts). */
  get restarts(): number {
    return this.#respawner.restarts;
  }

  alive(): Generation[] {
    return [...this.all.values()].filter((g) => g.state !== 'exited');
  }

  /**
   * Start the next generation; resolves with the outcome. Only one at a time, except that a reload started
   * by a signal (SIGHUP) and a request that arrives while it runs are the same reload: the later one
   * waits for it and gets its outcome (systemd's Type=notify-reload sends SIGHUP, then runs ExecReload=).
   */
  reload(trigger: 'command' | 'signal', tally = true): Promise<UpgradeRecord> {
    const stopping = this.#host.stopping();
    if (trigger === 'signal' && (stopping || this.attempt)) {
      // No new generation for this SIGHUP: say so, and why (it used to vanish without a line).
      const why = stopping
        ? 'the supervisor is stopping'
        : `a reload is in progress: generation ${this.attempt!.generation} (pid ${this.attempt!.pid}) is starting, ` +
          'and its outcome answers this signal too';
      this.#host.log('warn', 'sighup-ignored', { reason: why });
    }
    if (stopping) return Promise.reject(batonError('ERR_BATON_STATE', 'the supervisor is stopping'));
    if (this.attempt) {
      const pending = this.#pending;
      if (pending && (trigger === 'signal' || pending.trigger === 'signal')) {
        // The manager's new reload cycle is acknowledged by this RELOADING=1 and ends with the READY=1 of
        // the generation starting now.
        if (trigger === 'signal') {
          this.#requested.add(pending.record);
          this.#notifier.reloading(`reloading: generation ${this.attempt.generation} is starting`);
        }
        return pending.promise;
      }
      const { generation, pid } = this.attempt;
      const busy = `upgrade in progress: generation ${generation} (pid ${pid}) is starting`;
      return Promise.reject(batonError('ERR_BATON_UPGRADE_IN_PROGRESS', busy));
    }
    this.#respawner.cancel();
    this.#notifier.reloading(`reloading: generation ${this.next} is starting`);
    return this.launch(this.current ? 'reload' : 'respawn', trigger).then((record) => {
      if (tally) this.#tallies.reloaded(record, this.current !== null && this.current.generation !== record.generation);
      return record;
    });
  }

  /** `trigger`: 'auto' (start, respawn) or how a reload was asked for (its outcome is reported to the
   * service manager with READY=1). */
  launch(kind: UpgradeRecord['kind'], trigger: Trigger = 'auto'): Promise<UpgradeRecord> {
    const generation = this.next++;
    const worker = { index: this.#opts.slot ?? 0, count: this.#opts.workers ?? 1 };
    const env = generationEnv(this.#opts, generation, this.#os.pid, worker);
    const [file, ...args] = this.#opts.command;
    const startedAt = new Date(this.#os.now()).toISOString();
    const record: UpgradeRecord = { generation, pid: 0, kind, outcome: 'pending', startedAt };
    if (trigger !== 'auto') this.#requested.add(record);
    this.history.push(record);
    if (this.history.length > HISTORY) this.history.shift();
    let child: SpawnedChild;
    try {
      child = this.#os.spawn(file!, args, env);
    } catch (err) {
      record.outcome = 'rolled-back';
      record.reason = `could not start ${file}: ${(err as Error).message}`;
      const failed = `generation ${generation} could not start: ${oneLine(record.reason)}`;
      if (this.readySent && trigger !== 'auto') this.#notifier.ready(failed);
      return Promise.resolve(record);
    }
    const g = newGeneration(generation, child.pid ?? 0, child.stderr, this.#os.now());
    if (worker.count > 1) g.worker = worker.index;
    record.pid = g.pid;
    this.all.set(generation, g);
    this.attempt = g;
    child.on('error', (err) => {
      // spawn failures (ENOENT) arrive here, followed by 'exit' or nothing at all.
      g.stderrTail += `\n${err.message}`;
      if (g.state !== 'exited' && !g.pid) this.#onExit(g, -1, null);
    });
    this.#follow(g, (exited) => child.on('exit', exited));
    this.#respawner.started(kind);
    this.#host.log('info', 'spawn', { generation, child: g.pid, kind });
    const promise = new Promise<UpgradeRecord>((resolve) => {
      const timer = this.#os.setTimeout(() => {
        this.#rollback(g, `no ready() within ${this.#opts.readyTimeoutMs} ms`);
        this.#terminate(g);
      }, this.#opts.readyTimeoutMs);
      g.attempt = { record, settle: resolve, timer };
    });
    const pending = { promise, record, trigger };
    this.#pending = pending;
    void promise.then(() => {
      if (this.#pending === pending) this.#pending = null;
    });
    return promise;
  }

  /** A generation carried across a re-exec (reexec-carry.ts): follow its output and exit again. */
  adopt(g: Generation): void {
    this.all.set(g.generation, g);
    if (g.session) this.watch(g, g.session);
    this.#follow(g, (exited) => this.#os.watchExit(g.pid, ({ code, signal }) => exited(code, signal)));
    if (g.state === 'draining') this.#drainDeadline(g);
  }

  #follow(g: Generation, onChildExit: Parameters<typeof followOutput>[2]): void {
    // With N workers each line of a worker's stderr says whose it is (text logs; a JSON line stays JSON).
    const workers = this.#opts.workers ?? 1;
    const label = workers > 1 && this.#opts.logFormat === 'text' ? `[gen ${g.generation} w${g.worker ?? 0}] ` : '';
    followOutput(this.#os, g, onChildExit, (code, signal) => this.#onExit(g, code, signal), label);
  }

  /** What the supervisor hears from a generation on its control session. */
  watch(g: Generation, session: HandoffSession): void {
    session.on('register', (entry, fd) => {
      g.registered.set({ entry, fd }); // closes the fd it replaces
    });
    session.on('stats', (s) => {
      g.connections = s.connections;
      if (s.accepted !== undefined) g.accepted = s.accepted;
      // Absent from a drain's last report (and from an older baton): nothing arriving.
      g.arriving = s.arriving ?? 0;
      if (s.moved !== undefined && g.replacedBy) this.#migrationReport(g, g.replacedBy, s.moved, s.notMoved ?? 0);
      g.kinds = s.kinds;
      g.waiting = s.waiting;
      // A report too soon after the previous one has no event-loop figures: keep the last ones.
      if (s.loop) g.loop = s.loop;
      if (s.moved !== undefined) this.#tallies.drained(s.moved, s.notMoved ?? 0, s.notMovedReasons);
    });
    session.on('close', () => this.#lostContact(g, 'the generation closed its control connection before ready()'));
  }

  /** A generation said hello on the control socket: hand it the inventory, and promote it once ready. */
  async join(session: HandoffSession): Promise<void> {
    const hello = session.hello;
    const g = hello.generation ? this.all.get(hello.generation) : undefined;
    if (g?.state !== 'starting' || g.session || !this.#os.isDescendant(session.peer.pid, g.pid)) {
      // The reason goes into the log too: every refused connection is logged with why.
      const reason = `pid ${session.peer.pid} is not the generation this supervisor is starting`;
      const fields = { peer: session.peer.pid, claimed: hello.generation ?? null, reason };
      this.#host.log('warn', 'generation-refused', fields);
      await session.refuse('ERR_BATON_REFUSED', reason);
      return;
    }
    g.session = session;
    this.watch(g, session);
    const promoted: { old: Generation | null; done: boolean } = { old: null, done: false };
    try {
      // Acknowledge first, then drain the old generation (handOver says why).
      const done = await handOver(session, {
        generation: g.generation,
        inventory: this.#inventory.entries(),
        readyTimeoutMs: this.#opts.readyTimeoutMs,
        // Rolled back meanwhile: nothing to acknowledge. Otherwise it becomes the current generation first.
        beforeAck: (names) => {
          const promote = () => {
            if (g.state !== 'starting') return false;
            promoted.old = this.#promote(g, names);
            promoted.done = true;
            return true;
          };
          // One worker: at once, as always. N workers: once every worker of this start is ready.
          const commit = this.#host.beforeCommit;
          if (!commit || g.state !== 'starting') return promote();
          return Promise.resolve(commit(g)).then((ok) => ok && promote());
        },
      });
      if (!done) return;
      const { names, migrationFd } = done;
      const old = promoted.old;
      if (promoted.done) this.#host.committed?.(g, migrationFd);
      if (old) this.drain(old, 'upgrade', migrationFd);
      else if (!this.#host.takeOver(names, migrationFd) && migrationFd !== null) closeFds([migrationFd]);
    } catch (err) {
      if (promoted.done) this.#host.committed?.(g, null); // the workers it takes over from drain all the same
      this.#lostContact(g, (err as Error).message);
    }
  }

  /**
   * The control connection of a starting generation broke (or the handoff failed). Usually because the
   * process is exiting: its exit (code or signal and last output, a far better reason) gets a moment to
   * arrive first; if it does not, roll back with `reason` and terminate it.
   */
  #lostContact(g: Generation, reason: string): void {
    if (g.state !== 'starting' || !g.attempt) return;
    this.#os.setTimeout(() => {
      if (g.state !== 'starting' || !g.attempt) return;
      this.#rollback(g, reason);
      this.#terminate(g);
    }, EXIT_GRACE_MS);
  }

  /** `g` is ready: it becomes the current generation. Returns the one it replaces, which the caller drains. */
  #promote(g: Generation, names: string[]): Generation | null {
    // Its own sockets join the inventory; sockets nobody uses any more are closed.
    promoteListeners(this.#inventory, g.registered, new Set(names), this.#notifier, this.#host.log);
    moveTo(g, 'serving', this.#os.now());
    const old = this.current;
    this.current = g;
    this.attempt = null;
    this.#respawner.served(g);
    this.#host.serving?.(g);
    const attempt = g.attempt;
    g.attempt = undefined;
    if (attempt) {
      this.#os.clearTimeout(attempt.timer);
      attempt.record.outcome = 'serving';
      attempt.record.readyMs = g.readyAt! - g.startedAt;
      const fields = { generation: g.generation, child: g.pid, ms: attempt.record.readyMs };
      this.#host.log('info', 'ready', { ...fields, listeners: this.#inventory.size });
      // READY=1 for the first generation and at the end of a requested reload; a respawn only updates STATUS=.
      const status = this.#serving();
      if (!this.readySent || this.#requested.has(attempt.record)) this.#notifier.ready(status);
      else this.#notifier.status(status);
      this.readySent = true;
      attempt.settle(attempt.record);
    }
    if (old?.state !== 'serving') return null;
    if (attempt) old.replacedBy = attempt.record;
    return old;
  }

  /** What STATUS= says about the serving generation. */
  #serving(): string {
    const g = this.current;
    return g ? `generation ${g.generation} serving, ${listeners(this.#inventory.size)}` : 'no generation serving';
  }

  /** `migrationFd` (owned, closed here once relayed): lets the old generation move live connections. */
  drain(g: Generation, reason: 'upgrade' | 'stop', migrationFd: number | null = null): void {
    moveTo(g, 'draining', this.#os.now());
    const fields = { generation: g.generation, child: g.pid, reason, migrate: migrationFd !== null };
    this.#host.log('info', 'drain', fields);
    if (g.session && !g.session.link.closed) {
      g.session
        .drain(this.#opts.drainTimeoutMs, reason, migrationFd)
        .catch(() => this.kill(g, 'SIGTERM'))
        .finally(() => {
          if (migrationFd !== null) closeFds([migrationFd]);
        });
    } else {
      if (migrationFd !== null) closeFds([migrationFd]);
      this.kill(g, 'SIGTERM'); // no control connection (it never had one, or it broke): fall back to a signal
    }
    this.#drainDeadline(g);
  }

  /** Stop: a starting generation is terminated (it has nothing to drain), the others drain; any still
   * running drainTimeout + KILL_GRACE_MS from now is killed. */
  stopAll(): void {
    for (const g of this.alive()) {
      if (g.state === 'starting') this.kill(g, 'SIGTERM');
      else this.drain(g, 'stop');
    }
    const deadline = this.#os.setTimeout(() => {
      for (const g of this.alive()) this.kill(g, 'SIGKILL');
    }, this.#opts.drainTimeoutMs + KILL_GRACE_MS);
    deadline.unref();
  }

  /** A draining generation still running drainTimeout + KILL_GRACE_MS after its drain began is killed. */
  #drainDeadline(g: Generation): void {
    const now = this.#os.now();
    const left = (g.drainStartedAt ?? now) + this.#opts.drainTimeoutMs + KILL_GRACE_MS - now;
    this.#os
      .setTimeout(
        () => {
          if (g.state === 'draining') this.kill(g, 'SIGKILL');
        },
        Math.max(0, left),
      )
      .unref();
  }

  /** The replaced generation's drain says how many connections moved: recorded, and a warning if not all. */
  #migrationReport(old: Generation, record: UpgradeRecord, moved: number, notMoved: number): void {
    record.moved = moved;
    record.notMoved = notMoved;
    const fields = { generation: old.generation, child: old.pid, to: record.generation, moved, notMoved };
    const reason = 'no room or no way to move them; closed politely';
    if (notMoved > 0) this.#host.log('warn', 'connections-not-moved', { ...fields, reason });
    else this.#host.log('info', 'connections-moved', fields);
  }

  #rollback(g: Generation, reason: string): void {
    if (g.state !== 'starting') return;
    const attempt = g.attempt;
    g.attempt = undefined;
    if (this.attempt === g) this.attempt = null;
    g.registered.closeAll();
    g.session?.close();
    if (!attempt) return;
    this.#os.clearTimeout(attempt.timer);
    attempt.record.outcome = 'rolled-back';
    attempt.record.reason = reason;
    this.#host.log('warn', 'rollback', { generation: g.generation, child: g.pid, reason });
    this.#host.rolledBack?.(g, reason);
    const failed = `generation ${g.generation} rolled back: ${oneLine(reason)}`;
    // The reload is over (the old generation kept serving): systemd leaves "reloading" on READY=1.
    if (this.readySent && this.#requested.has(attempt.record)) this.#notifier.ready(`${this.#serving()}; ${failed}`);
    else this.#notifier.status(failed);
    attempt.settle(attempt.record);
    this.#respawner.rolledBack(g, reason);
  }

  #onExit(g: Generation, code: number | null, signal: NodeJS.Signals | null): void {
    if (g.state === 'exited') return;
    const was = g.state;
    g.exit = { code, signal };
    const how = signal ? `on ${signal}` : `with code ${code}`;
    const tail = outputTail(g.stderrTail);
    const output = tail ? `; last output:\n${tail}` : '';
    if (was === 'starting') this.#rollback(g, `exited ${how} before ready()${output}${addressInUseHint(tail)}`);
    moveTo(g, 'exited', this.#os.now());
    g.session?.close();
    this.all.delete(g.generation);
    for (const wake of this.#exitWaiters.get(g) ?? []) wake();
    this.#exitWaiters.delete(g);
    const fields = { generation: g.generation, child: g.pid, code, signal };
    if (was === 'draining') {
      if (g.replacedBy && g.drainStartedAt) g.replacedBy.drainMs = this.#os.now() - g.drainStartedAt;
      this.#host.log('info', 'exit', fields);
    } else if (was === 'serving') {
      this.#host.log('error', 'crash', fields);
      if (this.current === g) this.current = null;
      this.#respawner.crashed(g, how, code, output);
    }
    this.#host.exited();
  }

  /** Nothing serves: start another after the backoff (unless stopping, or one is scheduled already). */
  scheduleRespawn(): void {
    this.#respawner.schedule();
  }

  /** This lane's slot was removed (a scale-down): no respawn here any more, a start in progress is abandoned. */
  retire(why: string): void {
    this.#respawner.retire();
    this.abortStart(why);
  }

  /** Resolves once `g` has exited (at once if it has). */
  exitOf(g: Generation): Promise<void> {
    if (g.state === 'exited') return Promise.resolve();
    return new Promise((resolve) => this.#exitWaiters.set(g, [...(this.#exitWaiters.get(g) ?? []), resolve]));
  }

  /** Abandon the generation starting now, if any (another worker of its start failed): roll back, terminate. */
  abortStart(reason: string): void {
    const g = this.attempt;
    if (g?.state !== 'starting') return;
    this.#rollback(g, reason);
    this.#terminate(g);
  }

  /** SIGTERM now, SIGKILL after the grace. */
  #terminate(g: Generation): void {
    this.kill(g, 'SIGTERM');
    this.#os.setTimeout(() => this.kill(g, 'SIGKILL'), KILL_GRACE_MS).unref();
  }

  /** Signal a generation's whole process group (it was spawned detached), unless it is gone. */
  kill(g: Generation, signal: NodeJS.Signals): void {
    if (g.pid && g.state !== 'exited') this.#os.signal(g.pid, signal);
  }
}
