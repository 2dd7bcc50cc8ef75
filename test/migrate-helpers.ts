/**
 * Helpers for the live-migration tests (migrate-*.test.ts): the tcp-echo example's stdout lines, and an
 * EchoClient that streams sequence-numbered lines to it and checks every answer as it arrives.
 *
 * The example answers each line with `<generation>:<connection id>:<n>:<line>`, where n counts the lines
 * answered on the connection. A client that only sends `seq 0`, `seq 1`, … therefore expects answer number
 * k (1-based) to be exactly `…:<id>:k:seq <k-1>`: a lost line, a duplicate or a reordering shows up as a
 * mismatch at once, and so does a connection id that changes (the state did not move with the connection).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import assert from 'node:assert/strict';
import { openFds, ROOT, waitFor, within } from './helpers.js';

export const ECHO = path.join(ROOT, 'examples/tcp-echo/server.js');

/** "generation N (pid P) serving on tcp://127.0.0.1:PORT": group 1 is the port (startSupervised's servingLine). */
export const ECHO_SERVING_TCP = (generation: number) =>
  new RegExp(`generation ${generation} \\(pid \\d+\\) serving on tcp://127\\.0\\.0\\.1:(\\d+)`);
/** The same for a Unix socket: group 1 is the path. */
export const ECHO_SERVING_UNIX = (generation: number) =>
  new RegExp(`generation ${generation} \\(pid \\d+\\) serving on unix:(\\S+)`);
/** The old generation's summary once its 'drain' handler has moved (or failed to move) every connection. */
export const ECHO_MOVED = (generation: number) =>
  new RegExp(`generation ${generation} moved (\\d+) of (\\d+) connections in [\\d.]+ ms(.*)`);

/** The soft limit on open files of this process (`ulimit -n`), from /proc. */
export function nofileLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  if (!m || m[1] === 'unlimited') return Infinity;
  return Number(m[1]);
}

export interface EchoClientOptions {
  connect: net.NetConnectOpts;
  /** Lines per burst: 1 to this many, written together. Default 3. */
  maxBurst?: number;
  /** Each burst is written in two pieces cut at a random point, this many ms apart at most (so the server
   * often holds a partial line). Default 20. */
  splitDelayMs?: number;
  /** Pause between bursts, ms: [min, max]. Default [200, 600]. */
  pauseMs?: [number, number];
}

const rand = (n: number) => Math.floor(Math.random() * n);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/**
 * One connection to the echo server that streams bursts of sequence-numbered lines until stop(), and
 * checks each answer: the next number in order, the same connection id, a generation that never goes back.
 */
export class EchoClient {
  readonly socket: net.Socket;
  /** The connection id the server gave it (from the first answer). */
  id: string | null = null;
  /** Lines written completely. */
  sent = 0;
  answered = 0;
  /** Generations that answered, in order, each once. */
  gens: number[] = [];
  /** Mismatches (the first few in detail). */
  errors: string[] = [];
  /** Set by the socket's 'close' (whoever closed it); `endedByTest` says whether the test did. */
  closed = false;
  hadError: Error | null = null;
  /** The server ended the connection (a FIN: 'end'), as opposed to a reset. */
  ended = false;
  endedByTest = false;
  /** When the socket closed (performance.now()). */
  closedAt = 0;
  readonly #opts: Required<Omit<EchoClientOptions, 'connect'>>;
  #buf = '';
  #streaming = false;
  #loop: Promise<void> | null = null;
  #waiters: Array<() => void> = [];
  #extra: string[] = [];

  constructor(opts: EchoClientOptions) {
    this.#opts = {
      maxBurst: opts.maxBurst ?? 3,
      splitDelayMs: opts.splitDelayMs ?? 20,
      pauseMs: opts.pauseMs ?? [200, 600],
    };
    this.socket = net.connect(opts.connect);
    this.socket.setEncoding('utf8');
    this.socket.on('data', (d: string) => this.#onData(d));
    this.socket.on('error', (err) => (this.hadError = err));
    this.socket.on('end', () => (this.ended = true));
    this.socket.on('close', () => {
      this.closed = true;
      this.closedAt = performance.now();
      this.#wake();
    });
  }

