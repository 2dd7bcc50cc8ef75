/**
 * `npm run bench:migrate`: how long it takes to move N open connections — raw TCP and WebSockets — to the
 * next generation, against the usual alternative, in the same run:
 *
 *   migrate     raw TCP: examples/tcp-echo under `baton run`; on `baton reload` the old generation hands
 *               every connection to the new one (upgrader.migrate / 'migrated'). WebSocket: the `ws` echo
 *               server of examples/websocket (bench/migrate/ws-echo.ts: the same app, instrumented like
 *               tcp-echo), whose connections move with upgrader.webSocketServer(wss, { save, restore }).
 *               Measured: from the old generation's 'drain' event (it starts moving) to the moment the new
 *               one adopted the last connection (timestamps printed by the two processes), per connection,
 *               and the new generation's event-loop delay meanwhile (perf_hooks.monitorEventLoopDelay, 1 ms
 *               resolution, from its ready() until the last connection arrived). Then every client sends a
 *               message, which must be answered by the new generation (WebSocket: with the per-connection
 *               count carried over), and no client may have seen its connection close.
 *   reconnect   the same apps with ECHO_MIGRATE=0 / WS_MIGRATE=0: the old generation closes every
 *               connection on 'drain' (WebSocket: close code 1012, Service Restart) and the clients
 *               reconnect at once (no backoff — the best case for this approach). Measured: from the old
 *               generation's 'drain' event until every client is connected again and has had a message
 *               answered by the new generation.
 *
 *   stall       what each client sees (migrate only, after the reloads above, one more reload): every client
 *               sends a message every 250 ms (then, in one more reload, every 1,000 ms: --periods) and times its
 *               answer (bench/migrate/stall.ts; the clients are bench/migrate/pinger.c unless --client=node). Per client, the
 *               slowest round trip of the messages it sent in a window of BENCH_STALL_WINDOW_MS (8,000) without
 *               a reload, then in one as long from the `baton reload` command on; p50/p99/max over the clients
 *               for each. Also the old generation's event-loop delay from 'drain' until its last move was
 *               acknowledged, the new one's while connections arrived, its memory growth per moved connection,
 *               and the benchmark process's own event-loop delay (when it is late, so are the echoes). Every
 *               round trip of both windows goes to a CSV file (BENCH_SERIES_DIR, default the temp dir), and
 *               their p50/p99/max per 100 ms to an SVG chart (docs/migrate-stall.svg).
 *
 * Flags and environment: USAGE below (`npm run bench:migrate -- --help`).
 *
 * With the stall, it also runs bench/migrate/floor.ts for the largest size and prints one pass/fail line per goal
 * (bench/migrate/goals.ts): stall p99 ≤ 50 ms at 10,000, ≤ 2× the no-reload p99 at 1,000, move ≤ 1.5× the floor.
 * Final figures: `npm run bench:migrate -- --stall-only --sizes=1000,10000` on a quiet machine (~3 minutes).
 *
 * The benchmark process holds every client socket and each
 * generation every server-side one, so a size needs about that many fds per process: sizes above
 * `ulimit -n` minus a margin are capped, and the cap is printed. Everything is started here, tracked by pid
 * and killed at the end or on any failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { benchFlags } from '../lib/args.js';
import { envInt, stdoutLines, trackedProcesses, writeDocSection } from '../lib/common.js';
import { renderChart, type ChartLabels, type Panel } from '../upgrade/chart.js';
import { buckets } from '../upgrade/stats.js';
import { goalLines, measureFloor } from './goals.js';
import { CPinger } from './pinger.js';
import { Pinger, type Stall, type StallSource } from './stall.js';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** dist/bench/migrate -> the package root. */
const ROOT = path.resolve(HERE, '../../..');
const BATON = path.join(ROOT, 'bin/baton.js');
type Kind = 'tcp' | 'ws';
type Approach = 'migrate' | 'reconnect';
const APP: Record<Kind, string> = {
  tcp: path.join(ROOT, 'examples/tcp-echo/server.js'),
  ws: path.join(HERE, 'ws-echo.js'),
};
/** The app's environment for the reconnect approach: it closes its connections on 'drain'. */
const NO_MIGRATE: Record<Kind, NodeJS.ProcessEnv> = { tcp: { ECHO_MIGRATE: '0' }, ws: { WS_MIGRATE: '0' } };
const KIND_NAME: Record<Kind, string> = { tcp: 'raw TCP', ws: 'WebSocket' };
const DOC = path.join(ROOT, 'docs/performance.md');
const MARK_START = '<!-- bench:migrate:start -->';
const MARK_END = '<!-- bench:migrate:end -->';
const STALL_START = '<!-- bench:migrate-stall:start -->';
const STALL_END = '<!-- bench:migrate-stall:end -->';
const SVG = path.join(ROOT, 'docs/migrate-stall.svg');

const USAGE = `usage: npm run bench:migrate -- [--no-docs] [--stall-only] [--sizes=N,N] [--quick] [--client=c|node] [--periods=MS,MS]
  (no flags)       1,000 and 10,000 connections, 3 reloads each, raw TCP and WebSocket, then the stall; prints
                   the tables and writes their sections of docs/performance.md and docs/migrate-stall.svg
  --no-docs        measure and print only
  --stall-only     the stall only (migrate, no timed reloads, no reconnect); writes only its section and chart
  --sizes=200,1000 these sizes (as BENCH_SIZES)
  --quick          as BENCH_QUICK=1: 1,000 connections, 2 reloads (implies --no-docs)
  --periods=MS,MS  the stall, once per period: each client sends a message every MS ms (default 250,1000: the
                   issue's 250 ms, which at 10,000 connections — 40,000 messages a second — is more than this
                   2-core machine serves without a reload, and 1,000 ms)
  --client=c       the stall's clients: c (default) — bench/migrate/pinger.c, one C process with its own
                   connections (built with cc); node — the benchmark's own Node clients (net, ws), which spend
                   most of a core at 10,000 connections and delay what they time
environment: BENCH_SIZES (a comma list, default 1000,10000), BENCH_RELOADS (3), BENCH_KINDS (tcp,ws),
  BENCH_APPROACHES (migrate,reconnect), BENCH_APP_LOG=FILE (append the apps' output lines to FILE: every
  generation's timestamps and CPU time; and baton's log, whose 'drained' line gives moveCpuUs),
  BENCH_NODE_ARGS (more node flags for every generation, e.g. --trace-gc), BENCH_CPU_PROF=DIR (run every generation with
  \`node --cpu-prof --cpu-prof-interval=250 --cpu-prof-dir=DIR\`; the apps' lines go to DIR/apps.log; implies
  --no-docs, as a profiled run is slower)
`;
const { values: flags, fail } = benchFlags('bench:migrate', USAGE, {
  'no-docs': { type: 'boolean' },
  'stall-only': { type: 'boolean' },
  sizes: { type: 'string' },
  quick: { type: 'boolean' },
  client: { type: 'string' },
  periods: { type: 'string' },
});
const QUICK = process.env.BENCH_QUICK === '1' || flags.quick === true;
const STALL_ONLY = flags['stall-only'] === true;
const CLIENT = flags.client ?? 'c';
/** The stall, once per period: each client's time between messages, ms. */
const PERIODS = (flags.periods ?? '250,1000').split(',').map((x) => {
  const ms = Number(x.trim());
  return Number.isInteger(ms) && ms >= 10 && ms <= 60_000
    ? ms
    : fail(`--periods: ${x} is not an integer from 10 to 60000`);
});
if (CLIENT !== 'c' && CLIENT !== 'node') fail(`--client must be c or node, not ${CLIENT}`);
if (flags.sizes !== undefined) process.env.BENCH_SIZES = flags.sizes;
const CPU_PROF = process.env.BENCH_CPU_PROF ? path.resolve(process.env.BENCH_CPU_PROF) : null;
const WRITE_DOCS = !flags['no-docs'] && !QUICK && !CPU_PROF;
/** Where the apps' output lines go (besides being parsed), if anywhere. */
const APP_LOG = process.env.BENCH_APP_LOG
  ? path.resolve(process.env.BENCH_APP_LOG)
  : CPU_PROF
    ? path.join(CPU_PROF, 'apps.log')
    : null;
const RELOADS = envInt('BENCH_RELOADS', QUICK ? 2 : 3, 1, 20);
const SIZES = (process.env.BENCH_SIZES ?? (QUICK ? '1000' : '1000,10000')).split(',').map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new Error(`BENCH_SIZES: bad size ${s}`);
  return n;
});
function envList<T extends string>(name: string, all: readonly T[]): T[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return [...all];
  const list = raw.split(',').map((s) => s.trim());
  for (const x of list)
    if (!(all as readonly string[]).includes(x)) throw new Error(`${name}: ${x} is not one of ${all.join(', ')}`);
  return all.filter((x) => list.includes(x));
}
const KINDS = envList<Kind>('BENCH_KINDS', ['tcp', 'ws']);
const APPROACHES = STALL_ONLY
  ? (['migrate'] as Approach[])
  : envList<Approach>('BENCH_APPROACHES', ['migrate', 'reconnect']);
