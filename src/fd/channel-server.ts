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
 *
 * `maxChannels` bounds the channels open at once (like net.Server#maxConnections): past it, a connection
 * is still accepted — so the backlog never fills and legitimate peers are not left hanging in connect —
 * but closed at once, with an optional one-message notice saying why, and 'drop' is emitted instead of
 * 'channel'.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { argTypeError, batonError, type BatonError } from './errors.js';
import { FdChannel, type FdChannelOptions, type PeerCredentials } from './channel.js';
import { encodeMessage, RECORD_PAYLOAD_MAX, type OutRecord } from './framing.js';
import { native } from './native.js';

export interface FdChannelServerOptions extends FdChannelOptions {
  /** listen(2) backlog. Default 128. */
  backlog?: number;
  /**
   * Most channels open at once: accepted, emitted with 'channel' and not closed yet. A connection past the
   * limit is accepted and closed at once ('drop'). An integer >= 0, or Infinity (the default: no limit).
   */
  maxChannels?: number;
  /**
   * One message (no fds, at most 64 KiB) sent to a connection dropped at `maxChannels` just before it is
   * closed, so the peer learns why — only to a peer running as this process's uid or as root, the peers a
   * control socket talks to at all. Default: none, the connection is just closed.
   */
  dropNotice?: Uint8Array;
}

/** What 'drop' reports about a connection closed at the `maxChannels` limit. */
export interface DropInfo {
  /** SO_PEERCRED of the dropped connection (null if the peer was already gone). */
  peer: PeerCredentials | null;
  /** Channels open when it arrived (the limit). */
  channels: number;
}

export interface FdChannelServerEvents {
  channel: [channel: FdChannel];
  /** A connection past `maxChannels`, closed at once (after the `dropNotice`, if any). */
  drop: [info: DropInfo];
  error: [err: Error];
  close: [];
}

interface ServerSettings {
  channel: FdChannelOptions;
  maxChannels: number;
  notice: OutRecord | null;
}

/** Validate the server's own options (before any fd is opened) and split off the channels' options. */
function settings(options: FdChannelServerOptions): ServerSettings {
  const { backlog: _backlog, maxChannels = Infinity, dropNotice, ...channel } = options;
  if (
    typeof maxChannels !== 'number' ||
    !(maxChannels === Infinity || (Number.isInteger(maxChannels) && maxChannels >= 0))
  ) {
    throw argTypeError('options.maxChannels', 'an integer >= 0 or Infinity', maxChannels);
  }
  if (dropNotice !== undefined && (!(dropNotice instanceof Uint8Array) || dropNotice.byteLength > RECORD_PAYLOAD_MAX)) {
    throw argTypeError(
      'options.dropNotice',
      `a Buffer or Uint8Array of at most ${RECORD_PAYLOAD_MAX} bytes`,
      dropNotice,
    );
  }
  // One record, encoded once: the drop path only writes it.
  const notice = dropNotice === undefined ? null : encodeMessage(Buffer.from(dropNotice), [])[0]!;
  return { channel, maxChannels, notice };
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
  #settings: ServerSettings;
  #backoff: NodeJS.Timeout | null = null;
  #refed = true;
  /** Channels emitted and not closed yet (what maxChannels bounds). */
  #open = 0;

  static async listen(path: string, options: FdChannelServerOptions = {}): Promise<FdChannelServer> {
    if (typeof path !== 'string') throw argTypeError('path', 'a string', path);
    const backlog = options.backlog ?? 128;
    if (!Number.isInteger(backlog) || backlog < 0) throw argTypeError('options.backlog', 'an integer >= 0', backlog);
    const s = settings(options);
    return new FdChannelServer(path, native.listen(path, backlog), s);
  }

  /**
   * Take over a listening SEQPACKET socket received from another process (standalone upgrades pass the
   * control socket this way, so its path never stops answering). The server owns `fd` from now on, and
   * does not accept until `start()` (so two processes holding the same listener never both accept).
   */
  static fromFd(
    fd: number,
    path: string,
    options: Omit<FdChannelServerOptions, 'backlog'> & { paused?: boolean } = {},
  ): FdChannelServer {
    const { paused = false, ...rest } = options;
    let s: ServerSettings;
    try {
      s = settings(rest);
    } catch (err) {
      native.closeMany([fd]); // owned from the call on, whatever the outcome
      throw err;
    }
    const info = native.probe(fd);
    if (info.family !== 'unix' || info.socketType !== 'seqpacket' || !info.listening) {
      native.closeMany([fd]);
      throw batonError(
        'ERR_BATON_UNSUPPORTED_FD',
        `fd ${fd} is not a listening AF_UNIX SOCK_SEQPACKET socket (it is ${info.kind})`,
      );
    }
    return new FdChannelServer(path, fd, s, paused);
  }

  private constructor(path: string, fd: number, s: ServerSettings, paused = false) {
    super();
    this.path = path;
    this.#fd = fd;
    this.#settings = s;
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

  /** Channels accepted and emitted that are still open. */
  get channels(): number {
    return this.#open;
  }

  /** The `maxChannels` option (Infinity: no limit). */
  get maxChannels(): number {
    return this.#settings.maxChannels;
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
    // The file is removed before the socket closes: while we listen, nobody else's listen() may replace the
    // file (it finds it live), so the one we check is the one we unlink. Closed first, another process could
    // replace the now stale file between our check and our unlink, and we would remove its socket.
    try {
      const st = fs.lstatSync(this.path);
      if (options.unlink !== false && st.ino === this.#ino && st.dev === this.#dev) fs.unlinkSync(this.path);
    } catch {
      // Already gone, or replaced and not ours to remove.
    }
    this.#poller.close(true);
    this.#poller = null;
    this.#fd = -1;
    if (this.#backoff) clearTimeout(this.#backoff);
    this.#backoff = null;
    process.nextTick(() => this.emit('close'));
  }

  #onReadable(status: number): void {
    if (!this.#poller) return;
    if (status < 0) {
      this.#error(
        batonError('ERR_BATON_CHANNEL_CLOSED', `poll failed on the listening socket (status ${status})`, {
          errno: status,
          syscall: 'poll',
        }),
      );
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
      if (this.#open >= this.#settings.maxChannels) {
        this.#drop(fd);
        continue;
      }
      let channel: FdChannel;
      try {
        channel = new FdChannel(fd, this.#settings.channel);
      } catch (err) {
        this.#error(err as Error); // the constructor closed fd
        continue;
      }
      if (this.listenerCount('channel') === 0) {
        channel.close();
        continue;
      }
      this.#open++;
      channel.once('close', () => this.#open--);
      this.emit('channel', channel);
    }
  }

  /** Past maxChannels: close the connection at once (no channel, no poller), after the notice if any. */
  #drop(fd: number): void {
    let peer: PeerCredentials | null = null;
    try {
      peer = native.peerCred(fd);
    } catch {
      // The peer is already gone; nothing to tell it.
    }
    const notice = this.#settings.notice;
    const uid = process.getuid?.() ?? 0;
    if (notice && peer && (peer.uid === uid || peer.uid === 0)) {
      try {
        // A fresh connection's buffer always takes one small record; if not (EAGAIN, EPIPE), never mind.
        native.sendRecord(fd, notice.header, notice.payload, null);
      } catch {
        // best effort
      }
    }
    native.closeMany([fd]);
    this.emit('drop', { peer, channels: this.#open });
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