  connected(): Promise<void> {
    if (!this.socket.connecting)
      return this.closed ? Promise.reject(new Error('closed before connecting')) : Promise.resolve();
    return new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
  }

  /** The generation of the last answer (0 before any). */
  get lastGen(): number {
    return this.gens.at(-1) ?? 0;
  }

  /** Lines that came back but were not answers to our lines (e.g. a "bye"). */
  get extra(): string[] {
    return this.#extra;
  }

  start(): void {
    if (this.#streaming) return;
    this.#streaming = true;
    this.#loop = this.#run();
  }

  /** Stop streaming; resolves once every line sent was answered (or the connection closed). */
  async stop(): Promise<void> {
    this.#streaming = false;
    await this.#loop;
  }

  /** Write raw text (a command); its answer is counted as an extra line, not as a seq answer. */
  send(text: string): void {
    this.socket.write(text);
  }

  /** Resolves once `n` answers arrived (or the connection closed). */
  answeredUpTo(n: number): Promise<void> {
    if (this.answered >= n || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.answered >= n || this.closed) resolve();
        else this.#waiters.push(check);
      };
      this.#waiters.push(check);
    });
  }

  /** The test is done with it: end the connection (a FIN). */
  end(): void {
    this.endedByTest = true;
    this.socket.end();
  }

  async #run(): Promise<void> {
    const [lo, hi] = this.#opts.pauseMs;
    await sleep(rand(hi)); // spread the clients out
    while (this.#streaming && !this.closed) {
      const k = 1 + rand(this.#opts.maxBurst);
      let text = '';
      for (let j = 0; j < k; j++) text += `seq ${this.sent + j}\n`;
      const cut = 1 + rand(text.length - 1);
      this.socket.write(text.slice(0, cut));
      await sleep(rand(this.#opts.splitDelayMs + 1));
      if (this.closed) break;
      this.socket.write(text.slice(cut));
      this.sent += k;
      await this.answeredUpTo(this.sent);
      await sleep(lo + rand(hi - lo + 1));
    }
  }

  #onData(d: string): void {
    this.#buf += d;
    let nl: number;
    while ((nl = this.#buf.indexOf('\n')) !== -1) {
      const line = this.#buf.slice(0, nl);
      this.#buf = this.#buf.slice(nl + 1);
      this.#onLine(line);
    }
    this.#wake();
  }

  #onLine(line: string): void {
    const m = /^(\d+):([^:]+):(-|\d+):(.*)$/.exec(line);
    if (!m) return this.#error(`unparsable answer ${JSON.stringify(line)}`);
    const gen = Number(m[1]);
    const [, , id, n, text] = m;
    if (!text!.startsWith('seq ')) {
      this.#extra.push(line);
      return;
    }
    this.id ??= id!;
    if (id !== this.id) this.#error(`connection id changed from ${this.id} to ${id} (${line})`);
    const expected = this.answered + 1;
    if (Number(n) !== expected || text !== `seq ${expected - 1}`)
      this.#error(`answer ${expected} was ${JSON.stringify(line)}, expected n=${expected} "seq ${expected - 1}"`);
    if (expected > this.sent + this.#opts.maxBurst) this.#error(`more answers than lines sent (${line})`);
    if (gen < this.lastGen) this.#error(`generation went back from ${this.lastGen} to ${gen} (${line})`);
    if (gen !== this.lastGen) this.gens.push(gen);
    this.answered = expected;
  }

  #error(msg: string): void {
    if (this.errors.length < 5) this.errors.push(msg);
    else this.errors[5] = `… and more`;
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}

/** Open `n` EchoClients, `batch` connections at a time (the listen backlog is finite). */
export async function connectClients(n: number, opts: EchoClientOptions, batch = 100): Promise<EchoClient[]> {
  const clients: EchoClient[] = [];
  for (let i = 0; i < n; i += batch) {
    const group = Array.from({ length: Math.min(batch, n - i) }, () => new EchoClient(opts));
    clients.push(...group);
    await Promise.all(group.map((c) => c.connected()));
  }
  return clients;
}

/** A one-line summary of what went wrong across clients (for assertion messages). */
export function problems(clients: EchoClient[]): string {
  const closed = clients.filter((c) => c.closed && !c.endedByTest);
  const wrong = clients.filter((c) => c.errors.length);
  const parts: string[] = [];
  if (closed.length)
    parts.push(
      `${closed.length} closed (first: ${closed[0]!.hadError?.message ?? 'by the server'}, extra lines ` +
        `${JSON.stringify(closed[0]!.extra)})`,
    );
  if (wrong.length) parts.push(`${wrong.length} with wrong answers (first: ${wrong[0]!.errors.join('; ')})`);
  return parts.join('; ') || 'none';
}

/** Wait until every client in `clients` had an answer from generation `gen` (or a later one). */
export async function allAnsweredBy(clients: EchoClient[], gen: number, ms: number): Promise<void> {
  try {
    await waitFor(
      () => clients.every((c) => c.lastGen >= gen || c.closed),
      ms,
      `every client answered by generation ${gen}`,
      20,
    );
  } catch (err) {
    const late = clients.filter((c) => c.lastGen < gen && !c.closed);
    const c = late[0]!;
    throw new Error(
      `${(err as Error).message}: ${late.length} not yet; the first: id ${c.id}, generations ${c.gens.join(',')}, ` +
        `${c.sent} lines sent, ${c.answered} answered, other lines ${JSON.stringify(c.extra.slice(0, 3))}; problems: ` +
        `${problems(clients)}`,
    );
  }
}

/** A connection that reads answers line by line. */
export class LineClient {
  readonly socket: net.Socket;
  readonly lines: string[] = [];
  closed = false;
  #buf = '';
  #waiters: Array<() => void> = [];

  constructor(port: number) {
    this.socket = net.connect({ port, host: '127.0.0.1' });
    this.socket.setEncoding('utf8');
    this.socket.on('data', (d: string) => {
      this.#buf += d;
      for (let nl = this.#buf.indexOf('\n'); nl >= 0; nl = this.#buf.indexOf('\n')) {
        this.lines.push(this.#buf.slice(0, nl));
        this.#buf = this.#buf.slice(nl + 1);
      }
      for (const w of this.#waiters.splice(0)) w();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  connected(): Promise<void> {
    return within(
      new Promise<void>((resolve, reject) => {
        this.socket.once('connect', resolve);
        this.socket.once('error', reject);
      }),
      10_000,
      'connect',
    );
  }

  /** Wait for answer number `n` (1-based) and return it. */
  async answer(n: number, ms = 30_000): Promise<string> {
    const until = Date.now() + ms;
    while (this.lines.length < n) {
      if (this.closed) throw new Error(`closed before answer ${n} (answers: ${JSON.stringify(this.lines)})`);
      if (Date.now() > until)
        throw new Error(`no answer ${n} within ${ms} ms (answers: ${JSON.stringify(this.lines)})`);
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 50).unref();
      });
    }
    return this.lines[n - 1]!;
  }
}

/** An answer of the tcp-echo protocol, `gen:id:n:text`. */
export function parseLine(line: string): { gen: number; id: string; n: number; text: string } {
  const m = /^(\d+):([^:]+):(\d+):(.*)$/.exec(line);
  assert.ok(m, `unparsable answer ${JSON.stringify(line)}`);
  return { gen: Number(m[1]), id: m[2]!, n: Number(m[3]), text: m[4]! };
}

/** epoll instances `pid` holds open. */
export function epollSets(pid: number): number {
  let n = 0;
  for (const fd of openFds(pid)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[eventpoll]') n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

/**
 * Connect `n` LineClients to `port`, `group` at a time, each saying `hello` once and waiting for its answer, so
 * the server has accepted (and holds, in this order) every one before the next group; pushed onto `clients` as
 * they are made (for the caller's cleanup). Resolves with their connection ids, in order.
 */
export async function connectLineClients(port: number, n: number, group: number, clients: LineClient[]) {
  const ids: string[] = [];
  for (let i = 0; i < n; i += group) {
    const some = Array.from({ length: Math.min(group, n - i) }, () => new LineClient(port));
    clients.push(...some);
    await Promise.all(some.map((c) => c.connected()));
    for (const c of some) c.socket.write('hello\n');
    for (const c of some) ids.push(parseLine(await c.answer(1)).id);
  }
  return ids;
}
