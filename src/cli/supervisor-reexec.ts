/**
 * Carrying the supervisor across a re-exec of its own image (`baton reload --supervisor`): when one may run
 * (refused while stopping, starting, between two rolling workers, draining removed slots or taking over), the
 * wait for records still queued on carried channels, the check and the exec (reexec.ts); and in the new image,
 * the supervisor rebuilt from the carried state. What the state holds is reexec-carry.ts's job. The supervisor's
 * private state is reached only through ReexecHost.
 */
import { batonError } from '../fd/errors.js';
import { FdChannelServer } from '../fd/channel-server.js';
import { CONTROL_CHANNEL_LIMITS } from '../handoff/messages.js';
import type { LogFn } from '../handoff/server.js';
import type { HandoffSession } from '../handoff/session.js';
import { listeners, type ServiceNotifier } from '../integrations/systemd.js';
import { VERSION } from '../version.js';
import type { SupervisorStatus } from './answers.js';
import type { Generations } from './generations.js';
import type { SupervisorProcess } from './process.js';
import { answerRequester, type LaneSource, resumeGeneration, snapshotState } from './reexec-carry.js';
import { type CarriedLane, checkNewImage, execImage, reexecEntry, type SupervisorState } from './reexec.js';
import type { SlotSockets } from './slots.js';
import type { UpgradeRecord } from './upgrade-record.js';

/** A re-exec waits up to this many times REEXEC_POLL_MS for records still queued on a carried channel. */
const REEXEC_POLLS = 200;
const REEXEC_POLL_MS = 10;

/** The supervisor's life a re-exec carries: read for the snapshot, set from it in the new image. */
export interface SupervisorLife {
  startedAt: number;
  /** Re-execs of this supervisor: how many, when the last one was. */
  execCount: number;
  execAt: number | null;
}

/** What a re-exec needs from the supervisor. */
export interface ReexecHost {
  os: SupervisorProcess;
  log: LogFn;
  notifier: ServiceNotifier;
  life: SupervisorLife;
  /** The options whose socket the new image takes from the carried state. */
  opts: { socket: string };
  /** With --workers N > 1: the slot sockets. */
  slots: SlotSockets | null;
  /** The control socket's listening fd. */
  serverFd(): number;
  /** The slots' lanes, lane 0 first (one without --workers), each with its crash loop and inventory. */
  lanes(): LaneSource[];
  /** Every lane, those a scale removed included while their workers drain. */
  allLanes(): Generations[];
  stopping(): boolean;
  /** A rolling reload is between two workers. */
  betweenWorkers(): boolean;
  /** A takeover of an orphaned generation, or its handover, is running (the orphan's connection is not carried). */
  takingOver(): boolean;
  /** Accept control connections on the carried control socket. */
  serve(server: FdChannelServer): void;
  /** The lanes resumed: what the predecessor lent is not carried, lend the empty slots again (slot-lending.ts). */
  resumed(): void;
  status(): SupervisorStatus;
}

export class SupervisorReexec {
  readonly #host: ReexecHost;
  #running = false;

  constructor(host: ReexecHost) {
    this.#host = host;
  }

  /**
   * Replace this process's image with the baton installed now; the generations keep serving. On success
   * this never settles (the process runs the new image by then, and `requester` gets its answer from it);
   * it rejects when the new image fails its check or the exec fails, and this image carries on unchanged.
   */
  async run(requester: HandoffSession | null): Promise<void> {
    const host = this.#host;
    if (this.#running) {
      throw batonError('ERR_BATON_UPGRADE_IN_PROGRESS', 'a re-exec of the supervisor is in progress');
    }
    const refused = this.#refusal();
    if (refused) throw refused;
    this.#running = true;
    try {
      const entry = reexecEntry();
      host.log('info', 'reexec-check', { entry });
      const { version } = await checkNewImage(entry, this.#snapshot(requester));
      // A record still queued on a carried channel would be lost with this image's memory: wait until all are sent.
      for (let i = 0; i < REEXEC_POLLS && this.#sending(); i++) {
        await new Promise((resolve) => host.os.setTimeout(() => resolve(null), REEXEC_POLL_MS));
      }
      const stuck = this.#sending() ? 'a generation does not read its control connection' : null;
      const late = this.#refusal() ?? (stuck ? batonError('ERR_BATON_REEXEC_FAILED', stuck) : null);
      if (late) throw late;
      const state = this.#snapshot(requester);
      const generations = [state, ...(state.workers?.lanes ?? [])].reduce((n, l) => n + l.generations.length, 0);
      host.log('info', 'reexec', { entry, from: VERSION, to: version, execCount: state.execCount, generations });
      execImage(entry, state);
    } catch (err) {
      host.log('warn', 'reexec-failed', { reason: (err as Error).message });
      throw err;
    } finally {
      this.#running = false;
    }
  }

  #refusal(): Error | null {
    const host = this.#host;
    if (host.stopping()) return batonError('ERR_BATON_STATE', 'the supervisor is stopping');
    // With N workers: a start of N workers has a starting generation in some lane until all commit.
    const all = host.allLanes();
    const attempt = all.find((l) => l.attempt)?.attempt;
    const busy = attempt
      ? `upgrade in progress: generation ${attempt.generation} (pid ${attempt.pid}) is starting`
      : host.betweenWorkers()
        ? 'upgrade in progress: a rolling reload is between two workers'
        : all.length > host.lanes().length
          ? 'the workers of slots a scale removed are still draining' // their lanes are not carried
          : host.takingOver()
            ? 'a takeover of an orphaned generation is in progress'
            : null;
    return busy ? batonError('ERR_BATON_UPGRADE_IN_PROGRESS', busy) : null;
  }