/** Timed reloads per row before the stall's (none with --stall-only). */
const TIMED_RELOADS = STALL_ONLY ? 0 : RELOADS;
const STALL = process.env.BENCH_STALL !== '0';
/** Each stall window, without and with a reload; the reload's must hold the whole move (a new generation took 2-3 s to
 * start on the loaded 2-core machine of 2026-12-07, and 1,000 WebSockets 1 s to move). */
const STALL_WINDOW_MS = envInt('BENCH_STALL_WINDOW_MS', 8000, 1000, 60_000);
/** Pinging before the first window, so that every client is in its rhythm. */
const STALL_WARMUP_MS = 1000;
const SERIES_DIR = path.resolve(process.env.BENCH_SERIES_DIR ?? os.tmpdir());
const BUCKET_MS = 100;
/** fds a process needs besides the connections (stdio, epoll, listeners, channels, node's own). */
const FD_MARGIN = 300;
/** Connections opened at a time (the listen backlog is 511). */
const CONNECT_BATCH = 200;
const GLOBAL_LIMIT_MS = 15 * 60_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const now = () => performance.timeOrigin + performance.now();
const LOAD_AT_START = os.loadavg()[0]!.toFixed(2);
const CLIENT_NOTE = {
  c:
    'The clients are one C process, [`bench/migrate/pinger.c`](../bench/migrate/pinger.c) (`--client=c`, the ' +
    'default): epoll, a few µs of CPU per message, where the Node clients (`--client=node`: `net` and `ws` in the ' +
    'benchmark process) spent most of a core at 10,000 connections and their delay showed in every echo they timed.',
  node:
    "The clients are the benchmark process's own (`--client=node`: `net` sockets and `ws` clients, one timer " +
    'walking them).',
};
const RECONNECT_NOTE =
  'N clients reconnecting at once overflow the listen backlog (511); a SYN that is dropped is retried by the ' +
  "client's kernel after 1 s, which is where the occasional run of over a second comes from. Real clients add " +
  'their own backoff and lose whatever was in flight on the closed connection.';

function nofileLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

// --- processes --------------------------------------------------------------------------------------

/** Pids to kill at the end: the supervisors (their own process groups) and every generation they spawned. */
const { tracked, killAll: killTracked } = trackedProcesses();

interface Supervisor {
  child: ChildProcess;
  socket: string;
  /** Resolves with the first stdout line from now on matching `re`. */
  nextLine(re: RegExp, ms: number, what: string): Promise<RegExpExecArray>;
  stop(): Promise<void>;
}

/** `baton run -- node <app>` in a private directory; generations are tracked by pid. */
function supervise(dir: string, app: string, env: NodeJS.ProcessEnv): Supervisor {
  const socket = path.join(dir, 's.sock');
  const log = path.join(dir, 'baton.log');
  const node = CPU_PROF
    ? [process.execPath, '--cpu-prof', '--cpu-prof-interval=250', `--cpu-prof-dir=${CPU_PROF}`]
    : [process.execPath];
  // BENCH_NODE_ARGS: more flags for every generation (e.g. --trace-gc, which NODE_OPTIONS does not allow).
  node.push(...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean));
  const child = spawn(process.execPath, [BATON, 'run', '--socket', socket, '--', ...node, app], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  tracked.add(child.pid!);
  const logFd = fs.openSync(log, 'a');
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    fs.writeSync(logFd, d);
    for (const m of d.matchAll(/baton spawn supervisor=\d+ generation=\d+ child=(\d+)/g)) tracked.add(Number(m[1]));
  });
  child.once('exit', () => {
    tracked.delete(child.pid!);
    fs.closeSync(logFd);
  });
  // Keep the apps' lines if asked (profiling: their mono= timestamps place the move in each profile).
  const nextLine = stdoutLines(child, log, APP_LOG ? (line) => fs.appendFileSync(APP_LOG, `${line}\n`) : undefined);
  return {
    child,
    socket,
    nextLine,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000)]);
      killTracked();
    },
  };
}

function reload(socket: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BATON, 'reload', '--socket', socket], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`baton reload exited ${code}: ${out}`));
    });
  });
}

// --- clients ----------------------------------------------------------------------------------------

/** One connection to an echo server; in reconnect mode it reconnects as soon as the server closes it. */
interface Client {
  /** Generation of the last answer. */
  gen: number;
  /** When the last answer arrived (epoch ms). */
  answeredAt: number;
  /** Closes the client did not ask for. */
  dropped: number;
  connectErrors: number;
  /** Answers whose per-connection count did not follow on (state lost or a message answered twice). */
  wrongCount: number;
  /** Connect and have one message answered. */
  open(): Promise<void>;
  /** Send a message; resolves with the generation that answered it. */
  ask(): Promise<number>;
  close(): void;
}

abstract class BaseClient implements Client {
  gen = 0;
  answeredAt = 0;
  dropped = 0;
  connectErrors = 0;
  wrongCount = 0;
  protected stopping = false;
  protected onAnswer: (() => void) | null = null;

  constructor(readonly reconnect: boolean) {}

  abstract open(): Promise<void>;
  abstract ask(): Promise<number>;
  abstract close(): void;

  /** The server closed the connection (not us). */
  protected closed(firstAnswered: boolean, reject: (err: Error) => void): void {
    if (this.stopping) return;
    if (!firstAnswered) {
      reject(new Error('closed before the first answer'));
      return;
    }
    this.dropped++;
    if (this.reconnect) void this.reopen();
  }

  protected async reopen(): Promise<void> {
    for (let attempt = 0; !this.stopping; attempt++) {
      try {
        await this.open();
        return;
      } catch {
        this.connectErrors++;
        await sleep(Math.min(10 * 2 ** attempt, 500));
      }
    }
  }

  protected answered(gen: number): void {
    this.gen = gen;
    this.answeredAt = now();
    const f = this.onAnswer;
    this.onAnswer = null;
    f?.();
  }
}

/** A raw TCP connection to examples/tcp-echo: lines in, `<generation>:<id>:<n>:<line>` out. */
class TcpClient extends BaseClient {
  socket!: net.Socket;
  #buf = '';

  constructor(
    readonly target: net.NetConnectOpts,
    reconnect: boolean,
  ) {
    super(reconnect);
  }

  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = net.connect(this.target);
      this.socket = s;
      this.#buf = '';
      s.setEncoding('utf8');
      s.once('connect', () => s.write('hello\n'));
      s.on('data', (d: string) => this.#data(d));
      s.on('error', () => {});
      s.once('close', () => {
        if (this.socket === s) this.closed(this.answeredAt > 0, reject);
      });
      this.onAnswer = () => resolve();
    });
  }

  ask(): Promise<number> {
    return new Promise((resolve) => {
      this.onAnswer = () => resolve(this.gen);
      this.socket.write('ping\n');
    });
  }

  close(): void {
    this.stopping = true;
    this.socket?.destroy();
  }

  #data(d: string): void {
    this.#buf += d;
    let nl: number;
    while ((nl = this.#buf.indexOf('\n')) >= 0) {
      const line = this.#buf.slice(0, nl);
      this.#buf = this.#buf.slice(nl + 1);
      const gen = Number(line.slice(0, line.indexOf(':')));
      if (Number.isInteger(gen)) this.answered(gen);
    }
  }
}

/** A WebSocket to bench/migrate/ws-echo: each message is answered with `<generation> <count> <message>`,
 * the count (messages answered on this connection) being state that moves with it. */
class WsClient extends BaseClient {
  ws!: WebSocket;
  /** Messages sent on the current connection (the server's count must equal it when answered). */
  #sent = 0;
  /** Close codes of the closes the client did not ask for. */
  readonly closeCodes = new Map<number, number>();

  constructor(
    readonly url: string,
    reconnect: boolean,
  ) {
    super(reconnect);
  }

  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, { perMessageDeflate: false });
      this.ws = ws;
      this.#sent = 0;
      let answered = false;
      ws.once('open', () => this.#send());
      ws.on('message', (data) => {
        if (this.ws !== ws) return;
        const text = String(data);
        const sp = text.indexOf(' ');
        const gen = Number(text.slice(0, sp));
        const count = Number(text.slice(sp + 1, text.indexOf(' ', sp + 1)));
        if (count !== this.#sent) this.wrongCount++;
        answered = true;
        this.answered(gen);
      });
      ws.on('error', () => {});
      ws.once('close', (code) => {
        if (this.ws !== ws) return;
        if (!this.stopping && answered) this.closeCodes.set(code, (this.closeCodes.get(code) ?? 0) + 1);
        this.closed(answered, reject);
      });
      this.onAnswer = () => resolve();
    });
  }

  ask(): Promise<number> {
    return new Promise((resolve) => {
      this.onAnswer = () => resolve(this.gen);
      this.#send();
    });
  }

  close(): void {
    this.stopping = true;
    this.ws?.terminate();
  }

  #send(): void {
    this.#sent++;
    this.ws.send('ping');
  }
}

