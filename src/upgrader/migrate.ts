/**
 * Live connection migration: the old generation hands open connections to the new one, which continues
 * them as if it had accepted them. The client notices nothing: same TCP connection, same port, no reset.
 *
 * The channel: at ready() the new generation makes a socketpair, keeps one end (MigrationReceiver) and
 * sends the other with its `ready` message; the supervisor relays it with `drain` (standalone: the old
 * generation gets it directly). Over it, `migrate` messages carry up to 253 connections each (one sendmsg),
 * and the receiver answers `migrate-ok` once it has taken a batch in — parked each connection, to adopt it
 * when its client sends, else in the background (readiness-ordered adoption, src/upgrader/migrate-receiver.ts)
 * — and caught up with the clients that speak (one batch per turn of its event loop), with what that cost it
 * per connection, by which the sender sizes the next batches (src/upgrader/pacing.ts); at most WINDOW batches
 * await their acknowledgement, which paces the move so the new generation's event loop stays responsive. The
 * receiver's move is over (migrate-done received, or the channel closed, and nothing left parked) only once
 * every connection it was sent is adopted.
 *
 * Moving one connection (MigrationSender.move):
 * 1. stop reading: bytes the client sends from now on wait in the kernel socket for the new owner;
 * 2. take what Node already read but nobody consumed, and add it to the bytes the app passes as `pending`;
 * 3. wait until everything written has left (writes queued in this process would be lost otherwise);
 * 4. send the fd with the state; once it is in the kernel, destroy this process's socket object. That
 *    closes only this process's fd — no FIN, no reset: the connection lives on in the message and then in
 *    the new generation.
 *
 * When a generation exits (the completion protocol). A generation that is replaced while connections are
 * still arriving from its own predecessor must not exit before the last of them has arrived (each is its to
 * move on or close). It used to learn that only when the predecessor closed the channel — which it did once
 * it was itself drained, so one connection that could not move (an SSE stream the app never ends) kept
 * every later generation alive with it (measured: 20 such streams, two quick reloads — generation 2, holding
 * nothing, drained for 8.8 s and generations 1-3 exited together). Now the middle generation steps out of
 * the way — it redirects its predecessor to its successor:
 * - when its own generation starts draining, the receiver (generation 2) makes a new socketpair, sends one
 *   end to its successor (`migrate-channel` on its own sender's channel: generation 3 receives on it too)
 *   and the other to its predecessor with `migrate-end` ("move nothing more to me; move to this instead");
 * - the sender (generation 1) stops sending on the old channel; once the batches already sent there are
 *   acknowledged it answers `migrate-done` ("nothing more will come here") and goes on with the new channel,
 *   waiting for generation 3's room first, as with any new channel;
 * - the receiver waits for `migrate-done` (or the channel's close: an old sender that does not know
 *   migrate-end ends the channel), takes the connections that were on their way, moves them on, and drains
 *   its own. Its wait is one round trip plus the batches in flight, whatever generation 1 still holds.
 * Without a successor (a stop), `migrate-end` carries no channel: the sender closes what it still holds
 * politely, as without migration. Why a new channel rather than handing the old one on: the old one's
 * receiving side may hold messages read but not yet delivered (a paused channel's backlog, a message in
 * parts); a fresh socketpair starts clean, and the protocol on it is the one of any new channel. A chain
 * of quick reloads thus keeps one channel per generation still holding connections, all to the newest.
 */
import type net from 'node:net';
import tls from 'node:tls';
import { FdChannel } from '../fd/channel.js';
import { batonError } from '../fd/errors.js';
import { fdOf } from '../fd/fd-of.js';
import { closeFds } from '../fd/fds.js';
import { Link } from '../handoff/link.js';
import { flushWrites, giveBack, lateBytes, stopReading, writesPending } from './hold.js';
import { FD_RESERVE } from './fd-room.js';
import { MAX_BATCH_BYTES, WINDOW } from './migrate-receiver.js';
import { BatchSizer, cpuNow, cpuSince } from './pacing.js';
import { MAX_CARRY_PART, PROTOCOL_VERSION, type MigrationItem, type MigrationKind } from '../handoff/messages.js';

