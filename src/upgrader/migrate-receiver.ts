/**
 * The new generation's side of a migration channel (the protocol is described at the top of
 * src/upgrader/migrate.ts): adopts each connection the old generation sends, paces the batches by
 * acknowledging one per turn of the event loop, says what adopting the batch cost, and
 * announces how many more fds it can take.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { FdChannel } from '../fd/channel.js';
import { batonError } from '../fd/errors.js';
import { fdUsage } from '../fd/fd-usage.js';
import { closeFds } from '../fd/fds.js';
import { Link } from '../handoff/link.js';
import { MAX_MIGRATION_BATCH, PROTOCOL_VERSION, type MigrationItem } from '../handoff/messages.js';

/** Largest message on the migration channel (a batch of states and pending bytes). */
export const MAX_BATCH_BYTES = 8 * 1024 * 1024;
/** Batches sent ahead of their acknowledgement. Two lets the old generation prepare and send the next batch
 * while the new one adopts the current one (10,000 connections: ~5-10% faster than one in bench:migrate);
 * more only lengthens the new generation's event-loop stalls. The receiver still adopts one batch per turn
 * of its event loop. */
export const WINDOW = 2;
/** fds the new generation keeps free for its own work (files, new connections, its own next upgrade). */
export const FD_RESERVE = 64;

export interface MigrationReceiverEvents {
  connection: [socket: net.Socket, item: MigrationItem, pending: Buffer];
  /** State the old generation carried over (MigrationSender.carry), parsed. */
  carry: [name: string, value: unknown];
  /** The old generation will send nothing more (migrate-done, or the channel closed). */
  done: [];
  /** A channel from a generation older than the sender (migrate-channel): receive on it too. Owned. */
  channel: [fd: number];
  error: [err: Error];
}

/** The new generation's side: adopts each connection and hands it on. Owns its end of the channel. */
export class MigrationReceiver extends EventEmitter<MigrationReceiverEvents> {
  readonly #link: Link;
  /** fds this process can still take, estimated: measured at start, counted down, measured again when low. */
  #room = roomForFds();
  /** The old generation said nothing more will come (migrate-done). */
  #done = false;
  #ended = false;
  /** migrate-carry parts received so far, by name. */
  #parts = new Map<string, Buffer[]>();

  constructor(channelFd: number) {
    super();
    const maxMessageBytes = MAX_BATCH_BYTES + 1024 * 1024;
    this.#link = new Link(FdChannel.fromFd(channelFd, { maxMessageBytes }), maxMessageBytes);
    this.#link.on('message', ({ msg, fds }) => {
      if (msg.type === 'migrate-done') {
        this.#done = true;
        this.emit('done');
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
      for (let i = 0; i < msg.items.length; i++) {
        const item = msg.items[i]!;
        let socket: net.Socket;
        try {
          // The sender only sends connected stream sockets, so skip adopt()'s full probe: Node checks the
          // fd's type itself (and throws for anything else), which is most of the cost per connection.
          socket = new net.Socket({ fd: fds[i]!, readable: true, writable: true });
        } catch (err) {
          closeFds([fds[i]!]);
          this.#error(err as Error);
          continue;
        }
        this.emit('connection', socket, item, item.pending ? Buffer.from(item.pending, 'base64') : Buffer.alloc(0));
      }
      // What building this batch's objects cost (the app's 'connection' handlers included), in CPU time per
      // connection: the sender sizes its batches by it. Not wall time: on the loaded machine a process gets a
      // fraction of a core, wall time came out several times the CPU time, batches shrank to the minimum and the
      // move of 10,000 raw connections took 6.8 s. Nor the CPU time until the acknowledgement: that also counts
      // serving the connections already here — 500-2,000 µs per connection instead of 60-100 under load.
      const cpu = process.cpuUsage(cpuAtArrival);
      const cost = Math.round((cpu.user + cpu.system) / Math.max(1, msg.items.length));
      // One batch per turn of the event loop: batches the sender has sent ahead wait (paused, in the channel)
      // until this one's I/O has run; then acknowledge, which lets the sender send the next one. Tried: waiting
      // one more turn, until the batch's first reads had run (its clients answered before the next batch is
      // adopted) — with 10,000 clients each turn of a loaded loop is long, and the move of 10,000 raw
      // connections took 6.8 s; with batches of ~10 ms the next batch delays those answers by as much at most.
      this.#link.channel.pause();
      setImmediate(() => {
        this.#room -= fds.length;
        if (this.#room < WINDOW * MAX_MIGRATION_BATCH) this.#room = roomForFds();
        const count = msg.items.length;
        this.#link.send({ v: PROTOCOL_VERSION, type: 'migrate-ok', count, room: this.#room, cost }).catch(() => {});
        this.#link.channel.resume();
      });
    });
    // Announce the room before anything arrives: the sender sends no more fds than that.
    this.#link.send({ v: PROTOCOL_VERSION, type: 'migrate-ok', count: 0, room: this.#room }).catch(() => {});
    // A batch this process cannot take ends the channel — at RLIMIT_NOFILE the kernel cuts its fds
    // (ERR_BATON_TRUNCATED), and those connections are lost: say why, rather than end silently.
    this.#link.on('close', (err) => {
      if (err) this.#error(err);
      // Nothing more can come either way.
      if (!this.#done) this.emit('done');
    });
  }

  /**
   * Resolves once the old generation has finished sending — it closes its end when it is drained, or dies —
   * or after `ms` at the latest.
   */
  finished(ms: number): Promise<void> {
    if (this.#link.closed || this.#done) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#link.off('close', done);
        this.off('done', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#link.on('close', done);
      this.on('done', done);
    });
  }

  /** Whether the old generation is still sending (neither migrate-done nor the channel's close yet). */
  get sending(): boolean {
    return !this.#done && !this.#link.closed;
  }

  /**
   * This generation drains: tell the old one to move nothing more here (migrate-end) — to `redirectFd`'s
   * peer instead (owned: closed once sent), or nowhere. It answers migrate-done once the batches already
   * sent are acknowledged; finished() resolves then. See the top of this file.
   */
  end(redirectFd: number | null = null): void {
    if (this.#ended || !this.sending) {
      if (redirectFd !== null) closeFds([redirectFd]);
      return;
    }
    this.#ended = true;
    const fds = redirectFd === null ? [] : [redirectFd];
    this.#link.send({ v: PROTOCOL_VERSION, type: 'migrate-end' }, fds).catch(() => {});
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

  close(): void {
    this.#link.close();
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
