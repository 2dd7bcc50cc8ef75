/**
 * `npm run bench:upgrade`: the same HTTP load, with the same number of restarts at the same interval, for
 * four ways of restarting a Node.js server, and a reference:
 *
 *   baton run + reload   `baton run -- node app.js`, restarted with a reload command (what `baton reload` sends)
 *   baton standalone     `BATON_SOCKET=… node app.js`, restarted by starting the next process (takeover)
 *   naive restart        SIGTERM → server.close() → exit, then start the next process (port closed in between)
 *   node cluster         a primary with 2 workers, rolling restart on SIGHUP (PM2-style)
 *   reference (spawn)    nothing restarts: each "restart" starts an unrelated copy of the app and kills it,
 *                        which shows what starting a Node process alone costs the server under load
 *
 * Flags and environment: USAGE below (`npm run bench:upgrade -- --help`).
 *
 * For each approach: start it on a free 127.0.0.1 port, start the load (scripts/lib/http-load.ts in its own
 * process: CONNECTIONS keep-alive connections, each sending one request after another, every request
 * recorded), warm up, measure a steady phase, restart RESTARTS times — every INTERVAL_MS, or MIN_GAP_MS
 * after the previous restart finished if it took longer — then a steady tail, stop the load and the server.
 * Every process is started here, tracked by pid and killed (process group) at the end or on any failure.
 */
import { spawn, fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sendCommand } from '../../src/handoff/control.js';
import type { LoadResult } from '../../scripts/lib/http-load.js';
import { renderChart, type Panel } from './chart.js';
import { ForeignCpu } from './foreign-cpu.js';
import type { AutocannonSummary, LoadMessage } from './load.js';
import { benchFlags } from '../lib/args.js';
import { envInt, freePort, stdoutLines, trackedProcesses, untilExit, writeDocSection } from '../lib/common.js';
import { buckets, median, overlaps, PAD_MS, quantile, split, type Window } from './stats.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** dist/bench/upgrade -> the package root. */
const ROOT = path.resolve(HERE, '../../..');
const BATON = path.join(ROOT, 'bin/baton.js');
const DOC = path.join(ROOT, 'docs/performance.md');
const SVG = path.join(ROOT, 'docs/upgrade-latency.svg');
const MARK_START = '<!-- bench:upgrade:start -->';
const MARK_END = '<!-- bench:upgrade:end -->';

const USAGE = `usage: npm run bench:upgrade -- [--no-docs] [--no-autocannon]
  (no flags)        measure, print the table, write docs/performance.md and docs/upgrade-latency.svg
  --no-docs         measure and print only
  --no-autocannon   skip the autocannon throughput runs (as BENCH_AUTOCANNON=0)
environment: BENCH_QUICK=1 (5 restarts, 20 connections, shorter steady phases; implies --no-docs),
  BENCH_RESTARTS (20), BENCH_CONNECTIONS (50), BENCH_INTERVAL_MS (500), BENCH_ONLY (a comma list of
  baton,standalone,naive,cluster,spawn), BENCH_AUTOCANNON=0 to skip the autocannon throughput runs,
  BENCH_PAUSE_MS (0) for a lighter load: each connection pauses that long between requests
`;
const { values: flags } = benchFlags('bench:upgrade', USAGE, {
  'no-docs': { type: 'boolean' },
  'no-autocannon': { type: 'boolean' },
});
const QUICK = process.env.BENCH_QUICK === '1';
const RESTARTS = envInt('BENCH_RESTARTS', QUICK ? 5 : 20, 1, 100);
const CONNECTIONS = envInt('BENCH_CONNECTIONS', QUICK ? 20 : 50, 1, 500);
const INTERVAL_MS = envInt('BENCH_INTERVAL_MS', 500, 100, 10_000);
/** Pause of each connection between an answer and its next request (0: a closed loop that saturates). */
const PAUSE_MS = envInt('BENCH_PAUSE_MS', 0, 0, 1000);
/** At least this much time between the end of one restart and the start of the next. */
const MIN_GAP_MS = 250;
const WARMUP_MS = QUICK ? 500 : 1500;
const STEADY_MS = QUICK ? 1000 : 2500;
const TAIL_MS = QUICK ? 1000 : 2000;
const RESTART_TIMEOUT_MS = 20_000;
const AUTOCANNON_STEADY_MS = QUICK ? 2000 : 5000;
const WRITE_DOCS = !flags['no-docs'] && !QUICK;
const RUN_AUTOCANNON = process.env.BENCH_AUTOCANNON !== '0' && !flags['no-autocannon'];
/** The whole benchmark is killed after this. */
const GLOBAL_LIMIT_MS = 10 * 60_000;
const BUCKET_MS = 100;

