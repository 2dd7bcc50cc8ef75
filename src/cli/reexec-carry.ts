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
import { STATE_FORMAT, type CarriedGeneration, type SupervisorState } from './reexec.js';
import type { UpgradeRecord } from './upgrade-record.js';

export interface CarrySource {
  pid: number;
  socket: string;
  serverFd: number;
  startedAt: number;
  execCount: number;
  now: number;
  inventory: Inventory;
  generations: Generations;
  crash: CrashLoop;
  /** Listener names in the service manager's fd store. */
  stored: string[];
}

/** Everything a new image needs to carry on: what is in memory, and the fds it inherits. */
export function snapshotState(s: CarrySource, requester: HandoffSession | null): SupervisorState<UpgradeRecord> {
  const gens = s.generations;
  return {
    format: STATE_FORMAT,
    version: VERSION,
    pid: s.pid,
    socket: s.socket,
    serverFd: s.serverFd,
    startedAt: s.startedAt,
    execCount: s.execCount + 1,
    execAt: s.now,
    inventory: s.inventory.entries(),
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
    })),
    next: gens.next,
    current: gens.current?.generation ?? null,
    history: gens.history,
    backoffMs: s.crash.backoffMs,
    failedStarts: s.crash.failedStarts,
    restarts: s.crash.restarts,
    exitCode: gens.exitCode,
    readySent: gens.readySent,
    stored: s.stored,
    respawnDue: s.crash.respawnDue,
    requester: requester ? { fd: requester.link.channel.fd, hello: requester.hello } : null,
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
