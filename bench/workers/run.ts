/**
 * `npm run bench:workers`: N = 2 workers per generation, three ways, side by side in one run — the same
 * application (bench/workers/serve.ts: an HTTP handler that names its worker's pid, a `ws` echo server) under
 * the same keep-alive load and the same WebSocket set:
 *
 *   baton --workers 2    `baton run --workers 2 -- node app.js`, reloaded with the reload command (what
 *                        `baton reload` sends): two new workers start, then each old worker moves its
 *                        connections — keep-alive and WebSocket — to its successor
 *   node:cluster         a primary with 2 workers (bench/upgrade/cluster.ts), rolling restart on SIGHUP: one
 *                        worker at a time, fork its replacement, SIGTERM the old one (the app closes its
 *                        server and its WebSockets), SIGKILL after 1.6 s
 *   PM2 cluster          `pm2 start -i 2` + `pm2 reload` (PM2's API, bench/workers/pm2-ctl.ts): PM2 is
 *                        installed at bench time into bench/workers/.pm2 (git-ignored), never a dependency;
 *                        run with its own PM2_HOME in a temp dir; its daemon is killed afterwards. If it cannot
 *                        be installed the PM2 column is skipped with the reason, the others run
 *
 * Phases: (1) throughput: interleaved rounds of keep-alive load on each (nothing restarts): req/s, the ratio to
 * node:cluster measured in the same round, and max/min requests per worker (the `x-worker` header); (2) the same
 * with a CPU-bound handler (`/cpu`), baton with 1 and with 2 workers and node:cluster: what a second worker buys;
 * (3) reloads: per server, a fixed WebSocket set plus the keep-alive load (bench/workers/load.ts, its own
 * process), RELOADS reloads, then failed requests, resets, WebSockets kept, messages lost or duplicated, time per
 * upgrade.
 *
 * Flags and environment: USAGE below (`npm run bench:workers -- --help`). Every process is started here, tracked by pid and killed at the end or on any failure.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sendCommand } from '../../src/handoff/control.js';
import { benchFlags } from '../lib/args.js';
import { envInt, freePort, machine, stdoutLines, trackedProcesses, untilExit, writeDocSection } from '../lib/common.js';
import type { RoundResult } from '../steady/load.js';
import * as rounds from '../lib/rounds.js';
import { mdTable, type Spread, spread, textTable } from '../lib/rounds.js';
import { ForeignCpu } from '../upgrade/foreign-cpu.js';
import type { PhaseResult } from './load.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** dist/bench/workers -> the package root. */
const ROOT = path.resolve(HERE, '../../..');
const BATON = path.join(ROOT, 'bin/baton.js');
const APP = path.join(HERE, 'app.js');
const PLAIN_APP = path.join(HERE, 'plain-app.js');
const CLUSTER = path.join(HERE, '../upgrade/cluster.js');
const PM2_CTL = path.join(HERE, 'pm2-ctl.js');
const PHASE_LOAD = path.join(HERE, 'load.js');
/** Where the bench installs PM2 (git-ignored): in the source tree, so that it survives rebuilds. */
const PM2_PREFIX = path.join(ROOT, 'bench/workers/.pm2');
const PM2_DIR = path.join(PM2_PREFIX, 'node_modules/pm2');
const PM2_SPEC = 'pm2@7';
const DOC = path.join(ROOT, 'docs/performance.md');
const MARK_START = '<!-- bench:workers:start -->';
const MARK_END = '<!-- bench:workers:end -->';

const USAGE = `usage: npm run bench:workers -- [--no-docs] [--quick] [--json] [--no-pm2]
  (no flags)   measure, print, write its section of docs/performance.md
  --no-docs    measure and print only
  --quick      a smoke run of a few seconds of load (implies --no-docs)
  --json       also print the result as one JSON line (last line)
  --no-pm2     skip the PM2 column
environment: BENCH_ROUNDS (3), BENCH_ROUND_MS (3000), BENCH_RELOADS (3), BENCH_CONNECTIONS (50),
  BENCH_WEBSOCKETS (50), BENCH_PM2_INSTALL=0 (use PM2 only if bench/workers/.pm2 has it already: no network)
`;
const { values: flags } = benchFlags('bench:workers', USAGE, {
  'no-docs': { type: 'boolean' },
  quick: { type: 'boolean' },
  json: { type: 'boolean' },
  'no-pm2': { type: 'boolean' },
});
const QUICK = flags.quick === true || process.env.BENCH_QUICK === '1';
const WORKERS = 2;
const ROUNDS = envInt('BENCH_ROUNDS', QUICK ? 1 : 3, 1, 20);
const ROUND_MS = envInt('BENCH_ROUND_MS', QUICK ? 400 : 3000, 200, 60_000);
const WARMUP_MS = QUICK ? 200 : 500;
const RELOADS = envInt('BENCH_RELOADS', QUICK ? 1 : 3, 1, 20);
/** At least 16 in quick mode too: the kernel hashes each connection to a worker, and 8 all land on one 1 in 128. */
const CONNECTIONS = envInt('BENCH_CONNECTIONS', QUICK ? 16 : 50, 1, 500);
/** The CPU-bound rounds: fewer connections, each request costs ~1 ms of CPU anyway. */
const CPU_CONNECTIONS = QUICK ? 4 : 16;
const WEBSOCKETS = envInt('BENCH_WEBSOCKETS', QUICK ? 10 : 50, 1, 1000);
/** Each WebSocket sends a numbered message this often. */
const WS_PERIOD_MS = 100;
/** Load before the first reload, between reloads, and after the last. */
const STEADY_MS = QUICK ? 300 : 1500;
const GAP_MS = QUICK ? 300 : 1000;
const TAIL_MS = QUICK ? 300 : 1500;
const START_TIMEOUT_MS = 30_000;
const RELOAD_TIMEOUT_MS = 60_000;
const WRITE_DOCS = !flags['no-docs'] && !QUICK;
/** The whole benchmark is killed after this. */
const GLOBAL_LIMIT_MS = 10 * 60_000;