async function openAll(clients: Client[]): Promise<void> {
  for (let i = 0; i < clients.length; i += CONNECT_BATCH)
    await Promise.all(clients.slice(i, i + CONNECT_BATCH).map((c) => c.open()));
}

async function waitUntil(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await sleep(5);
  }
}

// --- measurements -----------------------------------------------------------------------------------

interface Sample {
  /** 'drain' in the old generation -> last connection adopted (migrate) / last client answered again (reconnect). */
  ms: number;
  /** migrate: the old generation's own count, from 'drain' until every move was acknowledged. */
  oldMs?: number;
  /** migrate: 'drain' -> the first connection adopted (the old generation preparing the moves). */
  firstMs?: number;
  /** migrate, WebSocket app only: CPU time (user + system, all threads) of the old generation from 'drain'
   * until done, and of the new one from its ready() until the last connection arrived, ms. */
  oldCpuMs?: number;
  newCpuMs?: number;
  /** migrate: the new generation's event-loop delay while connections arrived, ms. */
  loopP50?: number;
  loopP99?: number;
  loopMax?: number;
  /** migrate: the old generation's event-loop delay from 'drain' until its last move was acknowledged, ms. */
  oldLoopP99?: number;
  oldLoopMax?: number;
  /** migrate: growth of the new generation's RSS and used heap while connections arrived, KiB. */
  rssKiB?: number;
  heapKiB?: number;
  /** Client sockets that saw a close they did not ask for (reconnect: every one, by design). */
  dropped: number;
  /** reconnect: connection attempts that failed and were retried. */
  connectErrors?: number;
}

interface Row {
  kind: Kind;
  approach: Approach;
  n: number;
  samples: Sample[];
  /** WebSocket: close codes the clients saw (reconnect: 1012 expected), as "code×count". */
  closeCodes?: string;
  /** One per period (PERIODS), in order. */
  stalls: StallRun[];
}

interface StallRun {
  /** Each client's time between messages, ms. */
  period: number;
  base: Stall;
  reload: Stall;
  /** How late the clients sent their messages after their slots in each window, ms. */
  lateBase: { p99: number; max: number };
  lateReload: { p99: number; max: number };
  /** The stall reload's move, as the timed ones. */
  move: Sample;
  /** The move ended later than 250 ms before the reload window did (BENCH_STALL_WINDOW_MS too short). */
  late: boolean;
  series: string;
  panel: Panel;
}

/** The lines the two generations print about a move, from now on. */
function moveLines(sup: Supervisor, oldGen: number, gen: number) {
  return {
    started: sup.nextLine(
      new RegExp(`generation ${oldGen} migrating (\\d+) connections t=([\\d.]+)`),
      60_000,
      `generation ${oldGen} draining`,
    ),
    moved: sup.nextLine(
      new RegExp(`generation ${oldGen} moved (\\d+) of (\\d+) connections in ([\\d.]+) ms(?:.* cpu=([\\d.]+) ms)?.*`),
      120_000,
      `generation ${oldGen} moved`,
    ),
    adopted: sup.nextLine(
      new RegExp(
        `generation ${gen} adopted (\\d+) connections first=([\\d.]+) last=([\\d.]+) .*p50=([\\d.]+) p99=([\\d.]+) ` +
          `max=([\\d.]+) ms(?:.* cpu=([\\d.]+) ms)?.*`,
      ),
      120_000,
      `generation ${gen} adopted`,
    ),
  };
}

/** A number of a whole line (the move regexes end in `.*`), if there. */
function field(line: string, re: RegExp): number | undefined {
  const m = re.exec(line);
  return m ? Number(m[1]) : undefined;
}

/** The figures of a move from the generations' lines; checks that all `n` moved. */
function moveSample(
  n: number,
  drainAt: number,
  moved: RegExpExecArray,
  adopted: RegExpExecArray,
  dropped: number,
): Sample {
  if (Number(moved[1]) !== n) throw new Error(moved[0]);
  if (Number(adopted[1]) !== n) throw new Error(`${adopted[0]}: expected ${n}`);
  return {
    ms: Number(adopted[3]) - drainAt,
    oldMs: Number(moved[3]),
    firstMs: Number(adopted[2]) - drainAt,
    ...(moved[4] !== undefined && adopted[7] !== undefined
      ? { oldCpuMs: Number(moved[4]), newCpuMs: Number(adopted[7]) }
      : {}),
    loopP50: Number(adopted[4]),
    loopP99: Number(adopted[5]),
    loopMax: Number(adopted[6]),
    oldLoopP99: field(moved[0], / loop p99=([\d.]+)/),
    oldLoopMax: field(moved[0], / loop p99=[\d.]+ max=([\d.]+)/),
    rssKiB: field(adopted[0], / rss=(-?\d+)/),
    heapKiB: field(adopted[0], / heap=(-?\d+)/),
    dropped,
  };
}

async function measure(kind: Kind, approach: Approach, n: number): Promise<Row> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-migrate-'));
  const sup = supervise(dir, APP[kind], approach === 'reconnect' ? NO_MIGRATE[kind] : {});
  const clients: Client[] = [];
  const label = `${kind} ${approach} ${n}`;
  try {
    const port = Number(
      (
        await sup.nextLine(
          /generation 1 \(pid \d+\) serving on (?:tcp|ws):\/\/127\.0\.0\.1:(\d+)/,
          20_000,
          'generation 1 serving',
        )
      )[1],
    );
    // The Node clients serve the timed reloads, and the stall with --client=node.
    for (let i = 0; i < (TIMED_RELOADS > 0 || CLIENT === 'node' ? n : 0); i++) {
      clients.push(
        kind === 'tcp'
          ? new TcpClient({ host: '127.0.0.1', port }, approach === 'reconnect')
          : new WsClient(`ws://127.0.0.1:${port}/c${i}`, approach === 'reconnect'),
      );
    }
    const t0 = performance.now();
    await openAll(clients);
    if (clients.length)
      process.stdout.write(`  ${label}: ${n} clients connected in ${(performance.now() - t0).toFixed(0)} ms\n`);
    const samples: Sample[] = [];
    for (let i = 0; i < TIMED_RELOADS; i++) {
      const oldGen = i + 1;
      const gen = i + 2;
      await sleep(300); // let the previous generation finish exiting
      const { started, moved: movedLine, adopted: adoptedLine } = moveLines(sup, oldGen, gen);
      if (approach === 'reconnect') {
        movedLine.catch(() => {});
        adoptedLine.catch(() => {});
      }
      const droppedBefore = clients.reduce((a, c) => a + c.dropped, 0);
      const errorsBefore = clients.reduce((a, c) => a + c.connectErrors, 0);
      await reload(sup.socket);
      const s = await started;
      if (Number(s[1]) !== n) throw new Error(`generation ${oldGen} had ${s[1]} connections, expected ${n}`);
      const drainAt = Number(s[2]);
      let sample: Sample;
      if (approach === 'migrate') {
        const [moved, adopted] = await Promise.all([movedLine, adoptedLine]);
        sample = moveSample(n, drainAt, moved, adopted, clients.reduce((a, c) => a + c.dropped, 0) - droppedBefore);
        // Every connection is the new generation's now: each answers a message from there (WebSocket: with
        // the count of messages answered on this connection carried over from the old generation).
        for (let j = 0; j < n; j += CONNECT_BATCH) {
          const gens = await Promise.all(clients.slice(j, j + CONNECT_BATCH).map((c) => c.ask()));
          const wrong = gens.filter((g) => g !== gen).length;
          if (wrong) throw new Error(`${wrong} clients were answered by another generation than ${gen}`);
        }
        const wrongCount = clients.reduce((a, c) => a + c.wrongCount, 0);
        if (wrongCount)
          throw new Error(
            `${wrongCount} answers had a per-connection count that did not follow on (state lost on the move?)`,
          );
      } else {
        await waitUntil(
          () => clients.every((c) => c.gen === gen),
          120_000,
          `every client reconnected to generation ${gen}`,
        );
        sample = {
          ms: Math.max(...clients.map((c) => c.answeredAt)) - drainAt,
          dropped: clients.reduce((a, c) => a + c.dropped, 0) - droppedBefore,
          connectErrors: clients.reduce((a, c) => a + c.connectErrors, 0) - errorsBefore,
        };
      }
      samples.push(sample);
      process.stdout.write(
        `  ${label}: reload ${i + 1}: ${sample.ms.toFixed(1)} ` +
          `ms${sample.oldMs !== undefined ? ` (first adopted after ${sample.firstMs!.toFixed(1)} ms; old generation done after ${sample.oldMs.toFixed(1)} ms)` : ''}${sample.newCpuMs !== undefined ? `, CPU old ${sample.oldCpuMs} ms / new ${sample.newCpuMs} ms` : ''}${sample.loopMax !== undefined ? `, event-loop delay max ${sample.loopMax} ms` : ''}, ${sample.dropped} closed\n`,
      );
    }
    const stalls: StallRun[] = [];
    for (const [k, period] of (approach === 'migrate' && STALL ? PERIODS : []).entries()) {
      let source: StallSource;
      if (CLIENT === 'c') {
        // pinger.c brings its own connections: the Node clients (or the previous pinger's) go first, as the
        // move must count n exactly.
        for (const c of clients) c.close();
        if (clients.length || k > 0) await sleep(1000);
        const log = path.join(dir, 'pinger.log');
        const { pinger, connectMs } = await CPinger.open(ROOT, kind, port, n, period, tracked, log);
        process.stdout.write(`  ${label}: pinger.c connected ${n} clients in ${connectMs.toFixed(0)} ms\n`);
        source = pinger;
      } else source = nodeSource(clients, period);
      try {
        stalls.push(await measureStall(sup, source, kind, n, TIMED_RELOADS + 1 + k, period));
        if (source.cpuMs !== undefined) {
          const trips = source.trips.sentAt.length;
          process.stdout.write(
            `  ${label}: pinger.c used ${source.cpuMs} ms of CPU for ${trips} round trips ` +
              `(${fmt((source.cpuMs * 1000) / trips, 1)} µs each, connecting included)\n`,
          );
        }
      } finally {
        await source.close();
      }
    }
    const codes = new Map<number, number>();
    for (const c of clients)
      if (c instanceof WsClient) for (const [code, k] of c.closeCodes) codes.set(code, (codes.get(code) ?? 0) + k);
    const closeCodes = [...codes].map(([code, k]) => `${code}×${k}`).join(', ');
    return { kind, approach, n, samples, ...(closeCodes ? { closeCodes } : {}), stalls };
  } finally {
    for (const c of clients) c.close();
    await sup.stop();
    // baton's own log too (its 'drained' line has moveCpuUs: the old generation's CPU per moved connection).
    if (APP_LOG) fs.appendFileSync(APP_LOG, fs.readFileSync(path.join(dir, 'baton.log'), 'utf8'));
    fs.rmSync(dir, { recursive: true, force: true });
    await sleep(500); // let the kernel release the sockets before the next run
  }
}

