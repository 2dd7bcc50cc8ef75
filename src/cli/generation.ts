/**
 * One generation of the app as the supervisor sees it, and its state machine — every change of state goes
 * through moveTo(), which refuses a transition not in the table:
 *
 *   starting --ready--> serving --(a newer one ready | stop)--> draining --exit--> exited
 *      \--exit / crash / readyTimeout: rolled back (exited)       \--exit while serving: crashed -> exited
 */
import type net from 'node:net';
import { batonError } from '../fd/errors.js';
import { Inventory } from '../handoff/inventory.js';
import type { LoopStats } from '../handoff/messages.js';
import type { HandoffSession } from '../handoff/session.js';
import type { TimerHandle } from './process.js';
import type { UpgradeRecord } from './upgrade-record.js';

export type GenerationState = 'starting' | 'serving' | 'draining' | 'exited';

/** The states each state may move to. A generation rolled back while starting is killed and exits from
 * 'starting'; one told to stop while starting is killed too (it never served, so it has nothing to drain).
 * draining -> draining: a stop tells a generation still draining after an upgrade again, with its timeout. */
export const TRANSITIONS: Readonly<Record<GenerationState, readonly GenerationState[]>> = {
  starting: ['serving', 'exited'],
  serving: ['draining', 'exited'],
  draining: ['draining', 'exited'],
  exited: [],
};

export interface Attempt {
  record: UpgradeRecord;
  settle: (record: UpgradeRecord) => void;
  timer: TimerHandle;
}

export interface Generation {
  generation: number;
  pid: number;
  /** The read end of its stderr pipe (a ChildProcess's, or one carried across a re-exec). */
  stderr: net.Socket | null;
  /** Read it; change it only with moveTo(). */
  state: GenerationState;
  startedAt: number;
  /** Its worker slot (`baton run --workers N`); absent: 0, the only one. */
  worker?: number;
  readyAt?: number;
  drainStartedAt?: number;
  connections: number;
  /** Connections it accepted since it started, as its latest report says (absent: it does not report them). */
  accepted?: number;
  /** Of `connections`, those moved to it and not continued yet, as its latest report says. */
  arriving?: number;
  /** The event loop, as its latest report says. */
  loop?: LoopStats;
  /** Its last report: open connections by kind, and (draining) what it waits for. */
  kinds?: Record<string, number>;
  waiting?: 'predecessor' | 'connections';
  session: HandoffSession | null;
  /** Sockets this generation bound and registered; they join the inventory when it is ready. */
  registered: Inventory;
  stderrTail: string;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  /** Set while this generation is the subject of an upgrade (or a start / respawn). */
  attempt?: Attempt;
  /** The upgrade that replaced this generation: its drain time is recorded there. */
  replacedBy?: UpgradeRecord;
}

/** Move `g` to `to`, stamping the time it entered serving or draining. Throws ERR_BATON_STATE on a
 * transition the table does not have (a bug in the supervisor, not in the app). */
export function moveTo(g: Generation, to: GenerationState, now: number): void {
  if (!TRANSITIONS[g.state].includes(to)) {
    throw batonError('ERR_BATON_STATE', `generation ${g.generation} cannot go from ${g.state} to ${to}`);
  }
  g.state = to;
  if (to === 'serving') g.readyAt = now;
  else if (to === 'draining') g.drainStartedAt = now;
}

/** A generation just spawned: starting, nothing heard from it yet. */
export function newGeneration(generation: number, pid: number, stderr: net.Socket | null, now: number): Generation {
  return {
    generation,
    pid,
    stderr,
    state: 'starting',
    startedAt: now,
    connections: 0,
    session: null,
    registered: new Inventory(),
    stderrTail: '',
  };
}
