/**
 * A generation's ends of the migration channels (src/upgrader/migrate.ts): the receivers on which older
 * generations move connections (and carry state) here, and the sender that moves this generation's
 * connections to its successor once it is replaced. Also the completion protocol's middle step: a draining
 * generation points the older senders still handing connections over at its own successor.
 */
import type net from 'node:net';
import { closeFds, socketpair } from '../fd/fds.js';
import type { MigrationItem } from '../handoff/messages.js';
import type { LogFn, ReconnectingServers } from './integration.js';
import { MigrationReceiver, MigrationSender } from './migrate.js';

/** Socket.IO: how long a draining generation (or a reconnecting client) waits for an older generation's
 * recovery state. It is sent right after that generation closed its connections: normally milliseconds. */
const CARRY_WAIT_MS = 3000;

export interface MovesContext {
  log: LogFn;
  /** Is the generation draining (or stopped)? A channel passed on then is stepped aside from at once. */
  ending(): boolean;
  /** A connection arrived from an older generation: continue it. */
  arrived(socket: net.Socket, item: MigrationItem, pending: Buffer): void;
  /** The generation's Socket.IO servers, if any: state carried under their name is merged into them. */
  reconnecting(): ReconnectingServers | null;
}

export class ConnectionMoves {
  readonly #ctx: MovesContext;
  /** New generation: receive connections the old one moves here — and, after quick reloads, older ones
   * that were still handing connections over when their successor drained (the completion protocol). */
  #receivers: MigrationReceiver[] = [];
  /** State older generations carried over (MigrationSender.carry), by name (one value per older
   * generation that sent one), and who waits for it. */
  #carried = new Map<string, unknown[]>();
  #carryWaiters = new Set<() => void>();
  /** Old generation, once replaced: moves connections to the new one. */
  #sender: MigrationSender | null = null;
  /** The drain under way is a stop (no successor to pass older channels on to). */
  #stopping = false;

  constructor(ctx: MovesContext) {
    this.#ctx = ctx;
  }

  get sender(): MigrationSender | null {
    return this.#sender;
  }

  /** Is an older generation still handing connections over to this one? */
  get receiving(): boolean {
    return this.#receivers.some((r) => r.sending);
  }

