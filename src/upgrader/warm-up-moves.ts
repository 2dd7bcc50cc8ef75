/**
 * Warm up the adoption of moved connections before a new generation says ready() (issue 16).
 *
 * A fresh Node process runs every function for the first time — V8 compiles each one lazily on its first call
 * — so the first connections an old generation moves here are taken in cold. Measured with 1,000 idle
 * connections moved by a reload (CPU µs per connection that the receiver reports with each batch, `cost` in
 * migrate-ok; loaded 2-core machine): the first batch 11-17 (raw TCP) and 12-21 (WebSockets) against 2-6 for
 * every later one; the first adoption (net.Socket, the continuation, the app's handler) 0.4-1.3 ms. After this
 * warm-up (100 connections, ~50-100 ms before ready(), while the old generation still serves): the first batch
 * 4-6, like the later ones. It does not warm the app's own handlers (it must not run them): the first adoption
 * still costs ~0.5 ms, and the first hundred adoptions' CPU time is within the machine's noise either way.
 *
 * The warm-up moves `count` loopback TCP connections to this very process the way an old generation moves its
 * own, through a private migration channel (a socketpair) and a private MigrationReceiver — the receiver's own
 * code, not a copy of it: the batch's message, parking each fd in the ReadinessWatch (add, reported readable
 * when its client sends, take, remove), `new net.Socket({ fd })`, the acknowledgement with its cost. A private
 * listener on 127.0.0.1 (never the app's servers, so no 'connection' event reaches the app) accepts them
 * paused; they go in batches of PARALLEL, half of each with pending bytes (adopted at once, as a connection
 * whose client already spoke), half parked until their client sends. Each adopted one makes one round trip
 * through what continues it here — an echo, or for apps with a `ws` server, a WebSocket rebuilt the way
 * src/integrations/ws.ts rebuilds a moved one, on a private server object — and everything is closed. Best
 * effort: any failure or the time bound just ends it; nothing is left open either way.
 */
import net from 'node:net';
import { FdChannel } from '../fd/channel.js';
import { fdOf } from '../fd/fd-of.js';
import { closeFds, socketpair } from '../fd/fds.js';
import { Link } from '../handoff/link.js';
import { PROTOCOL_VERSION, type MigrationItem } from '../handoff/messages.js';
import type { WarmUpExchange } from './integration.js';
import { MAX_BATCH_BYTES, MigrationReceiver } from './migrate-receiver.js';

/** Connections per batch: the watch then reports several at a time, as in a real batch. */
const PARALLEL = 16;
const NAME = 'baton-warm-up';

/** The echo every raw TCP or HTTP connection that moves starts like: bytes in, the same bytes out. */
export const ECHO_EXCHANGE: WarmUpExchange = {
  kind: 'raw',
  request: Buffer.from('baton-warm-up\n'),
  answerBytes: 'baton-warm-up\n'.length,
  serve(socket, pending) {
    socket.on('data', (d) => socket.write(d));
    if (pending.length) socket.write(pending);
  },
};

export interface MoveWarmUp {
  /** Connections that went through the whole path (moved, adopted, answered). */
  connections: number;
  /** Of those, how many were continued by each kind of exchange. */
  byKind: Record<string, number>;
  /** Why it stopped short (the time bound, a failure), if it did. */
  stopped?: string;
}

/** Run `count` connections through the adoption path, cycling through `exchanges`; at most `timeoutMs`. */
export async function warmUpMoves(
  count: number,
  exchanges: readonly WarmUpExchange[],
  timeoutMs = 2000,
): Promise<MoveWarmUp> {
  const result: MoveWarmUp = { connections: 0, byKind: {} };
  if (count <= 0 || !exchanges.length) return result;
  const run = new WarmUpRun();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    await run.listen();
    for (let i = 0, g = 0; i < count; g++) {
      const exchange = exchanges[g % exchanges.length]!;
      const n = Math.min(PARALLEL, count - i);
      const answered = await Promise.race([run.group(n, exchange), timedOut]);
      if (answered === 'timeout') {
        result.stopped = `timed out after ${timeoutMs} ms`;
        break;
      }
      result.connections += answered;
      result.byKind[exchange.kind] = (result.byKind[exchange.kind] ?? 0) + answered;
      i += n;
    }
  } catch (err) {
    // No loopback, no port, no epoll set: the first moved connections are just adopted colder.
    result.stopped = (err as Error).message;
  } finally {
    clearTimeout(timer);
    run.close();
  }
  return result;
}

