/**
 * What the supervisor carries across a re-exec of its own image (reexec.ts does the exec and the checks):
 * everything in memory that the new image needs to carry on (snapshotState), and on the other side the
 * generations rebuilt from it with their sessions and stderr pipes (resumeGeneration), and the answer to the
 * `baton reload --supervisor` that asked for it (answerRequester).
 */
import net from 'node:net';
import { FdChannel } from '../fd/channel.js';
import { fdOf } from '../fd/fd-of.js';
import { Inventory } from '../handoff/inventory.js';
import { CONTROL_CHANNEL_LIMITS, type Hello } from '../handoff/messages.js';
import type { LogFn } from '../handoff/server.js';
import { HandoffSession } from '../handoff/session.js';
import { VERSION } from '../version.js';
import type { CrashLoop } from './crash-loop.js';
import type { Generation } from './generation.js';
import type { Generations } from './generations.js';
import {
  type CarriedGeneration,
  type CarriedLane,
  STATE_FORMAT,
  STATE_FORMAT_WORKERS,
  type SupervisorState,
} from './reexec.js';
import type { SlotSockets } from './slots.js';
import type { UpgradeRecord } from './upgrade-record.js';

/** One lane: a Generations, the crash loop it counts with, and its copy of the listeners. */
export interface LaneSource {
  inventory: Inventory;
  generations: Generations;
  crash: CrashLoop;
}

export interface CarrySource {
  pid: number;
  socket: string;
  serverFd: number;
  startedAt: number;
  execCount: number;
  now: number;
  /** Lane 0 (the supervisor's) first; with --workers N, one per slot. */
  lanes: LaneSource[];
  /** With --workers N > 1: the slot sockets. */
  slots: SlotSockets | null;
  /** Listener names in the service manager's fd store. */
  stored: string[];
}

/** Everything a new image needs to carry on: what is in memory, and the fds it inherits. */
export function snapshotState(s: CarrySource, requester: HandoffSession | null): SupervisorState<UpgradeRecord> {
  const [lane0, ...others] = s.lanes;
  const slots = s.slots;
  return {
    format: slots ? STATE_FORMAT_WORKERS : STATE_FORMAT,
    version: VERSION,
    pid: s.pid,
    socket: s.socket,
    serverFd: s.serverFd,
    startedAt: s.startedAt,
    execCount: s.execCount + 1,
    execAt: s.now,
    ...snapshotLane(lane0!),
    stored: s.stored,
    requester: requester ? { fd: requester.link.channel.fd, hello: requester.hello } : null,
    ...(slots
      ? {
          workers: {
            slots: slots.slots,
            balance: slots.balance,
            groups: slots.carry(),
            lanes: others.map(snapshotLane),
          },
        }
      : {}),
  };
}

function snapshotLane(lane: LaneSource): CarriedLane<UpgradeRecord> {
  const gens = lane.generations;
  return {
    inventory: lane.inventory.entries(),
    generations: gens.alive().map((g) => ({
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
      ...(g.worker !== undefined ? { worker: g.worker } : {}),
    })),
    next: gens.next,
    current: gens.current?.generation ?? null,
    history: gens.history,
    backoffMs: lane.crash.backoffMs,
    failedStarts: lane.crash.failedStarts,
    restarts: lane.crash.restarts,
    exitCode: gens.exitCode,
    readySent: gens.readySent,
    respawnDue: lane.crash.respawnDue,
  };
}

/** A carried generation, in the state it had, with its control session and stderr pipe adopted. */
export function resumeGeneration(c: CarriedGeneration, history: UpgradeRecord[], log: LogFn): Generation {
  const g: Generation = {
    generation: c.generation,
    pid: c.pid,
    stderr: null,
    state: c.state,
    startedAt: c.startedAt,
    readyAt: c.readyAt ?? undefined,
    drainStartedAt: c.drainStartedAt ?? undefined,
    connections: c.connections,
    session: null,
    stderrTail: c.stderrTail,
    registered: new Inventory(c.registered),
    replacedBy: history.find((r) => r.generation === c.replacedBy),
    ...(c.worker !== undefined ? { worker: c.worker } : {}),
  };
  try {
    if (c.stderrFd !== null) g.stderr = new net.Socket({ fd: c.stderrFd, readable: true, writable: false });
    if (c.session) {
      const channel = FdChannel.fromFd(c.session.fd, CONTROL_CHANNEL_LIMITS);
      g.session = HandoffSession.resume(channel, c.session.hello, 'serving');
    }
  } catch (err) {
    // Without its session it drains by signal; without its stderr it still runs: neither stops the others.
    log('warn', 'reexec-resume', { generation: g.generation, child: g.pid, reason: (err as Error).message });
  }
  return g;
}

/** The re-exec succeeded: tell the `baton reload --supervisor` that asked (its connection was carried). */
export function answerRequester(requester: { fd: number; hello: Hello }, data: unknown, log: LogFn): void {
  try {
    const channel = FdChannel.fromFd(requester.fd, CONTROL_CHANNEL_LIMITS);
    const r = HandoffSession.resume(channel, requester.hello, 'greeted');
    void r.result('reexec', true, { data }).finally(() => r.close());
  } catch (err) {
    log('warn', 'reexec-resume', { reason: `could not answer the re-exec request: ${(err as Error).message}` });
  }
}
