/**
 * FdChannelServer: accepts FdChannel connections on a Unix socket path.
 *
 *   const server = await FdChannelServer.listen('/run/app/baton.sock');
 *   server.on('channel', (ch) => { if (ch.peer.uid !== process.getuid()) ch.close(); ... });
 *
 * The socket file is created with mode 0600. An existing socket file is replaced only when nobody is
 * listening on it (a leftover of a crashed process); a live one fails with EADDRINUSE; a path that is not
 * a socket is never touched. close() removes the socket file only if it is still the one this server made,
 * so a successor that has already bound the same path keeps its socket.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { argTypeError, batonError, type BatonError } from './errors.js';
import { FdChannel, type FdChannelOptions } from './channel.js';
import { native } from './native.js';

export interface FdChannelServerOptions extends FdChannelOptions {
  /** listen(2) backlog. Default 128. */
  backlog?: number;
}

export interface FdChannelServerEvents {
  channel: [channel: FdChannel];
  error: [err: Error];
  close: [];
}

const ACCEPT_BATCH = 64;
/** After EMFILE/ENFILE, wait this long before accepting again rather than spin on a readable socket. */
const ACCEPT_BACKOFF_MS = 100;

export class FdChannelServer extends EventEmitter<FdChannelServerEvents> {
  readonly path: string;
  #fd: number;
  #poller: InstanceType<typeof native.Poller> | null;
  #ino: number;
  #dev: number;
  #options: FdChannelOptions;
  #backoff: NodeJS.Timeout | null = null;
  #refed = true;

  static async listen(path: string, options: FdChannelServerOptions = {}): Promise<FdChannelServer> {
    if (typeof path !== 'string') throw argTypeError('path', 'a string', path);
    const backlog = options.backlog ?? 128;
    if (!Number.isInteger(backlog) || backlog < 0) throw argTypeError('options.backlog', 'an integer >= 0', backlog);
    return new FdChannelServer(path, native.listen(path, backlog), options);
  }

  /**
   * Take over a listening SEQPACKET socket received from another process (standalone upgrades pass the
   * control socket this way, so its path never stops answering). The server owns `fd` from now on, and
   * does not accept until `start()` (so two processes holding the same listener never both accept).
   */
  static fromFd(fd: number, path: string, options: FdChannelOptions & { paused?: boolean } = {}): FdChannelServer {
    const info = native.probe(fd);
    if (info.family !== 'unix' || info.socketType !== 'seqpacket' || !info.listening) {
      native.closeMany([fd]);
      throw batonError('ERR_BATON_UNSUPPORTED_FD', `fd ${fd} is not a listening AF_UNIX SOCK_SEQPACKET socket (it is ${info.kind})`);
    }
    return new FdChannelServer(path, fd, options, options.paused ?? false);
  }

  private constructor(path: string, fd: number, options: FdChannelOptions, paused = false) {
    super();
    this.path = path;
    this.#fd = fd;
    this.#options = { ...options };
    try {
      const st = fs.lstatSync(path);
      this.#ino = st.ino;
      this.#dev = st.dev;
      this.#poller = new native.Poller(fd, (status) => this.#onReadable(status));
      if (!paused) this.#poller.start(native.pollEvents.READABLE);
    } catch (err) {
      native.closeMany([fd]);
      throw err;
    }
  }

  get listening(): boolean {
    return this.#poller !== null;
  }

  unref(): this {
    this.#refed = false;
    this.#poller?.ref(false);
    return this;
  }

  ref(): this {
    this.#refed = true;
    this.#poller?.ref(true);
    return this;
  }

  /** Start accepting (after fromFd with `paused`). */
  start(): void {
    if (this.#backoff === null) this.#poller?.start(native.pollEvents.READABLE);
  }

  /** Keep the socket but stop accepting: another process that holds the same listener accepts now. */
  stop(): void {
    this.#poller?.start(0);
  }

  /** The listening fd, borrowed (-1 once closed): to hand the listener to another process. */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Stop accepting, close the listening socket and remove its file (if it is still ours). Channels
   * already accepted stay open. With `unlink: false` the file stays: for a process that handed the
   * listener to a successor, which keeps serving on the same path.
   */
  close(options: { unlink?: boolean } = {}): void {
    if (!this.#poller) return;
    this.#poller.close(true);
    this.#poller = null;
    this.#fd = -1;
    if (this.#backoff) clearTimeout(this.#backoff);
    this.#backoff = null;
    try {
      const st = fs.lstatSync(this.path);
      if (options.unlink !== false && st.ino === this.#ino && st.dev === this.#dev) fs.unlinkSync(this.path);
    } catch {
      // Already gone, or replaced and not ours to remove.
    }
    process.nextTick(() => this.emit('close'));
  }

  #onReadable(status: number): void {
    if (!this.#poller) return;
    if (status < 0) {
      this.#error(batonError('ERR_BATON_CHANNEL_CLOSED', `poll failed on the listening socket (status ${status})`, { errno: status, syscall: 'poll' }));
      return;
    }
    for (let i = 0; i < ACCEPT_BATCH && this.#poller; i++) {
      let fd: number;
      try {
        fd = native.accept(this.#fd);
      } catch (err) {
        const code = (err as BatonError).code;
        if (code === 'EMFILE' || code === 'ENFILE' || code === 'ENOBUFS' || code === 'ENOMEM') this.#pauseAccepting();
        // ECONNABORTED and the like concern one connection only; report and go on.
        this.#error(err as Error);
        return;
      }
      if (fd < 0) return;
      let channel: FdChannel;
      try {
        channel = new FdChannel(fd, this.#options);
      } catch (err) {
        this.#error(err as Error); // the constructor closed fd
        continue;
      }
      if (this.listenerCount('channel') === 0) channel.close();
      else this.emit('channel', channel);
    }
  }

  #pauseAccepting(): void {
    this.#poller?.start(0);
    this.#backoff = setTimeout(() => {
      this.#backoff = null;
      this.#poller?.start(native.pollEvents.READABLE);
    }, ACCEPT_BACKOFF_MS);
    if (!this.#refed) this.#backoff.unref();
  }

  #error(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}
