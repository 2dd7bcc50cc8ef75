/**
 * The supervisor behind `baton run`: a process with a stable pid that starts generations of the app,
 * hands them the sockets, upgrades on request, and keeps a copy of every listener so that a crashing
 * generation never closes the port (connections wait in the kernel's accept queue for the next one).
 *
 * This module is the supervisor's own life: start (sockets from the service manager, the control socket, an
 * orphan to take over), stop, giving up, and the answers on its control socket. The rest has a module each:
 *   generations.ts      the sequence each generation goes through (spawn, hand over, promote or roll back,
 *                       drain, exit, respawn); generation.ts: its record and state table
 *   respawn.ts          a lane with nothing serving: count the failed start, respawn after the backoff or give up;
 *                       crash-loop.ts: failed starts in a row, --max-starts, --min-uptime, the backoff
 *   spawn-generation.ts its environment, output and exit
 *   listeners.ts        the inventory when a generation becomes ready
 *   answers.ts          `baton status` and the control commands
 *   supervisor-reexec.ts a re-exec of its image: when one may run, and the supervisor rebuilt after it;
 *                       reexec-carry.ts: the state it carries; reexec.ts: the exec and its checks
 *   process.ts          every OS call, behind an interface the unit tests fake (test/supervisor-unit.test.ts)
 */
import { FdChannelServer } from '../fd/channel-server.js';
import { batonError } from '../fd/errors.js';
import { Inventory } from '../handoff/inventory.js';
import { CONTROL_CHANNEL_LIMITS, formatAddress, type ReloadOptions } from '../handoff/messages.js';
import { checkSocketDir } from '../handoff/peer.js';
import { HandoffServer, type LogFn } from '../handoff/server.js';
import type { HandoffSession } from '../handoff/session.js';
import { oneLine, serviceSockets, ServiceNotifier } from '../integrations/systemd.js';
import type { Logger } from '../upgrader/logger.js';
import { answerCommands, statusReport, type SupervisorStatus } from './answers.js';
import { CrashLoop } from './crash-loop.js';
import type { Generation } from './generation.js';
import { Generations, type GenerationsOptions } from './generations.js';
import { realProcess, type SupervisorProcess, type TimerHandle } from './process.js';
import { takeCarriedState } from './reexec.js';
import { SlotLending } from './slot-lending.js';
import { type Balance, SlotSockets } from './slots.js';
import { Tallies } from './tallies.js';
import { SupervisorReexec, type SupervisorLife } from './supervisor-reexec.js';
import { type OrphanStatus, Takeover } from './takeover.js';
import type { UpgradeRecord } from './upgrade-record.js';
import { WorkerLanes } from './worker-lanes.js';
import { workerCount } from './workers.js';
import type { ReloadPlan } from './reload-plans/plan.js';
import { RescalePlan } from './reload-plans/rescale.js';
import { RollingPlan } from './reload-plans/rolling.js';
import { TwoPhasePlan } from './reload-plans/two-phase.js';

export interface SupervisorOptions {
  command: string[];
  socket: string;
  readyTimeoutMs: number;
  drainTimeoutMs: number;
  /** How long a peer of the control socket may take to say hello (`--hello-timeout`). Default 5000. */
  helloTimeoutMs?: number;
  logger: Logger;
  logFormat: 'text' | 'json';
  /** Also keep every listener in systemd's fd store (FDSTORE=1), so that a restart keeps the ports open. */
  fdStore?: boolean;
  /** Failed starts in a row (no ready(), or down within minUptimeMs of it) before giving up; 0: never. Default 5. */
  maxStarts?: number;
  /** A generation that exits sooner than this after ready() counts as a failed start. Default 1000. */
  minUptimeMs?: number;
  /** Workers per generation (`--workers`, docs/workers.md). Default 1: one Generations, as always. A scale
   * (`baton reload --workers M`) changes it. */
  workers?: number;
  balance?: Balance;
  /** With N workers, reload one slot at a time (`--rolling`) instead of two-phase. */
  rolling?: boolean;
}

export type { GenerationState } from './generation.js';
export type { UpgradeRecord } from './upgrade-record.js';

/** How often, as PID 1, orphaned zombies are looked for. */
const REAP_EVERY_MS = 1000;

