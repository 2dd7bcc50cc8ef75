/**
 * The new generation's side of a migration channel (the protocol is described at the top of
 * src/upgrader/migrate.ts): takes each connection the old generation sends, acknowledges the batch in the
 * next turn of the event loop once it has caught up with the clients that speak (saying what that cost and how
 * many more fds it can take), and adopts the connections in the order their clients need them —
 * readiness-ordered adoption:
 *
 * - a connection that arrives with bytes (`pending`: its client already sent something) is adopted at once;
 * - every other one is parked: its fd is watched for readability (src/fd/readiness.ts, an epoll set) and kept
 *   with its item, in arrival order. One whose client sends something (or closes) is adopted as soon as that is
 *   reported, before anything else;
 * - the rest are adopted in the background, in arrival order, a slice of at most SLICE_MS per turn of the event
 *   loop, so a readable connection never waits behind more than one slice.
 *
 * Adopting is what the receiver did for every connection at arrival before: remove the fd from the watch, build
 * the net.Socket and emit 'connection' with its item and pending bytes — exactly once, in this process. Why: a
 * connection used to stall about two batches' adoption (each ~10 ms) because its batch was adopted as a whole
 * before it was acknowledged; parking costs 3-6 µs a connection (27 cold) against ~17 (raw TCP) to ~27 µs
 * (WebSocket) to adopt, so a client that sends during the move is served after its own batch's parking and
 * at most one slice, whatever else is still waiting. 'done', finished() and `sending` wait for the last parked
 * connection: until it is adopted, the move is not over (the completion protocol and a drain of this generation
 * rely on it). docs/migration.md ("Readiness-ordered adoption") says what the app sees.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { FdChannel } from '../fd/channel.js';
import { batonError } from '../fd/errors.js';
import { closeFds } from '../fd/fds.js';
import { ReadinessWatch } from '../fd/readiness.js';
import { Link } from '../handoff/link.js';
import { cpuNow, cpuSince } from './pacing.js';
import { MAX_MIGRATION_BATCH, PROTOCOL_VERSION, type MigrationItem } from '../handoff/messages.js';
import { FdRoom } from './fd-room.js';
import { FdTableAhead } from './fd-table-ahead.js';

/** Largest message on the migration channel (a batch of states and pending bytes). */
export const MAX_BATCH_BYTES = 8 * 1024 * 1024;
/** Batches sent ahead of their acknowledgement. Two lets the old generation prepare and send the next batch
 * while the new one takes the current one (10,000 connections: ~5-10% faster than one in bench:migrate); more
 * only lengthens the new generation's event-loop stalls. The receiver takes one batch per turn of its event
 * loop. */
export const WINDOW = 2;
/** Background adoption per turn of the event loop, ms: a client whose connection becomes readable waits at most
 * about this long behind the background (one slice), and the new generation's other clients too. ~70 raw TCP
 * connections (~30 µs each with the app's handler), ~50 WebSockets. */
export const SLICE_MS = 2;

export interface MigrationReceiverEvents {
  connection: [socket: net.Socket, item: MigrationItem, pending: Buffer];
  /** State the old generation carried over (MigrationSender.carry), parsed. */
  carry: [name: string, value: unknown];
  /** The old generation will send nothing more (migrate-done, or the channel closed) and every connection it
   * sent is adopted. */
  done: [];
  /** A channel from a generation older than the sender (migrate-channel): receive on it too. Owned. */
  channel: [fd: number];
  error: [err: Error];
}

/** A connection taken from the channel but not adopted yet (its fd is open here). */
interface Parked {
  fd: number;
  item: MigrationItem;
  pending: Buffer;
  /** In the readiness watch (one that came with bytes is not: it is readable already). */
  watched: boolean;
}

const NO_BYTES = Buffer.alloc(0);