  #sending(): boolean {
    const gens = this.#host.allLanes().flatMap((l) => [...l.all.values()]);
    return gens.some((g) => (g.session?.link.channel.pendingRecords ?? 0) > 0);
  }

  #snapshot(requester: HandoffSession | null): SupervisorState<UpgradeRecord> {
    const host = this.#host;
    const { startedAt, execCount } = host.life;
    const now = host.os.now();
    const stored = host.notifier.storedNames();
    const source = { pid: host.os.pid, socket: host.opts.socket, serverFd: host.serverFd(), startedAt, execCount };
    return snapshotState({ ...source, now, lanes: host.lanes(), slots: host.slots, stored }, requester);
  }

  /** The new image takes over from the state its predecessor left (the fds in it are ours now). */
  resume(s: SupervisorState): void {
    const host = this.#host;
    host.life.startedAt = s.startedAt;
    host.life.execCount = s.execCount;
    host.life.execAt = s.execAt;
    host.opts.socket = s.socket;
    for (const name of s.stored) host.notifier.markStored(name);
    // With N workers: the slot sockets, then every lane as lane 0 (lane i's inventory holds copies of slot i's).
    if (s.workers) host.slots!.restore(s.workers.groups);
    const carried = [s, ...(s.workers?.lanes ?? [])];
    const lanes = host.lanes();
    carried.forEach((lane, i) => this.#resumeLane(lane, lanes[i]!));
    const server = FdChannelServer.fromFd(s.serverFd, s.socket, CONTROL_CHANNEL_LIMITS);
    host.notifier.startWatchdog();
    host.serve(server);
    const generations = carried.reduce((n, l) => n + l.generations.length, 0);
    const fields = { from: s.version, to: VERSION, execCount: s.execCount, generations };
    const inventory = lanes[0]!.inventory;
    host.log('info', 'supervisor-reexec', { ...fields, listeners: inventory.size });
    const serving = lanes[0]!.generations.current;
    const now = serving
      ? `generation ${serving.generation} serving, ${listeners(inventory.size)}`
      : 'no generation serving';
    host.notifier.status(`${now}; supervisor re-executed (baton ${VERSION})`);
    lanes.forEach(({ generations: gens, crash }, i) => {
      if (carried[i]!.respawnDue && !gens.current) gens.scheduleRespawn();
      // The min-uptime that ends a crash loop goes on counting from the generation's ready.
      const current = gens.current;
      if (current && crash.failedStarts > 0) crash.endAfterUptime(current.readyAt ?? 0, () => gens.current === current);
    });
    host.resumed();
    if (s.requester) answerRequester(s.requester, host.status().supervisor, host.log);
  }

  /** A lane takes its part of the carried state: its generations, counters and inventory. */
  #resumeLane(c: CarriedLane, { generations: gens, crash, inventory }: LaneSource): void {
    gens.next = c.next;
    gens.history = c.history as UpgradeRecord[];
    gens.exitCode = c.exitCode;
    gens.readySent = c.readySent;
    crash.backoffMs = c.backoffMs;
    crash.failedStarts = c.failedStarts;
    crash.restarts = c.restarts;
    for (const i of c.inventory) inventory.set(i);
    for (const carried of c.generations) {
      const g = resumeGeneration(carried, gens.history, this.#host.log);
      if (carried.generation === c.current) gens.current = g;
      gens.adopt(g);
    }
  }
}
