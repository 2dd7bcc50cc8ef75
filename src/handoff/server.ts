/**
 * The serving side of the handoff, one implementation for every process that serves it: the supervisor
 * (src/cli/supervisor.ts), a standalone generation handing over to its successor, and an orphan a new
 * supervisor takes over from (src/upgrader/standalone-host.ts, on the orphan's takeover socket).
 *
 * HandoffServer accepts connections on a control socket (FdChannelServer), authenticates each peer and reads
 * its hello (HandoffSession.accept), logs what the socket reports on its own (control-log.ts), and hands the
 * session to the owner by role. The owner then runs one of two exchanges written here once:
 *
 *   handOver(): offer the inventory with its fds -> await ready -> the owner's last step -> acknowledge
 *   answerControl(): status / stop / reload -> one result -> close
 *
 * Telling a generation to drain is HandoffSession.drain(). What differs between the owners (which peer may
 * join, what ready means for the other generations, what `reload` does) stays with them, as callbacks.
 */
import type { FdChannelServer } from '../fd/channel-server.js';
import { batonError } from '../fd/errors.js';
import { closeFds } from '../fd/fds.js';
import { logControlServer, type LogFn } from './control-log.js';
import type { Held } from './inventory.js';
import { HandoffSession } from './session.js';

export type { LogFn } from './control-log.js';

export interface HandoffServerHandlers {
  /** A peer with role 'generation' said hello. */
  generation(session: HandoffSession): void | Promise<void>;
  /** A peer with role 'control' (`baton status|stop|reload`) said hello. */
  control(session: HandoffSession): void | Promise<void>;
  /** Refused connections, drops past the connection limit and accept errors are logged here. */
  log: LogFn;
  /** How long a peer may take to say hello (ms, > 0). Default DEFAULT_HELLO_TIMEOUT_MS (5 s). */
  helloTimeoutMs?: number;
}

export class HandoffServer {
  readonly #server: FdChannelServer;

  constructor(server: FdChannelServer, handlers: HandoffServerHandlers) {
    this.#server = server;
    server.on('channel', (channel) => {
      HandoffSession.accept(channel, handlers.helloTimeoutMs).then(
        (session) => (session.hello.role === 'control' ? handlers.control(session) : handlers.generation(session)),
        (err: Error) => handlers.log('warn', 'control-refused', { reason: err.message }),
      );
    });
    // Connections past the limit, and accept errors (EMFILE), come in bursts: logged at most once a second.
    logControlServer(server, handlers.log);
  }

  /** The listening socket's fd (carried across a re-exec of the supervisor). */
  get fd(): number {
    return this.#server.fd;
  }

  /** Accept connections (again, after stop()). */
  start(): void {
    this.#server.start();
  }

  /** Stop accepting, keeping the socket: from a successor's acknowledgement on, it accepts instead. */
  stop(): void {
    this.#server.stop();
  }

  close(options?: { unlink: boolean }): void {
    this.#server.close(options);
  }
}

export interface HandoverSteps {
  /** The number the joining generation gets. */
  generation: number;
  /** What it inherits: entries with their fds (borrowed: the kernel copies them). */
  inventory: readonly Held[];
  /** How long the joining generation may take to call ready(); 0 or Infinity: no limit. */
  readyTimeoutMs: number;
  /**
   * Also bound the offer by readyTimeoutMs. Sending the inventory waits for the successor to read it when it
   * is several records (a very large inventory): a successor that never reads would hold the upgrade forever.
   * (The supervisor bounds the whole start with its own timer instead.)
   */
  boundOffer?: boolean;
  /**
   * The joining generation is ready: the owner's last step before the acknowledgement (stop accepting,
   * promote it). False: abandon quietly (it was rolled back meanwhile); the migration fd is closed here.
   */
  beforeAck(names: string[], migrationFd: number | null): boolean | Promise<boolean>;
}

/**
 * Offer the inventory, wait for ready, run the owner's last step and acknowledge. Returns the names the new
 * generation uses and its migration channel (owned by the caller from here), or null if beforeAck abandoned
 * the handoff. Throws if the peer goes away or misses a timeout; the migration fd is closed then.
 *
 * The acknowledgement comes last: the new generation accepts from it on, so the owner stops accepting (or
 * promotes it) first, and only after it tells the old generation to drain — if this process dies in between,
 * the old one still serves (a second generation serving is a smaller harm than none; the fault matrix found
 * the other order leaving the old generation draining and the new one rolled back for want of its ready-ok).
 */
export async function handOver(
  session: HandoffSession,
  steps: HandoverSteps,
): Promise<{ names: string[]; migrationFd: number | null } | null> {
  const ms = steps.readyTimeoutMs;
  let offerTimedOut = false;
  const offerDeadline =
    steps.boundOffer && ms > 0 && Number.isFinite(ms)
      ? setTimeout(() => {
          offerTimedOut = true;
          session.close();
        }, ms)
      : null;
  try {
    await session.offer(steps.generation, steps.inventory);
  } catch (err) {
    if (offerTimedOut) {
      throw batonError('ERR_BATON_TIMEOUT', `the successor did not read the inventory within ${ms} ms`);
    }
    throw err;
  } finally {
    if (offerDeadline) clearTimeout(offerDeadline);
  }
  const { names, migrationFd } = await session.awaitReady(ms);
  try {
    if (!(await steps.beforeAck(names, migrationFd))) {
      if (migrationFd !== null) closeFds([migrationFd]);
      return null;
    }
    await session.ackReady();
  } catch (err) {
    if (migrationFd !== null) closeFds([migrationFd]);
    throw err;
  }
  return { names, migrationFd };
}

/** What a control command does on this side; each answer becomes the command's one result. */
export interface ControlAnswers {
  status(): unknown;
  /** Called after the result is sent. */
  stop(): void;
  /** `reload` (and any command without a handler of its own, answered under its own name). */
  reload(): Promise<{ ok: boolean; code?: string; reason?: string; data?: unknown }>;
  /** `reexec`, if this side can: it answers on the session itself (on success, from the new image). */
  reexec?(session: HandoffSession): Promise<void>;
}

/** Answer one `baton status|stop|reload|reexec`, then close the connection. */
export async function answerControl(session: HandoffSession, answers: ControlAnswers): Promise<void> {
  const cmd = session.hello.command ?? 'reload';
  try {
    if (cmd === 'status') await session.result('status', true, { data: answers.status() });
    else if (cmd === 'stop') {
      await session.result('stop', true);
      answers.stop();
    } else if (cmd === 'reexec' && answers.reexec) {
      // On success this never returns: the new image answers on this very session.
      await answers.reexec(session);
    } else {
      const { ok, ...extra } = await answers.reload();
      await session.result(cmd, ok, extra);
    }
  } finally {
    session.close();
  }
}
