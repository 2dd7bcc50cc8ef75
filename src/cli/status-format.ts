/**
 * Pieces of `baton status` as text (CPU, memory, reload counts, tables), for main.ts and for the live view
 * of `baton status --watch` (watch.ts).
 */
import type { StatusReport } from './metrics.js';
import { formatKinds } from '../upgrader/census.js';
import type { ProcUsage } from './proc-stats.js';
import type { UpgradeRecord } from './upgrade-record.js';

/** What `baton status` receives. Optional parts: an older supervisor does not send them. */
type Report = StatusReport;
type Gen = Report['generations'][number];
export type StatusData = Omit<Report, 'supervisor' | 'generations' | 'tallies'> & {
  supervisor?: Omit<Report['supervisor'], 'usage' | 'restarts' | 'failedStarts'> &
    Partial<Pick<Report['supervisor'], 'usage' | 'restarts' | 'failedStarts'>>;
  generations: Array<Omit<Gen, 'usage' | 'loop'> & Partial<Pick<Gen, 'usage' | 'loop'>>>;
  tallies?: Report['tallies'];
};

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return `${rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

export function formatBytes(n: number): string {
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

export const cpu = (u: ProcUsage | null | undefined) => (u ? `${u.cpuPercent.toFixed(1)}%` : '-');
export const rss = (u: ProcUsage | null | undefined) => (u ? formatBytes(u.rssBytes) : '-');

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function supervisorLine(d: StatusData): string {
  const s = d.supervisor;
  if (!s) return '';
  const usage = s.usage === undefined ? '' : `, CPU ${cpu(s.usage)}, RSS ${rss(s.usage)}`;
  const failed = s.failedStarts ? ` (${s.failedStarts} failed in a row)` : '';
  const restarts = s.restarts === undefined ? '' : `, ${s.restarts} restart${s.restarts === 1 ? '' : 's'}${failed}`;
  const workers = multiWorker(d) ? `, ${s.workers} workers` : '';
  return `supervisor pid ${s.pid}, up ${formatDuration(s.uptimeMs)}${workers}${restarts}, socket ${s.socket}${usage}\n`;
}

export function talliesLine(d: StatusData): string {
  const t = d.tallies;
  if (!t) return '';
  const notMoved = Object.values(t.notMoved).reduce((a, n) => a + n, 0);
  return (
    `reloads: ${t.reloads.ok} ok, ${t.reloads.rolledBack} rolled back, ${t.reloads.failed} failed` +
    `${t.lastReloadMs === null ? '' : ` (last took ${t.lastReloadMs} ms)`}; ` +
    `connections moved: ${t.migrated}, not moved: ${notMoved}\n`
  );
}

export function upgradesTable(d: StatusData, count = 10): string {
  const upgrades = (d.upgrades ?? []).slice(-count);
  if (!upgrades.length) return '';
  return table([
    ['UPGRADE', 'KIND', 'OUTCOME', 'READY IN', 'DRAIN', 'MOVED', 'AT', 'REASON'],
    ...upgrades.map((u) => [
      `gen ${u.generation} (${upgradePids(u)})`,
      u.kind,
      u.outcome,
      u.readyMs === undefined ? '-' : `${u.readyMs} ms`,
      u.drainMs === undefined ? '-' : `${u.drainMs} ms`,
      u.moved === undefined ? '-' : `${u.moved} of ${u.moved + (u.notMoved ?? 0)}`,
      u.startedAt,
      (u.reason ?? '').split('\n')[0]!.slice(0, 80),
    ]),
  ]);
}

/** The processes an upgrade started: `pid P`, or with N workers each one's slot and pid (`worker 0 pid P, …`). */
export function upgradePids(u: UpgradeRecord): string {
  if (!u.workers?.length) return `pid ${u.pid}`;
  return u.workers.map((w) => `worker ${w.worker} pid ${w.pid}`).join(', ');
}

/** What `baton status` prints from: a supervisor's status reply (older supervisors send less). */
export interface StatusReply {
  supervisor?: {
    pid: number;
    socket: string;
    uptimeMs: number;
    command: string[];
    restarts?: number;
    failedStarts?: number;
    startedAt?: string;
    version?: string;
    execCount?: number;
    execAt?: string | null;
    /** Workers per generation (`--workers N`); absent from an older supervisor: 1. */
    workers?: number;
    usage?: StatusData['generations'][number]['usage'];
  };
  tallies?: StatusData['tallies'];
  generations: Array<{
    generation: number;
    worker?: number;
    pid: number;
    state: string;
    startedAt: string;
    readyMs: number | null;
    connections: number;
    /** Of `connections`, moved to it and not continued yet (absent from an older supervisor). */
    arriving?: number;
    accepted?: number | null;
    restarts?: number;
    kinds?: Record<string, number>;
    waitingFor?: string;
    usage?: StatusData['generations'][number]['usage'];
  }>;
  listeners?: Array<{ name: string; kind: string; address: string }>;
  upgrades?: UpgradeRecord[];
  /** Slots with no serving worker, served by a sibling meanwhile (absent from an older supervisor). */
  loans?: Array<{ slot: number; worker: number; generation: number; pid: number; names: string[] }>;
}

/** Several workers per generation: the tables get a worker column, and each slot's accepted and restarts. */
export function multiWorker(d: Pick<StatusReply, 'supervisor'>): boolean {
  return (d.supervisor?.workers ?? 1) > 1;
}

/** The per-worker cells (WORKER, ACCEPTED, RESTARTS) of `g`'s row, placed by `row`. */
export function workerCells(g: StatusReply['generations'][number]): {
  worker: string;
  accepted: string;
  restarts: string;
} {
  return {
    worker: String(g.worker ?? 0),
    accepted: g.accepted === undefined || g.accepted === null ? '-' : String(g.accepted),
    restarts: g.restarts === undefined ? '-' : String(g.restarts),
  };
}

/**
 * A generation's connections: `2500`, or during a move `2500 (1200 arriving)` — those it has taken over from
 * the old generation but not continued yet are counted (so that the two generations' counts add up while a
 * move is adopted) and said apart (so that the count does not look final while the app is still taking them).
 */
export function connectionsCell(g: Pick<StatusReply['generations'][number], 'connections' | 'arriving'>): string {
  return g.arriving ? `${g.connections} (${g.arriving} arriving)` : String(g.connections);
}

/** A draining generation: "sse 20, http 1", or its predecessor still handing connections over. */
function waitingFor(g: StatusReply['generations'][number]): string {
  if (g.state !== 'draining') return '';
  if (g.waitingFor === 'predecessor') return 'its predecessor to finish handing over';
  return formatKinds(g.kinds);
}

/** `baton status` as text: the supervisor, the generations, the listeners and the last upgrades. */
export function formatStatus(d: StatusReply): string {
  let out = '';
  if (d.supervisor) {
    const sv = d.supervisor;
    const inARow = sv.failedStarts ? ` (${sv.failedStarts} failed in a row)` : '';
    const plural = sv.restarts === 1 ? '' : 's';
    const execs = sv.execCount ? `, re-executed ${sv.execCount}x (last ${sv.execAt})` : '';
    const image = sv.version ? `, baton ${sv.version}${execs}` : '';
    const restarts = sv.restarts === undefined ? '' : `, ${sv.restarts} restart${plural}${inARow}`;
    const usage = sv.usage === undefined ? '' : `, CPU ${cpu(sv.usage)}, RSS ${rss(sv.usage)}`;
    out += `supervisor pid ${sv.pid}, up ${Math.round(sv.uptimeMs / 1000)} s${restarts}, socket ${sv.socket}${image}`;
    const workers = multiWorker(d) ? `, ${sv.workers} workers per generation` : '';
    out += `${usage}\n`;
    out += `command: ${sv.command.join(' ')}${workers}\n${talliesLine(d as StatusData)}\n`;
  }
  // One worker: the columns as they always were. N workers: a row per worker process, with its slot.
  const multi = multiWorker(d);
  const head = ['GENERATION', 'PID', 'STATE', 'STARTED', 'READY IN', 'CONNECTIONS', 'CPU', 'RSS', 'WAITING FOR'];
  out += table([
    multi ? ['WORKER', ...head.slice(0, 6), 'ACCEPTED', 'RESTARTS', ...head.slice(6)] : head,
    ...d.generations.map((g) => {
      const w = workerCells(g);
      const cells = [
        String(g.generation),
        String(g.pid),
        g.state,
        g.startedAt,
        g.readyMs === null ? '-' : `${g.readyMs} ms`,
        connectionsCell(g),
      ];
      const rest = [cpu(g.usage), rss(g.usage), waitingFor(g)];
      return multi ? [w.worker, ...cells, w.accepted, w.restarts, ...rest] : [...cells, ...rest];
    }),
  ]);
  for (const l of d.loans ?? []) {
    const names = l.names.join(', ');
    out += `slot ${l.slot} has no worker: served meanwhile by worker ${l.worker} (pid ${l.pid}): ${names}\n`;
  }
  if (d.listeners) {
    out += `\n${table([['LISTENER', 'KIND', 'ADDRESS'], ...d.listeners.map((l) => [l.name, l.kind, l.address])])}`;
  }
  if (d.upgrades?.length) {
    out += `\n${upgradesTable(d as StatusData)}`;
    // The table has room for one line of a reason; the last failure's whole reason, with its output, follows.
    const failed = d.upgrades.filter((u) => (u.outcome === 'rolled-back' || u.outcome === 'stopped') && u.reason).pop();
    if (failed) {
      const reason = failed.reason!.replace(/\n/g, '\n  ');
      out += `\nlast failure: generation ${failed.generation} (pid ${failed.pid}), ${failed.kind}, ${reason}\n`;
    }
  }
  return out;
}