function nodeSource(clients: Client[], period: number): StallSource {
  const pinger = new Pinger(clients, period);
  const droppedBefore = clients.reduce((a, c) => a + c.dropped, 0);
  return {
    get trips() {
      return pinger.trips;
    },
    start: () => pinger.start(),
    stop: (ms) => pinger.stop(ms),
    dropped: () => clients.reduce((a, c) => a + c.dropped, 0) - droppedBefore,
    wrongCount: () => clients.reduce((a, c) => a + c.wrongCount, 0),
    close: () => pinger.stop(30_000).catch(() => {}),
  };
}

/** Every client pings every `period` ms: a window without a reload, then one with `oldGen`'s replacement. */
async function measureStall(
  sup: Supervisor,
  source: StallSource,
  kind: Kind,
  n: number,
  oldGen: number,
  period: number,
): Promise<StallRun> {
  const gen = oldGen + 1;
  const label = `${kind} stall ${n} every ${period} ms`;
  await sleep(300); // let the previous generation finish exiting
  source.start();
  await sleep(STALL_WARMUP_MS);
  const baseFrom = performance.now();
  await sleep(STALL_WINDOW_MS);
  const lines = moveLines(sup, oldGen, gen);
  for (const p of Object.values(lines)) p.catch(() => {}); // awaited below; a failure then is the error
  const reloadFrom = performance.now();
  await reload(sup.socket);
  const [started, moved, adopted] = await Promise.all([lines.started, lines.moved, lines.adopted]);
  const drainAt = Number(started[2]);
  const move = moveSample(n, drainAt, moved, adopted, 0);
  const reloadTo = reloadFrom + STALL_WINDOW_MS;
  // App times are epoch ms (the same clock as performance.timeOrigin + performance.now() here).
  const toLocal = (epoch: number) => epoch - performance.timeOrigin;
  const lastAdopted = toLocal(Number(adopted[3]));
  if (performance.now() < reloadTo) await sleep(reloadTo - performance.now());
  await source.stop(60_000);
  const trips = source.trips;
  const base = trips.window(baseFrom, baseFrom + STALL_WINDOW_MS);
  const during = trips.window(reloadFrom, reloadTo);
  const lateBase = trips.lateness(baseFrom, baseFrom + STALL_WINDOW_MS);
  const lateReload = trips.lateness(reloadFrom, reloadTo);
  move.dropped = source.dropped();
  if (move.dropped) throw new Error(`${label}: ${move.dropped} clients saw their connection close`);
  const wrongCount = source.wrongCount();
  if (wrongCount) throw new Error(`${label}: ${wrongCount} answers had a per-connection count that did not follow on`);
  const stale = trips.gen.filter((g, i) => g !== gen && trips.sentAt[i]! > lastAdopted).length;
  if (stale)
    throw new Error(
      `${label}: ${stale} messages sent after the last move were answered by another generation than ${gen}`,
    );
  const series = path.join(SERIES_DIR, `baton-migrate-stall-${kind}-${n}-${period}ms.csv`);
  const rows = trips.writeSeries(series, baseFrom, reloadTo, reloadFrom);
  const late = lastAdopted > reloadTo - 250;
  const fig = (s: Stall) => `p50 ${fmt(s.p50)} / p99 ${fmt(s.p99)} / max ${fmt(s.max)} ms`;
  process.stdout.write(
    `  ${label}: slowest echo per client without a reload ${fig(base)}; during the reload ${fig(during)} ` +
      `(move ${fmt(move.ms)} ms: drain at ${fmt(toLocal(drainAt) - reloadFrom)} ms, last adopted at ` +
      `${fmt(lastAdopted - reloadFrom)} ms from the reload command, the series' 0; ${rows} round trips in ` +
      `${series})${late ? '; WARNING: the move ended after the window' : ''}\n`,
  );
  const origin = baseFrom;
  const panel: Panel = {
    title: `${n.toLocaleString('en-US')} ${KIND_NAME[kind]} connections, a message every ${period} ms each`,
    subtitle:
      `slowest echo per client: no reload p99 ${fmt(base.p99)} ms, max ${fmt(base.max)} ms · during the reload p99 ` +
      `${fmt(during.p99)} ms, ` +
      `max ${fmt(during.max)} ms · the reload began at ${fmt((reloadFrom - origin) / 1000, 1)} s; moving took ` +
      `${fmt(move.ms)} ms`,
    buckets: buckets(trips.samples(baseFrom, reloadTo, origin), 0, reloadTo - origin + 1000, BUCKET_MS),
    bucketMs: BUCKET_MS,
    windows: [{ start: toLocal(drainAt) - origin, end: lastAdopted - origin }],
  };
  return { period, base, reload: during, lateBase, lateReload, move, late, series, panel };
}

// --- report -----------------------------------------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const fmt = (x: number, digits = 1) => x.toFixed(digits);
const range = (xs: number[], digits = 1) =>
  xs.length > 1 ? ` (${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)})` : '';

function tableLines(rows: Row[]): string[] {
  const lines = [
    '| connections | kind | approach | until all are served by the new generation, ms | per connection, µs | old ' +
      'generation: drain → last move acknowledged, ms | new generation event-loop delay p99 / max, ms | client ' +
      'sockets closed |',
    '|---:|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const ms = r.samples.map((s) => s.ms);
    const dropped = r.samples.reduce((a, s) => a + s.dropped, 0);
    if (r.approach === 'migrate') {
      const old = r.samples.map((s) => s.oldMs!);
      const p99 = r.samples.map((s) => s.loopP99!);
      const max = r.samples.map((s) => s.loopMax!);
      lines.push(
        `| ${r.n.toLocaleString('en-US')} | ${KIND_NAME[r.kind]} | migrate (baton) | ${fmt(median(ms))}${range(ms)} ` +
          `| ${fmt((median(ms) * 1000) / r.n, 1)} | ${fmt(median(old))}${range(old)} | ${fmt(median(p99), 2)} / ` +
          `${fmt(median(max), 2)} (worst ${fmt(Math.max(...max), 2)}) | ${dropped} |`,
      );
    } else {
      const errors = r.samples.reduce((a, s) => a + (s.connectErrors ?? 0), 0);
      lines.push(
        `| ${r.n.toLocaleString('en-US')} | ${KIND_NAME[r.kind]} | drain and reconnect | ` +
          `${fmt(median(ms))}${range(ms)} | ${fmt((median(ms) * 1000) / r.n, 1)} | – | – | ${dropped} (every one, by ` +
          `design${r.closeCodes ? `; close codes ${r.closeCodes}` : ''}${errors ? `; ${errors} reconnect attempts failed and were retried` : ''}) |`,
      );
    }
  }
  return lines;
}

