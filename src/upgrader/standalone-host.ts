/**
 * The serving side of standalone mode: the current generation listens on the control socket and hands
 * everything, the control listener included, to a successor that connects. One upgrade at a time.
 *
 * Per connection: HandoffSession.accept (peer uid, hello) -> role 'generation': offer the inventory ->
 * await ready (readyTimeout) -> stop accepting on the control socket -> acknowledge -> the Upgrader drains
 * and exits. If the successor goes away or misses the timeout first, this generation keeps serving and
 * reports a rollback. Role 'control': 'status' is answered; 'reload' is refused (no supervisor to start
 * anything); 'stop' drains this generation.
 */
import type { FdChannelServer } from '../fd/channel-server.js';
import type { InventoryEntry } from '../handoff/messages.js';
import { closeFds } from '../fd/fds.js';
import { HandoffSession } from '../handoff/session.js';
import { logControlServer } from './control-log.js';
import type { Logger } from './logger.js';
import type { UpgraderState } from './state.js';

export interface HostCallbacks {
  generation(): number;
  state(): UpgraderState;
  readyTimeout: number;
  logger: Logger;
  inventory(): Array<{ entry: InventoryEntry; fd: number }>;
  status(): unknown;
  setUpgrading(on: boolean): void;
  onRollback(pid: number, reason: string): void;
  /** The successor is ready and this side stopped accepting; awaited just before the acknowledgement. */
  beforeHandover?(generation: number, pid: number): void | Promise<void>;
  /** `migrationFd` (owned by the callee): the successor's migration channel, or null. */
  onHandover(generation: number, pid: number, migrationFd: number | null): void;
  onStop(): void;
}

export class StandaloneHost {
  readonly #server: FdChannelServer;
  readonly #cb: HostCallbacks;
  #busy = false;

  constructor(server: FdChannelServer, callbacks: HostCallbacks) {
    this.#server = server;
    this.#cb = callbacks;
    server.on('channel', (channel) => {
      HandoffSession.accept(channel).then(
        (session) => this.#onSession(session),
        (err: Error) => this.#log('warn', 'control-refused', { reason: err.message }),
      );
    });
    // Connections past the limit, and accept errors (EMFILE), come in bursts: logged at most once a second.
    logControlServer(server, (level, event, fields) => this.#cb.logger.log(level, event, { gen: this.#cb.generation(), pid: process.pid, ...fields }));
  }

  start(): void {
    this.#server.start();
  }

  close(options: { unlink: boolean }): void {
    this.#server.close(options);
  }

  async #onSession(session: HandoffSession): Promise<void> {
    const hello = session.hello;
    if (hello.role === 'control') {
      if (hello.command === 'status') await session.result('status', true, { data: { generations: [this.#cb.status()] } });
      else if (hello.command === 'stop') {
        await session.result('stop', true);
        this.#cb.onStop();
      } else {
        await session.result(hello.command ?? 'reload', false, {
          code: 'ERR_BATON_NO_SUPERVISOR',
          reason: 'standalone mode has no supervisor to start a new generation: start the new version with the same socket and it takes over',
        });
      }
      session.close();
      return;
    }
    const state = this.#cb.state();
    if (this.#busy || state !== 'serving') {
      const code = this.#busy || state === 'upgrading' ? 'ERR_BATON_UPGRADE_IN_PROGRESS' : 'ERR_BATON_STATE';
      const reason = code === 'ERR_BATON_UPGRADE_IN_PROGRESS' ? 'upgrade in progress: another new generation is joining' : `the serving generation is ${state}`;
      this.#log('warn', 'upgrade-refused', { peer: session.peer.pid, reason });
      await session.refuse(code, reason);
      return;
    }
    this.#busy = true;
    this.#cb.setUpgrading(true);
    const pid = session.peer.pid;
    const next = this.#cb.generation() + 1;
    const started = Date.now();
    let migrationFd: number | null = null;
    this.#log('info', 'upgrade-start', { next, peer: pid });
    // Sending the inventory waits for the successor to read it when it is several records (a very large
    // inventory): bound that wait too (like awaitReady: 0 means no limit), or a successor that never reads
    // would hold the upgrade forever.
    let offerTimedOut = false;
    const ms = this.#cb.readyTimeout;
    const offerDeadline =
      ms > 0 && Number.isFinite(ms)
        ? setTimeout(() => {
            offerTimedOut = true;
            session.close();
          }, ms)
        : null;
    try {
      try {
        await session.offer(next, this.#cb.inventory());
      } finally {
        if (offerDeadline) clearTimeout(offerDeadline);
      }
      ({ migrationFd } = await session.awaitReady(this.#cb.readyTimeout));
      // Stop accepting on the control socket before acknowledging: from the ack on, the successor accepts.
      this.#server.stop();
      await this.#cb.beforeHandover?.(next, pid);
      await session.ackReady();
    } catch (err) {
      const reason = offerTimedOut ? `the successor did not read the inventory within ${this.#cb.readyTimeout} ms` : (err as Error).message;
      if (migrationFd !== null) closeFds([migrationFd]);
      this.#log('warn', 'rollback', { next, peer: pid, reason, ms: Date.now() - started });
      session.close();
      this.#server.start();
      this.#busy = false;
      this.#cb.setUpgrading(false);
      this.#cb.onRollback(pid, reason);
      return;
    }
    this.#log('info', 'upgraded', { next, peer: pid, ms: Date.now() - started });
    session.close();
    this.#cb.onHandover(next, pid, migrationFd);
  }

  #log(level: 'info' | 'warn', event: string, fields: Record<string, string | number>): void {
    this.#cb.logger.log(level, event, { gen: this.#cb.generation(), pid: process.pid, ...fields });
  }
}