export class Supervisor {
  readonly #opts: SupervisorOptions;
  readonly #os: SupervisorProcess;
  #server!: HandoffServer;
  /** The supervisor's copy of every listener. */
  readonly #inventory = new Inventory();
  readonly #crash: CrashLoop;
  /** Reloads by outcome, connections moved: for status and /metrics. */
  readonly #tallies = new Tallies();
  /** Created at start(), with the service manager's notifier. */
  #gens!: Generations;
  /** With --workers N > 1: a Generations lane per slot (lane 0 is #gens) and the slot sockets. */
  #lanes: WorkerLanes | null = null;
  #slots: SlotSockets | null = null;
  /** Each lane's crash loop (lane 0's is #crash). */
  readonly #crashes: CrashLoop[] = [];
  /** With --workers N > 1: a slot with no serving worker is lent to a sibling (slot-lending.ts). */
  #lending: SlotLending | null = null;
  #stopping = false;
  /** The supervisor gave up (its exit code is 1). */
  #gaveUp = false;
  /** The orphan whose connections the next generation to serve takes over, until it does. */
  #takeover: Takeover | null = null;
  /** The takeover's handover to the orphan, while it runs (a re-exec waits for it: its connection is not carried). */
  #handover: Promise<void> | null = null;
  #reaper: TimerHandle | null = null;
  /** When it started, its re-execs: what a re-exec carries (supervisor-reexec.ts). */
  readonly #life: SupervisorLife;
  /** Created at start(), when the lanes exist. */
  #reexec!: SupervisorReexec;
  /** The service manager (systemd): notifications, watchdog, fd store. No-ops without NOTIFY_SOCKET. */
  #notifier!: ServiceNotifier;
  readonly #log: LogFn;
  #done!: (code: number) => void;
  readonly finished: Promise<number>;