/** The new generation's side: adopts each connection and hands it on. Owns its end of the channel. */
export class MigrationReceiver extends EventEmitter<MigrationReceiverEvents> {
  readonly #link: Link;
  /** fds this process can still take: measured at start, counted down by what arrives, measured again (at every
   * acknowledgement once fewer are left than the sender may have in flight; src/upgrader/fd-room.ts). */
  #room = new FdRoom(WINDOW * MAX_MIGRATION_BATCH);
  /** Grows the fd table before the fds that arrive need it: not on the event loop, in recvmsg(). */
  readonly #table: FdTableAhead;
  /** The old generation said nothing more will come (migrate-done), or the channel closed. */
  #senderDone = false;
  /** 'done' was emitted (the sender is done and nothing is parked). */
  #doneEmitted = false;
  #ended = false;
  #closed = false;
  /** migrate-carry parts received so far, by name. */
  #parts = new Map<string, Buffer[]>();
  /**
   * Parked connections by fd, in arrival order: a Map iterates in insertion order, skips entries deleted after
   * the iterator was made and visits those added, so the background takes the oldest from the front (#oldest)
   * and a readable one leaves from anywhere (#onReady), with no second structure to keep in step. Measured
   * against the Map plus arrival queue it replaced (10,000 idle loopback connections parked and adopted,
   * alternating runs, receiver CPU time from the first adoption to 'done'): the same within the runs' spread —
   * the net.Socket per connection is the cost, not the bookkeeping.
   */
  #parked = new Map<number, Parked>();
  /**
   * Where the background adoption stands in #parked, kept across slices (null: start at the front). A fresh
   * iterator per slice would step over every entry deleted at the front since V8 last compacted the table:
   * taking 100,000 entries from the front 70 at a time took 101 ms with a fresh iterator per 70, 48 ms with
   * one kept; one at a time (a preempted process's slices adopt one each), 2,206 ms against 13 ms.
   */
  #oldest: MapIterator<Parked> | null = null;
  /**
   * Parked connections known to be readable — reported by the watch (once each) or arrived with bytes — in that
   * order, adopted ahead of the rest but SLICE_MS at a time. Adopting every reported one at once made one task of
   * up to 37 ms (bench:migrate, 1,000 raw TCP clients talking every 250 ms: the watch reports up to 64 a turn,
   * the first, cold ones ~0.8 ms each), and every client already here waited behind it. An entry whose
   * connection was adopted meanwhile (oldest first, close()) is skipped.
   */
  #ready: Parked[] = [];
  /** Watches the parked fds (created with the first, closed when none is left); null without one. */
  #watch: ReadinessWatch | null = null;
  /** The watch could not be had (epoll_create1 failed, EMFILE): adopt at arrival, as before. */
  #eager = false;
  /** The batch taken in last, not acknowledged yet: how many connections, and the CPU time (µs) they cost so far. */
  #unacked: { count: number; cpu: number } | null = null;
  /** The background slice is scheduled. */
  #slice: NodeJS.Immediate | null = null;

