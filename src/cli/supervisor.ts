/**
 * The supervisor behind `baton run`: a process with a stable pid that starts generations of the app,
 * hands them the sockets, upgrades on request, and keeps a copy of every listener so that a crashing
 * generation never closes the port (connections wait in the kernel's accept queue for the next one).
 *
 * Each generation's state machine is in generation.ts (a transition table); every OS call (spawn, signals,
 * /proc, timers, the clock) goes through a SupervisorProcess (process.ts), so that the state machine is
 * unit-tested with a fake (test/supervisor-unit.test.ts) beside the real-process tests.
 */
import net from 'node:net';
import { FdChannel } from '../fd/channel.js';
import { FdChannelServer } from '../fd/channel-server.js';
import { fdOf } from '../fd/fd-of.js';
import { batonError } from '../fd/errors.js';
import { closeFds } from '../fd/fds.js';
import { Inventory } from '../handoff/inventory.js';
import { CONTROL_CHANNEL_LIMITS, formatAddress } from '../handoff/messages.js';
import { checkSocketDir } from '../handoff/peer.js';
import { HandoffSession } from '../handoff/session.js';
import { answerControl, handOver, HandoffServer, type LogFn } from '../handoff/server.js';
import { SD_LISTEN_ENV, SD_NOTIFY_ENV } from '../fd/systemd.js';
import { addressInUseHint, Takeover } from './takeover.js';
import type { Logger } from '../upgrader/logger.js';
import { listeners, oneLine, serviceSockets, ServiceNotifier } from '../integrations/systemd.js';
import { promoteListeners } from './listeners.js';
import { moveTo, type Generation } from './generation.js';
import { realProcess, type SpawnedChild, type SupervisorProcess, type TimerHandle } from './process.js';
import { Tallies } from './tallies.js';
import type { UpgradeRecord } from './upgrade-record.js';
import { VERSION } from '../version.js';
import { outputTail } from './output-tail.js';
import {
  checkNewImage, execImage, reexecEntry, STATE_FORMAT, takeCarriedState, type SupervisorState,
} from './reexec.js';

export interface SupervisorOptions {
  command: string[];
  socket: string;
  readyTimeoutMs: number;
  drainTimeoutMs: number;
  logger: Logger;
  logFormat: 'text' | 'json';
  /** Also keep every listener in systemd's fd store (FDSTORE=1), so that a restart keeps the ports open. */
  fdStore?: boolean;
  /** Failed starts in a row (no ready(), or down within minUptimeMs of it) before giving up; 0: never. Default 5. */
  maxStarts?: number;
  /** A generation that exits sooner than this after ready() counts as a failed start. Default 1000. */
  minUptimeMs?: number;
}

export type { GenerationState } from './generation.js';
export type { UpgradeRecord } from './upgrade-record.js';

/** What started a generation: the supervisor itself (start, respawn), `baton reload`, or SIGHUP. */
type Trigger = 'auto' | 'command' | 'signal';

const STDERR_TAIL = 4096;
const KILL_GRACE_MS = 3000;
/** How long a generation's exit may lag behind its control connection closing, and its stderr behind its exit. */
const EXIT_GRACE_MS = 1000;
const STDERR_GRACE_MS = 500;
const MAX_BACKOFF_MS = 10_000;
const DEFAULT_MAX_STARTS = 5;
const DEFAULT_MIN_UPTIME_MS = 1000;

export class Supervisor {
  readonly #opts: SupervisorOptions;
  readonly #os: SupervisorProcess;
  #server!: HandoffServer;
  #inventory = new Inventory();
  #generations = new Map<number, Generation>();
  #next = 1;
  #current: Generation | null = null;
  #attempt: Generation | null = null;
  #history: UpgradeRecord[] = [];
  #stopping = false;
  #backoffMs = 100;
  /** Crash-loop accounting: starts that failed in a row (reset once a generation has served minUptime),
   * respawns so far, and why the supervisor gave up. */
  #failedStarts = 0;
  #restarts = 0;
  #failure: string | null = null;
  #respawnTimer: TimerHandle | null = null;
  /** The orphan whose connections the next generation to serve takes over, until it does. */
  #takeover: Takeover | null = null;
  /** The takeover's handover to the orphan, while it runs (a re-exec waits for it: its connection is not carried). */
  #handover: Promise<void> | null = null;
  #reaper: TimerHandle | null = null;
  #exitCode = 0;
  #startedAt: number;
  /** Re-execs of this supervisor (reexec.ts): how many, when the last one was, is one running. */
  #execCount = 0;
  #execAt: number | null = null;
  #reexecing = false;
  /** The service manager (systemd): notifications, watchdog, fd store. No-ops without NOTIFY_SOCKET. */
  #notifier!: ServiceNotifier;
  /** Has READY=1 been sent (the first generation served)? */
  #readySent = false;
  /** Upgrades somebody asked for (reload, SIGHUP): their outcome ends a RELOADING=1 with READY=1. */
  #requested = new WeakSet<UpgradeRecord>();
  /** The generation starting now: its outcome, and what started it. A reload started by SIGHUP is joined
   * by a `baton reload` (systemd's Type=notify-reload signals, then runs ExecReload=). */
  #pending: { promise: Promise<UpgradeRecord>; record: UpgradeRecord; trigger: Trigger } | null = null;
  /** Reloads by outcome, connections moved: for status and /metrics. */
  readonly #tallies = new Tallies();
  #done!: (code: number) => void;
  readonly finished: Promise<number>;