// --- processes --------------------------------------------------------------------------------------

interface Proc {
  pid: number;
  child: ChildProcess;
  /** The next stdout line (from now on) matching `re`. */
  nextLine(re: RegExp, ms: number, what: string): Promise<RegExpExecArray>;
  exited: Promise<void>;
  readonly running: boolean;
}

/** Process groups and pids to kill at the end: everything this benchmark started, and the generations. */
const { tracked, killAll: killTracked } = trackedProcesses();

/** A node process in its own process group; stdout parsed by line, stderr appended to `log`. */
function startNode(script: string[], env: NodeJS.ProcessEnv, log: string): Proc {
  const err = fs.openSync(log, 'a');
  const child = spawn(process.execPath, script, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', err],
    detached: true,
  });
  fs.closeSync(err);
  const pid = child.pid!;
  tracked.add(pid);
  const nextLine = stdoutLines(child, log);
  const { exited, running } = untilExit(child, tracked);
  return {
    pid,
    child,
    exited,
    get running() {
      return running();
    },
    nextLine,
  };
}

async function waitExit(p: Proc, ms: number): Promise<boolean> {
  if (!p.running) return true;
  return Promise.race([p.exited.then(() => true), sleep(ms).then(() => false)]);
}

/** Kill a process group that is not ours by birth (a generation), only if it is still the bench app. */
function killGeneration(pid: number): void {
  try {
    if (!fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('bench/upgrade/app.js')) return;
    process.kill(-pid, 'SIGKILL');
  } catch {
    // gone
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// --- approaches -------------------------------------------------------------------------------------

interface Approach {
  key: string;
  title: string;
  /** What "time per upgrade" measures for it. */
  timeMeans: string;
  start(port: number, dir: string): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const APP = path.join(HERE, 'app.js');

function batonRun(): Approach {
  let sup: Proc | null = null;
  let sock = '';
  const gens = new Set<number>();
  return {
    key: 'baton',
    title: 'baton run + reload',
    timeMeans: 'reload command: request → new generation serving',
    async start(port, dir) {
      sock = path.join(dir, 'baton.sock');
      sup = startNode(
        [BATON, 'run', '--socket', sock, '--', process.execPath, APP],
        { PORT: String(port) },
        path.join(dir, 'baton.log'),
      );
      const m = await sup.nextLine(/^ready 1 (\d+)/, 15_000, 'baton run');
      gens.add(Number(m[1]));
    },
    async restart() {
      const r = await sendCommand(sock, 'reload', RESTART_TIMEOUT_MS);
      const rec = r.data as { pid?: number } | undefined;
      if (rec?.pid) gens.add(rec.pid);
      if (!r.ok) throw new Error(`reload failed: ${r.code} ${r.reason ?? ''}`);
    },
    async stop() {
      if (!sup) return;
      try {
        await sendCommand(sock, 'stop', 5000);
      } catch {
        // killed below
      }
      if (!(await waitExit(sup, 10_000))) process.kill(-sup.pid, 'SIGKILL');
      for (const pid of gens) killGeneration(pid);
      sup = null;
    },
  };
}

function batonStandalone(): Approach {
  let sock = '';
  let env: NodeJS.ProcessEnv = {};
  let log = '';
  const procs: Proc[] = [];
  const launch = async (): Promise<void> => {
    const p = startNode([APP], env, log);
    procs.push(p);
    await p.nextLine(/^ready \d+/, RESTART_TIMEOUT_MS, 'standalone generation');
  };
  return {
    key: 'standalone',
    title: 'baton standalone takeover',
    timeMeans: 'start the next process → it serves',
    async start(port, dir) {
      sock = path.join(dir, 'app.sock');
      log = path.join(dir, 'standalone.log');
      env = { PORT: String(port), BATON_SOCKET: sock };
      await launch();
    },
    restart: launch,
    async stop() {
      try {
        await sendCommand(sock, 'stop', 5000);
      } catch {
        // killed below
      }
      for (const p of procs) if (!(await waitExit(p, 10_000))) process.kill(-p.pid, 'SIGKILL');
      procs.length = 0;
    },
  };
}

function naive(): Approach {
  let current: Proc | null = null;
  let env: NodeJS.ProcessEnv = {};
  let log = '';
  const launch = async () => {
    current = startNode([path.join(HERE, 'naive.js')], env, log);
    await current.nextLine(/^ready/, RESTART_TIMEOUT_MS, 'naive server');
  };
  const stopCurrent = async () => {
    if (!current) return;
    current.child.kill('SIGTERM');
    if (!(await waitExit(current, 10_000))) process.kill(-current.pid, 'SIGKILL');
    current = null;
  };
  return {
    key: 'naive',
    title: 'naive restart (stop, then start)',
    timeMeans: 'SIGTERM → the new process listens',
    async start(port, dir) {
      env = { PORT: String(port) };
      log = path.join(dir, 'naive.log');
      await launch();
    },
    async restart() {
      await stopCurrent();
      await launch();
    },
    stop: stopCurrent,
  };
}

function nodeCluster(): Approach {
  let primary: Proc | null = null;
  return {
    key: 'cluster',
    title: 'node cluster, rolling restart (2 workers)',
    timeMeans: 'SIGHUP → both workers replaced',
    async start(port, dir) {
      primary = startNode(
        [path.join(HERE, 'cluster.js')],
        { PORT: String(port), WORKERS: '2' },
        path.join(dir, 'cluster.log'),
      );
      await primary.nextLine(/^ready/, 15_000, 'cluster primary');
    },
    async restart() {
      const done = primary!.nextLine(/^restarted/, RESTART_TIMEOUT_MS, 'rolling restart');
      primary!.child.kill('SIGHUP');
      await done;
    },
    async stop() {
      if (!primary) return;
      primary.child.kill('SIGTERM');
      await waitExit(primary, 10_000);
      try {
        process.kill(-primary.pid, 'SIGKILL'); // workers left behind, if any
      } catch {
        // none
      }
      primary = null;
    },
  };
}

/**
 * A reference, not a restart: each "restart" starts the same app as a second, unrelated process (plain
 * mode, its own port), waits until it serves, and kills it. Nothing happens to the server under load; the
 * latency it shows during these windows is what starting a Node process costs on this machine.
 */
function spawnOnly(): Approach {
  let server: Proc | null = null;
  let log = '';
  return {
    key: 'spawn',
    title: 'reference: start a 2nd process only',
    timeMeans: 'start the process → it serves (then it is killed)',
    async start(port, dir) {
      log = path.join(dir, 'spawn.log');
      server = startNode([APP], { PORT: String(port) }, log);
      await server.nextLine(/^ready/, 15_000, 'reference server');
    },
    async restart() {
      const p = startNode([APP], { PORT: '0' }, log);
      try {
        await p.nextLine(/^ready/, RESTART_TIMEOUT_MS, 'reference process');
      } finally {
        process.kill(-p.pid, 'SIGKILL');
        await waitExit(p, 5000);
      }
    },
    async stop() {
      if (!server) return;
      process.kill(-server.pid, 'SIGKILL');
      await waitExit(server, 5000);
      server = null;
    },
  };
}

// --- load -------------------------------------------------------------------------------------------

interface LoadChild {
  startedAt: number;
  stop(): Promise<Extract<LoadMessage, { type: 'result' }>>;
}

async function startLoadChild(mode: 'count' | 'autocannon', port: number): Promise<LoadChild> {
  const child = fork(path.join(HERE, 'load.js'), [mode, String(port), String(CONNECTIONS), String(PAUSE_MS)], {
    cwd: ROOT,
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  tracked.add(child.pid!);
  child.once('exit', () => tracked.delete(child.pid!));
  const next = (ms: number) =>
    new Promise<LoadMessage>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`load client (${mode}): no answer within ${ms} ms`)), ms);
      child.once('message', (m: LoadMessage) => {
        clearTimeout(timer);
        if (m.type === 'error') reject(new Error(`load client (${mode}): ${m.message}`));
        else resolve(m);
      });
    });
  const started = await next(10_000);
  if (started.type !== 'started') throw new Error('load client: unexpected message');
  return {
    startedAt: started.startedAt,
    async stop() {
      const result = next(30_000);
      child.send('stop');
      const r = await result;
      if (r.type !== 'result') throw new Error('load client: unexpected message');
      return r;
    },
  };
}

