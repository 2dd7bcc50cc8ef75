/**
 * Sockets of another worker slot that this worker serves for a while (`baton run --workers N`, docs/workers.md):
 * the supervisor lends the sockets of a slot with no live worker — its worker crashed and is being respawned, or
 * a scale-down removed the slot — to a live sibling (`lend`), until the slot is back (`unlend`). Without it the
 * connections hashed to that slot's SO_REUSEPORT socket wait in its queue until a worker returns.
 *
 * For each name, a second handle on the lent fd feeds what the app listens with under that name:
 *   net, http, https, http2 server: a net.Server on the fd, made with the app server's accept options
 *     (acceptOptionsOf, src/fd/internals.ts), whose every connection is emitted as the app server's own
 *     'connection'. A tls.Server (https, http2 secure) wraps it there, HTTP/1 and HTTP/2 servers take it as an
 *     accepted one, and the drainer (src/integrations/http.ts), which listens to the same events, counts and
 *     drains it exactly like a connection of the app's own listener.
 *   UDP: a dgram socket on the fd whose datagrams are emitted as the app socket's 'message'. The app answers
 *     from its own socket, bound to the same address and port (one reuseport group), so the peer sees no change.
 *
 * The handles are this process's copies only. Closing one (unlend, the drain, exit) never resets a queue: the
 * supervisor holds its own copy of every slot socket for the service's life (src/cli/slots.ts). libuv only sets
 * O_NONBLOCK on them (uv_tcp_open / uv_udp_open), which the supervisor's sockets have already: the open file
 * description they share is never made blocking. Each handle is closed once: it leaves the table before it is
 * closed. Lends that arrive before this worker serves wait for it; once it drains, every handle is closed and a
 * later lend is refused.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { listenOnFd, bindOnFd } from '../fd/adopt.js';
import { batonError } from '../fd/errors.js';
import { closeFds } from '../fd/fds.js';
import { acceptOptionsOf } from '../fd/internals.js';
import { probe } from '../fd/probe.js';
import type { GenerationClient } from '../handoff/client.js';
import type { Lent, SocketKind } from '../handoff/messages.js';
import type { LogFn } from './integration.js';

/** What the app listens with under a name. */
export interface LendTarget {
  object: net.Server | dgram.Socket;
  kind: SocketKind;
  /** The backlog the app listened with (a listener's is set again when a process listens on it). */
  backlog: number;
}

export interface BorrowedContext {
  target(name: string): LendTarget | undefined;
  /** This worker's own slot: never lent to it. */
  readonly slot: number;
  log: LogFn;
}

export type LendOutcome = Pick<Lent, 'served' | 'refused'>;

type Handle = net.Server | dgram.Socket;

export class BorrowedSlots {
  readonly #ctx: BorrowedContext;
  /** slot -> name -> this process's handle on that slot's socket. */
  readonly #held = new Map<number, Map<string, Handle>>();
  #state: 'waiting' | 'open' | 'closed' = 'waiting';
  #opened!: () => void;
  /** Resolves when this worker serves (open()) or drains (close()). */
  readonly #open = new Promise<void>((resolve) => (this.#opened = resolve));
  /** Lends and unlends run one after the other, in the order they came. */
  #chain: Promise<unknown> = Promise.resolve();

  constructor(ctx: BorrowedContext) {
    this.#ctx = ctx;
  }

  /** The slots served here now, besides this worker's own. */
  slots(): number[] {
    return [...this.#held.keys()].sort((a, b) => a - b);
  }

  /** Serve slot `slot`'s sockets too: `fds[i]` (owned from now on) is `names[i]`'s. Waits until this worker
   * serves; resolves with what it serves now and why not the rest (their fds closed). */
  lend(slot: number, names: readonly string[], fds: readonly number[]): Promise<LendOutcome> {
    const run = this.#chain.then(() => this.#open).then(() => this.#lend(slot, names, fds));
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** Stop serving slot `slot`'s sockets: close this process's copies (the supervisor keeps the queue). */
  unlend(slot: number): Promise<void> {
    const run = this.#chain.then(() => {
      const closed = this.#closeSlot(slot);
      if (closed > 0) this.#ctx.log('info', 'unlent', { slot, sockets: closed });
    });
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** Take the supervisor's lends and unlends on `client` (this worker's control connection); each lend is
   * answered with what is served and why not the rest. */
  follow(client: GenerationClient): void {
    client.on('lend', (slot, names, fds) => {
      void this.lend(slot, names, fds).then((r) => client.lent(slot, r.served, r.refused));
    });
    client.on('unlend', (slot) => void this.unlend(slot));
  }