/** Largest per-connection state, as JSON. */
export const MAX_STATE_BYTES = 64 * 1024;
/** How long to wait for the receiver to acknowledge a batch. */
const ACK_TIMEOUT_MS = 10_000;

interface Pending {
  item: MigrationItem;
  /** The item's state as JSON, from move(): it goes into the message as is (itemJson()). */
  stateJson: string | undefined;
  socket: net.Socket;
  /** Bytes taken from Node's buffer after stopReading() (see lateBytes); given back if the move fails. */
  late: Buffer[];
  bytes: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** The old generation's side. Owns the channel. */
export class MigrationSender {
  #link: Link;
  #queue: Pending[] = [];
  #flushing = false;
  #scheduled = false;
  #moved = 0;
  #idle: Array<() => void> = [];
  /** fds the receiver said it can still take (its last migrate-ok), or null before its first one. */
  #room: number | null = null;
  /** The receiver is draining itself (migrate-end) and there is nowhere else to move to: move nothing more. */
  #ending = false;
  /** The receiver is draining itself and gave a channel to its successor: switch to it (see #switch()). */
  #redirect: Link | null = null;
  /** Connections not moved because the receiver was draining: closed politely here instead. */
  #handedBack = 0;
  /** Connections that closed (client or app) while they were being moved: nothing to move, nothing lost. */
  #closedMeanwhile = 0;
  /** A carry() in progress: migrate-done waits for it. */
  #carrying: Promise<void> = Promise.resolve();
  /** sendable() callers, woken when a batch queued now would leave at once. */
  #sendable: Array<() => void> = [];
  /** How many connections go in the next batch: by what adopting them costs the receiver (src/upgrader/pacing.ts). */
  #sizer = new BatchSizer();

  constructor(channelFd: number) {
    this.#link = senderLink(channelFd);
    this.#awaitEnd(this.#link);
  }

  /** A standing wait, not a 'message' listener: that would also take the migrate-ok acknowledgements that
   * arrive while #flush is not waiting for one (they queue for its next expect()). */
  #awaitEnd(link: Link): void {
    link.expect(['migrate-end'], 0, 'the new generation to drain').then(
      ({ fds }) => {
        if (link !== this.#link) {
          closeFds(fds);
          return;
        }
        this.#onEnd(fds[0] ?? null);
      },
      () => {},
    );
  }

  get closed(): boolean {
    return this.#link.closed;
  }

  /** Whether connections can still move: the channel is open and the new generation is not draining. */
  get accepting(): boolean {
    return !this.#ending && (!this.#link.closed || this.#redirect !== null);
  }

  /** Connections not moved because the new generation was itself draining by then (closed politely). */
  get handedBack(): number {
    return this.#handedBack;
  }

  /** Connections that closed normally while they were on their way: not failures. */
  get closedMeanwhile(): number {
    return this.#closedMeanwhile;
  }

  /** Connections moved so far. */
  get moved(): number {
    return this.#moved;
  }

  /** Connections that could not move, by error code (ERR_BATON_NO_ROOM, ERR_BATON_NOT_OPEN, …). */
  get notMoved(): ReadonlyMap<string, number> {
    return this.#notMoved;
  }
  #notMoved = new Map<string, number>();