function section(rows: Row[], notes: string[]): string {
  const date = new Date().toISOString().slice(0, 10);
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  const find = (kind: Kind, approach: Approach) =>
    rows.filter((r) => r.kind === kind && r.approach === approach).sort((x, y) => y.n - x.n)[0];
  const wsMove = find('ws', 'migrate');
  const tcpMove = find('tcp', 'migrate');
  const med = (r: Row, f: (s: Sample) => number) => median(r.samples.map(f));
  let goal: string;
  if (!wsMove) goal = 'No WebSocket run (BENCH_KINDS).';
  else {
    const ms = med(wsMove, (s) => s.ms);
    const closed = wsMove.samples.reduce((a, s) => a + s.dropped, 0);
    const size = `${wsMove.n.toLocaleString('en-US')} WebSockets`;
    const met = wsMove.n >= 10_000 && ms <= 100 && closed === 0;
    const perConn = (x: number) => fmt((x * 1000) / wsMove.n, 0);
    const cpu = wsMove.samples.every((s) => s.newCpuMs !== undefined)
      ? ` CPU time for the move (median): the new generation ${fmt(
          med(wsMove, (s) => s.newCpuMs!),
          0,
        )} ms (${perConn(med(wsMove, (s) => s.newCpuMs!))} µs per WebSocket, garbage-collector threads included), the old one ${fmt(
          med(wsMove, (s) => s.oldCpuMs!),
          0,
        )} ms (${perConn(med(wsMove, (s) => s.oldCpuMs!))} µs) — on ${os.cpus().length} cores shared by both, which bounds the move from below.`
      : '';
    const moves = `${wsMove.samples.length} move${wsMove.samples.length === 1 ? '' : 's'}`;
    goal =
      `**The goal — 10,000 WebSockets moved in ≤ 100 ms with 0 disconnects — is ${met ? 'met' : 'not met'}**` +
      (wsMove.n < 10_000 ? ` (not measured at 10,000${notes.length ? ': see the note on `ulimit -n`' : ''})` : '') +
      `. ` +
      `${closed === 0 ? `0 disconnects holds: no client saw its WebSocket close in ${moves} of ${size}, and each one's state (its message count) moved with it` : `${closed} client WebSockets closed during the moves`}` +
      `; but moving ${size} took ${fmt(ms)} ms (median of ` +
      `${wsMove.samples.length})${ms > 100 ? `, ${fmt(ms / 100)}× the target` : ''}, ` +
      `the first connection arriving in the new generation only after ${fmt(med(wsMove, (s) => s.firstMs!))} ms` +
      (tcpMove && tcpMove.n === wsMove.n
        ? ` (raw TCP: ${fmt(med(tcpMove, (s) => s.ms))} ms, the first after ${fmt(med(tcpMove, (s) => s.firstMs!))} ` +
          `ms).`
        : '.') +
      cpu;
  }
  return `${MARK_START}
## Live connection migration (npm run bench:migrate)

How long a reload takes to hand N open connections to the new generation, for raw TCP
([\`examples/tcp-echo\`](../examples/tcp-echo/): \`upgrader.migrate()\` in the old generation, \`'migrated'\` in
the new one) and for WebSockets ([\`bench/migrate/ws-echo.ts\`](../bench/migrate/ws-echo.ts): the \`ws\` echo
server of [\`examples/websocket\`](../examples/websocket/), whose connections move with
\`upgrader.webSocketServer(wss, { save, restore })\`), both under \`baton run\`, beside the usual alternative in
the same run — the old generation closes every connection (WebSockets: close code 1012, Service Restart) and
the clients reconnect at once (no backoff, its best case). ${date}, Node ${process.version},
${os.cpus().length} × ${cpu}, ${os.platform()} ${os.release()}, 1-minute load average ${LOAD_AT_START} when the bench
started; ${RELOADS} reloads per row, median (min–max). The benchmark process holds the clients; all processes
share the same cores.

${tableLines(rows).join('\n')}

- **until all are served by the new generation**: migrate — from the old generation's \`'drain'\` event (it
  starts moving) to the moment the new generation adopted the last connection (timestamps printed by the two
  processes, same clock); after that every client sends a message, which the new generation answers
  (WebSocket: with the count of messages answered on that connection, state that moved with it, following
  on). Reconnect — from the same \`'drain'\` event until every client has reconnected (WebSocket: a new
  handshake) and had a message answered by the new generation.
- **old generation**: from \`'drain'\` until the new generation acknowledged the last batch (253 connections
  per message, one acknowledgement each, which paces the move).
- **event-loop delay**: \`perf_hooks.monitorEventLoopDelay\` (1 ms resolution) in the new generation, from its
  \`ready()\` until the last connection arrived: how long its other work could have waited.
- ${goal}
- Where the time goes — from an investigation on 2026-11-23 (10,000 WebSockets; \`BENCH_CPU_PROF=DIR\` profiles
  every generation with \`node --cpu-prof\`, \`BENCH_APP_LOG=FILE\` keeps the apps' timestamps and CPU times):
  1. **The old generation prepared every move before it sent the first batch** (since changed: it now
     prepares one batch's worth, 253, and yields, so the first batch leaves after ~30 ms): for each WebSocket the
     frame-boundary checks, \`save()\` with the upgrade request's url and headers, the state's JSON round trip
     and \`stopReading()\` (pause, \`readStop\`, the \`'data'\` listeners moved off and back) — about 12–16 µs
     each with its garbage collection (raw TCP: about 11 µs), one core at 100% while the new generation waits.
     That was the "first connection after" figure (~125 ms then).
  2. **Then 40 batches of 253, one in flight at a time (now two).** The new generation is busy ~90% of this phase; of its
     time, \`new net.Socket({ fd })\` takes ~37%, \`ws\`'s \`WebSocket\` and \`setSocket()\` ~15%, garbage
     collection ~21%, the channel (receive, JSON decode, acknowledgement) ~11%, the app's \`'connection'\`
     handler ~4%. The old generation, ~37% busy, encodes the next batch after each acknowledgement and destroys
     its copies of the sockets it sent (\`ws\` emits \`'close'\` for each).
  - The floor is the objects themselves. [\`bench/migrate/floor.ts\`](../bench/migrate/floor.ts)
    (\`node dist/bench/migrate/floor.js\`) only builds \`new net.Socket({ fd })\` and a \`ws\` \`WebSocket\` on it
    (\`setSocket()\`) for 5,000–6,000 fresh fds, in slices of 253, in one process — no baton, no channel: ~40 µs
    per WebSocket on its first, cold run (as in a new generation), 20–25 µs once warm; a bare \`net.Socket\`
    ~22 µs cold, 12–18 µs warm. Even warm, 10,000 WebSockets take over 200 ms to build: adopting them eagerly
    cannot fit in 100 ms on this machine.
  - Tried in a scratch copy (not in \`src/\`; 10,000 WebSockets, 3 moves each, baseline 645–655 ms): preparing
    and sending in slices of 253 instead of all first — 584 ms (the first connection arrives after ~25 ms
    instead of ~125 ms, but both processes then compete for the cores); two batches in flight — 608 ms; both —
    556 ms (−14%). Both are in \`src/\` now: a wider window had lost connections — the old generation closed the
    channel while batches were unread and the new one's next acknowledgement failed with EPIPE, which closed
    its end with them (fixed: a failed send no longer discards what the peer sent, and the old generation
    waits for the last acknowledgement); with the fix, 1, 2 and 4 batches in flight measured within ~10% of
    each other, 2 the best, 4 doubling the new generation's event-loop stalls. Opening a TCP handle on the fd instead of
    Node's fd-type probe, and not repeating \`ws\`'s \`setNoDelay()\` — no measurable change; a larger young
    generation (\`--max-semi-space-size=32\`) — within noise. The new generation's CPU stayed at 50–57 µs per
    WebSocket in every variant.
  - So tuning buys ~15%; the 100 ms goal needs a different design: adopt lazily — the new generation keeps the
    fds it received (the addon can watch them) and builds a connection's \`net.Socket\` and \`WebSocket\` when
    it first becomes readable or the app writes to it (a broadcast over \`wss.clients\` would need a stand-in)
    — with a cheaper preparation in the old generation (per batch, without the JSON round trip and the
    listener shuffle). What was built instead keeps the app's view whole: the new generation parks the fds it
    receives (an epoll set watched by the addon) and adopts first the connections whose clients send, the
    rest in the background — every connection still adopted within the move, only in the order its client
    needs it ([readiness-ordered adoption](migration.md#readiness-ordered-adoption)).
- Moves are paced since 2026-12-07 (next section): the old generation sends a batch only when it would leave
  at once, no larger than 4 ms of its own CPU time (~100 connections), and stops reading a connection only
  when its batch is prepared, so that each connection pauses only while it moves. With idle clients that makes
  the whole move longer than before the pacing (2026-11-23, same bench: 10,000 raw TCP 439 ms, WebSockets
  556 ms): ~100 batches, each waiting for its acknowledgement, with the new generation busy the whole move.
- Drain and reconnect: ${RECONNECT_NOTE}
- Drain and reconnect, WebSockets: each client also redoes the HTTP upgrade handshake, and the closes are
  WebSocket close handshakes (1012 from the old generation) before the TCP connections close.
${notes.map((n) => `- ${n}`).join('\n')}
${MARK_END}`;
}