  /**
   * Connections older generations moved here that are not continued yet: parked by a receiver until their
   * client sends or the background adopts them (src/upgrader/migrate-receiver.ts). They are this generation's
   * (the old one has let them go), in none of its servers yet: its stats count them (src/upgrader/stats.ts).
   */
  get parked(): number {
    let n = 0;
    for (const r of this.#receivers) n += r.parked;
    return n;
  }

  /** ready(): a new channel for live connections; returns the end the predecessor gets (the caller closes it
   * once sent). */
  openChannel(): number {
    const [mine, theirs] = socketpair();
    this.#addReceiver(mine);
    return theirs;
  }

  /** The handoff failed: no connection will come. */
  closeReceivers(): void {
    for (const r of this.#receivers.splice(0)) r.close();
  }

  /** This generation was replaced: `migrationFd` (owned) is its successor's channel. */
  openSender(migrationFd: number | null): void {
    if (migrationFd === null) return;
    if (this.#sender) {
      closeFds([migrationFd]);
      return;
    }
    try {
      this.#sender = new MigrationSender(migrationFd);
    } catch (err) {
      this.#ctx.log('warn', 'migrate-unavailable', { reason: (err as Error).message });
    }
  }

  /**
   * The drain begins: tell every predecessor still handing connections over to move nothing more here — to
   * this generation's successor instead, or (`stopping`) nowhere.
   */
  stepAside(stopping: boolean): void {
    this.#stopping = stopping;
    for (const r of this.#receivers) this.#stepAside(r);
  }

  /**
   * Wait (at most `timeoutMs`) until no predecessor is sending: one round trip plus the batches already on
   * their way, each of which is this generation's to move on or close — not for it to drain. (A channel
   * passed on meanwhile is stepped aside from at once: waited for too.) Measured before: 20 SSE streams in
   * generation 1 kept generation 2, holding nothing, draining for 8.8 s.
   */
  async awaitPredecessors(timeoutMs: number): Promise<void> {
    const started = Date.now();
    for (let sending = this.#sending(); sending.length; sending = this.#sending()) {
      const left = timeoutMs - (Date.now() - started);
      if (left <= 0) break;
      await Promise.all(sending.map((r) => r.finished(left)));
    }
  }

  /** ready(): restoring a Socket.IO session waits (bounded) for what older generations carry. */
  restoreAfterCarry(io: ReconnectingServers): void {
    io.awaitCarried(
      () => this.#awaitCarried(io.carryName, CARRY_WAIT_MS),
      () => this.#carried.get(io.carryName) ?? [],
    );
  }

  /** The drain: close every Socket.IO connection (clients reconnect to the successor) and carry the
   * recovery state on. */
  async drainReconnecting(io: ReconnectingServers, generation: number, sender: MigrationSender | null): Promise<void> {
    // State an older generation is still carrying here belongs in what this one carries on.
    if (this.receiving) await this.#awaitCarried(io.carryName, CARRY_WAIT_MS);
    const { closed, state } = await io.closeAll(generation);
    let carried = false;
    if (sender && !sender.closed && state !== null) {
      try {
        await sender.carry(io.carryName, state);
        carried = true;
      } catch (err) {
        this.#ctx.log('warn', 'socket-io-carry-failed', { reason: (err as Error).message });
      }
    }
    const recovery = state === null ? 'off' : carried ? 'carried' : sender ? 'not carried' : 'no successor';
    this.#ctx.log('info', 'socket-io-closed', { connections: closed, recovery });
  }

  #sending(): MigrationReceiver[] {
    return this.#receivers.filter((r) => r.sending);
  }

  /** Receive connections on `fd`, one end of a migration channel (owned). */
  #addReceiver(fd: number): void {
    let receiver: MigrationReceiver;
    try {
      receiver = new MigrationReceiver(fd);
    } catch (err) {
      closeFds([fd]);
      this.#ctx.log('warn', 'migrate-unavailable', { reason: (err as Error).message });
      return;
    }
    this.#receivers.push(receiver);
    receiver.on('connection', (socket, item, pending) => this.#ctx.arrived(socket, item, pending));
    // With the code and the failed syscall (docs/api.md's error table): EMFILE from epoll_create1 says the
    // receiver adopts at arrival for want of an fd, ERR_BATON_TRUNCATED that a batch's fds were cut.
    receiver.on('error', (err: NodeJS.ErrnoException) =>
      this.#ctx.log('warn', 'migrate-adopt-failed', { reason: err.message, code: err.code, syscall: err.syscall }),
    );
    const wakeAll = () => {
      for (const wake of this.#carryWaiters) wake();
    };
    receiver.on('carry', (name, value) => {
      this.#carried.set(name, [...(this.#carried.get(name) ?? []), value]);
      const io = this.#ctx.reconnecting();
      if (io && name === io.carryName) io.merge(value);
      wakeAll();
    });
    receiver.on('done', wakeAll);
    // An older generation's channel, passed on by a predecessor that drained while it was still in use.
    receiver.on('channel', (channelFd) => {
      this.#addReceiver(channelFd);
      if (this.#ctx.ending()) this.#stepAside(this.#receivers.at(-1)!);
    });
  }

  /**
   * Draining while `receiver`'s sender still hands connections over: point it at this generation's
   * successor (a new channel, one end each) — or, without one, tell it to move nothing more — so this
   * generation waits one round trip for it, not for everything it still holds.
   */
  #stepAside(receiver: MigrationReceiver): void {
    // A receiver still adopting what it parked (sending) but whose sender is done needs no redirect.
    if (!receiver.senderActive) return;
    const sender = this.#stopping ? null : this.#sender;
    let redirect: number | null = null;
    if (sender?.accepting && !sender.closed) {
      const [mine, theirs] = socketpair();
      redirect = theirs;
      sender.forwardChannel(mine).catch((err: Error) => {
        this.#ctx.log('warn', 'migrate-forward-failed', { reason: err.message });
      });
    }
    receiver.end(redirect);
  }

  /**
   * What older generations carried over as `name` (MigrationSender.carry): at once if something is here,
   * else when it arrives; [] once no older generation is sending any more (or after `ms`).
   */
  #awaitCarried(name: string, ms: number): Promise<unknown[]> {
    return new Promise((resolve) => {
      const check = () => {
        if (!this.#carried.has(name) && this.receiving) return;
        clearTimeout(timer);
        this.#carryWaiters.delete(check);
        resolve(this.#carried.get(name) ?? []);
      };
      const timer = setTimeout(() => {
        this.#carryWaiters.delete(check);
        resolve(this.#carried.get(name) ?? []);
      }, ms);
      this.#carryWaiters.add(check);
      check();
    });
  }
}