  constructor(channelFd: number) {
    super();
    const maxMessageBytes = MAX_BATCH_BYTES + 1024 * 1024;
    this.#link = new Link(FdChannel.fromFd(channelFd, { maxMessageBytes }), maxMessageBytes);
    this.#table = new FdTableAhead(channelFd, this.#room.limit);
    this.#link.on('message', ({ msg, fds }) => {
      if (msg.type === 'migrate-done') {
        this.#senderFinished();
        return;
      }
      if (msg.type === 'migrate-carry') {
        this.#onCarry(msg.name, msg.part, msg.last);
        return;
      }
      if (msg.type === 'migrate-channel') {
        if (this.listenerCount('channel') > 0) this.emit('channel', fds[0]!);
        else closeFds(fds);
        return;
      }
      if (msg.type !== 'migrate') {
        closeFds(fds);
        return;
      }
      const cpuAtArrival = cpuNow();
      let highest = 0;
      for (let i = 0; i < msg.items.length; i++) {
        const fd = fds[i]!;
        if (fd > highest) highest = fd;
        this.#take(fd, msg.items[i]!);
      }
      this.#table.arrived(highest);
      const cpu = cpuSince(cpuAtArrival);
      // Acknowledged in the next turn, once every parked connection reported readable is adopted (#adoptReady):
      // at once when the clients are idle (then only parking, 3-6 µs a connection, was spent), after their
      // adoption when they speak — the old generation stops serving a connection when it prepares its batch, and
      // must not stop more of them than this generation keeps up with. One batch per turn: a batch the sender
      // sent ahead waits (paused, in the channel) until then.
      this.#unacked = { count: msg.items.length, cpu };
      this.#link.channel.pause();
      this.#schedule();
    });
    // Announce the room before anything arrives: the sender sends no more fds than that.
    this.#link.send({ v: PROTOCOL_VERSION, type: 'migrate-ok', count: 0, room: this.#room.room }).catch(() => {});
    // A batch this process cannot take ends the channel — at RLIMIT_NOFILE the kernel cuts its fds
    // (ERR_BATON_TRUNCATED), and those connections are lost: say why, rather than end silently.
    this.#link.on('close', (err) => {
      if (err) this.#error(err);
      // Nothing more can come either way; what is parked is still adopted (it is here).
      this.#senderFinished();
    });
  }

  /**
   * Resolves once the old generation has finished sending — it closes its end when it is drained, or dies —
   * and every connection it sent is adopted; or after `ms` at the latest.
   */
  finished(ms: number): Promise<void> {
    if (!this.sending) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.off('done', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.on('done', done);
    });
  }

  /** Whether the move is still under way: the old generation is still sending (neither migrate-done nor the
   * channel's close yet), or a connection it sent is not adopted yet. */
  get sending(): boolean {
    return !this.#doneEmitted;
  }

  /** Whether the old generation may still send here (neither migrate-done nor the channel's close yet). */
  get senderActive(): boolean {
    return !this.#senderDone && !this.#link.closed;
  }

  /** Connections taken from the channel and not adopted yet. */
  get parked(): number {
    return this.#parked.size;
  }

  /**
   * This generation drains: tell the old one to move nothing more here (migrate-end) — to `redirectFd`'s
   * peer instead (owned: closed once sent), or nowhere. It answers migrate-done once the batches already
   * sent are acknowledged; finished() resolves then (and once what is parked here is adopted). See the top
   * of src/upgrader/migrate.ts.
   */
  end(redirectFd: number | null = null): void {
    if (this.#ended || !this.senderActive) {
      if (redirectFd !== null) closeFds([redirectFd]);
      return;
    }
    this.#ended = true;
    const fds = redirectFd === null ? [] : [redirectFd];
    this.#link.send({ v: PROTOCOL_VERSION, type: 'migrate-end' }, fds).catch(() => {});
  }

  /** A connection from the channel: parked, and readable already if its client sent something (eager: adopted). */
  #take(fd: number, item: MigrationItem): void {
    const pending = item.pending ? Buffer.from(item.pending, 'base64') : NO_BYTES;
    const p: Parked = { fd, item, pending, watched: false };
    if (this.#eager || this.#closed) {
      this.#adopt(p);
      return;
    }
    if (pending.length) {
      this.#parked.set(fd, p);
      this.#ready.push(p);
      return;
    }
    if (!this.#watch) {
      try {
        this.#watch = new ReadinessWatch(
          (ready) => this.#onReady(ready),
          (err) => this.#watchFailed(err),
        );
      } catch (err) {
        // No epoll set (EMFILE, ENOMEM): nothing can say which client sends first. Adopt at arrival, as before.
        this.#error(err as Error);
        this.#eager = true;
        this.#adopt(p);
        return;
      }
    }
    try {
      this.#watch.add(fd);
    } catch {
      // Not watchable (ENOSPC: fs.epoll.max_user_watches): this one is adopted now, the others still parked.
      this.#adopt(p);
      return;
    }
    p.watched = true;
    this.#parked.set(fd, p);
  }

  /** Parked connections whose clients sent something (or closed): adopted now, ahead of the rest, for one slice;
   * what is left, in the next turn. */
  #onReady(fds: number[]): void {
    for (const fd of fds) {
      const p = this.#parked.get(fd);
      if (p) this.#ready.push(p);
    }
    this.#adoptReady(performance.now() + SLICE_MS);
    this.#afterAdoption();
    this.#schedule();
  }

  /**
   * Adopt the parked connections known to be readable (#ready, then what the watch reports), until none is left
   * (true) or `until` has passed — after one at least, however late the turn: the move always ends.
   */
  #adoptReady(until: number): boolean {
    const cpu = cpuNow();
    try {
      for (let adopted = 0; ; ) {
        const p = this.#ready.shift();
        if (!p) {
          if (!this.#watch) return true;
          const fds = this.#watch.take();
          for (const fd of fds) {
            const q = this.#parked.get(fd);
            if (q) this.#ready.push(q);
          }
          if (!fds.length) return true;
          continue;
        }
        if (this.#parked.get(p.fd) !== p) continue; // adopted meanwhile
        if (adopted && performance.now() >= until) {
          this.#ready.unshift(p);
          return false;
        }
        this.#adopt(p);
        adopted++;
      }
    } catch (err) {
      this.#watchFailed(err as Error);
      return true;
    } finally {
      this.#charge(cpu);
    }
  }

  /** Count the CPU time since `from` (adopting connections whose clients wait) against the unacknowledged batch:
   * what it costs to keep up with a batch's clients is what its acknowledgement reports. */
  #charge(from: number): void {
    if (!this.#unacked) return;
    this.#unacked.cpu += cpuSince(from);
  }

  /**
   * Acknowledge the batch taken in last: with what taking it in and keeping up with its clients cost per
   * connection (CPU time: parking, the adoption of those that came with bytes or became readable meanwhile, the
   * app's 'connection' handlers included), by which the sender sizes its batches (src/upgrader/pacing.ts): idle
   * clients, 3-6 µs — full batches; clients that speak, what adopting them costs — ~10 ms batches, as with eager
   * adoption. Not wall time: on the loaded machine a process gets a fraction of a core, and batches shrank to
   * the minimum. Not all the CPU time until now either: that also counts serving the connections already here
   * (500-2,000 µs per connection under load instead of 60-100).
   */
  #acknowledge(): void {
    const { count, cpu } = this.#unacked!;
    this.#unacked = null;
    if (this.#link.closed) return;
    // The fds count against the room whether parked or adopted: they are open in this process either way.
    const room = this.#room.took(count);
    const cost = Math.round(cpu / Math.max(1, count));
    this.#link.send({ v: PROTOCOL_VERSION, type: 'migrate-ok', count, room, cost }).catch(() => {});
    this.#link.channel.resume();
  }

  /** The watch failed: nothing says any more which client sends first. Adopt everything parked now. */
  #watchFailed(err: Error): void {
    this.#error(err);
    this.#closeWatch();
    this.#eager = true;
    this.#adoptAll();
  }

  #schedule(): void {
    if (this.#slice || (!this.#parked.size && !this.#unacked)) return;
    this.#slice = setImmediate(() => {
      this.#slice = null;
      this.#backgroundSlice();
    });
  }

  /**
   * One background slice: first what the watch reports readable (it may have become so since the poll phase),
   * then — the batch taken in last acknowledged once nothing readable is left — the oldest parked connections,
   * until SLICE_MS has passed. The next slice is one turn later: I/O (a readable parked connection, the adopted
   * connections' reads, the next batch) runs in between.
   */
  #backgroundSlice(): void {
    const until = performance.now() + SLICE_MS;
    if (this.#adoptReady(until) && this.#unacked) this.#acknowledge();
    this.#adoptOldest(until);
    this.#afterAdoption();
    this.#schedule();
  }

  /** Adopt parked connections oldest first until `until` (performance.now()) has passed, or all of them (Infinity).
   * At least one, however late the turn (a preempted process): the move always ends. */
  #adoptOldest(until: number): void {
    for (let adopted = 0; !adopted || performance.now() < until; adopted++) {
      // #adopt deletes the entry just visited (and an app's 'connection' handler may close() this receiver,
      // which adopts the rest through this same iterator, to its end): the next one is still the oldest left.
      this.#oldest ??= this.#parked.values();
      const next = this.#oldest.next();
      if (next.done) {
        // An iterator at its end stays there: one made later sees the connections parked after this.
        this.#oldest = null;
        return;
      }
      this.#adopt(next.value);
    }
  }

  /** Adopt `p` now: what the receiver did for every connection at arrival before readiness ordering. */
  #adopt(p: Parked): void {
    if (this.#parked.delete(p.fd) && p.watched && this.#watch) {
      try {
        this.#watch.remove(p.fd);
      } catch {
        // Not registered (its add failed) or the watch closed: nothing to remove.
      }
    }
    let socket: net.Socket;
    try {
      // The sender only sends connected stream sockets, so skip adopt()'s full probe: Node checks the
      // fd's type itself (and throws for anything else), which is most of the cost per connection.
      socket = new net.Socket({ fd: p.fd, readable: true, writable: true });
    } catch (err) {
      closeFds([p.fd]);
      this.#error(err as Error);
      return;
    }
    this.emit('connection', socket, p.item, p.pending);
  }

  /** Everything parked, now (close(), a failed watch): nothing is lost, nothing left open unowned. */
  #adoptAll(): void {
    this.#adoptOldest(Number.POSITIVE_INFINITY);
    this.#afterAdoption();
  }

  /** With nothing parked, close the watch and say done if the sender is. */
  #afterAdoption(): void {
    if (this.#parked.size) return;
    this.#oldest = null;
    this.#ready = [];
    this.#closeWatch();
    this.#maybeDone();
  }

  #closeWatch(): void {
    this.#watch?.close();
    this.#watch = null;
  }

  #senderFinished(): void {
    this.#senderDone = true;
    this.#maybeDone();
  }

  #maybeDone(): void {
    if (!this.#senderDone || this.#parked.size || this.#doneEmitted) return;
    this.#doneEmitted = true;
    this.emit('done');
  }

  #onCarry(name: string, part: string, last: boolean): void {
    const parts = this.#parts.get(name) ?? [];
    parts.push(Buffer.from(part, 'base64'));
    if (!last) {
      this.#parts.set(name, parts);
      return;
    }
    this.#parts.delete(name);
    let value: unknown;
    try {
      value = JSON.parse(Buffer.concat(parts).toString('utf8'));
    } catch (err) {
      const what = `carried state ${JSON.stringify(name)} is not JSON: ${(err as Error).message}`;
      this.#error(batonError('ERR_BATON_PROTOCOL', what));
      return;
    }
    this.emit('carry', name, value);
  }

  /**
   * Close the channel. Connections already here are adopted now (each was adopted at arrival before readiness
   * ordering: closing the channel never closed one), and 'done' follows.
   */
  close(): void {
    this.#closed = true;
    this.#link.close();
    if (this.#slice) clearImmediate(this.#slice);
    this.#slice = null;
    this.#unacked = null;
    this.#adoptAll();
    this.#senderFinished();
  }

  #error(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}