  /** `os`: every OS call goes through it (a fake in the unit tests). */
  constructor(options: SupervisorOptions, os: SupervisorProcess = realProcess()) {
    this.#opts = { ...options };
    this.#os = os;
    this.#life = { startedAt: os.now(), execCount: 0, execAt: null };
    this.#crash = new CrashLoop(os, options);
    this.#log = (level, event, fields) => this.#opts.logger.log(level, event, { supervisor: os.pid, ...fields });
    this.finished = new Promise((resolve) => (this.#done = resolve));
  }

  async start(): Promise<void> {
    const fdStore = this.#opts.fdStore ?? false;
    const fields = () => ({ supervisor: this.#os.pid });
    this.#notifier = new ServiceNotifier({ logger: this.#opts.logger, fields, fdStore });
    // Re-executed (reexec.ts): the previous image's state and fds, instead of a fresh start. Its number of
    // workers and balance are the ones running (not necessarily the command line's).
    const carried = takeCarriedState();
    if (carried) {
      this.#opts.workers = carried.workers?.slots ?? 1;
      if (carried.workers) this.#opts.balance = carried.workers.balance;
    }
    const workers = this.#opts.workers ?? 1;
    const host = {
      stopping: () => this.#stopping,
      giveUp: (n: number, generation: number, reason: string) => this.#giveUp(n, generation, reason),
      takeOver: (names: string[], migrationFd: number | null) => this.#takeOver(names, migrationFd),
      exited: () => {
        this.#lending?.soon();
        this.#maybeFinish();
      },
      log: this.#log,
      ...(workers > 1
        ? {
            beforeCommit: (g: Generation) => this.#lanes!.beforeCommit(g),
            rolledBack: (g: Generation, reason: string) => this.#lanes!.rolledBack(g, reason),
            committed: (g: Generation, migrationFd: number | null) => this.#lanes!.committed(g, migrationFd),
            serving: () => this.#lending?.soon(),
          }
        : {}),
    };
    const lane = (slot: number, inventory: Inventory, crash: CrashLoop) =>
      new Generations({
        os: this.#os,
        // Lane 0 reads the supervisor's options at each use (the socket is settled at start); the others too.
        opts: slot === 0 ? this.#opts : laneOptions(this.#opts, slot),
        inventory,
        notifier: this.#notifier,
        tallies: this.#tallies,
        crash,
        // With N workers the supervisor's events about a worker name it: `baton spawn … worker=1`.
        host:
          workers > 1 ? { ...host, log: (level, event, f) => this.#log(level, event, { ...f, worker: slot }) } : host,
      });
    this.#gens = lane(0, this.#inventory, this.#crash);
    this.#crashes.push(this.#crash);
    if (workers > 1) {
      this.#slots = new SlotSockets({ slots: workers, balance: this.#opts.balance ?? 'reuseport' });
      this.#lanes = new WorkerLanes(this.#slots, this.#inventory, (slot, inventory) => {
        if (slot === 0) return this.#gens;
        const crash = new CrashLoop(this.#os, this.#opts);
        this.#crashes[slot] = crash;
        return lane(slot, inventory, crash);
      });
      const lanes = this.#lanes;
      this.#lending = new SlotLending({
        slots: this.#slots,
        lanes: () => lanes.lanes,
        stopping: () => this.#stopping,
        log: this.#log,
      });
    }
    this.#reexec = new SupervisorReexec({
      os: this.#os,
      log: this.#log,
      notifier: this.#notifier,
      life: this.#life,
      opts: this.#opts,
      slots: this.#slots,
      serverFd: () => this.#server.fd,
      lanes: () =>
        (this.#lanes?.lanes ?? [this.#gens]).map((generations, i) => ({
          generations,
          crash: this.#crashes[i]!,
          inventory: this.#lanes?.inventories[i] ?? this.#inventory,
        })),
      allLanes: () => this.#allLanes(),
      stopping: () => this.#stopping,
      betweenWorkers: () => this.#lanes?.busy ?? false,
      takingOver: () => Boolean(this.#takeover || this.#handover),
      serve: (server) => this.#serve(server),
      resumed: () => this.#lending?.resumed(),
      status: () => this.status(),
    });
    if (carried) return this.#reexec.resume(carried);
    // Sockets from the service manager (socket activation, or the fd store after a restart) join the
    // inventory before anything is spawned; the variables are gone from the environment from here on.
    for (const { entry, fd } of serviceSockets(fdStore, this.#log)) {
      this.#inventory.set({ entry, fd });
      if (entry.origin === 'fdstore') this.#notifier.markStored(entry.name);
      const { kind, origin } = entry;
      const name = entry.unnamed ? null : entry.name;
      this.#log('info', 'listen-fd', { name, kind, address: formatAddress(entry.address), origin });
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
      // With N workers an orphan is refused, not joined: it serves on (docs/workers.md).
      if (this.#lanes) refuseOrphans(await Takeover.serving(this.#opts.socket, this.#log));
      this.#takeover = await Takeover.find(this.#opts.socket, this.#opts.readyTimeoutMs, this.#log);
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
      this.#gens.next = this.#takeover.generation + 1;
    }
    const kind = this.#takeover ? 'takeover' : 'start';
    if (this.#lanes) {
      void this.#lanes.run(new TwoPhasePlan(kind, () => this.#gens.launch(kind))).then((r) => {
        // Not retried: until a first start succeeds no slot groups exist to respawn single workers into
        // (docs/workers.md); the supervisor exits 1 naming the worker.
        if (r.outcome === 'rolled-back' && !this.#stopping) this.#giveUp(1, r.generation, r.reason ?? 'rolled back');
      });
    } else void this.#gens.launch(kind);
  }