  /** `os`: every OS call goes through it (a fake in the unit tests). */
  constructor(options: SupervisorOptions, os: SupervisorProcess = realProcess()) {
    this.#opts = { ...options };
    this.#os = os;
    this.#startedAt = os.now();
    this.finished = new Promise((resolve) => (this.#done = resolve));
  }

  async start(): Promise<void> {
    const fdStore = this.#opts.fdStore ?? false;
    this.#notifier = new ServiceNotifier({ logger: this.#opts.logger, fields: () => ({ supervisor: process.pid }), fdStore });
    // Re-executed (reexec.ts): the previous image's state and fds, instead of a fresh start.
    const carried = takeCarriedState();
    if (carried) return this.#resume(carried);
    // Sockets from the service manager (socket activation, or the fd store after a restart) join the
    // inventory before anything is spawned; the variables are gone from the environment from here on.
    for (const { entry, fd } of serviceSockets(fdStore, (level, event, fields) => this.#log(level, event, fields))) {
      this.#inventory.set({ entry, fd });
      if (entry.origin === 'fdstore') this.#notifier.markStored(entry.name);
      this.#log('info', 'listen-fd', { name: entry.unnamed ? null : entry.name, kind: entry.kind, address: formatAddress(entry.address), origin: entry.origin });
    }
    this.#notifier.startWatchdog();
    // The socket's real place (a private subdirectory of /tmp, say): passed to generations and shown in status.
    this.#opts.socket = checkSocketDir(this.#opts.socket);
    this.#serve(await FdChannelServer.listen(this.#opts.socket, CONTROL_CHANNEL_LIMITS));
    this.#log('info', 'supervisor-start', { socket: this.#opts.socket, command: this.#opts.command.join(' ') });
    // A generation a crashed supervisor left behind: its listeners become ours, and the first generation
    // takes over its connections (src/cli/takeover.ts). Only after binding the control socket: of two
    // supervisors started at once, only one gets here.
    try {
      const log = (level: 'info' | 'warn', event: string, fields: Record<string, string | number | null>) => this.#log(level, event, fields);
      this.#takeover = await Takeover.find(this.#opts.socket, this.#opts.readyTimeoutMs, log);
    } catch (err) {
      this.#server.close();
      this.#notifier.stopWatchdog();
      this.#os.clearInterval(this.#reaper);
      throw err;
    }
    if (this.#stopping) {
      this.#takeover?.close(); // stopped while looking: the orphan serves on
      this.#takeover = null;
      return;
    }
    if (this.#takeover) {
      for (const held of this.#takeover.listeners()) this.#inventory.set(held); // closes an fd it replaces
      this.#next = this.#takeover.generation + 1;
    }
    void this.#launch(this.#takeover ? 'takeover' : 'start');
  }

  /** Accept control connections on `server` (the handoff's serving side, src/handoff/server.ts); as PID 1,
   * reap orphans. */
  #serve(server: FdChannelServer): void {
    this.#server = new HandoffServer(server, {
      generation: (session) => this.#onGeneration(session),
      control: (session) => this.#onControl(session),
      log: (level, event, fields) => this.#log(level, event, fields),
    });
    if (this.#os.pid === 1) this.#reaper = this.#os.setInterval(() => this.#reapOrphans(), 1000);
  }

  /**
   * Start the next generation; resolves with the outcome. Only one at a time, except that a reload started
   * by a signal (SIGHUP) and a request that arrives while it runs are the same reload: the later one
   * waits for it and gets its outcome (systemd's Type=notify-reload sends SIGHUP, then runs ExecReload=).
   */
  reload(trigger: 'command' | 'signal' = 'command'): Promise<UpgradeRecord> {
    if (trigger === 'signal' && (this.#stopping || this.#attempt)) {
      // No new generation for this SIGHUP: say so, and why (it used to vanish without a line).
      const why = this.#stopping
        ? 'the supervisor is stopping'
        : `a reload is in progress: generation ${this.#attempt!.generation} (pid ${this.#attempt!.pid}) is starting, ` +
          'and its outcome answers this signal too';
      this.#log('warn', 'sighup-ignored', { reason: why });
    }
    if (this.#stopping) return Promise.reject(batonError('ERR_BATON_STATE', 'the supervisor is stopping'));
    if (this.#attempt) {
      const pending = this.#pending;
      if (pending && (trigger === 'signal' || pending.trigger === 'signal')) {
        // The manager's new reload cycle is acknowledged by this RELOADING=1 and ends with the READY=1 of
        // the generation starting now.
        if (trigger === 'signal') {
          this.#requested.add(pending.record);
          this.#notifier.reloading(`reloading: generation ${this.#attempt.generation} is starting`);
        }
        return pending.promise;
      }
      return Promise.reject(batonError('ERR_BATON_UPGRADE_IN_PROGRESS', `upgrade in progress: generation ${this.#attempt.generation} (pid ${this.#attempt.pid}) is starting`));
    }
    if (this.#respawnTimer) {
      this.#os.clearTimeout(this.#respawnTimer);
      this.#respawnTimer = null;
    }
    this.#notifier.reloading(`reloading: generation ${this.#next} is starting`);
    return this.#launch(this.#current ? 'reload' : 'respawn', trigger).then((record) => {
      this.#tallies.reloaded(record, this.#current !== null && this.#current.generation !== record.generation);
      return record;
    });
  }

  /** Graceful stop: every generation drains, then the supervisor exits. A second call forces. */
  stop(signal: string): void {
    if (this.#stopping) {
      this.#log('warn', 'force-stop', { signal });
      for (const g of this.#generations.values()) this.#kill(g, 'SIGKILL');
      this.#finish(130);
      return;
    }
    this.#stopping = true;
    this.#log('info', 'stop', { signal, generations: this.#alive().length });
    this.#notifier.stopping(`stopping: ${this.#alive().length} generation${this.#alive().length === 1 ? '' : 's'} draining`);
    this.#os.clearTimeout(this.#respawnTimer);
    this.#server.close();
    this.#takeover?.close();
    this.#takeover = null;
    for (const g of this.#alive()) {
      if (g.state === 'starting') this.#kill(g, 'SIGTERM');
      else this.#drainGeneration(g, 'stop');
    }
    // The supervisor's copies go now: once the generations close theirs, the port closes.
    this.#inventory.closeAll();
    const deadline = this.#os.setTimeout(() => {
      for (const g of this.#alive()) this.#kill(g, 'SIGKILL');
    }, this.#opts.drainTimeoutMs + KILL_GRACE_MS);
    deadline.unref();
    this.#maybeFinish();
  }

  /** Why the supervisor gave up (a crash loop), with the last generation's output; null otherwise. */
  get failure(): string | null {
    return this.#failure;
  }

  status() {
    const now = this.#os.now();
    // CPU and memory of the generation's process and, when it is a wrapper (sh, npm), of the app under it.
    const pidsOf = (g: Generation) => (g.session ? [g.pid, g.session.peer.pid] : [g.pid]);
    this.#os.usage.retain([process.pid, ...this.#alive().flatMap(pidsOf)]);
    return {
      supervisor: {
        pid: process.pid, socket: this.#opts.socket, command: this.#opts.command,
        startedAt: new Date(this.#startedAt).toISOString(), uptimeMs: now - this.#startedAt, stopping: this.#stopping,
        restarts: this.#restarts, failedStarts: this.#failedStarts,
        version: VERSION, execCount: this.#execCount,
        execAt: this.#execAt === null ? null : new Date(this.#execAt).toISOString(),
        usage: this.#os.usage.usage([process.pid]),
      },
      tallies: this.#tallies.snapshot(),
      generations: [...this.#generations.values()]
        .filter((g) => g.state !== 'exited')
        .map((g) => ({
          generation: g.generation,
          pid: g.pid,
          state: g.state,
          startedAt: new Date(g.startedAt).toISOString(),
          readyMs: g.readyAt ? g.readyAt - g.startedAt : null,
          connections: g.connections,
          usage: this.#os.usage.usage(pidsOf(g)),
          loop: g.loop ?? null,
          // What each generation holds, and for a draining one what it still waits for (every draining
          // generation is listed: each exits on its own once its own connections are gone).
          kinds: g.kinds ?? {},
          ...(g.state === 'draining' ? { waitingFor: g.waiting === 'predecessor' ? 'predecessor' : 'connections' } : {}),
        })),
      listeners: this.#inventory
        .entries()
        .map(({ entry }) => ({ name: entry.name, kind: entry.kind, address: formatAddress(entry.address) })),
      upgrades: this.#history.slice(-10),
    };
  }

  // --- generations ---------------------------------------------------------------------------------

  /** `trigger`: 'auto' (start, respawn) or how a reload was asked for (its outcome is reported to the
   * service manager with READY=1). */
  #launch(kind: UpgradeRecord['kind'], trigger: Trigger = 'auto'): Promise<UpgradeRecord> {
    const generation = this.#next++;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      BATON_SOCKET: this.#opts.socket,
      BATON_SUPERVISOR: String(process.pid),
      BATON_GENERATION: String(generation),
      BATON_LOG_FORMAT: this.#opts.logFormat,
    };
    // The supervisor is the service's main process: it alone talks to the service manager.
    for (const name of [...SD_NOTIFY_ENV, ...SD_LISTEN_ENV]) delete env[name];
    const [file, ...args] = this.#opts.command;
    const record: UpgradeRecord = { generation, pid: 0, kind, outcome: 'pending', startedAt: new Date().toISOString() };
    if (trigger !== 'auto') this.#requested.add(record);
    this.#history.push(record);
    if (this.#history.length > 50) this.#history.shift();
    let child: SpawnedChild;
    try {
      child = this.#os.spawn(file!, args, env);
    } catch (err) {
      record.outcome = 'rolled-back';
      record.reason = `could not start ${file}: ${(err as Error).message}`;
      if (this.#readySent && trigger !== 'auto') this.#notifier.ready(`generation ${generation} could not start: ${oneLine(record.reason)}`);
      return Promise.resolve(record);
    }
    const g: Generation = {
      generation, pid: child.pid ?? 0, stderr: child.stderr, state: 'starting', startedAt: this.#os.now(),
      connections: 0, session: null, registered: new Inventory(), stderrTail: '',
    };
    record.pid = g.pid;
    this.#generations.set(generation, g);
    this.#attempt = g;
    child.on('error', (err) => {
      // spawn failures (ENOENT) arrive here, followed by 'exit' or nothing at all.
      g.stderrTail += `\n${err.message}`;
      if (g.state !== 'exited' && !g.pid) this.#onExit(g, -1, null);
    });
    this.#follow(g, (exited) => child.on('exit', exited));
    if (kind === 'respawn') this.#restarts++;
    this.#log('info', 'spawn', { generation, child: g.pid, kind });
    const promise = new Promise<UpgradeRecord>((resolve) => {
      const timer = this.#os.setTimeout(() => {
        this.#rollback(g, `no ready() within ${this.#opts.readyTimeoutMs} ms`);
        this.#kill(g, 'SIGTERM');
        this.#os.setTimeout(() => this.#kill(g, 'SIGKILL'), KILL_GRACE_MS).unref();
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

  /** Copy a generation's stderr through (keeping its tail), and call #onExit once it exited and its stderr ended. */
  #follow(g: Generation, onChildExit: (exited: (code: number | null, signal: NodeJS.Signals | null) => void) => void) {
    g.stderr?.on('data', (chunk: Buffer) => {
      this.#os.writeStderr(chunk);
      g.stderrTail = (g.stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL);
    });
    onChildExit((code, signal) => {
      // Its last output (the tail a rollback reports) may still be in the pipe: wait briefly for the end of stderr.
      const stderr = g.stderr;
      if (!stderr || stderr.readableEnded || stderr.destroyed) return this.#onExit(g, code, signal);
      const done = () => {
        this.#os.clearTimeout(timer);
        stderr.off('end', done);
        stderr.off('close', done);
        this.#onExit(g, code, signal);
      };
      const timer = this.#os.setTimeout(done, STDERR_GRACE_MS);
      stderr.once('end', done);
      stderr.once('close', done);
    });
  }

  /** What the supervisor hears from a generation on its control session. */
  #watchSession(g: Generation, session: HandoffSession): void {
    session.on('register', (entry, fd) => {
      g.registered.set({ entry, fd }); // closes the fd it replaces
    });
    session.on('stats', (s) => {
      g.connections = s.connections;
      if (s.moved !== undefined && g.replacedBy) this.#migrationReport(g, g.replacedBy, s.moved, s.notMoved ?? 0);
      g.kinds = s.kinds;
      g.waiting = s.waiting;
      // A report too soon after the previous one has no event-loop figures: keep the last ones.
      if (s.loop) g.loop = s.loop;
      if (s.moved !== undefined) this.#tallies.drained(s.moved, s.notMoved ?? 0, s.notMovedReasons);
    });
    session.on('close', () => this.#lostContact(g, 'the generation closed its control connection before ready()'));
  }

  async #onGeneration(session: HandoffSession): Promise<void> {
    const hello = session.hello;
    const g = hello.generation ? this.#generations.get(hello.generation) : undefined;
    if (!g || g.state !== 'starting' || g.session || !this.#os.isDescendant(session.peer.pid, g.pid)) {
      // The reason goes into the log too: every refused connection is logged with why.
      const reason = `pid ${session.peer.pid} is not the generation this supervisor is starting`;
      this.#log('warn', 'generation-refused', { peer: session.peer.pid, claimed: hello.generation ?? null, reason });
      await session.refuse('ERR_BATON_REFUSED', reason);
      return;
    }
    g.session = session;
    this.#watchSession(g, session);
    try {
      // Acknowledge first, then drain the old generation (handOver says why).
      const promoted: { old: Generation | null } = { old: null };
      const done = await handOver(session, {
        generation: g.generation,
        inventory: this.#inventory.entries(),
        readyTimeoutMs: this.#opts.readyTimeoutMs,
        // Rolled back meanwhile: nothing to acknowledge. Otherwise it becomes the current generation first.
        beforeAck: (names) => g.state === 'starting' && ((promoted.old = this.#promote(g, names)), true),
      });
      if (!done) return;
      const { names, migrationFd } = done;
      const old = promoted.old;
      if (old) this.#drainGeneration(old, 'upgrade', migrationFd);
      else if (this.#takeover) {
        const handover = this.#takeover.handover(names, this.#opts.readyTimeoutMs, migrationFd);
        this.#handover = handover;
        void handover.finally(() => {
          if (this.#handover === handover) this.#handover = null;
        });
        this.#takeover = null;
      } else if (migrationFd !== null) closeFds([migrationFd]);
    } catch (err) {
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
      this.#kill(g, 'SIGTERM');
      this.#os.setTimeout(() => this.#kill(g, 'SIGKILL'), KILL_GRACE_MS).unref();
    }, EXIT_GRACE_MS);
  }

  /** `g` is ready: it becomes the current generation. Returns the one it replaces, which the caller drains. */
  #promote(g: Generation, names: string[]): Generation | null {
    // Its own sockets join the inventory; sockets nobody uses any more are closed (listeners.ts).
    const log: LogFn = (level, event, fields) => this.#log(level, event, fields);
    promoteListeners(this.#inventory, g.registered, new Set(names), this.#notifier, log);
    moveTo(g, 'serving', this.#os.now());
    // Up for min-uptime: the crash loop (if any) is over.
    this.#os.setTimeout(() => {
      if (this.#current === g) this.#failedStarts = 0;
    }, this.#opts.minUptimeMs ?? DEFAULT_MIN_UPTIME_MS).unref();
    const old = this.#current;
    this.#current = g;
    this.#attempt = null;
    this.#backoffMs = 100;
    const attempt = g.attempt;
    g.attempt = undefined;
    if (attempt) {
      this.#os.clearTimeout(attempt.timer);
      attempt.record.outcome = 'serving';
      attempt.record.readyMs = g.readyAt! - g.startedAt;
      this.#log('info', 'ready', { generation: g.generation, child: g.pid, ms: attempt.record.readyMs, listeners: this.#inventory.size });
      // READY=1 for the first generation and at the end of a requested reload; a respawn only updates STATUS=.
      const status = `generation ${g.generation} serving, ${listeners(this.#inventory.size)}`;
      if (!this.#readySent || this.#requested.has(attempt.record)) this.#notifier.ready(status);
      else this.#notifier.status(status);
      this.#readySent = true;
      attempt.settle(attempt.record);
    }
    if (!old || old.state !== 'serving') return null;
    if (attempt) old.replacedBy = attempt.record;
    return old;
  }

  /** `migrationFd` (owned, closed here once relayed): lets the old generation move live connections. */
  #drainGeneration(g: Generation, reason: 'upgrade' | 'stop', migrationFd: number | null = null): void {
    moveTo(g, 'draining', this.#os.now());
    this.#log('info', 'drain', { generation: g.generation, child: g.pid, reason, migrate: migrationFd !== null });
    if (g.session && !g.session.link.closed) {
      g.session
        .drain(this.#opts.drainTimeoutMs, reason, migrationFd)
        .catch(() => this.#kill(g, 'SIGTERM'))
        .finally(() => {
          if (migrationFd !== null) closeFds([migrationFd]);
        });
    } else {
      if (migrationFd !== null) closeFds([migrationFd]);
      this.#kill(g, 'SIGTERM'); // no control connection (it never had one, or it broke): fall back to a signal
    }
    this.#drainDeadline(g);
  }

  /** A draining generation still running drainTimeout + KILL_GRACE_MS after its drain began is killed. */
  #drainDeadline(g: Generation): void {
    const left = (g.drainStartedAt ?? this.#os.now()) + this.#opts.drainTimeoutMs + KILL_GRACE_MS - this.#os.now();
    this.#os.setTimeout(() => {
      if (g.state === 'draining') this.#kill(g, 'SIGKILL');
    }, Math.max(0, left)).unref();
  }

  /** The replaced generation's drain says how many connections moved: recorded, and a warning if not all. */
  #migrationReport(old: Generation, record: UpgradeRecord, moved: number, notMoved: number): void {
    record.moved = moved;
    record.notMoved = notMoved;
    const fields = { generation: old.generation, child: old.pid, to: record.generation, moved, notMoved };
    const reason = 'no room or no way to move them; closed politely';
    if (notMoved > 0) this.#log('warn', 'connections-not-moved', { ...fields, reason });
    else this.#log('info', 'connections-moved', fields);
  }

  #rollback(g: Generation, reason: string): void {
    if (g.state !== 'starting') return;
    const attempt = g.attempt;
    g.attempt = undefined;
    if (this.#attempt === g) this.#attempt = null;
    g.registered.closeAll();
    g.session?.close();
    if (!attempt) return;
    this.#os.clearTimeout(attempt.timer);
    attempt.record.outcome = 'rolled-back';
    attempt.record.reason = reason;
    this.#log('warn', 'rollback', { generation: g.generation, child: g.pid, reason });
    const failed = `generation ${g.generation} rolled back: ${oneLine(reason)}`;
    const serving = this.#current;
    if (this.#readySent && this.#requested.has(attempt.record)) {
      // The reload is over (the old generation kept serving): systemd leaves "reloading" on READY=1.
      this.#notifier.ready(`${serving ? `generation ${serving.generation} serving, ${listeners(this.#inventory.size)}` : 'no generation serving'}; ${failed}`);
    } else this.#notifier.status(failed);
    attempt.settle(attempt.record);
    if (!this.#current && !this.#stopping && !this.#failedStart(g, reason)) this.#scheduleRespawn();
  }

  /**
   * Count a start that failed while nothing serves (a rollback, or a crash within min-uptime of ready()).
   * After max-starts of them in a row the supervisor gives up and exits 1 with the last reason, as PM2
   * stops a script that keeps failing, instead of retrying a missing file forever. Returns true then.
   */
  #failedStart(g: Generation, reason: string): boolean {
    this.#failedStarts++;
    const max = this.#opts.maxStarts ?? DEFAULT_MAX_STARTS;
    if (max === 0 || this.#failedStarts < max) return false;
    const n = this.#failedStarts;
    this.#failure = `${n} starts in a row failed; the last, generation ${g.generation} (pid ${g.pid}), ${reason}`;
    this.#log('error', 'give-up', { failedStarts: n, generation: g.generation, reason: oneLine(reason) });
    this.#exitCode = 1;
    this.#stopping = true;
    this.#notifier.stopping(`giving up: ${this.#failedStarts} failed starts in a row`);
    this.#server.close();
    this.#inventory.closeAll();
    return true;
  }

  #onExit(g: Generation, code: number | null, signal: NodeJS.Signals | null): void {
    if (g.state === 'exited') return;
    const was = g.state;
    g.exit = { code, signal };
    if (was === 'starting') {
      const tail = outputTail(g.stderrTail);
      const exited = `exited ${signal ? `on ${signal}` : `with code ${code}`} before ready()`;
      this.#rollback(g, `${exited}${tail ? `; last output:\n${tail}` : ''}${addressInUseHint(tail)}`);
    }
    moveTo(g, 'exited', this.#os.now());
    g.session?.close();
    this.#generations.delete(g.generation);
    if (was === 'draining') {
      if (g.replacedBy && g.drainStartedAt) g.replacedBy.drainMs = this.#os.now() - g.drainStartedAt;
      this.#log('info', 'exit', { generation: g.generation, child: g.pid, code, signal });
    } else if (was === 'serving') {
      this.#log('error', 'crash', { generation: g.generation, child: g.pid, code, signal });
      if (!this.#stopping) this.#notifier.status(`generation ${g.generation} exited ${signal ? `on ${signal}` : `with code ${code}`} while serving; starting another (the listeners stay open)`);
      if (this.#current === g) this.#current = null;
      const upMs = this.#os.now() - (g.readyAt ?? 0);
      const min = this.#opts.minUptimeMs ?? DEFAULT_MIN_UPTIME_MS;
      const how = signal ? `on ${signal}` : `with code ${code}`;
      const early = `exited ${how} ${upMs} ms after ready(), sooner than --min-uptime ${min} ms`;
      if (!this.#stopping) {
        if (code !== 0) this.#exitCode = 1;
        const tail = outputTail(g.stderrTail);
        const output = tail ? `; last output:\n${tail}` : '';
        const failed = !this.#current && upMs < min && this.#failedStart(g, `${early}${output}`);
        if (!failed && !this.#attempt) this.#scheduleRespawn();
      }
    }
    this.#maybeFinish();
  }

  #scheduleRespawn(): void {
    if (this.#respawnTimer || this.#stopping) return;
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, MAX_BACKOFF_MS);
    this.#log('info', 'respawn-scheduled', { inMs: delay, listenersKept: this.#inventory.size });
    this.#respawnTimer = this.#os.setTimeout(() => {
      this.#respawnTimer = null;
      if (!this.#stopping && !this.#attempt && !this.#current) void this.#launch('respawn');
    }, delay);
  }

  #onControl(session: HandoffSession): Promise<void> {
    return answerControl(session, {
      status: () => this.status(),
      stop: () => this.stop('baton stop'),
      reexec: (requester) =>
        this.reexec(requester).catch((err: NodeJS.ErrnoException) =>
          requester.result('reexec', false, { code: err.code ?? 'ERR_BATON_REEXEC_FAILED', reason: err.message }),
        ),
      reload: async () => {
        let record: UpgradeRecord;
        try {
          record = await this.reload();
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          return { ok: false, code: e.code ?? 'ERR_BATON_RELOAD_FAILED', reason: e.message };
        }
        const ok = record.outcome === 'serving';
        if (ok) return { ok, data: record };
        return { ok, code: 'ERR_BATON_ROLLED_BACK', reason: record.reason ?? 'rolled back', data: record };
      },
    });
  }

  // --- re-exec (reexec.ts) --------------------------------------------------------------------------

  /**
   * Replace this process's image with the baton installed now; the generations keep serving. On success
   * this never settles (the process runs the new image by then, and `requester` gets its answer from it);
   * it rejects when the new image fails its check or the exec fails, and this image carries on unchanged.
   */
  async reexec(requester: HandoffSession | null = null): Promise<void> {
    const refusal = (): Error | null => {
      if (this.#stopping) return batonError('ERR_BATON_STATE', 'the supervisor is stopping');
      const busy = this.#attempt
        ? `upgrade in progress: generation ${this.#attempt.generation} (pid ${this.#attempt.pid}) is starting`
        : this.#takeover || this.#handover
          ? 'a takeover of an orphaned generation is in progress'
          : null;
      return busy ? batonError('ERR_BATON_UPGRADE_IN_PROGRESS', busy) : null;
    };
    if (this.#reexecing) {
      throw batonError('ERR_BATON_UPGRADE_IN_PROGRESS', 'a re-exec of the supervisor is in progress');
    }
    const refused = refusal();
    if (refused) throw refused;
    this.#reexecing = true;
    try {
      const entry = reexecEntry();
      this.#log('info', 'reexec-check', { entry });
      const { version } = await checkNewImage(entry, this.#snapshot(requester));
      // A record still queued on a carried channel would be lost with this image's memory: wait until all are sent.
      for (let i = 0; i < 200 && this.#sending(); i++) await new Promise((r) => this.#os.setTimeout(() => r(null), 10));
      const stuck = this.#sending() ? 'a generation does not read its control connection' : null;
      const late = refusal() ?? (stuck ? batonError('ERR_BATON_REEXEC_FAILED', stuck) : null);
      if (late) throw late;
      const state = this.#snapshot(requester);
      const generations = state.generations.length;
      this.#log('info', 'reexec', { entry, from: VERSION, to: version, execCount: state.execCount, generations });
      execImage(entry, state);
    } catch (err) {
      this.#log('warn', 'reexec-failed', { reason: (err as Error).message });
      throw err;
    } finally {
      this.#reexecing = false;
    }
  }

  #sending(): boolean {
    return [...this.#generations.values()].some((g) => (g.session?.link.channel.pendingRecords ?? 0) > 0);
  }

  /** Everything a new image needs to carry on: what is in memory, and the fds it inherits. */
  #snapshot(requester: HandoffSession | null): SupervisorState<UpgradeRecord> {
    return {
      format: STATE_FORMAT,
      version: VERSION,
      pid: process.pid,
      socket: this.#opts.socket,
      serverFd: this.#server.fd,
      startedAt: this.#startedAt,
      execCount: this.#execCount + 1,
      execAt: this.#os.now(),
      inventory: this.#inventory.entries(),
      generations: this.#alive().map((g) => ({
        generation: g.generation,
        pid: g.pid,
        state: g.state as 'serving' | 'draining', // reexec() refuses while one is starting
        startedAt: g.startedAt,
        readyAt: g.readyAt ?? null,
        drainStartedAt: g.drainStartedAt ?? null,
        connections: g.connections,
        session: g.session && !g.session.link.closed ? { fd: g.session.link.channel.fd, hello: g.session.hello } : null,
        stderrFd: g.stderr && !g.stderr.destroyed && !g.stderr.readableEnded ? fdOf(g.stderr) : null,
        stderrTail: g.stderrTail,
        registered: g.registered.entries(),
        replacedBy: g.replacedBy?.generation ?? null,
      })),
      next: this.#next,
      current: this.#current?.generation ?? null,
      history: this.#history,
      backoffMs: this.#backoffMs,
      failedStarts: this.#failedStarts,
      restarts: this.#restarts,
      exitCode: this.#exitCode,
      readySent: this.#readySent,
      stored: this.#notifier.storedNames(),
      respawnDue: this.#respawnTimer !== null,
      requester: requester ? { fd: requester.link.channel.fd, hello: requester.hello } : null,
    };
  }

  /** The new image takes over from the state its predecessor left (the fds in it are ours now). */
  #resume(s: SupervisorState): void {
    this.#startedAt = s.startedAt;
    this.#execCount = s.execCount;
    this.#execAt = s.execAt;
    this.#next = s.next;
    this.#history = s.history as UpgradeRecord[];
    this.#backoffMs = s.backoffMs;
    this.#failedStarts = s.failedStarts;
    this.#restarts = s.restarts;
    this.#exitCode = s.exitCode;
    this.#opts.socket = s.socket;
    this.#readySent = s.readySent;
    for (const name of s.stored) this.#notifier.markStored(name);
    for (const i of s.inventory) this.#inventory.set(i);
    const server = FdChannelServer.fromFd(s.serverFd, s.socket, CONTROL_CHANNEL_LIMITS);
    for (const c of s.generations) {
      const g: Generation = {
        generation: c.generation, pid: c.pid, stderr: null, state: c.state, startedAt: c.startedAt,
        readyAt: c.readyAt ?? undefined, drainStartedAt: c.drainStartedAt ?? undefined, connections: c.connections,
        session: null, stderrTail: c.stderrTail, registered: new Inventory(c.registered),
        replacedBy: this.#history.find((r) => r.generation === c.replacedBy),
      };
      this.#generations.set(g.generation, g);
      if (c.generation === s.current) this.#current = g;
      try {
        if (c.stderrFd !== null) g.stderr = new net.Socket({ fd: c.stderrFd, readable: true, writable: false });
        if (c.session) {
          const channel = FdChannel.fromFd(c.session.fd, CONTROL_CHANNEL_LIMITS);
          g.session = HandoffSession.resume(channel, c.session.hello, 'serving');
          this.#watchSession(g, g.session);
        }
      } catch (err) {
        // Without its session it drains by signal; without its stderr it still runs: neither stops the others.
        this.#log('warn', 'reexec-resume', { generation: g.generation, child: g.pid, reason: (err as Error).message });
      }
      this.#follow(g, (exited) => this.#os.watchExit(g.pid, ({ code, signal }) => exited(code, signal)));
      if (g.state === 'draining') this.#drainDeadline(g);
    }
    this.#notifier.startWatchdog();
    this.#serve(server);
    const fields = { from: s.version, to: VERSION, execCount: s.execCount, generations: s.generations.length };
    this.#log('info', 'supervisor-reexec', { ...fields, listeners: this.#inventory.size });
    const serving = this.#current;
    const now = serving
      ? `generation ${serving.generation} serving, ${listeners(this.#inventory.size)}`
      : 'no generation serving';
    this.#notifier.status(`${now}; supervisor re-executed (baton ${VERSION})`);
    if (s.respawnDue && !this.#current) this.#scheduleRespawn();
    const current = this.#current;
    if (current && this.#failedStarts > 0) {
      // The min-uptime that ends a crash loop goes on counting from the generation's ready.
      const left = (current.readyAt ?? 0) + (this.#opts.minUptimeMs ?? DEFAULT_MIN_UPTIME_MS) - this.#os.now();
      this.#os.setTimeout(() => {
        if (this.#current === current) this.#failedStarts = 0;
      }, Math.max(0, left)).unref();
    }
    if (s.requester) {
      try {
        const channel = FdChannel.fromFd(s.requester.fd, CONTROL_CHANNEL_LIMITS);
        const r = HandoffSession.resume(channel, s.requester.hello, 'greeted');
        void r.result('reexec', true, { data: this.status().supervisor }).finally(() => r.close());
      } catch (err) {
        const reason = `could not answer the re-exec request: ${(err as Error).message}`;
        this.#log('warn', 'reexec-resume', { reason });
      }
    }
  }

  #alive(): Generation[] {
    return [...this.#generations.values()].filter((g) => g.state !== 'exited');
  }

  #maybeFinish(): void {
    if (this.#stopping && this.#alive().length === 0) this.#finish(this.#exitCode);
  }

  #finish(code: number): void {
    this.#os.clearInterval(this.#reaper);
    this.#notifier.stopWatchdog();
    this.#os.clearTimeout(this.#respawnTimer);
    this.#inventory.closeAll();
    this.#server.close();
    this.#log('info', 'supervisor-exit', { code });
    this.#done(code);
  }

  /** As PID 1: reap orphaned zombies that are not our own children (libuv waits for those). */
  #reapOrphans(): void {
    this.#os.reapOrphans(new Set([...this.#generations.values()].map((g) => g.pid)));
  }

  /** Signal a generation's whole process group (it was spawned detached), unless it is gone. */
  #kill(g: Generation, signal: NodeJS.Signals): void {
    if (g.pid && g.state !== 'exited') this.#os.signal(g.pid, signal);
  }

  #log(level: 'info' | 'warn' | 'error', event: string, fields: Record<string, string | number | boolean | null | undefined>): void {
    this.#opts.logger.log(level, event, { supervisor: process.pid, ...fields });
  }
}
