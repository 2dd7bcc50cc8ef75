/**
 * The new generation's side of a migration channel (the protocol is described at the top of
 * src/upgrader/migrate.ts): takes each connection the old generation sends, acknowledges the batch at once
 * (saying what taking it cost and how many more fds it can take), and adopts the connections in the order
 * their clients need them — readiness-ordered adoption:
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
 * before it was acknowledged; parking costs ~2 µs a connection against ~17 (raw TCP) to ~27 µs (WebSocket) to
 * adopt, so a client that sends during the move is served after its own batch's parking and at most one
 * slice, whatever else is still waiting. 'done', finished() and `sending` wait for the last parked connection:
 * until it is adopted, the move is not over (the completion protocol and a drain of this generation rely on
 * it). docs/migration.md ("Readiness-ordered adoption") says what the app sees.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { FdChannel } from '../fd/channel.js';
import { batonError } from '../fd/errors.js';
import { fdUsage } from '../fd/fd-usage.js';
import { closeFds } from '../fd/fds.js';
import { ReadinessWatch } from '../fd/readiness.js';
import { Link } from '../handoff/link.js';
import { MAX_MIGRATION_BATCH, PROTOCOL_VERSION, type MigrationItem } from '../handoff/messages.js';

/** Largest message on the migration channel (a batch of states and pending bytes). */
export const MAX_BATCH_BYTES = 8 * 1024 * 1024;
/** Batches sent ahead of their acknowledgement. Two lets the old generation prepare and send the next batch
 * while the new one takes the current one (10,000 connections: ~5-10% faster than one in bench:migrate). With
 * readiness-ordered adoption the receiver acknowledges a batch as soon as it is parked, so the window rarely
 * fills; it still bounds what an old receiver (eager adoption) has to adopt per turn. */
export const WINDOW = 2;
/** fds the new generation keeps free for its own work (files, new connections, its own next upgrade). */
export const FD_RESERVE = 64;
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

/** A connection taken from the channel but not adopted yet (its fd is open here, and watched). */
interface Parked {
  fd: number;
  item: MigrationItem;
  pending: Buffer;
  /** Adopted (or closed) already: skipped where it still sits in the queue. */
  gone: boolean;
}

const NO_BYTES = Buffer.alloc(0);

/** The new generation's side: adopts each connection and hands it on. Owns its end of the channel. */
export class MigrationReceiver extends EventEmitter<MigrationReceiverEvents> {
  readonly #link: Link;
  /** fds this process can still take, estimated: measured at start, counted down, measured again when low. */
  #room = roomForFds();
  /** The old generation said nothing more will come (migrate-done), or the channel closed. */
  #senderDone = false;
  /** 'done' was emitted (the sender is done and nothing is parked). */
  #doneEmitted = false;
  #ended = false;
  #closed = false;
  /** migrate-carry parts received so far, by name. */
  #parts = new Map<string, Buffer[]>();
  /** Parked connections by fd, and in arrival order (#queue from #head on; entries `gone` are skipped). */
  #parked = new Map<number, Parked>();
  #queue: Parked[] = [];
  #head = 0;
  /** Watches the parked fds (created with the first, closed when none is left); null without one. */
  #watch: ReadinessWatch | null = null;
  /** The watch could not be had (epoll_create1 failed, EMFILE): adopt at arrival, as before. */
  #eager = false;
  /** The background slice is scheduled. */
  #slice: NodeJS.Immediate | null = null;