const { tracked, killAll } = trackedProcesses();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// --- servers ----------------------------------------------------------------------------------------

interface Reloaded {
  ms: number;
}

interface Server {
  key: 'baton' | 'baton1' | 'cluster' | 'pm2';
  title: string;
  port: number;
  /** Why it is not measured. */
  skipped?: string;
  /** Replace every worker; resolves with the time it took, rejects if the reload failed. */
  reload(): Promise<Reloaded>;
  stop(): Promise<void>;
}

interface Proc {
  child: ChildProcess;
  nextLine: (re: RegExp, ms: number, what: string) => Promise<RegExpExecArray>;
  exited: Promise<void>;
  running: () => boolean;
}

/** Each complete line of `stream`, as it comes. */
function eachLine(stream: NodeJS.ReadableStream, f: (line: string) => void): void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      f(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

/**
 * `argv` (node) in its own process group, tracked; stdout by line (`opts.onLine` sees every one), stderr appended
 * to `log` (`opts.onErrLine` sees each line), stdin a pipe with `opts.stdin`.
 */
function startNode(
  argv: string[],
  env: NodeJS.ProcessEnv,
  log: string,
  opts: { stdin?: boolean; onLine?: (line: string) => void; onErrLine?: (line: string) => void } = {},
): Proc {
  const child = spawn(process.execPath, argv, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    detached: true,
  });
  tracked.add(child.pid!);
  const out = fs.createWriteStream(log, { flags: 'a' });
  child.stderr!.pipe(out);
  if (opts.onErrLine) eachLine(child.stderr!, opts.onErrLine);
  const { exited, running } = untilExit(child, tracked);
  return { child, nextLine: stdoutLines(child, log, opts.onLine), exited, running };
}

async function stopProc(p: Proc, ms: number): Promise<void> {
  if (!p.running()) return;
  if (await Promise.race([p.exited.then(() => true), sleep(ms).then(() => false)])) return;
  try {
    process.kill(-p.child.pid!, 'SIGKILL');
  } catch {
    // gone
  }
  await p.exited;
}

/** SIGKILL process group `pid` (and `pid`) if its command line still contains `marker` (pid reuse). */
function killIfStill(pid: number, marker: string): void {
  try {
    if (!fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker)) return;
  } catch {
    return; // gone
  }
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

async function startBaton(dir: string, workers: number): Promise<Server> {
  const key = workers === 1 ? 'baton1' : 'baton';
  const port = await freePort();
  const sock = path.join(dir, `${key}.sock`);
  const log = path.join(dir, `${key}.log`);
  // Every worker of every generation leads its own process group: each is tracked (killed at exit whatever
  // happens) from the supervisor's spawn line on, and killed by stop().
  const generations = new Set<number>();
  const ready = new Set<string>();
  let allReady = () => {};
  const started = new Promise<void>((resolve) => (allReady = resolve));
  const sup = startNode(
    [BATON, 'run', '--workers', String(workers), '--socket', sock, '--', process.execPath, APP],
    { PORT: String(port) },
    log,
    {
      onErrLine(line) {
        // pid_max is 32768 on the machine this was written on: a pid is forgotten as soon as its exit is logged.
        const m = /^baton (spawn|exit) supervisor=\d+ generation=\d+ child=(\d+)/.exec(line);
        if (!m) return;
        const pid = Number(m[2]);
        const set = m[1] === 'spawn' ? 'add' : 'delete';
        generations[set](pid);
        tracked[set](pid);
      },
      onLine(line) {
        const m = /^ready 1 \d+ (\d+)/.exec(line);
        if (m) ready.add(m[1]!);
        if (ready.size === workers) allReady();
      },
    },
  );
  const timeout = sleep(START_TIMEOUT_MS).then(() => {
    throw new Error(`baton run --workers ${workers}: ${ready.size} of ${workers} ready after ${START_TIMEOUT_MS} ms`);
  });
  await Promise.race([
    started,
    timeout,
    sup.exited.then(() => Promise.reject(new Error(`baton run exited (see ${log})`))),
  ]);
  return {
    key,
    title: `baton --workers ${workers}`,
    port,
    async reload() {
      const t0 = performance.now();
      const r = await sendCommand(sock, 'reload', RELOAD_TIMEOUT_MS);
      if (!r.ok) throw new Error(`baton reload failed: ${r.code} ${r.reason ?? ''}`);
      return { ms: performance.now() - t0 };
    },
    async stop() {
      try {
        await sendCommand(sock, 'stop', 5000);
      } catch {
        // killed below
      }
      await stopProc(sup, 15_000);
      for (const pid of generations) {
        killIfStill(pid, 'bench/workers/app.js'); // any left behind
        tracked.delete(pid);
      }
    },
  };
}