/** One warm-up's private listener, migration channel and connections; close() leaves nothing open. */
class WarmUpRun {
  readonly #server = net.createServer({ pauseOnConnect: true });
  /** Accepted ends not moved yet, and who waits for them. */
  #accepted: net.Socket[] = [];
  #onAccept: (() => void) | null = null;
  /** Every socket of the run (clients, accepted ends, adopted ends): destroyed at the end. */
  readonly #sockets = new Set<net.Socket>();
  #receiver: MigrationReceiver | null = null;
  #sender: Link | null = null;
  /** The exchange of the batch under way: continues what the receiver adopts. */
  #exchange: WarmUpExchange | null = null;

  async listen(): Promise<void> {
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      this.#accepted.push(socket);
      this.#onAccept?.();
    });
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    const [mine, theirs] = socketpair();
    try {
      this.#receiver = new MigrationReceiver(mine);
    } catch (err) {
      closeFds([mine, theirs]);
      throw err;
    }
    const maxBytes = MAX_BATCH_BYTES + 1024 * 1024;
    try {
      this.#sender = new Link(FdChannel.fromFd(theirs, { maxMessageBytes: maxBytes }), maxBytes);
    } catch (err) {
      closeFds([theirs]);
      throw err;
    }
    // Its acknowledgements (migrate-ok) are not needed: each batch ends when its clients are answered.
    this.#sender.on('message', () => {});
    this.#receiver.on('error', () => {});
    this.#receiver.on('connection', (socket, _item, pending) => {
      this.#sockets.add(socket);
      socket.on('error', () => {});
      this.#exchange?.serve(socket, pending);
    });
  }

  /** `n` connections moved here and continued with `exchange`: resolves with `n` once all are answered. */
  async group(n: number, exchange: WarmUpExchange): Promise<number> {
    const { port } = this.#server.address() as net.AddressInfo;
    const clients: net.Socket[] = [];
    const answers: Array<Promise<void>> = [];
    for (let i = 0; i < n; i++) {
      const client = net.connect(port, '127.0.0.1');
      this.#sockets.add(client);
      clients.push(client);
      const answer = answered(client, exchange.answerBytes);
      // Cut short (the time bound) before it is awaited: its rejection is expected, not unhandled.
      answer.catch(() => {});
      answers.push(answer);
    }
    await Promise.all(clients.map(connected));
    await this.#acceptedCount(n);
    this.#exchange = exchange;
    // Every other one arrives with its client's bytes (adopted at once), the rest are parked until they speak.
    const ends = this.#accepted.splice(0, n);
    const request = exchange.request.toString('base64');
    const items: MigrationItem[] = ends.map((_, i) =>
      i % 2 ? { kind: 'raw', name: NAME } : { kind: 'raw', name: NAME, pending: request },
    );
    await this.#sender!.send({ v: PROTOCOL_VERSION, type: 'migrate', items }, ends.map(fdOf));
    // In the receiver now, as a moved connection leaves the old generation: our copies go (no FIN).
    for (const end of ends) {
      end.destroy();
      this.#sockets.delete(end);
    }
    for (let i = 1; i < n; i += 2) clients[i]!.write(exchange.request);
    await Promise.all(answers);
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    return n;
  }

  #acceptedCount(n: number): Promise<void> {
    if (this.#accepted.length >= n) return Promise.resolve();
    return new Promise((resolve) => {
      this.#onAccept = () => {
        if (this.#accepted.length < n) return;
        this.#onAccept = null;
        resolve();
      };
    });
  }

  close(): void {
    // The receiver adopts what is still parked as it closes (handled above: added to #sockets), then goes.
    this.#receiver?.close();
    this.#sender?.close();
    this.#exchange = null;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    for (const socket of this.#accepted) socket.destroy();
    this.#accepted = [];
    this.#server.close();
  }
}

function connected(client: net.Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
}

/** Resolves once `client` has received `bytes` bytes (the answer); rejects if it ends first. */
function answered(client: net.Socket, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    client.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= bytes) resolve();
    });
    client.once('error', reject);
    client.once('close', () => reject(new Error('closed before its answer')));
  });
}