  constructor(channelFd: number) {
    super();
    const maxMessageBytes = MAX_BATCH_BYTES + 1024 * 1024;
    this.#link = new Link(FdChannel.fromFd(channelFd, { maxMessageBytes }), maxMessageBytes);
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
      const cpuAtArrival = process.cpuUsage();
      for (let i = 0; i < msg.items.length; i++) this.#take(fds[i]!, msg.items[i]!);
      // What taking this batch cost (parking each connection; adopting those that came with bytes, the app's
      // 'connection' handlers included), in CPU time per connection: the sender sizes its batches by it
      // (src/upgrader/pacing.ts). Parked, a connection costs ~2 µs here, so batches are full (253) after the
      // first: the receiver no longer holds a client up for its batch's adoption, so a batch's size is no longer
      // the stall its clients feel. Not wall time: on the loaded machine a process gets a fraction of a core.
      const cpu = process.cpuUsage(cpuAtArrival);
      const cost = Math.round((cpu.user + cpu.system) / Math.max(1, msg.items.length));
      // Acknowledged at once: the old generation stops serving a connection when it prepares its batch, and the
      // sooner it is here (parked, watched) the sooner a client that sends is served. The fds count against the
      // room whether parked or adopted: they are open in this process either way.
      this.#room -= fds.length;
      if (this.#room < WINDOW * MAX_MIGRATION_BATCH) this.#room = roomForFds();
      const count = msg.items.length;
      this.#link.send({ v: PROTOCOL_VERSION, type: 'migrate-ok', count, room: this.#room, cost }).catch(() => {});
      this.#schedule();
    });
    // Announce the room before anything arrives: the sender sends no more fds than that.
    this.#link.send({ v: PROTOCOL_VERSION, type: 'migrate-ok', count: 0, room: this.#room }).catch(() => {});
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

  /** A connection from the channel: adopted now if its client already sent something, else parked. */
  #take(fd: number, item: MigrationItem): void {
    const p: Parked = { fd, item, pending: item.pending ? Buffer.from(item.pending, 'base64') : NO_BYTES, gone: false };
    if (p.pending.length || this.#eager || this.#closed) {
      this.#adopt(p);
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
    this.#parked.set(fd, p);
    this.#queue.push(p);
  }

  /** Parked connections whose clients sent something (or closed): adopt them now, ahead of the rest. */
  #onReady(fds: number[]): void {
    for (const fd of fds) {
      const p = this.#parked.get(fd);
      if (p) this.#adopt(p);
    }
    this.#afterAdoption();
  }

  /** The watch failed: nothing says any more which client sends first. Adopt everything parked now. */
  #watchFailed(err: Error): void {
    this.#error(err);
    this.#closeWatch();
    this.#eager = true;
    this.#adoptAll();
  }

  #schedule(): void {
    if (this.#slice || !this.#parked.size) return;
    this.#slice = setImmediate(() => {
      this.#slice = null;
      this.#backgroundSlice();
    });
  }

  /**
   * One background slice: first what the watch reports readable (it may have become so since the poll phase),
   * then the oldest parked connections, until SLICE_MS has passed. The next slice is one turn later: I/O (a
   * readable parked connection, the adopted connections' reads) runs in between.
   */
  #backgroundSlice(): void {
    if (this.#watch && !this.#watch.closed) {
      try {
        for (const fd of this.#watch.take()) {
          const p = this.#parked.get(fd);
          if (p) this.#adopt(p);
        }
      } catch (err) {
        this.#watchFailed(err as Error);
        return;
      }
    }
    const until = performance.now() + SLICE_MS;
    while (this.#head < this.#queue.length) {
      const p = this.#queue[this.#head++]!;
      if (p.gone) continue;
      this.#adopt(p);
      if (performance.now() >= until) break;
    }
    this.#afterAdoption();
    this.#schedule();
  }

  /** Adopt `p` now: what the receiver did for every connection at arrival before readiness ordering. */
  #adopt(p: Parked): void {
    p.gone = true;
    if (this.#parked.delete(p.fd) && this.#watch) {
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
    while (this.#head < this.#queue.length) {
      const p = this.#queue[this.#head++]!;
      if (!p.gone) this.#adopt(p);
    }
    this.#afterAdoption();
  }

  /** Drop the queue's adopted head; with nothing parked, close the watch and say done if the sender is. */
  #afterAdoption(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (this.#parked.size) return;
    this.#queue = [];
    this.#head = 0;
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
    this.#adoptAll();
    this.#senderFinished();
  }

  #error(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}

/**
 * How many more fds this process can open: the soft RLIMIT_NOFILE less the fds open now and FD_RESERVE.
 * Read from /proc (a directory listing; only at start and when the estimate runs low). Unknown: no limit.
 */
function roomForFds(): number {
  const fds = fdUsage();
  if (!fds || fds.limit === Infinity) return Number.MAX_SAFE_INTEGER;
  return Math.max(0, fds.limit - fds.open - FD_RESERVE);
}