async function waitServing(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.end();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on port ${port}`);
}

// --- one run ----------------------------------------------------------------------------------------

interface RunResult {
  approach: Approach;
  load: LoadResult;
  fromMs: number;
  toMs: number;
  windows: Window[];
  restartMs: number[];
  restartFailures: string[];
  loadavg: [number, number];
  /** CPU seconds other processes on the machine used during this run, over `wallMs`. */
  foreign: { seconds: number; top: string[] };
  wallMs: number;
}

async function measure(approach: Approach): Promise<RunResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-'));
  const port = await freePort();
  const loadBefore = os.loadavg()[0]!;
  process.stdout.write(`${approach.title}: `);
  const foreign = new ForeignCpu();
  foreign.start();
  const wall0 = Date.now();
  try {
    await approach.start(port, dir);
    await waitServing(port);
    const load = await startLoadChild('count', port);
    const t0 = load.startedAt;
    await sleep(WARMUP_MS);
    const fromMs = Date.now() - t0;
    await sleep(STEADY_MS);
    const windows: Window[] = [];
    const restartMs: number[] = [];
    const restartFailures: string[] = [];
    let next = Date.now();
    for (let i = 0; i < RESTARTS; i++) {
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      const s = Date.now();
      const p0 = performance.now();
      try {
        await approach.restart();
      } catch (err) {
        restartFailures.push((err as Error).message);
      }
      const ms = performance.now() - p0;
      const e = Date.now();
      windows.push({ start: s - t0, end: e - t0 });
      restartMs.push(ms);
      next = Math.max(s + INTERVAL_MS, e + MIN_GAP_MS);
      process.stdout.write('.');
    }
    await sleep(TAIL_MS);
    const toMs = Date.now() - t0;
    const { count } = await load.stop();
    process.stdout.write(` ${count!.sent} requests\n`);
    return {
      approach,
      load: count!,
      fromMs,
      toMs,
      windows,
      restartMs,
      restartFailures,
      loadavg: [loadBefore, os.loadavg()[0]!],
      foreign: foreign.stop(),
      wallMs: Date.now() - wall0,
    };
  } finally {
    await approach.stop().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface AutocannonRun {
  steady: AutocannonSummary;
  reloads: AutocannonSummary;
  restarts: number;
}

async function autocannonBaton(): Promise<AutocannonRun | null> {
  try {
    await import('autocannon' as string);
  } catch {
    console.log('autocannon is not installed (npm install --save-dev autocannon): skipping the throughput runs');
    return null;
  }
  const approach = batonRun();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-'));
  const port = await freePort();
  process.stdout.write('autocannon, baton run + reload: ');
  try {
    await approach.start(port, dir);
    await waitServing(port);
    let ac = await startLoadChild('autocannon', port);
    await sleep(AUTOCANNON_STEADY_MS);
    const steady = (await ac.stop()).autocannon!;
    process.stdout.write(`steady ${Math.round(steady.reqPerSec)} req/s; with reloads `);
    ac = await startLoadChild('autocannon', port);
    await sleep(1000);
    let next = Date.now();
    for (let i = 0; i < RESTARTS; i++) {
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      const s = Date.now();
      await approach.restart().catch(() => {});
      next = Math.max(s + INTERVAL_MS, Date.now() + MIN_GAP_MS);
      process.stdout.write('.');
    }
    await sleep(1000);
    const reloads = (await ac.stop()).autocannon!;
    process.stdout.write(` ${Math.round(reloads.reqPerSec)} req/s\n`);
    return { steady, reloads, restarts: RESTARTS };
  } finally {
    await approach.stop().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// --- report -----------------------------------------------------------------------------------------

interface Row {
  r: RunResult;
  sent: number;
  errors: number;
  non2xx: number;
  errorsInWindows: number;
  /** Restarts during which some request failed, and the median time from first to last failure in them. */
  restartsWithErrors: number;
  errorSpanMs: number;
  errorCodes: Record<string, number>;
  p50Steady: number;
  p99Steady: number;
  /** p99 of the requests that ran before the first restart (after the warm-up): the undisturbed server. */
  p99Baseline: number;
  p99During: number;
  maxDuring: number;
  ratio: number;
  medianRestart: number;
  maxRestart: number;
  reqPerSec: number;
  nSteady: number;
  nDuring: number;
}

function summarize(r: RunResult): Row {
  const { steady, during } = split(r.load.samples, r.windows, r.fromMs);
  const p99Steady = quantile(steady, 0.99);
  const p99During = quantile(during, 0.99);
  const firstRestart = r.windows[0]?.start ?? Infinity;
  const baseline = r.load.samples
    .filter(([t, ms, status]) => status !== 0 && t - ms >= r.fromMs && t < firstRestart)
    .map(([, ms]) => ms);
  let errorsInWindows = 0;
  for (const [t, ms, status] of r.load.samples) if (status === 0 && overlaps(t - ms, t, r.windows)) errorsInWindows++;
  const spans: number[] = [];
  for (const w of r.windows) {
    let first = Infinity;
    let last = -Infinity;
    for (const [t, ms, status] of r.load.samples) {
      if (status !== 0 || !overlaps(t - ms, t, [w])) continue;
      first = Math.min(first, t - ms);
      last = Math.max(last, t);
    }
    if (last >= first) spans.push(last - first);
  }
  return {
    r,
    sent: r.load.sent,
    errors: r.load.errors,
    non2xx: r.load.non2xx,
    errorsInWindows,
    restartsWithErrors: spans.length,
    errorSpanMs: median(spans),
    errorCodes: r.load.errorCodes,
    p50Steady: quantile(steady, 0.5),
    p99Steady,
    p99Baseline: quantile(baseline, 0.99),
    p99During,
    maxDuring: during.reduce((a, v) => Math.max(v, a), 0),
    ratio: p99During / p99Steady,
    medianRestart: median(r.restartMs),
    maxRestart: Math.max(...r.restartMs),
    reqPerSec: r.load.sent / (r.load.durationMs / 1000),
    nSteady: steady.length,
    nDuring: during.length,
  };
}

const ms = (v: number) => (Number.isNaN(v) ? '-' : v >= 100 ? `${Math.round(v)} ms` : `${v.toFixed(1)} ms`);
const codes = (c: Record<string, number>) =>
  Object.entries(c)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ×${v}`)
    .join(', ');

