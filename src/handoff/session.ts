/**
 * The serving side of one handoff connection (state machine), used by the supervisor and by a standalone
 * generation that hands over to its successor:
 *
 *   accepted --peer uid ok, hello--> greeted --offer()--> offered --ready--> ready --ackReady()--> serving
 *       \__ wrong uid / bad or no hello: closed        \__ closed or readyTimeout: rolled back
 *
 * Nothing is read from a peer before its uid is checked, and no fd is sent before that and a valid hello.
 */
import { EventEmitter } from 'node:events';
import type { FdChannel } from '../fd/channel.js';
import { batonError } from '../fd/errors.js';
import { closeFds } from '../fd/fds.js';
import type { Held } from './inventory.js';
import { Link } from './link.js';
import {
  type ControlCommand,
  type Feature,
  type Hello,
  type InventoryEntry,
  type Lent,
  PROTOCOL_VERSION,
  type Stats,
} from './messages.js';
import { peerRefusal } from './peer.js';

export type SessionState = 'greeted' | 'offered' | 'ready' | 'serving' | 'closed';

export interface SessionEvents {
  register: [entry: InventoryEntry, fd: number];
  stats: [stats: Stats];
  /** A worker's answer to `lend()`. */
  lent: [lent: Lent];
  close: [err?: Error];
}

/**
 * How long a peer may take to say hello after connecting, by default (`baton run --hello-timeout`, the Upgrader's
 * `helloTimeout`): a peer that connects and stays silent holds one of the 64 connections a control socket keeps
 * (docs/security.md). A hello is one small message sent right after connect, so 5 s is ample on a loaded machine.
 */
export const DEFAULT_HELLO_TIMEOUT_MS = 5000;

export class HandoffSession extends EventEmitter<SessionEvents> {
  readonly link: Link;
  readonly hello: Hello;
  #state: SessionState = 'greeted';

  /** Authenticate the peer and read its hello. Closes the channel and throws on any failure. */
  static async accept(channel: FdChannel, helloTimeoutMs = DEFAULT_HELLO_TIMEOUT_MS): Promise<HandoffSession> {
    const link = new Link(channel);
    const refusal = peerRefusal(channel.peer);
    if (refusal) {
      link.close();
      throw batonError('ERR_BATON_PEER_NOT_ALLOWED', `refused a control connection: ${refusal}`);
    }
    try {
      // Hello first: anything before it (a `ready` sent too early) ends the connection instead of waiting
      // in the link's queue to be taken for a later step of the handoff.
      const { msg } = await link.expect(['hello'], helloTimeoutMs, 'hello', { first: true });
      return new HandoffSession(link, msg);
    } catch (err) {
      link.close();
      throw err;
    }
  }

  /**
   * A session carried across the supervisor's re-exec (src/cli/reexec.ts): the previous image checked the
   * peer and read its hello; `state` is where the session was. The channel is owned from now on.
   */
  static resume(channel: FdChannel, hello: Hello, state: 'greeted' | 'serving'): HandoffSession {
    const session = new HandoffSession(new Link(channel), hello);
    session.#state = state;
    return session;
  }

  private constructor(link: Link, hello: Hello) {
    super();
    this.link = link;
    this.hello = hello;
    link.on('message', ({ msg, fds }) => {
      if (
        msg.type === 'register' &&
        (this.#state === 'offered' || this.#state === 'serving') &&
        this.listenerCount('register') > 0
      ) {
        this.emit('register', msg.entry, fds[0]!);
        return;
      }
      closeFds(fds);
      if (msg.type === 'stats') this.emit('stats', msg);
      else if (msg.type === 'lent') this.emit('lent', msg);
    });
    link.on('close', (err) => {
      this.#state = 'closed';
      this.emit('close', err);
    });
  }

  get state(): SessionState {
    return this.#state;
  }

  get peer() {
    return this.link.peer;
  }

  /** Send the inventory with its fds (borrowed: the kernel copies them). */
  async offer(generation: number, entries: readonly Held[]): Promise<void> {
    this.#expectState('greeted', 'offer');
    this.#state = 'offered';
    await this.link.send(
      { v: PROTOCOL_VERSION, type: 'welcome', generation, inventory: entries.map((e) => e.entry) },
      entries.map((e) => e.fd),
    );
  }

  /**
   * Wait for the new generation's ready. Rejects on timeout or if it goes away first. `migrationFd` (owned
   * by the caller) is the new generation's end of a channel for moving live connections, if it sent one.
   */
  async awaitReady(timeoutMs: number): Promise<{ names: string[]; migrationFd: number | null }> {
    this.#expectState('offered', 'awaitReady');
    const { msg, fds } = await this.link.expect(['ready'], timeoutMs, 'the new generation to call ready()');
    this.#state = 'ready';
    return { names: msg.names, migrationFd: fds[0] ?? null };
  }

  async ackReady(): Promise<void> {
    this.#expectState('ready', 'ackReady');
    this.#state = 'serving';
    await this.link.send({ v: PROTOCOL_VERSION, type: 'ready-ok' });
  }

  /** Tell a generation to drain; `migrationFd` (borrowed) lets it move live connections to its successor. */
  drain(timeoutMs: number, reason: 'upgrade' | 'stop', migrationFd: number | null = null): Promise<void> {
    return this.link.send(
      { v: PROTOCOL_VERSION, type: 'drain', timeoutMs, reason },
      migrationFd === null ? [] : [migrationFd],
    );
  }

  /** Did the peer announce `feature` in its hello (an app built with an older baton did not)? */
  has(feature: Feature): boolean {
    return this.hello.features?.includes(feature) ?? false;
  }

  /**
   * `baton run --workers N`: the worker serves slot `slot`'s sockets too, `sockets` (borrowed: the kernel copies
   * the fds), until unlend(). Only to a peer that has('lend').
   */
  lend(slot: number, sockets: ReadonlyArray<{ name: string; fd: number }>): Promise<void> {
    const names = sockets.map((s) => s.name);
    return this.link.send(
      { v: PROTOCOL_VERSION, type: 'lend', slot, names },
      sockets.map((s) => s.fd),
    );
  }

  /** The worker stops serving slot `slot`'s sockets (it closes its copies; the queues stay with ours). */
  unlend(slot: number): Promise<void> {
    return this.link.send({ v: PROTOCOL_VERSION, type: 'unlend', slot });
  }

  async refuse(code: string, reason: string): Promise<void> {
    await this.link.send({ v: PROTOCOL_VERSION, type: 'refuse', code, reason }).catch(() => {});
    this.link.close();
  }

  async result(
    command: ControlCommand,
    ok: boolean,
    extra: { code?: string; reason?: string; data?: unknown } = {},
  ): Promise<void> {
    await this.link.send({ v: PROTOCOL_VERSION, type: 'result', command, ok, ...extra }).catch(() => {});
  }

  close(): void {
    this.link.close();
  }

  #expectState(want: SessionState, op: string): void {
    if (this.#state !== want) throw batonError('ERR_BATON_STATE', `${op}() in state ${this.#state} (expected ${want})`);
  }
}