  /** Accept control connections on `server` (the handoff's serving side, src/handoff/server.ts); as PID 1,
   * reap orphans. */
  #serve(server: FdChannelServer): void {
    this.#server = new HandoffServer(server, {
      generation: (session) => this.#laneFor(session).join(session),
      control: (session) =>
        answerCommands(session, {
          status: () => this.status(),
          stop: () => this.stop('baton stop'),
          reload: (options) => this.reload('command', options),
          reexec: (requester) => this.reexec(requester),
        }),
      log: this.#log,
      helloTimeoutMs: this.#opts.helloTimeoutMs,
    });
    if (this.#os.pid === 1) this.#reaper = this.#os.setInterval(() => this.#reapOrphans(), REAP_EVERY_MS);
  }

  /** The first generation to serve after a takeover is acknowledged: the orphan drains and moves its
   * connections to it (over `migrationFd`, owned). False when there is no takeover. */
  #takeOver(names: string[], migrationFd: number | null): boolean {
    if (!this.#takeover) return false;
    const handover = this.#takeover.handover(names, this.#opts.readyTimeoutMs, migrationFd);
    this.#handover = handover;
    void handover.finally(() => {
      if (this.#handover === handover) this.#handover = null;
    });
    this.#takeover = null;
    return true;
  }

  /**
   * Start the next generation; resolves with the outcome. Only one at a time, except that a reload started
   * by a signal (SIGHUP) and a request that arrives while it runs are the same reload (generations.ts).
   */
  reload(trigger: 'command' | 'signal' = 'command', options: ReloadOptions = {}): Promise<UpgradeRecord> {
    const lanes = this.#lanes;
    const count = options.workers === undefined ? undefined : workerCount(options.workers);
    if (!lanes) {
      if (count !== undefined && count !== 1) {
        const why =
          'baton reload --workers M needs a supervisor started with --workers N > 1 ' +
          '(with one worker the listeners are not reuseport groups)';
        return Promise.reject(batonError('ERR_BATON_STATE', why));
      }
      return this.#gens.reload(trigger);
    }
    const busy = lanes.lanes.find((l) => l.attempt);
    if ((busy || lanes.busy) && !this.#stopping) {
      const why = busy
        ? `upgrade in progress: generation ${busy.attempt!.generation} (pid ${busy.attempt!.pid}) is starting`
        : 'upgrade in progress: a rolling reload is between two workers';
      return Promise.reject(batonError('ERR_BATON_UPGRADE_IN_PROGRESS', why));
    }
    const first = () => this.#gens.reload(trigger, false);
    let plan: ReloadPlan;
    if (count !== undefined && count !== lanes.count) {
      if (options.rolling) {
        const why = 'a scale (--workers M) is a two-phase reload: it does not go with --rolling';
        return Promise.reject(batonError('ERR_BATON_RELOAD_FAILED', why));
      }
      plan = new RescalePlan(count, first, {
        setWorkers: (n) => {
          this.#opts.workers = n;
        },
        // A slot with no serving worker (a new one not started yet, a removed one) is lent to a serving one.
        slotsChanged: () => this.#lending?.reassign(),
      });
    } else if (options.rolling ?? this.#opts.rolling) plan = new RollingPlan(first, () => this.#stopping);
    else plan = new TwoPhasePlan('reload', first);
    const from = lanes.count;
    this.#log('info', 'reload-plan', { plan: plan.name, workers: count ?? from, from });
    return lanes.run(plan).then((record) => {
      const othersServing = lanes.all().some((l) => l.current && l.current.generation !== record.generation);
      this.#tallies.reloaded(record, othersServing);
      return record;
    });
  }

  /** The lane whose starting generation said hello (each lane's join checks the peer is its descendant). */
  #laneFor(session: HandoffSession): Generations {
    if (!this.#lanes) return this.#gens;
    const claimed = session.hello.generation;
    const lane = this.#lanes.all().find((l) => {
      const g = l.attempt;
      return g && g.generation === claimed && !g.session && this.#os.isDescendant(session.peer.pid, g.pid);
    });
    return lane ?? this.#gens;
  }

  /** Every lane (one without --workers), those a scale-down removed included while their workers run. */
  #allLanes(): Generations[] {
    return this.#lanes?.all() ?? [this.#gens];
  }

  /** Graceful stop: every generation drains, then the supervisor exits. A second call forces. */
  stop(signal: string): void {
    if (this.#stopping) {
      this.#log('warn', 'force-stop', { signal });
      for (const l of this.#allLanes()) for (const g of l.all.values()) l.kill(g, 'SIGKILL');
      this.#finish(130);
      return;
    }
    this.#stopping = true;
    const alive = this.#allLanes().reduce((n, l) => n + l.alive().length, 0);
    this.#log('info', 'stop', { signal, generations: alive });
    this.#notifier.stopping(`stopping: ${alive} generation${alive === 1 ? '' : 's'} draining`);
    this.#crash.cancel();
    this.#server.close();
    this.#takeover?.close();
    this.#takeover = null;
    for (const l of this.#allLanes()) l.stopAll();
    // The supervisor's copies go now: once the generations close theirs, the port closes.
    this.#closeSockets();
    this.#maybeFinish();
  }

  /** --max-starts failed starts in a row: stop, and exit 1 once every generation is gone. */
  #giveUp(failedStarts: number, generation: number, reason: string): void {
    this.#gaveUp = true;
    this.#log('error', 'give-up', { failedStarts, generation, reason: oneLine(reason) });
    this.#stopping = true;
    this.#notifier.stopping(`giving up: ${failedStarts} failed starts in a row`);
    this.#server.close();
    this.#closeSockets();
  }

  #closeSockets(): void {
    this.#inventory.closeAll();
    for (const inv of this.#lanes?.inventories ?? []) inv.closeAll();
    this.#slots?.close();
  }

  /** Why the supervisor gave up (a crash loop), with the last generation's output; null otherwise. */
  get failure(): string | null {
    return this.#crash.failure;
  }

  status(): SupervisorStatus {
    return statusReport({
      os: this.#os,
      socket: this.#opts.socket,
      command: this.#opts.command,
      startedAt: this.#life.startedAt,
      stopping: this.#stopping,
      execCount: this.#life.execCount,
      execAt: this.#life.execAt,
      crash: this.#crash,
      tallies: this.#tallies,
      generations: {
        alive: () => this.#allLanes().flatMap((l) => l.alive()),
        history: this.#gens.history,
      },
      // The slots now (a scale-down's removed lanes are not slots any more; their workers are still listed).
      workers: (this.#lanes?.lanes ?? [this.#gens]).map((l) => ({ restarts: l.restarts })),
      loans: this.#lending?.loans(),
      inventory: this.#inventory,
    });
  }

  /** Replace this process's image with the baton installed now (supervisor-reexec.ts). */
  async reexec(requester: HandoffSession | null = null): Promise<void> {
    return this.#reexec.run(requester);
  }

  #maybeFinish(): void {
    const lanes = this.#allLanes();
    if (this.#stopping && lanes.every((l) => l.alive().length === 0)) {
      this.#finish(Math.max(this.#gaveUp && this.#lanes ? 1 : 0, ...lanes.map((l) => l.exitCode)));
    }
  }

  #finish(code: number): void {
    this.#os.clearInterval(this.#reaper);
    this.#notifier.stopWatchdog();
    this.#crash.cancel();
    this.#closeSockets();
    this.#server.close();
    this.#log('info', 'supervisor-exit', { code });
    this.#done(code);
  }

  /** As PID 1: reap orphaned zombies that are not our own children (libuv waits for those). */
  #reapOrphans(): void {
    this.#os.reapOrphans(new Set(this.#allLanes().flatMap((l) => [...l.all.values()].map((g) => g.pid))));
  }
}