function stallTableLines(rows: Row[]): string[] {
  const lines = [
    '| connections | kind | a message every, ms | slowest echo per client, no reload: p50 / p99 / max, ms | during a reload: p50 / p99 / ' +
      'max, ms | p99 during ÷ without | move (drain → last adopted), ms | old generation event-loop delay p99 / max, ' +
      'ms | new generation p99 / max, ms | new generation RSS / heap growth per moved connection, KiB | ' +
      "clients' own delay max (how late they sent), no reload / reload, ms |",
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) for (const st of r.stalls) lines.push(stallTableLine(r, st));
  return lines;
}

function stallTableLine(r: Row, st: StallRun): string {
  const m = st.move;
  const three = (x: Stall) => `${fmt(x.p50)} / ${fmt(x.p99)} / ${fmt(x.max)}`;
  const opt = (x: number | undefined, d = 1) => (x === undefined ? '–' : fmt(x, d));
  return (
    `| ${r.n.toLocaleString('en-US')} | ${KIND_NAME[r.kind]} | ${st.period} | ${three(st.base)} | ` +
    `${three(st.reload)} | ` +
    `${fmt(st.reload.p99 / st.base.p99, 1)}× | ${fmt(m.ms)}${st.late ? ' (after the window!)' : ''} | ` +
    `${opt(m.oldLoopP99)} / ${opt(m.oldLoopMax)} | ${fmt(m.loopP99!)} / ${fmt(m.loopMax!)} | ` +
    `${m.rssKiB === undefined ? '–' : `${fmt(m.rssKiB / r.n, 2)} / ${fmt(m.heapKiB! / r.n, 2)}`} | ` +
    `${fmt(st.lateBase.max)} / ${fmt(st.lateReload.max)} |`
  );
}

const STALL_LABELS: ChartLabels = {
  slowest: 'slowest echo of each 100 ms bucket',
  window: "the move: old generation's 'drain' (line) until the last connection was adopted",
  yAxis: 'echo round trip (log)',
  footer: 'time (s); a window without a reload, then the reload from its command on',
};

