/**
 * What the supervisor answers on its control socket: `baton status` (statusReport, also the source of
 * /metrics and `baton status --watch`) and the commands (answerCommands: status, stop, reload, reexec).
 */
import type { Inventory } from '../handoff/inventory.js';
import { formatAddress, type ReloadOptions } from '../handoff/messages.js';
import { answerControl } from '../handoff/server.js';
import type { HandoffSession } from '../handoff/session.js';
import { VERSION } from '../version.js';
import type { CrashLoop } from './crash-loop.js';
import type { LoanInfo } from './slot-lending.js';
import type { Generation } from './generation.js';
import type { Generations } from './generations.js';
import type { SupervisorProcess } from './process.js';
import type { Tallies } from './tallies.js';
import type { UpgradeRecord } from './upgrade-record.js';

/** How many upgrades `baton status` lists, the newest last. */
const UPGRADES_SHOWN = 10;

export interface StatusSource {
  os: SupervisorProcess;
  socket: string;
  command: string[];
  startedAt: number;
  stopping: boolean;
  execCount: number;
  execAt: number | null;
  crash: CrashLoop;
  tallies: Tallies;
  /** Every lane's generations (one lane per worker slot), and the upgrades. */
  generations: Pick<Generations, 'alive' | 'history'>;
  /** Each worker slot's lane (one without --workers N): its restarts. */
  workers: Array<{ restarts: number }>;
  /** With --workers N: the slots with no serving worker and who serves them (slot-lending.ts). */
  loans?: LoanInfo[];
  inventory: Inventory;
}

export function statusReport(s: StatusSource) {
  const { os } = s;
  const now = os.now();
  // CPU and memory of the generation's process and, when it is a wrapper (sh, npm), of the app under it.
  const pidsOf = (g: Generation) => (g.session ? [g.pid, g.session.peer.pid] : [g.pid]);
  os.usage.retain([os.pid, ...s.generations.alive().flatMap(pidsOf)]);
  return {
    supervisor: {
      pid: os.pid,
      socket: s.socket,
      command: s.command,
      startedAt: new Date(s.startedAt).toISOString(),
      uptimeMs: now - s.startedAt,
      stopping: s.stopping,
      workers: s.workers.length,
      // Every slot's (with one worker: the supervisor's crash loop's, as always).
      restarts: s.workers.reduce((n, w) => n + w.restarts, 0),
      failedStarts: s.crash.failedStarts,
      version: VERSION,
      execCount: s.execCount,
      execAt: s.execAt === null ? null : new Date(s.execAt).toISOString(),
      usage: os.usage.usage([os.pid]),
    },
    tallies: s.tallies.snapshot(),
    // Each worker slot (one without --workers N): its respawns, also while it has no process.
    workers: s.workers.map((w, worker) => ({ worker, restarts: w.restarts })),
    generations: s.generations.alive().map((g) => ({
      generation: g.generation,
      // Its worker slot; restarts: of that slot (a respawn after a crash); accepted: fresh connections.
      worker: g.worker ?? 0,
      pid: g.pid,
      state: g.state,
      startedAt: new Date(g.startedAt).toISOString(),
      readyMs: g.readyAt ? g.readyAt - g.startedAt : null,
      connections: g.connections,
      // Of those, moved to it and not continued yet (parked): it took them over, the app has not yet.
      arriving: g.arriving ?? 0,
      accepted: g.accepted ?? null,
      restarts: s.workers[g.worker ?? 0]?.restarts ?? 0,
      usage: os.usage.usage(pidsOf(g)),
      loop: g.loop ?? null,
      // What each generation holds, and for a draining one what it still waits for (every draining
      // generation is listed: each exits on its own once its own connections are gone).
      kinds: g.kinds ?? {},
      ...(g.state === 'draining' ? { waitingFor: g.waiting === 'predecessor' ? 'predecessor' : 'connections' } : {}),
    })),
    listeners: s.inventory
      .entries()
      .map(({ entry }) => ({ name: entry.name, kind: entry.kind, address: formatAddress(entry.address) })),
    upgrades: s.generations.history.slice(-UPGRADES_SHOWN),
    // Slots with no serving worker of their own, served meanwhile by a sibling.
    loans: s.loans ?? [],
  };
}

export type SupervisorStatus = ReturnType<typeof statusReport>;

export interface Commands {
  status(): SupervisorStatus;
  stop(): void;
  /** `options`: what `baton reload` asked for (--rolling, --workers M). */
  reload(options: ReloadOptions): Promise<UpgradeRecord>;
  /** On success this never settles: the new image answers `requester`. */
  reexec(requester: HandoffSession): Promise<void>;
}

/** Answer one control connection (`baton status|stop|reload|reload --supervisor`). */
export function answerCommands(session: HandoffSession, sup: Commands): Promise<void> {
  return answerControl(session, {
    status: () => sup.status(),
    stop: () => sup.stop(),
    reexec: (requester) =>
      sup
        .reexec(requester)
        .catch((err: NodeJS.ErrnoException) =>
          requester.result('reexec', false, { code: err.code ?? 'ERR_BATON_REEXEC_FAILED', reason: err.message }),
        ),
    reload: async () => {
      let record: UpgradeRecord;
      try {
        const { rolling, workers } = session.hello;
        record = await sup.reload({ rolling, workers });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        return { ok: false, code: e.code ?? 'ERR_BATON_RELOAD_FAILED', reason: e.message };
      }
      const ok = record.outcome === 'serving';
      if (ok) return { ok, data: record };
      const code = record.outcome === 'stopped' ? 'ERR_BATON_ROLLING_STOPPED' : 'ERR_BATON_ROLLED_BACK';
      return { ok, code, reason: record.reason ?? 'rolled back', data: record };
    },
  });
}