/**
 * `baton run --workers N > 1` finding generations a crashed supervisor left serving on its socket: not built
 * yet. A crashed N-worker supervisor leaves N orphans, one per slot, each holding the last copy of its slot's
 * socket; taking them over means each into its own slot (a takeover and handover per lane, slot groups made from
 * the orphans' sockets), and taking over only one would stop the others and reset their accept queues. Refused
 * before any is joined, so they serve on; the message says what to do.
 */
function refuseOrphans(orphans: OrphanStatus[]): void {
  if (!orphans.length) return;
  const pids = orphans.map((o) => o.pid).join(' ');
  const what = orphans.length === 1 ? `pid ${pids} is` : `pids ${pids} are`;
  const why =
    `generations a crashed supervisor left behind on this socket (${what} serving) cannot be taken over with ` +
    `--workers N > 1 yet (docs/workers.md); they serve on. Stop them (kill -TERM ${pids}) and start again, or ` +
    'start with --workers 1 to take over one orphan';
  throw batonError('ERR_BATON_TAKEOVER_REFUSED', why);
}

/** Lane `slot`'s options: the supervisor's (read at each use: the socket is settled at start), its slot. */
function laneOptions(opts: SupervisorOptions, slot: number): GenerationsOptions {
  return {
    get command() {
      return opts.command;
    },
    get socket() {
      return opts.socket;
    },
    get logFormat() {
      return opts.logFormat;
    },
    get readyTimeoutMs() {
      return opts.readyTimeoutMs;
    },
    get drainTimeoutMs() {
      return opts.drainTimeoutMs;
    },
    slot,
    get workers() {
      return opts.workers ?? 1;
    },
  };
}