  /** This worker serves: lends waiting for it go ahead. */
  open(): void {
    if (this.#state !== 'waiting') return;
    this.#state = 'open';
    this.#opened();
  }

  /** The drain: stop accepting on every borrowed socket now; later lends are refused. Idempotent. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#opened();
    for (const slot of [...this.#held.keys()]) this.#closeSlot(slot);
  }

  async #lend(slot: number, names: readonly string[], fds: readonly number[]): Promise<LendOutcome> {
    const outcome: LendOutcome = { served: [], refused: [] };
    const held = this.#held.get(slot) ?? new Map<string, Handle>();
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const fd = fds[i]!;
      const refuse = (code: string, reason: string) => {
        closeFds([fd]);
        outcome.refused.push({ name, code, reason });
      };
      if (this.#state === 'closed') refuse('ERR_BATON_STATE', 'this worker is draining');
      else if (slot === this.#ctx.slot) refuse('ERR_BATON_LEND_REFUSED', `slot ${slot} is this worker's own`);
      else if (held.has(name)) {
        closeFds([fd]); // served already: a second copy would change nothing
        outcome.served.push(name);
      } else {
        const target = this.#ctx.target(name);
        if (!target) {
          refuse('ERR_BATON_LEND_REFUSED', `this worker does not listen on ${JSON.stringify(name)}`);
          continue;
        }
        try {
          const handle = await open(target, fd, (err) => this.#ctx.log('warn', 'lent-error', { slot, name, err }));
          if (this.#closed()) {
            closeHandle(handle); // the drain began while it opened
            outcome.refused.push({ name, code: 'ERR_BATON_STATE', reason: 'this worker is draining' });
            continue;
          }
          held.set(name, handle);
          outcome.served.push(name);
        } catch (err) {
          // open() closed the fd (or left it to the handle it closed).
          const e = err as NodeJS.ErrnoException;
          outcome.refused.push({ name, code: e.code ?? 'ERR_BATON_LEND_REFUSED', reason: e.message });
        }
      }
    }
    if (held.size > 0) this.#held.set(slot, held);
    const fields = { slot, served: outcome.served.join(',') || '-' };
    if (outcome.refused.length === 0) this.#ctx.log('info', 'lent', fields);
    else {
      const refused = outcome.refused.map((r) => `${r.name}: ${r.reason} (${r.code})`).join('; ');
      this.#ctx.log('warn', 'lent', { ...fields, refused });
    }
    return outcome;
  }

  #closed(): boolean {
    return this.#state === 'closed';
  }

  /** Close this process's handles on slot `slot`'s sockets; how many. */
  #closeSlot(slot: number): number {
    const held = this.#held.get(slot);
    if (!held) return 0;
    this.#held.delete(slot);
    for (const handle of held.values()) closeHandle(handle);
    return held.size;
  }
}

/** A handle on `fd` (owned: closed on failure) that feeds `target`. */
async function open(target: LendTarget, fd: number, onError: (err: string) => void): Promise<Handle> {
  const object = target.object;
  let kind: string;
  let options: net.ServerOpts | null = null;
  try {
    kind = probe(fd).kind;
    if (object instanceof net.Server) options = acceptOptionsOf(object);
  } catch (err) {
    closeFds([fd]);
    throw err;
  }
  const stream = kind === 'tcp-listener' || kind === 'unix-listener';
  if (options && stream) {
    const server = new net.Server(options);
    server.on('connection', (socket: net.Socket) => object.emit('connection', socket));
    // Accept errors (EMFILE) go to the log: the app's own listener reports its own, and no 'error' is unhandled.
    server.on('error', (err) => onError(err.message));
    await listenOnFd(server, fd, target.backlog);
    return server;
  }
  if (object instanceof dgram.Socket && kind === 'udp') {
    const socket = dgram.createSocket({ type: target.kind === 'udp6' ? 'udp6' : 'udp4' });
    socket.on('message', (msg, rinfo) => object.emit('message', msg, rinfo));
    socket.on('error', (err) => onError(err.message));
    try {
      await bindOnFd(socket, fd);
    } catch (err) {
      closeHandle(socket);
      throw err;
    }
    return socket;
  }
  closeFds([fd]);
  const what = object instanceof net.Server ? 'a stream server' : 'a UDP socket';
  throw batonError('ERR_BATON_LEND_REFUSED', `the lent socket is ${kind}, and this name is ${what}`);
}

function closeHandle(handle: Handle): void {
  try {
    if (handle instanceof net.Server) {
      // net.Server's close: this process's copy only; connections it accepted belong to the app's server now.
      if (handle.listening) handle.close();
    } else handle.close();
  } catch {
    // a dgram socket that never bound: nothing open
  }
}
