/**
 * FdChannel: messages with file descriptors between two processes, over one AF_UNIX SOCK_SEQPACKET
 * connection.
 *
 *   const ch = await FdChannel.connect('/run/app/baton.sock');
 *   await ch.send(Buffer.from('boy'), [fileFd]);          // the fds are copied by the kernel; keep or close yours
 *   ch.on('message', (data, fds) => { ... });              // the listener owns the fds it receives
 *
 * Sending never blocks: a record the kernel will not take now (EAGAIN) waits in a queue, with its fds
 * duplicated so the caller may close theirs at once, and goes out when the socket is writable; the promise
 * resolves when the whole message is in the kernel. Receiving reads up to a batch of records each time the
 * socket is readable.
 *
 * Errors never crash the process: a bad record, a message over the limits, a peer that closes in the middle
 * of a message, or a failing syscall emit 'error' (only if someone listens), then 'close' with that error;
 * every fd that arrived and was not delivered is closed.
 */
import { EventEmitter } from 'node:events';
import { batonError, argTypeError, checkFd, checkFds, type BatonError } from './errors.js';
import { encodeMessage, Reassembler, type InMessage, type OutRecord } from './framing.js';
import { native, RECORD_OK, RECORD_CTRUNC } from './native.js';
import { fdUsage } from './fd-usage.js';
import { FdReserve } from './fd-reserve.js';

export interface PeerCredentials {
  /** The peer's process id at connect time (SO_PEERCRED). */
  pid: number;
  uid: number;
  gid: number;
}

export interface FdChannelOptions {
  /** Largest message accepted from the peer, in bytes. Default 16 MiB. */
  maxMessageBytes?: number;
  /** Most fds accepted in one message from the peer. Default 16384. */
  maxMessageFds?: number;
  /** Fds held in reserve and let go only while receiving, so that a message's fds arrive even when the
   * process is at RLIMIT_NOFILE (see fd-reserve.ts). Default 0. */
  reserveFds?: number;
}

export interface ConnectOptions extends FdChannelOptions {
  /** How long to keep retrying while the listener's backlog is full (EAGAIN), in ms. Default 5000. */
  timeout?: number;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
export const DEFAULT_MAX_MESSAGE_FDS = 16384;
/** Records read per readable event: bounds the time spent in one callback. */
const RECV_BATCH = 64;

interface QueuedRecord extends OutRecord {
  /** Set on the last record of a message. */
  done?: { resolve: () => void; reject: (err: Error) => void };
}

export interface FdChannelEvents {
  message: [data: Buffer, fds: number[]];
  error: [err: Error];
  close: [err?: Error];
}

/**
 * Send one small message on `fd`, a connected SEQPACKET socket this process writes to once and does not read
 * (an FdChannel on it would also read, taking messages meant for the process the fd goes to next): the
 * supervisor adds a message to a migration channel it relays. One record only (the message fits in one).
 * True once it is in the kernel; false when the socket's buffer is full (nothing sent). Throws the syscall's
 * error (EPIPE: the peer is gone); the fds stay the caller's.
 */
export function sendMessageNow(fd: number, data: Uint8Array, fds: readonly number[] = []): boolean {
  checkFd(fd);
  checkFds(fds);
  const records = encodeMessage(data, fds);
  if (records.length !== 1) throw argTypeError('data', 'one record (at most 64 KiB and 253 fds)', data);
  const r = records[0]!;
  return native.sendRecord(fd, r.header, r.payload, r.fds);
}

export class FdChannel extends EventEmitter<FdChannelEvents> {
  #fd: number;
  #reserve: FdReserve | null = null;
  #poller: InstanceType<typeof native.Poller> | null;
  #events = 0;
  #queue: QueuedRecord[] = [];
  #reassembler: Reassembler;
  #paused = false;
  /** Messages read from the kernel while paused, delivered on resume(). */
  #backlog: InMessage[] = [];
  #closed = false;
  /** Set when a send found the peer gone: later sends fail with it; reading goes on until end of stream. */
  #writeError: Error | null = null;
  /** The last poll callback reported an error (see #onPoll). */
  #pollFailed = false;
  #peer: PeerCredentials;

  /** Wrap a connected SEQPACKET socket fd; the channel owns it from now on (closing the channel closes it). */
  static fromFd(fd: number, options: FdChannelOptions = {}): FdChannel {
    checkFd(fd);
    const info = native.probe(fd);
    if (info.family !== 'unix' || info.socketType !== 'seqpacket' || info.listening) {
      throw batonError(
        'ERR_BATON_UNSUPPORTED_FD',
        `fd ${fd} is not a connected AF_UNIX SOCK_SEQPACKET socket (it is ${info.kind}, ` +
          `${info.socketType ?? 'not a socket'})`,
      );
    }
    return new FdChannel(fd, options);
  }

