/**
 * A new `baton run` takes over from the generations a crashed supervisor left behind (orphans; see
 * src/upgrader/orphan.ts for how they make themselves findable).
 *
 * Deciding between "take over" and "fresh start": the supervisor first binds the control socket (so of two
 * new supervisors racing, exactly one gets here; the other fails with EADDRINUSE on the control socket),
 * then asks every takeover socket next to it for its status. No live one: a fresh start. Otherwise it joins
 * the serving orphan with the highest generation as a standalone successor would: it receives the orphan's
 * listeners (they become the supervisor's own copies, so the ports stay open whatever happens next) and
 * starts its first generation with them. When that generation is ready, the supervisor acknowledges it,
 * then relays its ready — with the migration channel — to the orphan, which drains and moves its keep-alive
 * connections, WebSockets and migrate()d connections over, as in a reload.
 *
 * Failures:
 * - The orphan dies before sending its listeners: it is skipped (the next one, or a fresh start: its ports
 *   closed with it, so binding them works).
 * - The orphan dies after sending them: nothing changes for the new generation; the supervisor holds the
 *   listeners, and its ready simply has nobody to relay to (the orphan's own connections die with it).
 * - The orphan's handover fails while it is alive (it hung past its readyTimeout and rolled back, say):
 *   two generations would serve, so it is told to stop (it drains gracefully, without moving connections).
 * - Further serving orphans (a supervisor killed between acknowledging a new generation and draining the
 *   old one) are told to stop once the takeover is done. Draining orphans do not listen: they finish alone.
 */
import fs from 'node:fs';
import { batonError } from '../fd/errors.js';
import { closeFds } from '../fd/fds.js';
import { GenerationClient } from '../handoff/client.js';
import { sendCommand } from '../handoff/control.js';
import type { Held } from '../handoff/inventory.js';
import { listTakeoverSockets } from '../upgrader/orphan.js';
import { statFields } from './proc-stats.js';

type Log = (level: 'info' | 'warn', event: string, fields: Record<string, string | number | null>) => void;

export interface OrphanStatus {
  path: string;
  pid: number;
  generation: number;
  state: string;
}

/** How long one orphan may take to answer its status, in ms (it answers from its event loop at once). */
const STATUS_TIMEOUT_MS = 5000;

export class Takeover {
  readonly pid: number;
  readonly generation: number;
  readonly #path: string;
  readonly #client: GenerationClient;
  readonly #others: OrphanStatus[];
  readonly #log: Log;
  /** handover() has begun: it reports how the orphan's part ends. */
  #handingOver = false;

  /** The serving orphans of `socket`, newest generation first (asked for their status only: none is joined). */
  static async serving(socket: string, log: Log): Promise<OrphanStatus[]> {
    const found: OrphanStatus[] = [];
    for (const s of listTakeoverSockets(socket)) {
      const status = await orphanStatus(s.path, s.pid, log);
      if (status) found.push(status);
    }
    for (const o of found) {
      // Only a supervisor takes over an orphan: one in the middle of a handover is being taken over by another
      // `baton run` on this socket (that got past the control socket too: see takeoverInProgress()).
      if (o.state === 'upgrading') throw takeoverInProgress(o.pid);
      if (o.state !== 'serving') log('info', 'orphan-busy', { orphan: o.pid, state: o.state });
    }
    return found.filter((o) => o.state === 'serving').sort((a, b) => b.generation - a.generation);
  }

  /** Join the newest serving orphan of `socket`, or null when there is none to take over from. */
  static async find(socket: string, timeoutMs: number, log: Log): Promise<Takeover | null> {
    const serving = await Takeover.serving(socket, log);
    for (const [i, o] of serving.entries()) {
      let client: GenerationClient;
      try {
        client = await GenerationClient.join(o.path, { timeoutMs });
      } catch (err) {
        if ((err as { reason?: string }).reason === 'ERR_BATON_UPGRADE_IN_PROGRESS') throw takeoverInProgress(o.pid);
        // It died (or went away): the next one, else a fresh start — its ports closed with it.
        log('warn', 'takeover-failed', { orphan: o.pid, reason: (err as Error).message });
        continue;
      }
      if (client.link.peer.pid !== o.pid) {
        client.close();
        const reason = `the takeover socket ${o.path} is served by pid ${client.link.peer.pid}`;
        log('warn', 'takeover-failed', { orphan: o.pid, reason });
        continue;
      }
      return new Takeover(client, o, serving.slice(i + 1), log);
    }
    return null;
  }