async function startCluster(dir: string): Promise<Server> {
  const port = await freePort();
  const env = { PORT: String(port), WORKERS: String(WORKERS), WORKER_MODULE: PLAIN_APP, STOP_SIGNAL: 'SIGTERM' };
  const primary = startNode([CLUSTER], env, path.join(dir, 'cluster.log'));
  await primary.nextLine(/^ready \d+/, START_TIMEOUT_MS, 'cluster primary');
  return {
    key: 'cluster',
    title: `node:cluster (${WORKERS} workers)`,
    port,
    async reload() {
      const done = primary.nextLine(/^restarted ([\d.]+)/, RELOAD_TIMEOUT_MS, 'rolling restart');
      primary.child.kill('SIGHUP');
      return { ms: Number((await done)[1]) };
    },
    async stop() {
      primary.child.kill('SIGTERM');
      await stopProc(primary, 10_000);
      try {
        process.kill(-primary.child.pid!, 'SIGKILL'); // workers left behind, if any
      } catch {
        // none
      }
    },
  };
}

/** PM2 in bench/workers/.pm2: there already, or installed now (null), or why not (a string). */
function installPm2(): string | null {
  const version = () => {
    try {
      return (JSON.parse(fs.readFileSync(path.join(PM2_DIR, 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      return null;
    }
  };
  if (version()?.startsWith('7.')) return null;
  if (process.env.BENCH_PM2_INSTALL === '0') return `PM2 is not installed in bench/workers/.pm2 (BENCH_PM2_INSTALL=0)`;
  console.log(`installing ${PM2_SPEC} into bench/workers/.pm2 (for this benchmark only) …`);
  const r = spawnSync(
    'npm',
    ['install', '--no-save', '--no-audit', '--no-fund', '--no-package-lock', '--prefix', PM2_PREFIX, PM2_SPEC],
    { cwd: ROOT, encoding: 'utf8', timeout: 180_000 },
  );
  if (r.error || r.status !== 0 || !version()) {
    const why = r.error?.message ?? `${r.stderr ?? ''}`.trim().split('\n').slice(-1)[0] ?? `exit ${r.status}`;
    return `npm install ${PM2_SPEC} failed: ${why}`;
  }
  return null;
}

async function startPm2(dir: string): Promise<Server> {
  const port = await freePort();
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-workers-pm2-'));
  const log = path.join(dir, 'pm2-ctl.log');
  const ctl = startNode([PM2_CTL, PM2_DIR, PLAIN_APP, String(WORKERS), String(port)], { PM2_HOME: home }, log, {
    stdin: true,
  });
  const answer = (what: string, ms: number) =>
    ctl.nextLine(/^pm2-ctl (started|reloaded|killed|error) ?(.*)$/, ms, what);
  const m = await answer('PM2 start', START_TIMEOUT_MS);
  if (m[1] === 'error') throw new Error(`PM2 start failed: ${m[2]} (see ${log})`);
  const daemon = Number(m[2]!.split(' ')[0]);
  // The God daemon leads its own process group, with the workers in it: killed at exit whatever happens.
  tracked.add(daemon);
  return {
    key: 'pm2',
    title: `PM2 cluster (-i ${WORKERS})`,
    port,
    async reload() {
      const done = answer('pm2 reload', RELOAD_TIMEOUT_MS);
      ctl.child.stdin!.write('reload\n');
      const r = await done;
      if (r[1] !== 'reloaded') throw new Error(`pm2 reload failed: ${r[2]}`);
      return { ms: Number(r[2]!.split(' ')[0]) };
    },
    async stop() {
      try {
        const done = answer('pm2 kill', 15_000);
        ctl.child.stdin!.write('kill\n');
        await done;
      } catch {
        // killed below
      }
      await stopProc(ctl, 5000);
      killIfStill(daemon, 'PM2');
      tracked.delete(daemon);
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Fresh connections to `port` until `n` distinct workers have answered (every worker listens). */
async function untilWorkersAnswer(port: number, n: number, what: string): Promise<void> {
  const seen = new Set<string>();
  for (let i = 0; i < 400 && seen.size < n; i++) {
    const pid = await new Promise<string>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 5000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(String(res.headers['x-worker'] ?? '')));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(''));
    });
    if (pid) seen.add(pid);
    else await sleep(50);
  }
  if (seen.size < n) throw new Error(`${what}: only ${seen.size} of ${n} workers answered`);
}

// --- load -------------------------------------------------------------------------------------------

/** One measuring round (bench/steady/load.ts, its own process) against `port`. */
function runRound(port: number, connections: number, urlPath: string, mode: Mode): Promise<RoundResult> {
  const args = [port, connections, WARMUP_MS, ROUND_MS, mode, urlPath, 'x-worker'];
  return rounds.runRound(args, WARMUP_MS + ROUND_MS + 30_000, tracked);
}

/** Max/min requests per worker; Infinity when fewer than `workers` answered. */
function balance(byWorker: Record<string, number>, workers: number): number {
  const counts = Object.entries(byWorker)
    .filter(([pid]) => pid !== '')
    .map(([, n]) => n);
  if (counts.length < workers) return Number.POSITIVE_INFINITY;
  return Math.max(...counts) / Math.min(...counts);
}

interface ThroughputRow {
  key: string;
  title: string;
  workers: number;
  rounds: RoundResult[];
  reqPerSec: Spread;
  /** Per-round ratio to the reference measured in the same round. */
  ratio: Spread;
  /** Per-round max/min requests per worker. */
  balance: Spread;
  /** Per round, the client's connections per worker (the first answer on each names its worker), largest first. */
  splits: string[];
  sent: number;
  failed: number;
}

/** Keep-alive connections, or a new connection per request (`Connection: close`). */
type Mode = 'keepalive' | 'close';

/** Interleaved rounds (the order flips each round) on `servers`; ratios to `ref`'s round. */
async function throughput(
  servers: Server[],
  ref: string,
  load: { connections: number; path: string; mode: Mode },
  label: string,
): Promise<ThroughputRow[]> {
  const results = new Map<string, RoundResult[]>(servers.map((s) => [s.key, []]));
  for (let i = 0; i < ROUNDS; i++) {
    for (const s of i % 2 === 0 ? servers : [...servers].reverse()) {
      const r = await runRound(s.port, load.connections, load.path, load.mode);
      results.get(s.key)!.push(r);
      const b = balance(r.byHeader, workersOf(s));
      const split = load.mode === 'keepalive' ? `, connections ${splitOf(r)}` : '';
      console.log(
        `  ${label} round ${i + 1}/${ROUNDS} ${s.title}: ${Math.round(r.reqPerSec)} req/s, max/min ${fx(b)}${split}`,
      );
    }
  }
  const refRounds = results.get(ref)!;
  return servers.map((s) => {
    const rounds = results.get(s.key)!;
    return {
      key: s.key,
      title: s.title,
      workers: workersOf(s),
      rounds,
      reqPerSec: spread(rounds.map((r) => r.reqPerSec)),
      ratio: spread(rounds.map((r, i) => r.reqPerSec / refRounds[i]!.reqPerSec)),
      balance: spread(rounds.map((r) => balance(r.byHeader, workersOf(s)))),
      splits: rounds.map(splitOf),
      sent: rounds.reduce((a, r) => a + r.sent, 0),
      failed: rounds.reduce((a, r) => a + r.errors + r.non2xx, 0),
    };
  });
}

const workersOf = (s: Server) => (s.key === 'baton1' ? 1 : WORKERS);
const splitOf = (r: RoundResult) =>
  Object.values(r.socketsByHeader)
    .sort((a, b) => b - a)
    .join('/');

/** CPU seconds other processes (not this benchmark's) used during a phase, over its wall time. */
interface Foreign {
  phase: string;
  seconds: number;
  wallS: number;
  top: string[];
}

async function watched<T>(phase: string, foreign: Foreign[], f: () => Promise<T>): Promise<T> {
  const cpu = new ForeignCpu();
  cpu.start();
  const t0 = Date.now();
  try {
    return await f();
  } finally {
    foreign.push({ phase, ...cpu.stop(), wallS: (Date.now() - t0) / 1000 });
  }
}

const foreignLine = (f: Foreign) =>
  `${f.phase}: ${f.seconds.toFixed(1)} CPU-s in ${f.wallS.toFixed(0)} s${f.top.length ? ` (${f.top.join(', ')})` : ''}`;

interface ReloadRow {
  key: string;
  title: string;
  phase: PhaseResult;
  reloadMs: number[];
  reloadFailures: string[];
  /** Distinct worker pids that answered during the phase: WORKERS × (reloads + 1) when every reload replaced all. */
  pids: number;
  failed: number;
  resets: number;
}

/** One reload phase: the WebSocket set and keep-alive load on `s`, RELOADS reloads. */
async function reloadPhase(s: Server, dir: string): Promise<ReloadRow> {
  const argv = [PHASE_LOAD, String(s.port), String(CONNECTIONS), String(WEBSOCKETS), String(WS_PERIOD_MS)];
  const load = startNode(argv, {}, path.join(dir, `load-${s.key}.log`), { stdin: true });
  await load.nextLine(/^started$/, 30_000, `${s.title}: load client`);
  const result = load.nextLine(/^\{/, 60_000 + RELOADS * RELOAD_TIMEOUT_MS, `${s.title}: load client result`);
  await sleep(STEADY_MS);
  const reloadMs: number[] = [];
  const reloadFailures: string[] = [];
  process.stdout.write(`  ${s.title}: ${RELOADS} reloads `);
  for (let i = 0; i < RELOADS; i++) {
    if (i > 0) await sleep(GAP_MS);
    try {
      reloadMs.push((await s.reload()).ms);
      process.stdout.write('.');
    } catch (err) {
      reloadFailures.push((err as Error).message);
      process.stdout.write('x');
    }
  }
  await sleep(TAIL_MS);
  load.child.stdin!.write('stop\n');
  const phase = JSON.parse((await result).input) as PhaseResult;
  await stopProc(load, 10_000);
  const h = phase.http;
  const resets = Object.entries(h.errorCodes)
    .filter(([code]) => code === 'ECONNRESET' || code === 'EPIPE')
    .reduce((a, [, n]) => a + n, 0);
  const row: ReloadRow = {
    key: s.key,
    title: s.title,
    phase,
    reloadMs,
    reloadFailures,
    pids: Object.keys(h.byHeader).filter((k) => k !== '').length,
    failed: h.errors + h.non2xx,
    resets,
  };
  console.log(` ${summaryLine(row)}`);
  return row;
}

// --- figures ----------------------------------------------------------------------------------------

const fx = (v: number, d = 2) => (Number.isFinite(v) ? `${v.toFixed(d)}` : '∞');
const fmtSpread = (s: Spread, d: number, unit = '') => `${fx(s.median, d)}${unit} (${fx(s.min, d)}–${fx(s.max, d)})`;
const median = (v: number[]) => (v.length ? spread(v).median : Number.NaN);
const ms = (v: number) => (Number.isNaN(v) ? '-' : `${Math.round(v)} ms`);
const codes = (c: Record<string, number>) =>
  Object.entries(c)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ×${v}`)
    .join(', ');

function summaryLine(r: ReloadRow): string {
  const { http: h, ws } = r.phase;
  return (
    `${h.sent} requests, ${r.failed} failed (${codes(h.errorCodes) || 'none'}), WebSockets kept ${ws.kept}/${ws.clients}, ` +
    `upgrade ${ms(median(r.reloadMs))}${r.reloadFailures.length ? `, ${r.reloadFailures.length} reloads failed` : ''}`
  );
}

interface Column {
  key: string;
  title: string;
  skipped?: string;
  reload?: ReloadRow;
  /** Keep-alive rounds. */
  steady?: ThroughputRow;
  /** A new connection per request. */
  fresh?: ThroughputRow;
}

function mainTable(cols: Column[]): string[][] {
  const head = [
    '',
    'failed requests (of sent)',
    'resets',
    'WebSockets kept',
    'WS messages lost / duplicated',
    'time per upgrade (median)',
    'max/min requests per worker, keep-alive',
    'max/min, a connection per request',
    'req/s, keep-alive',
    'req/s vs node:cluster',
  ];
  return [
    head,
    ...cols.map((c) => {
      if (c.skipped) return [c.title, c.skipped, '', '', '', '', '', '', '', ''];
      const r = c.reload!;
      const t = c.steady!;
      const ws = r.phase.ws;
      return [
        c.title,
        `${r.failed} (of ${r.phase.http.sent})`,
        String(r.resets),
        `${ws.kept} of ${ws.clients}`,
        `${ws.lost + ws.unansweredAtClose} / ${ws.duplicated}`,
        `${ms(median(r.reloadMs))}${r.reloadFailures.length ? ` (${r.reloadFailures.length} failed)` : ''}`,
        fmtSpread(t.balance, 2),
        fmtSpread(c.fresh!.balance, 2),
        fmtSpread(t.reqPerSec, 0),
        fmtSpread(t.ratio, 2, '×'),
      ];
    }),
  ];
}

function cpuTable(rows: ThroughputRow[]): string[][] {
  return [
    ['CPU-bound handler (/cpu)', 'req/s median (min–max)', 'vs baton --workers 1', 'max/min requests per worker'],
    ...rows.map((r) => [
      r.title,
      fmtSpread(r.reqPerSec, 0),
      fmtSpread(r.ratio, 2, '×'),
      r.workers > 1 ? fmtSpread(r.balance, 2) : '—',
    ]),
  ];
}

/** The issue's goals for baton, each met or missed (and by how much). */
function goalLines(cols: Column[]): string[] {
  const b = cols.find((c) => c.key === 'baton');
  if (!b?.reload || !b.steady || !b.fresh) return [];
  const r = b.reload;
  const ws = r.phase.ws;
  const verdict = (ok: boolean) => (ok ? 'met' : 'not met');
  const bal = (t: ThroughputRow) => `${fx(t.balance.median)} (${verdict(t.balance.median <= 1.2)})`;
  const ratio = (t: ThroughputRow) => `${fx(t.ratio.median)}× (${verdict(t.ratio.median >= 1)})`;
  return [
    `0 failed requests: ${r.failed} failed of ${r.phase.http.sent} (${verdict(r.failed === 0)})`,
    `all WebSockets kept: ${ws.kept} of ${ws.clients}, ${ws.lost} messages lost, ${ws.duplicated} duplicated, ` +
      `${ws.stateLost} answers without their connection's state (${verdict(ws.kept === ws.clients && ws.lost === 0)})`,
    `max/min requests per worker ≤ 1.2 (median of the rounds): keep-alive ${bal(b.steady)}, a new connection per ` +
      `request ${bal(b.fresh)}`,
    `req/s ≥ 1.0× node:cluster (median of the per-round ratios): keep-alive ${ratio(b.steady)}, a new connection per ` +
      `request ${ratio(b.fresh)}`,
  ];
}

/** Per column, how the keep-alive rounds' connections fell on the workers, and the requests that followed. */
function splitLines(cols: Column[]): string[] {
  return cols
    .filter((c) => c.steady)
    .map(
      (c) =>
        `${c.title}: keep-alive connections per worker, round by round: ${c.steady!.splits.join(', ')}; requests ` +
        `max/min ${c.steady!.rounds.map((r) => fx(balance(r.byHeader, WORKERS))).join(', ')}`,
    );
}

function detailLines(cols: Column[]): string[] {
  return cols
    .filter((c) => c.reload)
    .map((c) => {
      const r = c.reload!;
      const { http: h, ws } = r.phase;
      const parts = [
        `${c.title}: ${h.sent} requests = ${h.ok} ok + ${h.non2xx} non-2xx + ${h.errors} errors` +
          `${h.errors ? ` (${codes(h.errorCodes)})` : ''} over ${(h.durationMs / 1000).toFixed(1)} s`,
        `${r.pids} worker pids answered (${WORKERS} × ${RELOADS + 1} generations = ${WORKERS * (RELOADS + 1)} if every reload replaced every worker)`,
        `reloads ${r.reloadMs.map((v) => ms(v)).join(', ')}`,
        `WebSockets: ${ws.sent} messages sent, ${ws.answered} answered, ${ws.lost} lost on open ones, ` +
          `${ws.unansweredAtClose} unanswered when theirs closed, ${ws.duplicated} duplicated, ${ws.outOfOrder} out of ` +
          `order, ${ws.stateLost} answers without the connection's state` +
          `${ws.closed ? `; ${ws.closed} closed (${codes(ws.closeCodes)})` : ''}`,
      ];
      if (r.reloadFailures.length) parts.push(`${r.reloadFailures.length} reloads failed: ${r.reloadFailures[0]}`);
      return parts.join('; ');
    });
}

function docSection(cols: Column[], cpu: ThroughputRow[], uptime: string, foreign: Foreign[]): string {
  const skipped = cols.filter((c) => c.skipped);
  return `${MARK_START}
## N workers per generation: baton, node:cluster and PM2 (npm run bench:workers)

Written by \`npm run bench:workers\` (bench/workers/run.ts). Three ways to run ${WORKERS} workers of the same
application (bench/workers/serve.ts: an HTTP handler that answers with its worker's pid in an \`x-worker\` header,
and a \`ws\` echo server on the same port), side by side in one run:

- **baton --workers ${WORKERS}**: \`baton run --workers ${WORKERS} -- node bench/workers/app.js\` (each worker has its own
  \`SO_REUSEPORT\` socket; the kernel spreads connections by a hash); a reload is the reload command (what
  \`baton reload\` sends): ${WORKERS} new workers start, then each old worker moves its keep-alive connections and its
  WebSockets (with their state: \`upgrader.webSocketServer\` with save/restore) to its successor.
- **node:cluster**: a primary with ${WORKERS} workers (bench/upgrade/cluster.ts), round-robin through the primary
  (Node's default on Linux); a reload is a rolling restart: one worker at a time, fork the replacement, wait for
  \`listening\`, SIGTERM the old one and wait for it to exit (SIGKILL after 1.6 s, PM2's default kill_timeout).
- **PM2 cluster mode**: \`pm2 start bench/workers/plain-app.js -i ${WORKERS}\` and \`pm2 reload\`, through PM2's own
  API (bench/workers/pm2-ctl.ts; PM2 ${pm2Version() ?? '7'}, installed by the benchmark only, with its own PM2_HOME in a
  temp dir; its daemon is killed afterwards). PM2's cluster mode is \`node:cluster\` with the daemon as primary;
  its reload replaces one worker at a time, stopping the old one with SIGINT, 1.6 s before SIGKILL.

The non-baton app (bench/workers/plain-app.ts) shuts down as PM2's documentation asks: on SIGINT/SIGTERM it
closes its server (stop accepting, finish in-flight requests; Node ≥ 19 also closes idle keep-alive
connections) and closes each WebSocket with 1012 (Service Restart) — the best case for those two columns.

Method. **Throughput and balance**: ${ROUNDS} interleaved rounds (the order flips each round) of ${ROUND_MS / 1000} s
after a ${WARMUP_MS} ms warm-up, ${CONNECTIONS} keep-alive connections each sending one request after another
(scripts/lib/http-load.ts in a process of its own via bench/steady/load.ts: sent = ok + non-2xx + errors);
nothing restarts; then as many rounds with a new connection per request (\`Connection: close\`, ${CONNECTIONS} at a
time). "vs node:cluster" is the median of the per-round ratios (pairs measured seconds apart);
**max/min requests per worker** is the busiest worker's requests over the idlest one's, per round, median
(min–max). **Reloads**: per server, a client process (bench/workers/load.ts) opens ${WEBSOCKETS} WebSockets — each
sends a numbered message every ${WS_PERIOD_MS} ms and checks every echo, and none reconnects — and runs the same
keep-alive load (${CONNECTIONS} connections); after ${STEADY_MS / 1000} s, ${RELOADS} reloads ${GAP_MS / 1000} s apart,
then ${TAIL_MS / 1000} s more. **Failed requests** are errors + non-2xx (the client does not retry), **resets** the
errors that were ECONNRESET or EPIPE; **time per upgrade**: the reload command's round trip for baton (until all
new workers serve), SIGHUP → "both replaced" for node:cluster, \`pm2.reload()\`'s callback for PM2.

Machine: ${machine()}; ${uptime}. **The load client shares the 2 CPUs with the servers**, and the machine was
shared with other work; CPU time other processes used during each phase:
${foreign.map((f) => `${foreignLine(f)}`).join('; ')}. So req/s is that of a busy small machine: compare the
columns, measured in the same rounds.

${mdTable(mainTable(cols))}
${skipped.map((c) => `\n${c.title}: ${c.skipped}.`).join('')}
${detailLines(cols)
  .map((l) => `- ${l}`)
  .join('\n')}

How the keep-alive connections fell on the workers (the first answer on each connection names its worker):

${splitLines(cols)
  .map((l) => `- ${l}`)
  .join('\n')}

With keep-alive, a worker's requests follow the connections it holds. node:cluster deals connections out
round-robin; baton's workers each have an \`SO_REUSEPORT\` socket and the kernel picks one by a hash of each new
connection's addresses and ports, so ${CONNECTIONS} connections split like ${CONNECTIONS} coin tosses: for 50 on 2 workers the split
is within 27/23 (max/min ≤ 1.2) only 52% of the time, and its expected max/min is 1.28 (with 200 connections: 82%).
With a new connection per request, the hash spreads requests evenly. A connection stays on its worker's slot
across reloads (old worker i moves it to new worker i), so a reload does not change the split either.

Goals for baton --workers ${WORKERS} (issue 14):

${goalLines(cols)
  .map((l) => `- ${l}`)
  .join('\n')}

**1 → ${WORKERS} workers with a CPU-bound handler** (\`GET /cpu\`: about 1 ms of SHA-256 per request), ${ROUNDS} interleaved
rounds of ${ROUND_MS / 1000} s, ${CPU_CONNECTIONS} keep-alive connections. **This machine's load client shares the
${os.availableParallelism()} CPUs**, and so does the other work on it (CPU time above): the ratio says how much more CPU
${WORKERS} workers got than 1 here, not how the app scales. When other processes compete, the scheduler gives each
runnable process a share, so ${WORKERS} workers get up to ${WORKERS} shares; when the client and one worker already
take what the others leave, a second worker adds nothing. On a machine where the client runs elsewhere and
nothing else competes, a CPU-bound handler would approach the number of cores.

${mdTable(cpuTable(cpu))}
${MARK_END}`;
}

function pm2Version(): string | null {
  try {
    return (JSON.parse(fs.readFileSync(path.join(PM2_DIR, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return null;
  }
}

// --- main -------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  setTimeout(() => {
    console.error(`bench:workers: still running after ${GLOBAL_LIMIT_MS / 1000} s, giving up`);
    killAll();
    process.exit(1);
  }, GLOBAL_LIMIT_MS).unref();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-workers-'));
  const uptime0 = spawnSync('uptime', { encoding: 'utf8' }).stdout?.trim() ?? `load average ${os.loadavg()[0]}`;
  console.log(`bench:workers — ${machine()}\n  at the start: ${uptime0}\n`);

  const pm2Skip = flags['no-pm2'] ? 'skipped: --no-pm2' : installPm2();
  const servers: Server[] = [];
  const stopAll = async () => {
    for (const s of servers.splice(0)) await s.stop().catch(() => {});
  };
  try {
    const baton = await startBaton(dir, WORKERS);
    servers.push(baton);
    const cluster = await startCluster(dir);
    servers.push(cluster);
    let pm2: Server | null = null;
    let pm2Why = pm2Skip;
    if (!pm2Why) {
      try {
        pm2 = await startPm2(dir);
        servers.push(pm2);
      } catch (err) {
        pm2Why = `skipped: ${(err as Error).message}`;
      }
    }
    const baton1 = await startBaton(dir, 1);
    servers.push(baton1);
    const compared = [baton, cluster, ...(pm2 ? [pm2] : [])];
    for (const s of [...compared, baton1]) await untilWorkersAnswer(s.port, workersOf(s), s.title);

    const foreign: Foreign[] = [];
    const keepAlive = { connections: CONNECTIONS, path: '/', mode: 'keepalive' } as const;
    console.log(`throughput, ${CONNECTIONS} keep-alive connections, GET /:`);
    const steady = await watched('keep-alive rounds', foreign, () =>
      throughput(compared, 'cluster', keepAlive, 'steady'),
    );
    console.log(`a new connection per request, ${CONNECTIONS} connections at a time, GET /:`);
    const fresh = await watched('connection-per-request rounds', foreign, () =>
      throughput(compared, 'cluster', { ...keepAlive, mode: 'close' }, 'fresh'),
    );
    console.log(`CPU-bound, ${CPU_CONNECTIONS} keep-alive connections, GET /cpu:`);
    const cpuLoad = { connections: CPU_CONNECTIONS, path: '/cpu', mode: 'keepalive' } as const;
    const cpu = await watched('CPU-bound rounds', foreign, () =>
      throughput([baton1, baton, cluster], 'baton1', cpuLoad, 'cpu'),
    );
    console.log(`reloads, ${CONNECTIONS} keep-alive connections and ${WEBSOCKETS} WebSockets:`);
    const reloads: ReloadRow[] = [];
    await watched('reload phases', foreign, async () => {
      for (const s of compared) reloads.push(await reloadPhase(s, dir));
    });

    const cols: Column[] = [baton, cluster].map((s) => ({
      key: s.key,
      title: s.title,
      reload: reloads.find((r) => r.key === s.key),
      steady: steady.find((r) => r.key === s.key),
      fresh: fresh.find((r) => r.key === s.key),
    }));
    cols.push(
      pm2
        ? {
            key: 'pm2',
            title: pm2.title,
            reload: reloads.find((r) => r.key === 'pm2'),
            steady: steady.find((r) => r.key === 'pm2'),
            fresh: fresh.find((r) => r.key === 'pm2'),
          }
        : { key: 'pm2', title: `PM2 cluster (-i ${WORKERS})`, skipped: pm2Why! },
    );
    await stopAll();
    const uptime1 = spawnSync('uptime', { encoding: 'utf8' }).stdout?.trim() ?? '';
    const uptime = `\`uptime\` at the start: ${uptime0}; at the end: ${uptime1}`;
    console.log(`\n${textTable(mainTable(cols))}\n`);
    for (const c of cols.filter((x) => x.skipped)) console.log(`${c.title}: ${c.skipped}`);
    for (const l of [...splitLines(cols), ...detailLines(cols)]) console.log(`  ${l}`);
    console.log(`\ngoals for baton --workers ${WORKERS}:`);
    for (const l of goalLines(cols)) console.log(`  ${l}`);
    console.log(`\n${textTable(cpuTable(cpu))}\n\n${uptime}`);
    console.log(`CPU time other processes on the machine used meanwhile:`);
    for (const f of foreign) console.log(`  ${foreignLine(f)}`);
    if (WRITE_DOCS) {
      writeDocSection(DOC, MARK_START, MARK_END, docSection(cols, cpu, uptime, foreign));
      console.log(`wrote ${path.relative(ROOT, DOC)}`);
    }
    if (flags.json) {
      const json = { quick: QUICK, rounds: ROUNDS, reloads: RELOADS, websockets: WEBSOCKETS, cols, cpu, foreign };
      console.log(JSON.stringify(json));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    console.error(`the servers' and clients' logs: ${dir}`);
    throw err;
  } finally {
    await stopAll();
  }
}

main()
  .catch((err: Error) => {
    console.error(`bench:workers failed: ${err.stack ?? err.message}`);
    process.exitCode = 1;
  })
  .finally(() => {
    killAll();
    // Nothing of ours is left to wait for; a pipe some stray grandchild still holds must not keep us alive.
    process.exit();
  });
