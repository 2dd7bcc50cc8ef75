/**
 * How a generation finds its predecessor and hands over, as one interface: plain (no handoff), standalone
 * (the serving generation hosts the control socket) and supervised (`baton run`). The Upgrader asks its
 * mode at each step of the generation's life; a new way to run (a worker slot) is a new file here, not new
 * branches in the Upgrader.
 */
import type { GenerationClient } from '../../handoff/client.js';
import type { Held } from '../../handoff/inventory.js';
import type { InventoryEntry } from '../../handoff/messages.js';
import type { ConnectionKinds } from '../census.js';
import type { LogFn, ServiceManager } from '../integration.js';
import type { Logger } from '../logger.js';
import type { UpgraderState } from '../state.js';

export type UpgraderMode = 'plain' | 'standalone' | 'supervised';

/** A socket and its fd, as offered to a successor: the inventory's item, its fd borrowed from the live socket. */
export type Offered = Held;

/** What a mode may use of its generation (the Upgrader builds it). */
export interface Generation {
  readonly generation: number;
  readonly socketPath: string | null;
  readonly readyTimeout: number;
  readonly drainTimeout: number;
  /** Standalone: how long a peer of the control socket may take to say hello (ms). */
  readonly helloTimeout: number;
  readonly logger: Logger;
  service(): ServiceManager | null;
  /** The connection to the predecessor or supervisor (null once closed, or without one). */
  client(): GenerationClient | null;
  connections(): number;
  /** Connections moved here and not continued yet (parked by a migration receiver): in no server yet. */
  arriving(): number;
  /** Connections its servers accepted since it started (not those that moved here). */
  accepted(): number;
  connectionKinds(): ConnectionKinds;
  /** How many sockets this generation listens on. */
  listeners(): number;
  /** While draining: what this generation waits for ('predecessor' first, then 'connections'). */
  waiting(): 'predecessor' | 'connections';
  state(): UpgraderState;
  /** serving <-> upgrading (a standalone successor or a takeover joins, or fails). */
  setUpgrading(on: boolean): void;
  log: LogFn;
  status(): unknown;
  /** This generation's sockets and their fds (what a successor is offered). */
  inventory(): Offered[];
  /** A successor's migration channel (owned), or null. */
  openSender(migrationFd: number | null): void;
  drain(timeoutMs: number, stopping?: boolean): Promise<void>;
  stop(): Promise<void>;
  emitUpgraded(info: { generation: number; pid: number }): void;
  emitRollback(info: { pid: number; reason: string }): void;
}

/** What a drained generation moved to its successor (and what it could not move, by reason). */
export interface MoveSummary {
  moved: number;
  notMoved: number;
  notMovedReasons: Record<string, number>;
}

export interface GenerationMode {
  readonly name: UpgraderMode;
  /** Without a supervisor the generation talks to the service manager itself. */
  readonly notifiesServiceManager: boolean;
  /** After ready(), the generation keeps its connection to the supervisor (stats, drain); else it is closed. */
  readonly keepsClient: boolean;
  /** The Upgrader was built. */
  started(g: Generation): void;
  /** The connection to the predecessor (or supervisor) closed while this generation was not draining. */
  clientClosed(g: Generation, err: Error | undefined): void;
  /** A socket this generation bound itself (or took by position) and registers under its name. */
  registerFresh(client: GenerationClient, entry: InventoryEntry, fd: number): Promise<void>;
  /** The handoff broke before ready(): is it over (the caller fails ready()) and who ended it. */
  handoffBroke(client: GenerationClient): { fatal: boolean; who: string };
  /** ready(), after the handoff: this generation is about to serve. */
  beforeServing(g: Generation): Promise<void>;
  /** ready(): this generation serves now. */
  serving(g: Generation): void;
  /** The generation starts to drain: stop what the mode runs for a serving generation. */
  draining(g: Generation, stopping: boolean): void;
  /** Draining: the wait for the predecessor is over (or there was none). */
  predecessorDone(g: Generation): void;
  /** Drained (`moved`: null when nothing could move, no successor). */
  drained(g: Generation, moved: MoveSummary | null): void;
}

/** Is the process `pid` (the predecessor) alive? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
