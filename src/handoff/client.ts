/**
 * The new generation's side of the handoff (state machine):
 *
 *   connecting --hello--> welcomed --ready--> serving --> closed
 *        \________ refuse / timeout / bad peer _________/ (failed)
 *
 * join() connects, checks the peer's uid (before reading anything from it), says hello and receives the
 * inventory with its fds. The generation then take()s what it listens on; ready() tells the other side it
 * serves, waits for the acknowledgement, and closes every inherited fd nobody took.
 */
import { EventEmitter } from 'node:events';
import { batonError } from '../fd/errors.js';
import { closeFds } from '../fd/fds.js';
import { inheritedFdMismatch } from './fd-check.js';
import { answerDespiteEpipe, Link } from './link.js';
import { Inventory, type Held } from './inventory.js';
import {
  FEATURES,
  type Lent,
  PROTOCOL_VERSION,
  type Drain,
  type InventoryEntry,
  type SocketAddress,
  type SocketKind,
  type Stats,
} from './messages.js';
import { peerRefusal } from './peer.js';

export type ClientState = 'welcomed' | 'ready-sent' | 'serving' | 'closed';

export interface JoinOptions {
  /** The generation number a supervisor assigned (BATON_GENERATION). */
  generation?: number;
  /** Time allowed for connect + welcome, in ms. */
  timeoutMs?: number;
}

export interface GenerationClientEvents {
  /** The migration channel fd, if any, is owned by the listener. */
  drain: [msg: Drain, migrationFd: number | null];
  /** `baton run --workers N`: serve slot `slot`'s sockets too; `fds[i]` is `names[i]`'s, owned by the listener. */
  lend: [slot: number, names: string[], fds: number[]];
  /** Stop serving slot `slot`'s sockets. */
  unlend: [slot: number];
  close: [err?: Error];
}

export class GenerationClient extends EventEmitter<GenerationClientEvents> {
  readonly link: Link;
  readonly generation: number;
  #state: ClientState = 'welcomed';
  /** Inherited fds not taken yet, by name. Owned by this client until taken. */
  #offered = new Inventory();
  readonly inventory: readonly InventoryEntry[];

  static async join(path: string, options: JoinOptions = {}): Promise<GenerationClient> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    // One fd in reserve, let go while receiving: a generation at its fd limit still receives the migration
    // channel that comes with `drain` (without it the kernel cut that fd and the generation was killed with
    // its connections, none moved).
    const link = await Link.connect(path, timeoutMs, 1);
    try {
      const refusal = peerRefusal(link.peer);
      if (refusal) throw batonError('ERR_BATON_PEER_NOT_ALLOWED', `refusing the control socket at ${path}: ${refusal}`);
      const answer = link.expect(['welcome', 'refuse'], timeoutMs, 'the inventory (welcome)');
      const hello = link.send({
        v: PROTOCOL_VERSION,
        type: 'hello',
        role: 'generation',
        pid: process.pid,
        features: [...FEATURES],
        ...(options.generation ? { generation: options.generation } : {}),
      });
      const { msg, fds } = await answerDespiteEpipe(answer, hello);
      if (msg.type === 'refuse')
        throw batonError(
          'ERR_BATON_REFUSED',
          `the serving generation refused the handoff: ${msg.reason} (${msg.code})`,
          { reason: msg.code },
        );
      return new GenerationClient(link, msg.generation, msg.inventory, fds);
    } catch (err) {
      link.close();
      throw err;
    }
  }

  private constructor(link: Link, generation: number, inventory: InventoryEntry[], fds: number[]) {
    super();
    this.link = link;
    this.generation = generation;
    this.inventory = inventory;
    inventory.forEach((entry, i) => this.#offered.set({ entry, fd: fds[i]! }));
    link.on('message', ({ msg, fds }) => {
      if (msg.type === 'drain' && this.listenerCount('drain') > 0) this.emit('drain', msg, fds[0] ?? null);
      else if (msg.type === 'lend' && this.listenerCount('lend') > 0) this.emit('lend', msg.slot, msg.names, fds);
      else if (msg.type === 'unlend') {
        closeFds(fds);
        this.emit('unlend', msg.slot);
      } else closeFds(fds);
    });
    link.on('close', (err) => {
      this.#state = 'closed';
      // The offered fds stay until ready() or close(): when the serving side died (standalone), they are the
      // last copies of its listeners, and listen() must still take them — closing them here closed the port
      // and refused connections (found by the fault matrix: generation 1 SIGKILLed while its successor held
      // the inventory).
      this.emit('close', err);
    });
  }

  get state(): ClientState {
    return this.#state;
  }

  /** The inherited entry of that name (without taking it). */
  offered(name: string): InventoryEntry | undefined {
    return this.#offered.get(name)?.entry;
  }

  /**
   * Take the inherited fd for `name` (Inventory.take: of `kind`, fitting `address`; an unnamed activated
   * socket by position); the caller owns it. Null when there is none or it does not fit.
   */
  take(name: string, kind: SocketKind, address: SocketAddress): Held | null {
    const o = this.#offered.take(name, kind, address);
    if (!o) return null;
    // Adopt only what the fd really is: a file or a UDP socket labelled as a TCP listener is refused here,
    // before ready(), naming the entry (not a bare `listen EINVAL` later).
    const wrong = inheritedFdMismatch(o.entry, o.fd);
    if (wrong) {
      closeFds([o.fd]);
      throw wrong;
    }
    return o;
  }

  /** Tell the other side about a socket this generation bound itself (the supervisor keeps a copy). */
  register(entry: InventoryEntry, fd: number): Promise<void> {
    return this.link.send({ v: PROTOCOL_VERSION, type: 'register', entry }, [fd]);
  }

  /** Answer a `lend`: the names served now, and why not the others. Failures are ignored (the link is gone). */
  lent(slot: number, served: string[], refused: Lent['refused']): void {
    if (this.link.closed) return;
    this.link.send({ v: PROTOCOL_VERSION, type: 'lent', slot, served, refused }).catch(() => {});
  }

  /** Report connection counts (supervised mode). Failures are ignored: stats are advisory. */
  stats(
    connections: number,
    state: 'starting' | 'serving' | 'draining',
    extra: Omit<Stats, 'v' | 'type' | 'connections' | 'state'> = {},
  ): void {
    if (this.link.closed) return;
    this.link.send({ v: PROTOCOL_VERSION, type: 'stats', connections, state, ...extra }).catch(() => {});
  }

  /**
   * This generation serves: tell the other side, wait for its acknowledgement, close what was not taken.
   * `migrationFd` (borrowed) is one end of a socketpair: the old generation moves live connections over it.
   */
  async ready(names: string[], timeoutMs: number, migrationFd?: number): Promise<void> {
    if (this.#state !== 'welcomed') throw batonError('ERR_BATON_STATE', `ready() in state ${this.#state}`);
    this.#state = 'ready-sent';
    // Wait for the acknowledgement before sending, so that it can never arrive unexpected: the 'message'
    // handler above drops what nobody waits for.
    const ack = this.link.expect(['ready-ok'], timeoutMs, 'the acknowledgement of ready');
    await answerDespiteEpipe(
      ack,
      this.link.send({ v: PROTOCOL_VERSION, type: 'ready', names }, migrationFd === undefined ? [] : [migrationFd]),
    );
    this.#state = 'serving';
    this.#closeOffered();
  }

  /** Close the link and every offered fd not taken. */
  close(): void {
    this.link.close();
    this.#closeOffered();
  }

  #closeOffered(): void {
    this.#offered.closeAll();
  }
}