  private constructor(client: GenerationClient, orphan: OrphanStatus, others: OrphanStatus[], log: Log) {
    this.#client = client;
    this.pid = orphan.pid;
    this.generation = orphan.generation;
    this.#path = orphan.path;
    this.#others = others;
    this.#log = log;
    client.on('close', () => {
      if (this.#handingOver) return;
      log('warn', 'orphan-gone', { orphan: this.pid, reason: 'the takeover connection closed before the handover' });
    });
    const listeners = client.inventory.length;
    log('info', 'takeover', { orphan: orphan.pid, generation: orphan.generation, listeners, path: orphan.path });
  }

  /** The orphan's listeners, owned by the caller from here on. */
  listeners(): Held[] {
    const taken: Held[] = [];
    for (const entry of this.#client.inventory) {
      const t = this.#client.take(entry.name, entry.kind, entry.address);
      if (t) taken.push(t);
    }
    return taken;
  }

  /**
   * The first generation serves (and has been acknowledged): tell the orphan, which drains and moves its
   * connections over `migrationFd` (owned: closed here once sent). Never rejects.
   */
  async handover(names: string[], timeoutMs: number, migrationFd: number | null): Promise<void> {
    this.#handingOver = true;
    try {
      if (this.#client.link.closed) throw batonError('ERR_BATON_HANDOFF_FAILED', 'the takeover connection is closed');
      await this.#client.ready(names, timeoutMs, migrationFd ?? undefined);
      this.#log('info', 'takeover-done', { orphan: this.pid });
    } catch (err) {
      const alive = isAlive(this.pid);
      const reason = (err as Error).message;
      this.#log('warn', 'takeover-incomplete', { orphan: this.pid, alive: String(alive), reason });
      // Alive after a failed handover, it rolled back and serves beside the new generation: it goes.
      if (alive) await stopOrphan(this.pid, this.#path, this.#log);
    } finally {
      if (migrationFd !== null) closeFds([migrationFd]);
      this.#client.close();
    }
    for (const o of this.#others) await stopOrphan(o.pid, o.path, this.#log);
  }

  /** The takeover is abandoned (the supervisor stops first): the orphan rolls back and serves on. */
  close(): void {
    this.#client.close();
  }
}

/**
 * Two new supervisors are kept apart by the control socket: the second one's listen() fails with
 * EADDRINUSE (native/channel.c does its check-then-replace of a stale file under a lock on the directory;
 * before that lock two supervisors racing for a crashed one's socket could both get past it, once in ~12
 * CI runs). Should both still reach the orphan (a socket path on a filesystem without flock), the one
 * that comes second stops here, rather than starting generations that fail on the orphan's ports.
 */
function takeoverInProgress(pid: number): Error {
  const what = `pid ${pid}, the generation a crashed supervisor left behind on this socket`;
  return batonError('ERR_BATON_UPGRADE_IN_PROGRESS', `another baton run is taking over ${what}`);
}

/** An orphan's status over its takeover socket, or null (a leftover file of a dead one is removed). */
async function orphanStatus(path: string, pid: number, log: Log): Promise<OrphanStatus | null> {
  try {
    const r = await sendCommand(path, 'status', STATUS_TIMEOUT_MS);
    type Answer = { generations?: Array<{ generation?: unknown; pid?: unknown; state?: unknown }> } | undefined;
    const g = (r.data as Answer)?.generations?.[0];
    if (!r.ok || !g || g.pid !== pid || typeof g.generation !== 'number' || typeof g.state !== 'string') {
      log('warn', 'orphan-ignored', { path, reason: r.reason ?? 'unexpected status answer' });
      return null;
    }
    return { path, pid, generation: g.generation, state: g.state };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' && !isAlive(pid)) {
      // Nobody listens and its process is gone: a leftover of an orphan that was killed.
      try {
        fs.unlinkSync(path);
      } catch {
        // gone already
      }
      log('info', 'orphan-leftover-removed', { path });
    } else log('warn', 'orphan-ignored', { path, reason: (err as Error).message });
    return null;
  }
}

async function stopOrphan(pid: number, path: string, log: Log): Promise<void> {
  const failed = (err: Error) => ({ ok: false, reason: err.message });
  const r = await sendCommand(path, 'stop', STATUS_TIMEOUT_MS).catch(failed);
  if (r.ok) {
    log('info', 'orphan-stopped', { orphan: pid });
    return;
  }
  log('warn', 'orphan-stop-failed', { orphan: pid, reason: r.reason ?? 'refused' });
  try {
    process.kill(pid, 'SIGTERM');
    log('info', 'orphan-terminated', { orphan: pid });
  } catch {
    // gone
  }
}

/** Is `pid` running? A zombie is not: an orphan is nobody's child we could reap, and one whose new parent
 * does not reap promptly (a container's PID 1 that is not an init) stays a zombie for a while. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const fields = statFields(pid);
  return fields !== null && fields[0] !== 'Z';
}

/**
 * A hint for a generation that failed with EADDRINUSE: which process most likely holds the port, and what to
 * do. Appended to the rollback reason that `baton reload`, `baton status` and the log show.
 */
export function addressInUseHint(output: string): string {
  if (!/EADDRINUSE/.test(output)) return '';
  return (
    '\nhint: the address is in use by another process — most likely a generation orphaned by a crashed ' +
    'supervisor that cannot be taken over (another --socket, or a baton version without takeover), or another ' +
    'server. Find it with `ss -ltnp`, then stop it, or start `baton run` with the --socket it was started with.'
  );
}
