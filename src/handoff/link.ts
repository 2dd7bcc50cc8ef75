/**
 * A Link is an FdChannel that speaks the handoff protocol: every incoming message is decoded and
 * validated, fds beyond what the message type carries are closed (and the message rejected), and the
 * state machines on either side can `expect()` the next message with a timeout.
 *
 * A bad message ends the link: the protocol has no way to resynchronise, and the peer is either broken or
 * hostile. The reason is logged by the owner through the 'close' event.
 */
import { EventEmitter } from 'node:events';
import { FdChannel } from '../fd/channel.js';
import { batonError, type BatonError } from '../fd/errors.js';
import { closeFds } from '../fd/fds.js';
import { decode } from './decode.js';
import { encode, expectedFds, MAX_MESSAGE_BYTES, type Message, type MessageType } from './messages.js';

export interface Incoming {
  msg: Message;
  /** Owned by whoever takes the message. */
  fds: number[];
}

interface Waiter {
  types: readonly MessageType[];
  what: string;
  /** The awaited message must be the next one: anything else ends the link (see expect()). */
  first: boolean;
  resolve: (m: Incoming) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | null;
}

export interface LinkEvents {
  /** A message no expect() was waiting for. */
  message: [incoming: Incoming];
  close: [err?: Error];
}

export class Link extends EventEmitter<LinkEvents> {
  readonly channel: FdChannel;
  #waiters: Waiter[] = [];
  #queue: Incoming[] = [];
  #closed = false;
  #closeError: Error | undefined;

  readonly #maxBytes: number;

  /** `maxBytes`: the largest message accepted (the migration channel carries large batches). */
  constructor(channel: FdChannel, maxBytes = MAX_MESSAGE_BYTES) {
    super();
    this.channel = channel;
    this.#maxBytes = maxBytes;
    channel.on('message', (data, fds) => this.#onMessage(data, fds));
    channel.on('close', (err) => this.#onClose(err));
  }

  static async connect(path: string, timeoutMs = 5000, reserveFds = 0): Promise<Link> {
    const options = { timeout: timeoutMs, maxMessageBytes: MAX_MESSAGE_BYTES, reserveFds };
    return new Link(await FdChannel.connect(path, options));
  }

  get closed(): boolean {
    return this.#closed;
  }

  get peer() {
    return this.channel.peer;
  }

  send(msg: Message, fds: readonly number[] = []): Promise<void> {
    return this.sendEncoded(msg.type, encode(msg), fds);
  }

  /** Send a message already encoded as JSON (what encode() makes), for a sender that builds it in parts. */
  sendEncoded(type: MessageType, json: Uint8Array | string, fds: readonly number[] = []): Promise<void> {
    // A link that is down says why — the peer's bad message, or that the connection went away — instead of
    // the channel's bare "the channel is closed", which is all a rollback used to log (found by fuzzing).
    if (this.channel.closed)
      return Promise.reject(
        this.#closeError ??
          batonError('ERR_BATON_CHANNEL_CLOSED', `the connection closed before "${type}" could be sent`),
      );
    return this.channel.send(json, fds);
  }

  /**
   * The next message of one of `types`. Messages of other types that arrive first are delivered as
   * 'message' events (or queued until someone listens). Rejects on timeout or when the link closes.
   * With `first`, a message of another type arriving while this waits is a protocol error that ends the link
   * (the serving side's wait for hello: a `ready` sent before `hello` must not be kept for later).
   */
  expect<T extends MessageType>(
    types: readonly T[],
    timeoutMs: number,
    what: string,
    options: { first?: boolean } = {},
  ): Promise<Incoming & { msg: Extract<Message, { type: T }> }> {
    const queued = this.#queue.findIndex((m) => (types as readonly string[]).includes(m.msg.type));
    if (queued >= 0)
      return Promise.resolve(this.#queue.splice(queued, 1)[0] as Incoming & { msg: Extract<Message, { type: T }> });
    if (this.#closed) return Promise.reject(this.#closeError ?? closedWhile(what));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        types,
        what,
        first: options.first ?? false,
        resolve: resolve as (m: Incoming) => void,
        reject,
        timer: null,
      };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        waiter.timer = setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(batonError('ERR_BATON_TIMEOUT', `timed out after ${timeoutMs} ms waiting for ${what}`));
        }, timeoutMs);
      }
      this.#waiters.push(waiter);
    });
  }

  close(err?: Error): void {
    if (this.#closed) return;
    if (err) this.#closeError = err;
    this.channel.close();
  }

  #onMessage(data: Buffer, fds: number[]): void {
    let msg: Message;
    try {
      msg = decode(data, this.#maxBytes);
      const [min, max] = expectedFds(msg);
      if (fds.length < min || fds.length > max) {
        throw batonError(
          'ERR_BATON_PROTOCOL',
          `bad handoff message: "${msg.type}" carries ${min === max ? min : `${min} to ${max}`} fds, got ${fds.length}`,
        );
      }
    } catch (err) {
      closeFds(fds);
      this.close(err as Error);
      return;
    }
    const incoming = { msg, fds };
    const i = this.#waiters.findIndex((w) => (w.types as readonly string[]).includes(msg.type));
    if (i >= 0) {
      const [w] = this.#waiters.splice(i, 1);
      if (w!.timer) clearTimeout(w!.timer);
      w!.resolve(incoming);
      return;
    }
    const first = this.#waiters.find((w) => w.first);
    if (first) {
      closeFds(fds);
      this.close(
        batonError(
          'ERR_BATON_PROTOCOL',
          `bad handoff message: "${msg.type}" arrived before ${first.what}, which must come first`,
        ),
      );
      return;
    }
    if (this.listenerCount('message') > 0) this.emit('message', incoming);
    else if (this.#queue.length < 64) this.#queue.push(incoming);
    else {
      closeFds(fds);
      this.close(batonError('ERR_BATON_PROTOCOL', 'the peer sent more than 64 unsolicited messages'));
    }
  }

  #onClose(err?: Error): void {
    this.#closed = true;
    const reason = this.#closeError ?? err;
    this.#closeError = reason;
    for (const m of this.#queue) closeFds(m.fds);
    this.#queue = [];
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(reason ?? closedWhile(`a ${w.types.join('/')} message`));
    }
    this.emit('close', reason);
  }
}

/**
 * The answer to a first message (hello), when the other side may refuse and close before reading it — a
 * control socket at its connection limit does (ERR_BATON_TOO_MANY_CONNECTIONS). Our send then fails with
 * EPIPE, but the refusal was read (the channel reads on to the end of stream) and says why: it wins. Start
 * `answer` (expect()) before sending, so it catches a reply that arrives during the send.
 */
export async function answerDespiteEpipe<T>(answer: Promise<T>, sent: Promise<void>): Promise<T> {
  answer.catch(() => {}); // handled below; not an unhandled rejection while the send is awaited
  try {
    await sent;
  } catch (err) {
    const code = (err as BatonError).code;
    if (code !== 'EPIPE' && code !== 'ECONNRESET') throw err;
    return answer.catch(() => Promise.reject(err));
  }
  return answer;
}

function closedWhile(what: string): BatonError {
  return batonError('ERR_BATON_HANDOFF_FAILED', `the peer closed the control connection while we waited for ${what}`);
}
