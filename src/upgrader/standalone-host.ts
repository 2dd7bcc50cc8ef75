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
import type { Held } from '../handoff/inventory.js';
import { answerControl, handOver, HandoffServer } from '../handoff/server.js';
import type { HandoffSession } from '../handoff/session.js';
import type { LogFields, Logger, LogLevel } from './logger.js';
import type { UpgraderState } from './state.js';

export interface HostCallbacks {
  generation(): number;
  state(): UpgraderState;
  readyTimeout: number;
  /** How long a peer may take to say hello (ms). */
  helloTimeout: number;
  logger: Logger;
  /** What a successor inherits: the fds are borrowed from the live sockets (the kernel copies them). */
  inventory(): Held[];
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
  readonly #server: HandoffServer;
  readonly #cb: HostCallbacks;
  #busy = false;

  constructor(server: FdChannelServer, callbacks: HostCallbacks) {
    this.#cb = callbacks;
    this.#server = new HandoffServer(server, {
      generation: (session) => this.#onGeneration(session),
      control: (session) => this.#onControl(session),
      log: (level, event, fields) => this.#log(level, event, fields),
      helloTimeoutMs: callbacks.helloTimeout,
    });
  }

  start(): void {
    this.#server.start();
  }

  close(options: { unlink: boolean }): void {
    this.#server.close(options);
  }

  #onControl(session: HandoffSession): Promise<void> {
    return answerControl(session, {
      status: () => ({ generations: [this.#cb.status()] }),
      stop: () => this.#cb.onStop(),
      reload: async () => ({
        ok: false,
        code: 'ERR_BATON_NO_SUPERVISOR',
        reason:
          'standalone mode has no supervisor to start a new generation: ' +
          'start the new version with the same socket and it takes over',
      }),
    });
  }

  async #onGeneration(session: HandoffSession): Promise<void> {
    const state = this.#cb.state();
    if (this.#busy || state !== 'serving') {
      const code = this.#busy || state === 'upgrading' ? 'ERR_BATON_UPGRADE_IN_PROGRESS' : 'ERR_BATON_STATE';
      const reason =
        code === 'ERR_BATON_UPGRADE_IN_PROGRESS'
          ? 'upgrade in progress: another new generation is joining'
          : `the serving generation is ${state}`;
      this.#log('warn', 'upgrade-refused', { peer: session.peer.pid, reason });
      await session.refuse(code, reason);
      return;
    }
    this.#busy = true;
    this.#cb.setUpgrading(true);
    const pid = session.peer.pid;
    const next = this.#cb.generation() + 1;
    const started = Date.now();
    this.#log('info', 'upgrade-start', { next, peer: pid });
    let migrationFd: number | null = null;
    try {
      ({ migrationFd } = (await handOver(session, {
        generation: next,
        inventory: this.#cb.inventory(),
        readyTimeoutMs: this.#cb.readyTimeout,
        boundOffer: true,
        beforeAck: async () => {
          // Stop accepting on the control socket before acknowledging: from the ack on, the successor accepts.
          this.#server.stop();
          await this.#cb.beforeHandover?.(next, pid);
          return true;
        },
      }))!);
    } catch (err) {
      const reason = (err as Error).message;
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

  #log(level: LogLevel, event: string, fields: LogFields): void {
    this.#cb.logger.log(level, event, { gen: this.#cb.generation(), pid: process.pid, ...fields });
  }
}