function stallSection(rows: Row[], goals: string[]): string {
  const date = new Date().toISOString().slice(0, 10);
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  return `${STALL_START}
## What a reload costs each connection (npm run bench:migrate)

The same apps and clients as above (connections moved with baton, raw TCP and WebSocket), but measured as
each client sees it: every client sends a message every P ms (P = ${PERIODS.join(' and ')}: one reload each; the
clients' send times spread evenly over the period; a client still waiting for an answer skips its turn, so a frozen connection shows as one long
round trip) and times the echo. For each client, its slowest round trip among the messages it sent in a
window of ${STALL_WINDOW_MS / 1000} s without a reload, and in a window as long starting with the \`baton reload\` command
(which holds the whole move); p50 / p99 / max of that over the clients. ${date}, Node ${process.version},
${os.cpus().length} × ${cpu}, ${os.platform()} ${os.release()}, 1-minute load average ${LOAD_AT_START} when the bench
started — **2 cores shared by the clients, both generations and whatever else runs**: the figures without a reload show how
much of a round trip the machine itself costs. ${CLIENT_NOTE[CLIENT as 'c' | 'node']} The generations hold
every server side; all share the same cores.

${stallTableLines(rows).join('\n')}

The goals, as the bench prints them (the floor: [\`bench/migrate/floor.ts\`](../bench/migrate/floor.ts)'s first,
cold run, per connection, times the connections):

${goals.map((g) => `- ${g}`).join('\n')}

Recorded with \`npm run bench:migrate -- --stall-only --sizes=1000,10000\` (about 5 minutes on a quiet machine;
10,000 connections need \`ulimit -n\` ≥ 10,300), which rewrites this section and the chart and prints the goal
lines above.

- **move**: from the old generation's \`'drain'\` to the last connection adopted by the new one.
- **event-loop delay**: \`perf_hooks.monitorEventLoopDelay\` (1 ms resolution); the old generation's from
  \`'drain'\` until its last move was acknowledged, the new generation's from its \`ready()\` until the last
  connection arrived.
- **memory per moved connection**: how much the new generation's RSS and used heap grew from its \`ready()\`
  until 3 s after the last connection arrived, divided by the connections (no forced garbage collection:
  the heap figure includes garbage not collected yet).
- **clients' own delay**: how late the clients sent each message after its slot; when the process holding the
  clients is late, every echo it times is late by as much, so a high figure means part of the stall is the
  clients' own.
- **The clients** (2026-12-07, afternoon). Until then the clients were the benchmark's own Node clients (\`net\`
  sockets and \`ws\`, one timer walking them; \`--client=node\` still runs them), and at 10,000 connections they
  measured themselves: their own event loop ran 280–510 ms late during a reload, and every echo they timed was
  late by as much. [\`bench/migrate/pinger.c\`](../bench/migrate/pinger.c) does the same in one C process (epoll,
  14–30 µs of CPU per round trip, most of it the kernel's loopback work, against most of a core for the Node
  clients at 10,000). With it, on a quiet machine, a client's slowest echo without a reload is p99 1.0–5 ms at
  1,000 connections (2–12 ms with the Node clients).
- **What 10,000 clients every 250 ms cost.** That is 40,000 echoes a second, and this 2-core machine does not
  serve them even without a reload: with \`pinger.c\` on a quiet machine the slowest echo per client is already
  p50 27 ms / p99 40 ms for raw TCP and p50 143 ms / p99 216 ms for WebSockets with no reload at all (the
  pinger alone uses ~60% of a core, the generation the rest). The Node clients hid that: late themselves, they
  sent less. So the stall runs twice per size (\`--periods\`, default 250,1000): every 250 ms, the issue's
  figure, and every 1,000 ms (10,000 echoes a second at 10,000 connections), which the machine serves with a
  no-reload p99 of 4–7 ms. At 1,000 ms the 50 ms goal at 10,000 is met in most runs, not all. WebSockets: p99
  26–50 ms over five runs, then 57.0 and 39.7 ms in the two full runs of the code with the listener fix below
  (2026-12-07, late evening; the first failed on a 51 ms delay in the new generation). Raw TCP: 28.5–36.8 ms in
  five runs of the code before that fix (2026-12-07 evening, quiet machine) and 54.7 and 56.6 ms in its two
  full runs, where the reload follows the 250 ms stall's; 27.6 and 26.6 ms in the two full runs with the fix
  (the second wrote this section), the old generation's longest delay 25.4 and 31.7 ms against 44.7 ms before.
  At 250 ms it is not (raw TCP 72–298 ms
  against 35–59 ms without a reload; WebSockets 281–1,558 ms against 76–382 ms — a saturated machine).
- **Why ≤ 2× at 1,000 still fails.** With quiet clients, the figure without a reload is 1–5 ms, and during a
  reload each client's slowest echo is p99 13–33 ms. The slowest clients are the ones whose connection was in
  flight at a bad moment: in one run (1,000 raw TCP, every 250 ms) the 25 worst were consecutive clients whose
  messages, sent 56–63 ms after the drain, were all answered together 19–25 ms later by the new generation —
  one busy stretch of it. Its CPU profile showed adopting every readable parked connection in one task (up to
  37 ms; fixed: 2 ms at a time, docs/migration.md) and \`process.cpuUsage()\` calls costing a mean 61 µs in the
  new generation and 138 µs in the old one, up to 9 ms each (fixed: the event loop's own CPU clock). Neither
  fix moved the stall beyond the spread of runs (alternating, 3 runs each, 1,000 raw TCP p99 14.7–30.7 ms
  before, 14.8–32.7 ms after; WebSockets 15.0–33.7 against 18.0–33.3 ms); nor did a first batch of 8 instead of
  32, or batches of 4 ms of adoption instead of 10. What is left is the machine: during a move three busy
  processes — the old generation preparing batches, the new one adopting them, the clients — share 2 cores, and
  the pinger's own lateness (its column) reaches 5–15 ms while it is descheduled too.
- **The fd table, grown ahead (2026-12-07, evening).** The kernel grows a process's fd table by doubling it,
  and in a multithreaded process — every Node process — each growth first waits for an RCU grace period, in the
  thread that needs the fd. The new generation received its connections with \`recvmsg()\` on its event loop, so
  the table grew there: at fd 256, 512, 1,024 for 1,000 connections, up to 8,192 for 10,000, 7–22 ms each
  (Node opening 16,000 fds: those 7 opens took ~75 ms of the 126 ms; with the table grown first, the same opens
  took 46 ms). The receiver now grows it on a threadpool thread before the fds need it
  (\`src/upgrader/fd-table-ahead.ts\`: to 1,024 fds when it is made, then 8× whenever the highest fd received
  passes half; one grace period each, slept off the loop). Alternating with the code before, 3 runs each, quiet
  machine: 1,000 raw TCP every 250 ms, p99 30.5 / 24.5 / 25.1 → 14.0 / 14.1 / 14.9 ms, the new generation's
  longest delay 16.6–30.6 → 11.1–12.8 ms, the move 155–180 → 98–142 ms; 1,000 WebSockets 18.1–45.0 →
  15.8–36.0 ms (within the spread; longest delay 18.9–24.9 → 13.2–16.0 ms); idle moves of 10,000 (timed
  reloads), the new generation's longest delay 18–27 → 15–17 ms (raw TCP) and 28.5–30.1 → 20.0–22.6 ms
  (WebSockets), the moves 582–743 → 584–640 ms and 731–751 → 673–701 ms.
- **What is left at 1,000.** The slowest clients are now those whose message reaches the old generation as its
  drain begins (in one run the 25 worst were answered by generation 1, sent 0–5 ms after the drain, 15–16 ms
  each): the drain's first task — its log lines, the draining report to the supervisor, the app's \`'drain'\`
  handler preparing the first batch of 32 on code that has never run in that process — takes 5–10 ms (marks
  in the drain, three runs), and the old generation's longest delay is 6–13 ms. Beyond that it is the 2 cores:
  a CPU profile's gaps of 2–8 ms in both generations fall in calls of a few µs, where the process was waiting
  for a core.
- **The garbage collector decides the rest (2026-12-07, late evening, \`BENCH_NODE_ARGS=--trace-gc\`).**
  - At 1,000 (raw TCP, every 250 ms): during the ~100 ms move the new generation ran two scavenges of 3.5 and
    3.7 ms — its young generation still at its starting size, every socket just built still alive — while the
    clients' slowest echo without a reload was p99 2.1 ms. One scavenge alone is twice that. Starting the
    generations with \`--min-semi-space-size=16\` (fewer scavenges) did not change the stall beyond the spread
    (3 runs each, alternating: p99 10.7 / 16.0 / 11.0 ms against 14.9 / 13.7 / 13.5). Over those six runs the
    no-reload p99 itself was 1.5–10.5 ms, so the ratio the goal asks for moved from 1.5× to 9.3× with the same
    code.
  - At 10,000 (raw TCP, every 1,000 ms, after the 250 ms run): the old generation — the one that had received
    the 10,000 connections in the reload before — ran a mark-compact during its drain, a 22.3 ms pause (with an
    incremental step of 9.4 ms before it), and its longest event-loop delay was 40.3 ms; the stall was p99
    37.4 ms that run (PASS), 54.7 ms in an earlier full run, where that delay was 44.7 ms. A
    full collection of a heap holding 10,000 sockets takes that long whoever runs it; whether one falls inside
    the drain is what moves that goal across its line.
- **What the old generation's scavenges copied (2026-12-07, late evening).** The same traces showed the old
  generation's scavenges during an idle move of 10,000 taking 10–49 ms each, its old space growing by 7–18 MB
  while it drained: young objects survived because old ones pointed at them. A sampling heap profile of the
  drain put most of it in \`removeAllListeners\`: to read what Node had buffered without the app seeing it,
  the move took the app's \`'data'\` listeners off each socket and put them back, which deletes a property of
  the socket's long-lived \`_events\` object — and V8 turns such an object into a dictionary, allocated young.
  With nothing buffered (the usual case) the listeners are now left alone (src/upgrader/hold.ts;
  test/hold.test.ts checks V8's \`%HasFastProperties\`). The first generation's drain, 10,000 idle raw TCP, 3 runs
  each: old space +7.1–7.2 → +2.6–3.0 MB, its scavenges 43–93 → 22–29 ms in all; WebSockets (one run each):
  +14.0 → +6.1 MB, 63.5 → 51.8 ms. Generations that had themselves received the connections still grew by
  9.6–14 MB in some runs (3 MB in others); a heap profile of their drains found nothing of the move's own left.
- **10,000 WebSockets every 1,000 ms, again (2026-12-07, night).** Eleven more runs on a quiet machine
  (load average ~1), on this code and on 5135a00 alike, the reload either the first of its run
  (\`--periods=1000\`) or the second (\`--periods=1000,1000\`): p99 54.8–143.4 ms (93.5, 78.2, 94.1, 77.0,
  143.4, 75.4, 67.7, 88.2 then 54.8, 66.5 then 86.1) — the goal fails in every one, where the evening's full
  runs gave 39.7 and 57.0 ms. Which generation drains does not decide it (in the pairs of one run the second
  reload was once better, once worse). What moves with it is the machine: the clients' own lateness during
  the reload was 9–32 ms (6.5 ms in the evening's passing run), the new generation's longest delay 37–76 ms
  and the old one's 35–64 ms — 10,000 WebSockets answered every second plus a move fill the 2 cores. Raw TCP
  in the same hour: 31.7 and 26.1 ms, met. A CPU profile of the old generation's drain spends 334 of its
  1,160 busy ms in \`writev\` (answering the clients it still serves) and 98 ms closing the moved sockets;
  nothing in the move's own code stands out. \`--max-semi-space-size=4\` (shorter scavenges) did not help:
  106.8 and 251.2 ms.
- **An overloaded old generation (2026-12-07, night).** Every 250 ms at 10,000 WebSockets is 40,000 messages a
  second, more than this machine answers: the old generation's loop took 1.7–2.3 s per turn, and paced by
  its 4 ms slice it sent one batch of ~60 per turn — 321 and 905 of the 10,000 had moved after 30 s (two
  runs on 5135a00; the full run above, after its 1,000-connection runs, took 20 s). A batch may
  now also take a tenth of the loop's turn (src/upgrader/pacing.ts, \`TURN_SHARE\`): 8,929 and 8,922 moved in
  those 30 s, the old loop's p99 delay 32 ms; the rest were closed at the drain timeout, the new generation
  then being overloaded in turn. At 1,000 connections nothing changed (one stall run on each tree: p99 19.3 /
  9.9 / 31.0 / 31.9 ms before, 19.7 / 10.3 / 27.8 / 22.5 after, raw TCP and WebSockets at 250 and 1,000 ms).
- **The move against the floor.** Idle clients (the timed reloads, quiet machine, 2026-12-07 evening, 3 runs
  each): 10,000 raw TCP connections in 584–640 ms (2.6–2.8× the floor), WebSockets 673–701 ms (2.2–2.3×). Node's
  fd-type probe in \`new net.Socket({ fd })\` is not the difference: alone, 5,000 sockets built from fds or from
  a handle opened on the fd cost the same within the runs' spread (10.5–16 µs each). The new generation
  is busy the whole move — its CPU time equals the move (740–1,100 ms for 10,000 WebSockets) — at ~74–110 µs a
  WebSocket against the floor's 28–31. Its CPU profile puts ~9 µs a connection in receiving the fds
  (\`recvmsg\`), ~8.5 µs in parking and unparking them in the epoll set, ~6 µs in Node's fd-type probe in
  \`new net.Socket({ fd })\` and ~8 µs in garbage collection; but alone, receiving 253 TCP fds takes 0.2–0.3 µs
  each and an epoll add or remove 1.6–2 µs, so much of what the profile puts in those system calls is the
  process waiting for a core while three processes share two. With every client talking, pacing adds a round
  trip and a turn of both loops per batch: 3–8× the floor.
- Both kinds are paced: the old generation prepares each batch (and stops reading its connections) only when
  it would leave at once and serves the others meanwhile — WebSockets through \`webSocketServer()\`, raw TCP
  through \`upgrader.migrateAll()\` (examples/tcp-echo) — and batches are sized to ~10 ms of adoption by the
  cost the new generation reports, the first one 32, and to at most 4 ms of the old generation's own CPU
  (preparing and sending a batch, the moved sockets' \`'close'\` handlers included; its \`drained\` log line's
  \`moveCpuUs\`: 27–30 µs per connection at 10,000, 33–49 at 1,000) (docs/migration.md, "What each connection
  feels").
- The old generation's long tasks during a move of 10,000 (CPU profiles, \`BENCH_CPU_PROF\`, 2026-12-07, the
  shared machine at a load average of 2–10): before that cap, sending one batch of 253 WebSockets — the message,
  destroying its sockets and the \`'close'\` handlers that fires — was one task of up to 109 ms (48 ms for the
  first), a draining generation's report took the census of every connection twice (22 ms of one 50 ms task at
  the drain), and garbage collection ran 21–171 ms at a time. After: batches of 85–160, the census once per
  report, and the tasks of the move itself 15–35 ms in the profile, each mostly one or two samples of a
  process the loaded machine descheduled; garbage collection (14–66 ms) is the old generation's longest
  remaining task.
- How that was found (2026-12-07, 1,000 connections, the shared 2-core machine, each figure against the one
  without a reload in the same run): with full batches of 253 the new generation took 13–71 ms to adopt a
  batch (the first, cold, the slowest) and 22–84 ms more in the turn after, where the previous batch's
  first reads ran, so a client waited for two such batches — each client's slowest echo p99 ~100 ms (10–13×
  without a reload) for WebSockets; raw TCP, moved all at once at the drain, 88–265 ms (5–11×). Alternating
  WebSocket runs at a load average of 4–7 with batch targets of 10 ms: p99 28–45 ms (3.5–4.9×); 40 ms:
  46–59 ms; full batches: 91–185 ms; 5 ms: no better, a longer move. Raw TCP paced (migrateAll) at the same
  load: 16–87 ms (1.1–2.0×). Profiles (BENCH_CPU_PROF) of the new generation showed no single long task
  left: its busy stretches were 15 ms at most.
- With the Node clients, on a quiet machine (2026-12-07 08:39–08:45 UTC, load average 0.9–1.4, nothing else running), the same
  command on this code (twice) and on the code before the pacing (1db504f: WebSockets paced per batch of 253,
  raw TCP moved all at once at the drain), p99 of each client's slowest echo during the reload:

  | | before pacing | paced (run 1 / run 2) |
  |---|---:|---:|
  | 1,000 raw TCP | 88.7 ms (32×) | 31.5 / 45.1 ms (7.3× / 14.9×) |
  | 1,000 WebSockets | 68.1 ms (7.2×) | 58.8 / 50.0 ms (6.7× / 6.2×) |
  | 10,000 raw TCP | 988.2 ms (17×) | 174.2 / 139.7 ms (9.0× / 8.3×) |
  | 10,000 WebSockets | 465.0 ms (6.1×) | 555.8 / 503.2 ms (5.1× / 4.9×) |

  Pacing cut raw TCP's stall 3–7×; WebSockets did not change beyond the spread of two runs. Every goal still
  FAILS. At 10,000 WebSockets the machine cannot show the 50 ms goal at all: without a reload the clients'
  slowest echo is already p99 76–110 ms, because the benchmark's own 10,000 clients share the 2 cores with both
  generations. The move takes 6–11× the floor: the floor adopts connections back to back in one idle process,
  while a paced move waits a round trip and a turn of both loops per batch, with both generations serving
  40,000 echoes a second meanwhile.
- With the Node clients: readiness-ordered adoption and the old generation's own 4 ms cap (docs/migration.md), against the code
  before them (16e5ca5, the paced code of the table above), alternating run by run on a quiet machine
  (2026-12-07 11:46–12:00 UTC, load average 0.3–2.1), p99 of each client's slowest echo during the reload
  (without a reload in brackets):

  | | before (3 runs) | now (3 runs) |
  |---|---:|---:|
  | 1,000 raw TCP | 53.7 (7.6) / 52.4 (2.3) / 19.1 (3.9) ms | 17.9 (2.5) / 19.2 (2.2) / 16.7 (2.9) ms |
  | 1,000 WebSockets | 47.7 (5.9) / 52.6 (4.4) / 72.8 (11.8) ms | 37.4 (7.7) / 32.6 (4.1) / 20.0 (5.7) ms |
  | 10,000 raw TCP (2 runs) | 383.7 (63.6) / 318.7 (36.2) ms | 419.2 (37.1) / 339.9 (31.5) ms |
  | 10,000 WebSockets (2 runs) | 349.9 (81.1) / 504.3 (174.8) ms | 295.5 (279.9) / 700.5 (237.8) ms |

  At 1,000 the stall fell to about a third for raw TCP and by a third to a half for WebSockets; the move took
  as long as before (raw TCP 106–192 ms against 120–141, WebSockets 237–303 against 211–232). At 10,000 the
  two are the same within their spread, and this machine cannot tell more: it ran about twice as slow as in the
  morning (\`floor.ts\`: 27–34 µs a connection against 17), and without a reload the clients' slowest echo was
  already p99 31–280 ms — the benchmark's 10,000 clients and both generations share 2 cores, and CPU profiles
  of both generations show them busy writing echoes, descheduled in the middle of their tasks. Still FAIL:
  ≤ 2× at 1,000 (now 3.5–9× a no-reload p99 of 2–8 ms), ≤ 50 ms at 10,000, move ≤ 1.5× the floor.
- At a load average of 9–13 (earlier runs, alternating this code and the one before it) nothing holds: both
  generations and the clients get a fraction of a core, gaps of 100 ms and more appear where neither
  generation answers anyone, and a paced move — a few turns of each event loop per batch — takes longer than
  an unpaced one (raw TCP 1,000: 365–990 ms against 101–233 ms; p99 149–401 ms against 72–222 ms; WebSockets
  p99 192–516 ms against 115–783 ms).
- Every round trip of both windows is written to \`$BENCH_SERIES_DIR/baton-migrate-stall-<kind>-<N>-<P>ms.csv\`
  (default the temp directory): send time and answer time in ms from the reload command, the round trip,
  the client, the generation that answered and how late the client sent it.

![Echo round trips over time, without a reload and then during one, per size and kind](migrate-stall.svg)
${STALL_END}`;
}