function tableRows(rows: Row[]): string[][] {
  return [
    [
      'approach',
      'requests',
      'errors',
      'non-2xx',
      'p99 steady',
      'p99 during restarts',
      'during / steady',
      'time per upgrade (median)',
      'p99 before 1st restart',
      'during / before',
    ],
    ...rows.map((x) => [
      x.r.approach.title,
      String(x.sent),
      String(x.errors),
      String(x.non2xx),
      ms(x.p99Steady),
      ms(x.p99During),
      `${x.ratio.toFixed(2)}×`,
      ms(x.medianRestart),
      ms(x.p99Baseline),
      `${(x.p99During / x.p99Baseline).toFixed(2)}×`,
    ]),
  ];
}

function textTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '))
    .join('\n');
}

function mdTable(rows: string[][]): string {
  const [head, ...body] = rows;
  return [
    `| ${head!.join(' | ')} |`,
    `|${head!.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...body.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

function detailLines(rows: Row[]): string[] {
  return rows.map((x) => {
    const parts = [
      `${x.r.approach.title}: ${Math.round(x.reqPerSec)} req/s (counting client), p50 steady ${ms(x.p50Steady)}, max ` +
        `during restarts ${ms(x.maxDuring)}`,
      `${x.nSteady} steady / ${x.nDuring} during-restart samples`,
      `upgrade time median ${ms(x.medianRestart)}, max ${ms(x.maxRestart)} (${x.r.approach.timeMeans})`,
    ];
    if (x.errors) {
      parts.push(
        `errors: ${codes(x.errorCodes)}; ${x.errorsInWindows} of ${x.errors} overlap a restart window; requests ` +
          `failed in ${x.restartsWithErrors} of ${x.r.windows.length} restarts, from the first failure to the last a ` +
          `median ${ms(x.errorSpanMs)} per restart`,
      );
    }
    if (x.r.restartFailures.length)
      parts.push(`${x.r.restartFailures.length} restarts failed: ${x.r.restartFailures[0]}`);
    parts.push(`load average ${x.r.loadavg[0].toFixed(2)} → ${x.r.loadavg[1].toFixed(2)}`);
    const f = x.r.foreign;
    parts.push(
      `other processes on the machine used ${f.seconds.toFixed(1)} CPU-s in these ${(x.r.wallMs / 1000).toFixed(0)} ` +
        `s${f.top.length ? ` (${f.top.join(', ')})` : ''}`,
    );
    return parts.join('; ');
  });
}

function autocannonLines(ac: AutocannonRun): string[][] {
  const row = (label: string, a: AutocannonSummary) => [
    label,
    `${Math.round(a.reqPerSec)}`,
    String(a.sent),
    String(a.completed),
    String(a.errors),
    String(a.timeouts),
    String(a.non2xx),
    `${a.p99} ms`,
    `${a.durationS} s`,
  ];
  return [
    ['autocannon, baton run', 'req/s', 'sent', 'answered', 'errors', 'timeouts', 'non-2xx', 'p99', 'duration'],
    row('steady (no reload)', ac.steady),
    row(`${ac.restarts} reloads`, ac.reloads),
  ];
}

function machine(): string {
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  return `${os.cpus().length} CPUs (${cpu}), ${os.platform()} ${os.release()}, Node ${process.version}`;
}

function goalLine(rows: Row[]): string {
  const baton = rows.find((x) => x.r.approach.key === 'baton');
  const ref = rows.find((x) => x.r.approach.key === 'spawn');
  return baton
    ? `Goal for \`baton run\`: 0 errors and p99 during upgrades ≤ 2× steady state. Measured: ${baton.errors} errors, ` +
        `${baton.non2xx} non-2xx; p99 during restarts is ${baton.ratio.toFixed(2)}× the p99 steady as defined above ` +
        `(${baton.errors === 0 && baton.non2xx === 0 && baton.ratio <= 2 ? 'met' : 'not met'}), and ` +
        `${(baton.p99During / baton.p99Baseline).toFixed(2)}× the p99 of the undisturbed server before the first ` +
        `restart${ref ? ` (starting a process alone, the reference row: ${(ref.p99During / ref.p99Baseline).toFixed(2)}×)` : ''}.`
    : '';
}

function docSection(rows: Row[], ac: AutocannonRun | null, loadavg: string): string {
  const goal = goalLine(rows);
  return `${MARK_START}
## Upgrades under load (npm run bench:upgrade)

The same load against the same handler (a small plain-text response), restarted ${RESTARTS} times in one
run, four ways — plus a reference row that restarts nothing:

- **baton run + reload**: \`baton run -- node bench/upgrade/app.js\`; each restart is a reload command on the
  control socket (what \`baton reload\` sends), timed until it reports the new generation serving. Keep-alive
  connections move to the new generation (live migration): the clients do not reconnect.
- **baton standalone takeover**: the same app with \`BATON_SOCKET\`; each restart starts the next process,
  which takes the listener (and the connections) over from the running one; timed until the new one serves.
- **naive restart**: a plain \`node:http\` server; SIGTERM → \`server.close()\` → exit, then the next process
  binds the port (which is closed in between); timed from SIGTERM until the new one listens.
- **node cluster**: a \`cluster\` primary with 2 workers; SIGHUP rolls them one at a time (fork a new worker,
  wait for \`listening\`, disconnect the old one and wait for it to exit, killing it after 1.6 s like PM2),
  timed until both are replaced. The primary accepts every connection and passes it to a worker.
- **reference: start a 2nd process only**: the baton app, never restarted; each "restart" starts a second,
  unrelated copy on another port, waits until it serves, and kills it. Its latency during those windows is
  what starting a Node process costs the server on this machine — the floor for any approach that replaces
  the process.

Load: scripts/lib/http-load.ts in its own process, ${CONNECTIONS} keep-alive connections, each sending its next
request ${
    PAUSE_MS
      ? `${PAUSE_MS} ms after the previous one is answered`
      : 'as soon as the previous one is answered ' + '(a closed loop: it saturates the server)'
  }. Every request is
accounted for: requests = answered (2xx + non-2xx) + errors, and recorded with its latency. The client does
not retry: a failed request counts once, and the connection loop carries on with the next request at once
(so the error count of an approach that refuses connections grows with how fast the client comes back; the
detail lines give the time span of the failures too).
Restarts start every ${INTERVAL_MS} ms (or ${MIN_GAP_MS} ms after the previous one finished, if it took longer),
after ${WARMUP_MS / 1000} s of warm-up (left out of the latency figures) and ${STEADY_MS / 1000} s steady; ${TAIL_MS / 1000} s steady after
the last. **p99 during restarts**: requests whose time in flight overlaps a window [restart start, restart end
+ ${PAD_MS} ms]; **p99 steady**: all other requests after the warm-up — with a restart every ${INTERVAL_MS} ms most of
them fall between two restarts, in the aftermath of the previous one, which is why **p99 before 1st restart**
(the ${STEADY_MS / 1000} s before the first restart: the undisturbed server) is given too. **Time per upgrade**: the
median restart duration as defined above.

Machine: ${machine()}; load average (1 min) ${loadavg} (the benchmark itself keeps both CPUs busy, so it
rises while it runs). The load client, the server and the restarts share these CPUs, so the absolute figures
are those of a small, busy machine; compare the rows. Each detail line says how much CPU time other processes
on the machine took during that row.

${mdTable(tableRows(rows))}

${detailLines(rows)
  .map((l) => `- ${l}`)
  .join('\n')}

${goal}

Reading the chart: each restart is a latency bump, for every approach and in the reference row too — a Node
process that starts takes about 100 ms of CPU from a machine the load already keeps busy. With baton the bump
has three parts: while the new generation starts (as in the reference row); at the handover, when every
keep-alive connection moves at once and the one request each client sent meanwhile waits for the move — the
old generation stops reading and sends the connections in batches, the new one adopts them and then answers
the queued requests one after another; and for a few hundred ms after, while the new process runs code V8
has not optimized yet. The handover stall was the largest part: a new Node process runs every function of
\`net\` and \`http\` for the first time there (V8 compiles each lazily on its first call), so those 50 requests
took 10–18 ms, against 1–2 ms otherwise, and set the p99 (2.0–2.4× in repeated runs). Since then a new
generation that takes over HTTP traffic first runs 100 requests through a private server of its own
(\`warmUp\`, \`src/upgrader/warm-up.ts\`; never the app's handler) while the old one still serves: measured
side by side on this machine, p99 during restarts went from ~14.5 ms to ~10 ms (2.2× to 1.5–1.7×) for
~15–20 ms more per upgrade. Closing the connections instead of moving them, so that the clients reconnect,
was slower still.
No request fails. The naive restart refuses connections while the port is closed
(ECONNREFUSED) and resets requests on connections that \`server.close()\` closes (ECONNRESET). The cluster's
rolling restart resets requests too: disconnecting a worker runs \`server.close()\`, which since Node 19 closes
idle keep-alive connections at once — racing a client that is sending its next request on one. It also runs
three server processes and the client on these CPUs, so its steady latency is higher to begin with.
${
  ac
    ? `
Throughput, with autocannon (${CONNECTIONS} connections, keep-alive, no pipelining) against \`baton run\`,
steady and then during ${ac.restarts} reloads at the same interval. autocannon counts what its connections
report; it does not account for every request the way the counting client does (a request in flight on a
connection that closes is not necessarily counted), so use it for req/s, the table above for errors.

${mdTable(autocannonLines(ac))}
`
    : ''
}
![Latency over time during ${RESTARTS} restarts, per approach](upgrade-latency.svg)
${MARK_END}`;
}

function writeDoc(section: string): void {
  writeDocSection(DOC, MARK_START, MARK_END, section);
}

// --- main -------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const watchdog = setTimeout(() => {
    console.error(`bench:upgrade: still running after ${GLOBAL_LIMIT_MS / 1000} s, giving up`);
    killTracked();
    process.exit(1);
  }, GLOBAL_LIMIT_MS);
  watchdog.unref();
  const all = [batonRun, batonStandalone, naive, nodeCluster, spawnOnly].map((f) => f());
  const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : null;
  const chosen = all.filter((a) => !only || only.has(a.key));
  if (chosen.length === 0) throw new Error(`BENCH_ONLY matches none of ${all.map((a) => a.key).join(', ')}`);
  const load0 = os.loadavg()[0]!;
  console.log(
    `bench:upgrade — ${RESTARTS} restarts every ${INTERVAL_MS} ms, ${CONNECTIONS} keep-alive ` +
      `connections${PAUSE_MS ? ` pausing ${PAUSE_MS} ms between requests` : ''}; ${machine()}; load average ` +
      `${load0.toFixed(2)}\n`,
  );
  const runs: RunResult[] = [];
  for (const a of chosen) runs.push(await measure(a));
  const ac = RUN_AUTOCANNON && (!only || only.has('baton')) ? await autocannonBaton() : null;
  const load1 = os.loadavg()[0]!;
  const rows = runs.map(summarize);
  console.log(`\n${textTable(tableRows(rows))}\n`);
  for (const l of detailLines(rows)) console.log(`  ${l}`);
  const goal = goalLine(rows);
  if (goal) console.log(`\n${goal}`);
  if (ac) console.log(`\n${textTable(autocannonLines(ac))}`);
  const loadavg = `${load0.toFixed(2)} at the start, ${load1.toFixed(2)} at the end`;
  console.log(`\nload average ${loadavg}`);

  const panels: Panel[] = rows.map((x) => ({
    title: x.r.approach.title,
    subtitle:
      `${x.sent} requests, ${x.errors} errors, ${x.non2xx} non-2xx · p99 steady ${ms(x.p99Steady)}, during ` +
      `restarts ${ms(x.p99During)} (${x.ratio.toFixed(2)}×) · upgrade ${ms(x.medianRestart)} (median)`,
    buckets: buckets(x.r.load.samples, x.r.fromMs, x.r.toMs, BUCKET_MS).map((b) => ({ ...b, t: b.t - x.r.fromMs })),
    bucketMs: BUCKET_MS,
    windows: x.r.windows.map((w) => ({ start: w.start - x.r.fromMs, end: w.end - x.r.fromMs })),
  }));
  const svg = renderChart(
    panels,
    `Latency during ${RESTARTS} restarts under load (${CONNECTIONS} keep-alive connections, 127.0.0.1)`,
  );
  if (WRITE_DOCS && chosen.length === all.length) {
    fs.writeFileSync(SVG, svg);
    writeDoc(docSection(rows, ac, loadavg));
    console.log(`\nwrote ${path.relative(ROOT, DOC)} and ${path.relative(ROOT, SVG)}`);
  } else {
    const out = path.join(os.tmpdir(), 'baton-upgrade-latency.svg');
    fs.writeFileSync(out, svg);
    console.log(
      `\nchart: ${out} (docs not written: ${WRITE_DOCS ? 'not every approach ran' : 'quick mode or --no-docs'})`,
    );
  }
}

main()
  .then(() => {
    killTracked();
    process.exit(0);
  })
  .catch((err: Error) => {
    console.error(`bench:upgrade failed: ${err.stack ?? err.message}`);
    killTracked();
    process.exit(1);
  });