  /** Connect to an FdChannelServer listening at `path`. */
  static async connect(path: string, options: ConnectOptions = {}): Promise<FdChannel> {
    if (typeof path !== 'string') throw argTypeError('path', 'a string', path);
    const timeout = options.timeout ?? 5000;
    const deadline = Date.now() + timeout;
    for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
      try {
        return new FdChannel(native.connect(path), options);
      } catch (err) {
        // EAGAIN: the listener exists but its backlog is full; anything else is final.
        if ((err as BatonError).code !== 'EAGAIN' || Date.now() + delay > deadline) throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  /** A connected pair in this process (tests, or handing one end to a child as an extra stdio fd). */
  static pair(options: FdChannelOptions = {}): [FdChannel, FdChannel] {
    const [a, b] = native.socketpair();
    let first: FdChannel;
    try {
      first = new FdChannel(a, options);
    } catch (err) {
      native.closeMany([b]); // the constructor closed a
      throw err;
    }
    try {
      return [first, new FdChannel(b, options)];
    } catch (err) {
      first.close();
      throw err;
    }
  }

  /** @internal Use connect(), pair(), fromFd() or FdChannelServer. */
  constructor(fd: number, options: FdChannelOptions = {}) {
    super();
    checkFd(fd);
    const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const maxMessageFds = options.maxMessageFds ?? DEFAULT_MAX_MESSAGE_FDS;
    // Like any other failure below, bad options close the fd: the caller handed it over.
    if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 0) {
      native.closeMany([fd]);
      throw argTypeError('options.maxMessageBytes', 'an integer >= 0', maxMessageBytes);
    }
    if (!Number.isInteger(maxMessageFds) || maxMessageFds < 0) {
      native.closeMany([fd]);
      throw argTypeError('options.maxMessageFds', 'an integer >= 0', maxMessageFds);
    }
    this.#fd = fd;
    this.#reassembler = new Reassembler({ maxMessageBytes, maxMessageFds });
    if (options.reserveFds) this.#reserve = new FdReserve(options.reserveFds);
    try {
      this.#peer = native.peerCred(fd);
      this.#poller = new native.Poller(fd, (status, events) => this.#onPoll(status, events));
    } catch (err) {
      native.closeMany([fd]);
      throw err;
    }
    this.#watch();
  }

  /** The connected peer's pid, uid and gid, from SO_PEERCRED (the kernel's word, not the peer's). */
  get peer(): PeerCredentials {
    return this.#peer;
  }

  /** The socket fd, or -1 once closed. Borrowed: do not close it. */
  get fd(): number {
    return this.#fd;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Records waiting for the socket to become writable (backpressure). */
  get pendingRecords(): number {
    return this.#queue.length;
  }

  /**
   * Send one message: bytes (Buffer, Uint8Array or string) and any number of fds. The fds are borrowed: the
   * kernel (or, under backpressure, a private dup) holds them, so the caller may close its own at once.
   * Resolves when the whole message is in the kernel; rejects if the channel closes first.
   */
  send(data: Uint8Array | string = EMPTY, fds: readonly number[] = NO_FDS): Promise<void> {
    let bytes: Uint8Array;
    if (typeof data === 'string') bytes = Buffer.from(data);
    else if (data instanceof Uint8Array) bytes = data;
    else throw argTypeError('data', 'a Buffer, Uint8Array or string', data);
    const list = fds === NO_FDS ? NO_FDS : checkFds(fds);
    if (this.#closed) return Promise.reject(closedError());
    if (this.#writeError) return Promise.reject(this.#writeError);

    const records = encodeMessage(bytes, list);
    let sent = 0;
    if (this.#queue.length === 0) {
      try {
        while (sent < records.length) {
          const r = records[sent]!;
          if (!native.sendRecord(this.#fd, r.header, r.payload, r.fds)) break;
          sent++;
        }
      } catch (err) {
        // Nothing of this message went out (e.g. EBADF: one of the caller's fds is not open): only this
        // send fails. Half a message sent leaves the stream in an unknown state, so the channel ends.
        if (isPeerGone(err)) this.#peerGone(err as Error);
        else if (sent > 0 || !isMessageError(err)) this.#destroy(err as Error);
        return Promise.reject(err);
      }
      if (sent === records.length) return Promise.resolve();
    }
    // Backpressure: queue what the kernel did not take. Build the queued records first, so a failure
    // leaves the queue untouched.
    const owned: number[] = [];
    const queued: QueuedRecord[] = [];
    try {
      for (let i = sent; i < records.length; i++) {
        const r = records[i]!;
        let fdsCopy: number[] | null = null;
        if (r.fds) {
          fdsCopy = [];
          for (const fd of r.fds) {
            const d = native.dup(fd);
            owned.push(d);
            fdsCopy.push(d);
          }
        }
        // Copy payloads too: the caller may reuse its buffer once send() returns.
        queued.push({ header: r.header, payload: r.payload ? Buffer.from(r.payload) : null, fds: fdsCopy });
      }
    } catch (err) {
      // dup failed (EBADF: a caller's fd is not open; EMFILE: out of fds). If part of this message
      // already went out, the stream cannot continue.
      native.closeMany(owned);
      if (sent > 0) this.#destroy(err as Error);
      return Promise.reject(err);
    }
    return new Promise<void>((resolve, reject) => {
      queued[queued.length - 1]!.done = { resolve, reject };
      for (const r of queued) this.#queue.push(r);
      this.#watch();
    });
  }

  /** Stop reading from the socket (the peer's sends back up into its queue) until resume(). */
  pause(): void {
    this.#paused = true;
    this.#watch();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    while (!this.#paused && !this.#closed && this.#backlog.length) this.#deliver(this.#backlog.shift()!);
    this.#watch();
  }

  /** Let the process exit while this channel is open (like socket.unref()). */
  unref(): this {
    this.#poller?.ref(false);
    return this;
  }

  ref(): this {
    this.#poller?.ref(true);
    return this;
  }

  /** Close now: queued sends are rejected, undelivered fds closed, 'close' emitted once. */
  close(): void {
    this.#destroy();
  }

  #watch(): void {
    if (this.#closed || !this.#poller) return;
    const want =
      (this.#paused ? 0 : native.pollEvents.READABLE) | (this.#queue.length ? native.pollEvents.WRITABLE : 0);
    if (want !== this.#events) {
      this.#events = want;
      this.#poller.start(want);
    }
  }

  #onPoll(status: number, events: number): void {
    if (this.#closed) return;
    if (status < 0) {
      // libuv reports EPOLLERR as a failed poll (UV_EBADF) and stops watching. On this socket that means a
      // pending socket error, normally ECONNRESET: the peer closed while records we sent it were unread.
      // The records it sent before closing are still queued: read them (recvRecords clears the error, or
      // throws it if it is real, and reports the end of stream), then watch again. A second failure in a
      // row ends the channel here.
      if (this.#pollFailed) {
        this.#destroy(
          batonError('ERR_BATON_CHANNEL_CLOSED', `poll failed on the channel socket (status ${status})`, {
            errno: status,
            syscall: 'poll',
          }),
        );
        return;
      }
      this.#pollFailed = true;
      this.#events = 0;
      this.#read();
      this.#watch();
      return;
    }
    this.#pollFailed = false;
    // Read first: when the peer has sent its last messages and closed, a write would fail with EPIPE and
    // end the channel before they were read.
    if (events & native.pollEvents.READABLE && !this.#paused) this.#read();
    if (!this.#closed && events & native.pollEvents.WRITABLE) this.#flush();
  }

  #flush(): void {
    while (this.#queue.length) {
      const r = this.#queue[0]!;
      try {
        if (!native.sendRecord(this.#fd, r.header, r.payload, r.fds)) break;
      } catch (err) {
        if (isPeerGone(err)) this.#peerGone(err as Error);
        else this.#destroy(err as Error);
        return;
      }
      this.#queue.shift();
      if (r.fds) native.closeMany(r.fds);
      r.done?.resolve();
    }
    this.#watch();
  }

  /**
   * A send failed because the peer closed (EPIPE, ECONNRESET). What it sent before closing is still queued
   * in our socket — for the migration channel, records full of live connections — so the channel must not
   * end here: closing the fd would discard them (and close every connection in them). Fail the sends, stop
   * writing, and let reading run on to the end of stream, which closes the channel as usual.
   */
  #peerGone(err: Error): void {
    this.#writeError = err;
    const queue = this.#queue;
    this.#queue = [];
    for (const r of queue) {
      if (r.fds) native.closeMany(r.fds);
      r.done?.reject(err);
    }
    this.#watch();
  }

  #read(): void {
    let recs: ReturnType<typeof native.recvRecords>;
    this.#reserve?.release();
    try {
      recs = native.recvRecords(this.#fd, RECV_BATCH);
    } catch (err) {
      this.#destroy(err as Error);
      return;
    } finally {
      if (!this.#closed) this.#reserve?.refill();
    }
    for (let i = 0; i < recs.length; i += 3) {
      if (recs[i] === null) {
        // A listener paused in this batch: the messages after it wait in the backlog, and so does the end
        // of stream, which stays readable in the socket and is read again after resume().
        if (this.#paused) return;
        // End of stream. In the middle of a message, that is an error; otherwise a normal close.
        if (this.#reassembler.partial) {
          const n = this.#reassembler.abort();
          this.#destroy(
            batonError(
              'ERR_BATON_PEER_CLOSED_MID_MESSAGE',
              `the peer closed the channel in the middle of a message (closed ${n} fds that had arrived)`,
            ),
          );
        } else this.#destroy();
        return;
      }
      const status = recs[i] as number;
      const data = recs[i + 1] as Buffer;
      const fds = recs[i + 2] as number[] | null;
      if (this.#closed) {
        if (fds) native.closeMany(fds);
        continue;
      }
      if (status !== RECORD_OK) {
        this.#destroy(
          batonError(
            'ERR_BATON_TRUNCATED',
            status === RECORD_CTRUNC
              ? ctruncReason()
              : 'a record from the peer was larger than any baton record (MSG_TRUNC); its fds were closed',
          ),
        );
        continue;
      }
      let msg: InMessage | null;
      try {
        msg = this.#reassembler.push(data, fds);
      } catch (err) {
        this.#destroy(err as Error);
        continue;
      }
      if (!msg) continue;
      if (this.#paused) this.#backlog.push(msg);
      else this.#deliver(msg);
    }
  }

  #deliver(msg: InMessage): void {
    if (this.listenerCount('message') === 0) {
      // Nobody takes ownership: close them rather than leak them.
      if (msg.fds.length) native.closeMany(msg.fds);
      return;
    }
    this.emit('message', msg.data, msg.fds);
  }

  #destroy(err?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    const poller = this.#poller;
    this.#poller = null;
    this.#fd = -1;
    this.#reserve?.release();
    this.#reserve = null;
    poller?.close(true);
    this.#reassembler.abort();
    for (const m of this.#backlog) if (m.fds.length) native.closeMany(m.fds);
    this.#backlog = [];
    const queue = this.#queue;
    this.#queue = [];
    const reason = err ?? closedError();
    for (const r of queue) {
      if (r.fds) native.closeMany(r.fds);
      r.done?.reject(reason);
    }
    process.nextTick(() => {
      if (err && this.listenerCount('error') > 0) this.emit('error', err);
      this.emit('close', err);
    });
  }
}

const EMPTY = Buffer.alloc(0);
const NO_FDS: readonly number[] = Object.freeze([]);

/** Errors of a sendmsg that mean the peer has closed its end (what it sent before is still readable). */
function isPeerGone(err: unknown): boolean {
  const code = (err as BatonError).code;
  return code === 'EPIPE' || code === 'ECONNRESET';
}

/**
 * Why the kernel cut the fds of a record (MSG_CTRUNC). A baton peer never sends more than one record holds,
 * so the usual cause is this process's fd table: the kernel stops installing received fds at RLIMIT_NOFILE
 * (EMFILE) and truncates. Said with the numbers, so that a new generation that cannot take all its sockets
 * tells the user what to raise. (The fds that did arrive are closed by now, which leaves room to look.)
 */
function ctruncReason(): string {
  const fds = fdUsage();
  const usage = fds ? ` (${fds.open} fds open, RLIMIT_NOFILE ${fds.limit === Infinity ? 'unlimited' : fds.limit})` : '';
  return (
    `a record from the peer carried more fds than this process could receive (MSG_CTRUNC): its fd table is ` +
    `probably full${usage}; raise the open files limit (ulimit -n, LimitNOFILE=). The fds that arrived were closed`
  );
}

/** Errors of one sendmsg that concern only that message, not the connection. */
function isMessageError(err: unknown): boolean {
  const code = (err as BatonError).code;
  return (
    code === 'EBADF' ||
    code === 'EINVAL' ||
    code === 'ETOOMANYREFS' ||
    code === 'EMSGSIZE' ||
    code === 'ENOBUFS' ||
    code === 'ENOMEM'
  );
}

function closedError(): BatonError {
  return batonError('ERR_BATON_CHANNEL_CLOSED', 'the channel is closed');
}