  /**
   * Move `socket` to the new generation. Resolves once it is there (this process's socket object is then
   * destroyed, without touching the connection). Rejects — leaving the socket open and paused in this
   * process — if it cannot move (closed meanwhile, state too large, the channel is gone).
   */
  async move(
    socket: net.Socket,
    kind: MigrationKind,
    name: string,
    state?: unknown,
    appPending?: Uint8Array,
  ): Promise<void> {
    if (this.#ending && !this.#link.closed) {
      this.#handedBack++;
      throw successorDraining();
    }
    if (this.#link.closed && !this.#redirect)
      throw batonError('ERR_BATON_CHANNEL_CLOSED', 'the migration channel to the new generation is closed');
    if (socket.destroyed) throw batonError('ERR_BATON_NOT_OPEN', 'the connection is already closed');
    // Its TLS session (keys, sequence numbers) stays in this process's OpenSSL: moved as raw bytes, the
    // client's next record would fail (ERR_SSL_BAD_RECORD_TYPE). Moving it needs kernel TLS (docs/migration.md).
    if (socket instanceof tls.TLSSocket)
      throw batonError('ERR_BATON_TLS', 'a TLS connection cannot move: its session lives in this process');
    let stateJson: string | undefined;
    if (state !== undefined) {
      try {
        stateJson = JSON.stringify(state); // throws for a BigInt or a cycle
      } catch (err) {
        throw batonError(
          'ERR_BATON_STATE_NOT_SERIALIZABLE',
          `the connection state is not JSON-serialisable: ${(err as Error).message}`,
        );
      }
      if (stateJson === undefined)
        throw batonError('ERR_BATON_STATE_NOT_SERIALIZABLE', 'the connection state is not JSON-serialisable');
      if (Buffer.byteLength(stateJson) > MAX_STATE_BYTES) {
        throw batonError(
          'ERR_BATON_STATE_TOO_LARGE',
          `the connection state is ${Buffer.byteLength(stateJson)} bytes as JSON; at most ${MAX_STATE_BYTES} may ` +
            `move with a connection`,
        );
      }
    }
    const buffered = stopReading(socket);
    const pending = appPending?.byteLength ? Buffer.concat([Buffer.from(appPending), buffered]) : buffered;
    // Only when writes are queued: otherwise everything up to the queueing below runs synchronously, so a paced
    // mover's batch is prepared in one slice whose CPU time it measures (pacing.ts), not spread over microtasks.
    if (writesPending(socket)) {
      try {
        await flushWrites(socket);
      } catch (err) {
        giveBack(socket, buffered);
        throw err;
      }
    }
    if (socket.destroyed)
      throw batonError('ERR_BATON_NOT_OPEN', 'the client closed the connection while it was being moved');
    // The state travels as the JSON taken here (a snapshot: the app may change the object meanwhile), spliced
    // into the message as is (itemJson()) rather than parsed back here and stringified again with the batch:
    // 3.3-3.5 -> 1.5-2.4 µs of CPU per WebSocket state (url, upgrade headers, app state; batches of 100, measured
    // in isolation), out of the ~45-60 µs a move costs the old generation per WebSocket.
    const item: MigrationItem = { kind, name };
    if (pending.length) item.pending = pending.toString('base64');
    return new Promise<void>((resolve, reject) => {
      const late: Buffer[] = [];
      const fail = (err: Error) => {
        giveBack(socket, late.length ? Buffer.concat([buffered, ...late]) : buffered);
        const code = (err as { code?: string }).code ?? 'error';
        // Closed by the client (or the app) on the way is a normal end, not a failure to move (it used to be
        // logged as `not-moved ERR_BATON_NOT_OPEN` for SSE streams the app ended in 'drain').
        if (code === 'ERR_BATON_NOT_OPEN') this.#closedMeanwhile++;
        else if (code === 'ERR_BATON_SUCCESSOR_DRAINING') this.#handedBack++;
        else this.#notMoved.set(code, (this.#notMoved.get(code) ?? 0) + 1);
        reject(err);
      };
      this.#queue.push({
        item,
        stateJson,
        socket,
        late,
        bytes: (stateJson?.length ?? 0) + (item.pending?.length ?? 0) + 64,
        resolve,
        reject: fail,
      });
      this.#schedule();
    });
  }

  /** Connections in the next batch: a mover that paces itself (sendable()) prepares this many at a time. */
  get batchSize(): number {
    return this.#sizer.size;
  }

  /** A paced mover prepared `count` connections in `micros` µs of CPU: part of what a batch costs this process. */
  prepared(count: number, micros: number): void {
    this.#sizer.observePrepare(count, micros);
  }

  /** This process's CPU µs per connection moved (preparing + sending), smoothed; null before the first batch. */
  get ownCost(): number | null {
    return this.#sizer.ownCost;
  }

  /** The same over the whole move so far (the mean, not smoothed): logged with 'drained' as `moveCpuUs`. */
  get ownCostMean(): number | null {
    return this.#sizer.ownCostMean;
  }

  /**
   * Resolves when connections moved from now on would leave at once: nothing queued ahead of them and room in
   * the window of batches awaiting their acknowledgement (or nothing can be sent any more: move() then says
   * why). A mover that stops serving the next batch's connections only then (stopReading in move()) keeps
   * every other connection served meanwhile: each one is paused for about two batches' adoption (the one
   * ahead of it in the window, then its own) instead of for the whole move (bench:migrate's stall).
   */
  async sendable(): Promise<void> {
    // Moves requested just before (their queueing waits a microtask or two in move()) count as ahead of us;
    // the flush they start (scheduled with setImmediate, before this) takes them off the queue. How long that
    // immediate takes is how long the rest of this turn of the event loop is: an overloaded loop gets bigger
    // batches (BatchSizer.observeTurn).
    const asked = performance.now();
    await new Promise((r) => setImmediate(r));
    this.#sizer.observeTurn(performance.now() - asked);
    if (!this.#flushing && !this.#scheduled) return;
    await new Promise<void>((resolve) => this.#sendable.push(resolve));
  }

  /**
   * Resolves when every batch sent has been acknowledged (or the receiver is gone). The old generation waits
   * for this before closing the channel: its sockets are destroyed as soon as their batch is in the kernel,
   * so its drain can finish while batches are still unread on the other side.
   */
  settled(): Promise<void> {
    if (!this.#flushing && !this.#scheduled) return this.#carrying;
    return new Promise<void>((resolve) => this.#idle.push(resolve)).then(() => this.#carrying);
  }

  /**
   * Send `value` (JSON) to the new generation as `name`, outside any connection: its MigrationReceiver
   * emits 'carry'. For state that belongs to no single connection (Socket.IO's recovery sessions). Large
   * values go in parts (base64 of at most 3 MiB of JSON each). Rejects if the channel is closed.
   */
  carry(name: string, value: unknown): Promise<void> {
    const json = Buffer.from(JSON.stringify(value) ?? 'null');
    const step = (MAX_CARRY_PART / 4) * 3;
    const send = async () => {
      const link = this.#link; // every part on the same channel, even if a redirect comes meanwhile
      for (let at = 0; at < json.length || at === 0; at += step) {
        const part = json.subarray(at, at + step).toString('base64');
        await link.send({ v: PROTOCOL_VERSION, type: 'migrate-carry', name, part, last: at + step >= json.length });
      }
    };
    const p = this.#carrying.then(send);
    this.#carrying = p.catch(() => {});
    return p;
  }

  /**
   * Give the new generation `channelFd` (owned: closed here once sent), one end of a channel an older
   * generation will move connections on (the completion protocol at the top of this file).
   */
  forwardChannel(channelFd: number): Promise<void> {
    return this.#link.send({ v: PROTOCOL_VERSION, type: 'migrate-channel' }, [channelFd]);
  }

  close(): void {
    this.#link.close();
    this.#redirect?.close();
  }

  #schedule(): void {
    if (this.#scheduled || this.#flushing) return;
    this.#scheduled = true;
    // Collect every move requested in this turn of the event loop into one batch.
    setImmediate(() => {
      this.#scheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    // Up to WINDOW batches may await their acknowledgement at once; acks pace the move.
    const inflight: Pending[][] = [];
    // The receiver announces its room first: never send more fds than fit in its fd table. Past
    // RLIMIT_NOFILE the kernel would cut them off the message and close them — the connections with them.
    if (this.#room === null && !(await this.#awaitRoom())) return this.#settle();
    while (this.#queue.length || inflight.length || this.#redirect) {
      const idle = !this.#queue.length && inflight.length < WINDOW;
      if (idle && this.#sendable.length && !this.#redirect && !this.#ending) {
        // A mover waits to prepare its next batch until it would leave at once: let it queue that batch now,
        // rather than wait here for the acknowledgement of the one in flight first.
        for (const wake of this.#sendable.splice(0)) wake();
        await new Promise((r) => setImmediate(r));
        continue;
      }
      if (this.#redirect && !inflight.length) {
        // Every batch sent on the old channel is acknowledged: go on with the newest generation's channel.
        if (!(await this.#switch())) return this.#settle();
        continue;
      }
      const room = this.#room! - inflight.reduce((a, b) => a + b.length, 0);
      if (this.#queue.length && inflight.length < WINDOW && room > 0 && !this.#redirect) {
        // What sending this batch costs this process, up to the last of its sockets' 'close' handlers: sizes the
        // next batches (pacing.ts), so that no batch blocks the clients still served here for long.
        const cpu = cpuNow();
        let bytes = 0;
        let n = 0;
        const size = this.#sizer.size;
        while (
          n < this.#queue.length &&
          n < size &&
          n < room &&
          (n === 0 || bytes + this.#queue[n]!.bytes <= MAX_BATCH_BYTES)
        )
          bytes += this.#queue[n++]!.bytes;
        const batch = this.#queue.splice(0, n);
        if (this.#ending) {
          for (const p of batch) p.reject(successorDraining());
          continue;
        }
        const live = batch.filter((p) => {
          if (!p.socket.destroyed) return true;
          p.reject(batonError('ERR_BATON_NOT_OPEN', 'the client closed the connection while it was being moved'));
          return false;
        });
        if (!live.length) continue;
        // The app may have written since move() checked: those bytes must leave from here first. (Awaited only
        // then: otherwise the batch goes out in the same slice, whose CPU time is measured below.)
        const writing = live.filter((p) => writesPending(p.socket));
        if (writing.length) await Promise.all(writing.map((p) => flushWrites(p.socket).catch(() => {})));
        for (const p of live) {
          const late = lateBytes(p.socket);
          if (!late) continue;
          p.late.push(late);
          p.item.pending = Buffer.concat([Buffer.from(p.item.pending ?? '', 'base64'), late]).toString('base64');
        }
        try {
          await this.#link.sendEncoded(
            'migrate',
            `{"v":${PROTOCOL_VERSION},"type":"migrate","items":[${live.map(itemJson).join(',')}]}`,
            live.map((p) => fdOf(p.socket)),
          );
        } catch (err) {
          // Not sent: the connections are still entirely ours.
          for (const p of live) p.reject(err as Error);
          continue;
        }
        // In the kernel now: the new generation owns them. Drop our copies (no FIN: other references remain).
        // Their 'close' handlers (ws's, the app's, connection tracking) run in the loop's close phase, right after
        // this one: the slice ends after the last of them (and the ticks they queue, such as ws's 'close' event).
        let closing = live.length;
        const closed = () => {
          if (--closing === 0) process.nextTick(() => this.#sizer.observeSend(live.length, cpuSince(cpu)));
        };
        for (const p of live) {
          p.socket.once('close', closed);
          p.socket.destroy();
        }
        this.#moved += live.length;
        inflight.push(live);
        continue;
      }
      if (!inflight.length) {
        // No room left and nothing in flight that could free some: these stay here (the caller closes them
        // politely) rather than be cut off in the new generation's fd table.
        for (const p of this.#queue.splice(0)) {
          p.reject(
            batonError(
              'ERR_BATON_NO_ROOM',
              `the new generation has no room for more connections: its fd table is nearly full (RLIMIT_NOFILE, less ` +
                `${FD_RESERVE} kept free); raise its open files limit (ulimit -n, LimitNOFILE=)`,
            ),
          );
        }
        break;
      }
      try {
        const { msg } = await this.#link.expect(
          ['migrate-ok'],
          ACK_TIMEOUT_MS,
          'the new generation to adopt migrated connections',
        );
        if (msg.room !== undefined) this.#room = msg.room;
        this.#sizer.observe(msg.count, msg.cost);
      } catch {
        // The receiver died or stalled: what we sent is its problem now; stop sending more.
        for (const batch of inflight.splice(0)) for (const p of batch) p.resolve();
        for (const p of this.#queue.splice(0))
          p.reject(
            batonError('ERR_BATON_CHANNEL_CLOSED', 'the new generation stopped acknowledging migrated connections'),
          );
        this.#link.close();
        break;
      }
      for (const p of inflight.shift()!) p.resolve();
    }
    this.#settle();
  }

  /** Wait for the receiver's first migrate-ok (its room). False, with everything queued rejected, if none comes. */
  async #awaitRoom(): Promise<boolean> {
    try {
      const { msg } = await this.#link.expect(
        ['migrate-ok'],
        ACK_TIMEOUT_MS,
        'the new generation to announce its room for connections',
      );
      this.#room = msg.room ?? Number.MAX_SAFE_INTEGER;
      return true;
    } catch (err) {
      for (const p of this.#queue.splice(0))
        p.reject(
          batonError(
            'ERR_BATON_CHANNEL_CLOSED',
            `the new generation is not taking connections: ${(err as Error).message}`,
          ),
        );
      this.#link.close();
      return false;
    }
  }

  #settle(): void {
    this.#flushing = false;
    for (const resolve of this.#idle.splice(0)) resolve();
    for (const wake of this.#sendable.splice(0)) wake();
  }

  /**
   * The receiver drains (migrate-end). With `channelFd`, the newest generation's end is its other end: move
   * there from now on (#switch(), once what was sent on the old channel is acknowledged). Without, there is
   * nowhere to move to: refuse what waits (closed politely by the callers), then say done.
   */
  #onEnd(channelFd: number | null): void {
    const nowhere = () => {
      this.#ending = true;
      void this.settled().then(() => this.#link.send({ v: PROTOCOL_VERSION, type: 'migrate-done' }).catch(() => {}));
    };
    if (channelFd === null) {
      nowhere();
      return;
    }
    try {
      this.#redirect = senderLink(channelFd);
    } catch {
      closeFds([channelFd]);
      nowhere();
      return;
    }
    // #flush switches once the batches in flight on the old channel are acknowledged (at once if idle).
    this.#schedule();
  }

  /** Say done on the old channel and close it; the redirect's channel is ours now (its room comes first). */
  async #switch(): Promise<boolean> {
    await this.#carrying;
    const old = this.#link;
    this.#link = this.#redirect!;
    this.#redirect = null;
    this.#room = null;
    this.#awaitEnd(this.#link);
    await old.send({ v: PROTOCOL_VERSION, type: 'migrate-done' }).catch(() => {});
    old.close();
    return this.#queue.length === 0 || (await this.#awaitRoom());
  }
}

/** One item of a `migrate` message as JSON: what encode() would make of it, with the state's JSON as move() took it. */
function itemJson(p: Pending): string {
  const { kind, name, pending } = p.item;
  const state = p.stateJson === undefined ? '' : `,"state":${p.stateJson}`;
  return `{"kind":${JSON.stringify(kind)},"name":${JSON.stringify(name)}${state}${
    pending === undefined ? '' : `,"pending":"${pending}"`
  }}`;
}

function senderLink(fd: number): Link {
  return new Link(FdChannel.fromFd(fd, { maxMessageBytes: 1024 }), 1024);
}

function successorDraining(): Error {
  return batonError(
    'ERR_BATON_SUCCESSOR_DRAINING',
    'the new generation is itself draining (replaced again): closed politely here instead',
  );
}

export { MigrationReceiver, type MigrationReceiverEvents } from './migrate-receiver.js';