function stallChart(rows: Row[]): string {
  const panels = rows.flatMap((r) => r.stalls.map((st) => st.panel));
  return renderChart(panels, 'Echo round trips per connection around a reload', STALL_LABELS);
}

function writeDoc(text: string): void {
  writeDocSection(DOC, MARK_START, MARK_END, text);
  console.log(`\nwrote ${path.relative(ROOT, DOC)}`);
}

// --- main -------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const watchdog = setTimeout(() => {
    console.error(`bench:migrate: still running after ${GLOBAL_LIMIT_MS / 60_000} min, giving up`);
    killTracked();
    process.exit(1);
  }, GLOBAL_LIMIT_MS);
  watchdog.unref();
  const limit = nofileLimit();
  const max = limit - FD_MARGIN;
  const notes: string[] = [];
  const sizes: number[] = [];
  for (const n of SIZES) {
    if (n <= max) sizes.push(n);
    else {
      const note =
        `${n.toLocaleString('en-US')} connections requested, but \`ulimit -n\` is ${limit} (each process ` +
        `holds one fd per connection, plus ${FD_MARGIN} spare): measured ${max.toLocaleString('en-US')} instead.`;
      console.log(note);
      notes.push(note);
      if (max > 0 && !sizes.includes(max)) sizes.push(max);
    }
  }
  console.log(
    `bench:migrate: sizes ${sizes.join(', ')}, ${KINDS.join(' and ')}, ${APPROACHES.join(' and ')}, ${RELOADS} ` +
      `reloads each; ulimit -n ${limit}`,
  );
  fs.mkdirSync(SERIES_DIR, { recursive: true });
  if (CPU_PROF) {
    fs.mkdirSync(CPU_PROF, { recursive: true });
    console.log(`bench:migrate: profiling every generation into ${CPU_PROF}`);
  }
  const rows: Row[] = [];
  for (const n of sizes) {
    for (const kind of KINDS) for (const approach of APPROACHES) rows.push(await measure(kind, approach, n));
  }
  console.log('');
  if (!STALL_ONLY) for (const l of tableLines(rows)) console.log(l);
  const stalls = rows.filter((r) => r.stalls.length);
  let goals: string[] = [];
  if (stalls.length) {
    console.log('');
    for (const l of stallTableLines(stalls)) console.log(l);
    // The floor runs after everything else, alone: it measures this machine's cost of the objects themselves.
    const floor = await measureFloor(Math.max(...stalls.map((r) => r.n))).catch((err: Error) => {
      console.log(`floor.js failed (no move goal): ${err.message}`);
      return null;
    });
    goals = goalLines(
      stalls.flatMap((r) =>
        r.stalls.map((st) => ({
          kind: r.kind,
          n: r.n,
          period: st.period,
          baseP99: st.base.p99,
          reloadP99: st.reload.p99,
          moveMs: [st.move.ms],
          // The idle moves once per size and kind, with the first period's row.
          idleMoveMs: st === r.stalls[0] ? r.samples.map((x) => x.ms) : [],
        })),
      ),
      floor,
    );
    console.log(`\nGoals (1-minute load average ${os.loadavg()[0]!.toFixed(2)} now, ${LOAD_AT_START} at the start):`);
    for (const l of goals) console.log(l);
  }
  if (WRITE_DOCS && !STALL_ONLY) writeDoc(section(rows, notes));
  if (stalls.length) {
    const svg = stallChart(stalls);
    if (WRITE_DOCS) {
      writeDocSection(DOC, STALL_START, STALL_END, stallSection(stalls, goals));
      fs.writeFileSync(SVG, svg);
      console.log(`wrote the stall section of ${path.relative(ROOT, DOC)} and ${path.relative(ROOT, SVG)}`);
    } else {
      const out = path.join(SERIES_DIR, 'baton-migrate-stall.svg');
      fs.writeFileSync(out, svg);
      console.log(`\nchart: ${out} (docs not written: quick mode or --no-docs)`);
    }
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`bench:migrate failed: ${err.stack ?? err.message}`);
    killTracked();
    process.exit(1);
  },
);
