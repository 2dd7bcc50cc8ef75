/**
 * The soak harness, shared by `npm run soak` (bench/soak/run.ts: 200 upgrades, at most 10 minutes) and
 * test/soak.test.ts (20 upgrades): `runSoak(options)` starts bench/soak/app.ts under `baton run`, puts it
 * under HTTP + WebSocket + UDP load, upgrades it with `baton reload` one upgrade after another, and returns
 * every count, the fd count and RSS of each generation and of the supervisor, and a verdict per goal.
 *
 * One upgrade, in order:
 *   1. GET /stats from the serving generation: its fds, RSS and heap "before drain";
 *   2. `node bin/baton.js reload --socket … --json`: the new generation is serving when it returns;
 *   3. wait for the old generation to exit (its connections have moved by then), then GET /stats from the
 *      new one (its footprint "at ready" comes with it) and read the supervisor's /proc/<pid>/status VmRSS
 *      and /proc/<pid>/fd;   4. wait until the new generation has answered some HTTP requests, pause `pauseMs`, next.
 *
 * Every process started here — the supervisor, each `baton reload`, each generation (detached process
 * groups, spawned by the supervisor) — is killed by pid at the end, whatever happens; `tracked` lets a
 * caller kill the ones alive at any moment (bench/soak/run.ts on Ctrl-C, the test after a failure).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { UpgradeRecord } from '../../src/cli/supervisor.js';
import { percentile, startLoad, type Load, type LoadResult } from '../../scripts/lib/http-load.js';
import type { Footprint, SoakStats } from './app.js';
import { startUdpLoad, startWsLoad, type UdpLoad, type UdpTally, type WsLoad, type WsTally } from './clients.js';
import { untilExit } from '../lib/common.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** dist/bench/soak -> the package root. */
export const ROOT = path.resolve(HERE, '../../..');
const BATON = path.join(ROOT, 'bin/baton.js');
const APP = path.join(HERE, 'app.js');
const MiB = 1024 * 1024;

export interface SoakOptions {
  upgrades: number;
  /** Stop starting upgrades after this many minutes (the run then ends early, and says so). */
  minutes: number;
  httpConnections: number;
  /** Each HTTP connection's pause between an answer and its next request. */
  httpPauseMs: number;
  wsClients: number;
  /** Each WebSocket client sends a message this often. */
  wsIntervalMs: number;
  /** A UDP datagram this often. */
  udpIntervalMs: number;
  /** Pause after each upgrade, once the new generation serves the HTTP load. */
  pauseMs: number;
  /** Where the control socket and the supervisor's log go (default: a fresh temporary directory). */
  dir?: string;
  /** Pids alive now that this run started (it adds and removes them), for a caller that must kill them early. */
  tracked?: Set<number>;
  /** Progress lines (default: none). */
  progress?: (line: string) => void;
}

export const DEFAULTS: Omit<SoakOptions, 'dir' | 'tracked' | 'progress'> = {
  upgrades: 200,
  minutes: 10,
  httpConnections: 8,
  httpPauseMs: 5,
  wsClients: 50,
  wsIntervalMs: 250,
  udpIntervalMs: 10,
  pauseMs: 500,
};

/**
 * Flatness tolerances (see docs/performance.md, "Soak"). Warm-up: generation 2 is the first that inherits
 * sockets and receives moved connections (generation 1 binds fresh and has no predecessor), so it is the
 * reference for the generations; the supervisor's is its sample after supervisorWarmup() upgrades (JIT and
 * heap settle over the first upgrades).
 */
export const TOLERANCE = {
  /** A generation holds listeners, control and migration channels, libuv's own fds and one per connection —
   *  the same connections every time — so its count should not move at all; 4 absorbs a connection that is
   *  being opened or closed while the count is taken (a /stats request, a WebSocket reconnecting). */
  generationFds: 4,
  /** The supervisor holds every listener, the control listener and one stderr pipe and control connection
   *  per live generation; measured after the old generation exited, so it should not move either. */
  supervisorFds: 2,
  /** RSS may grow by max(20 %, 10 MiB): V8 grows its heap lazily and collects when it likes, which moves a
   *  Node process's RSS by several MiB with no leak; a real leak over 200 upgrades grows past that. */
  rssRatio: 0.2,
  rssBytes: 10 * MiB,
};
/** The supervisor's RSS reference: its sample after this many upgrades (a tenth of the run, 1 to 10). */
export const supervisorWarmup = (upgradesDone: number) => Math.min(10, Math.max(1, Math.floor(upgradesDone / 10)));

export interface GenerationSample {
  generation: number;
  pid: number;
  /** From the app, right after its ready(): the previous generation's connections are usually still on their way. */
  atReady: Footprint | null;
  /** From /stats just before the next upgrade (or the end of the run): serving the whole load. */
  beforeDrain: Footprint | null;
  /** The supervisor's record: spawn → ready, ms. */
  readyMs: number | null;
  /** `baton reload` that started it, wall time, ms (a Node process starting included). */
  reloadMs: number | null;
  /** From `baton reload` returning until the generation it replaced exited, ms. */
  predecessorExitMs: number | null;
  /** Its /stats wsOutOfOrder, last seen. */
  wsOutOfOrder: number;
}

export interface SupervisorSample {
  /** Upgrades done when the sample was taken (0: before the first). */
  upgrade: number;
  fds: number;
  rss: number;
}

export interface Percentiles {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface Verdict {
  goal: string;
  tolerance: string;
  measured: string;
  met: boolean;
}

export interface SoakResult {
  options: SoakParams;
  startedAt: string;
  wallMs: number;
  /** Why the run ended before `upgrades` upgrades, or null. */
  stoppedEarly: string | null;
  upgradesDone: number;
  upgradesFailed: string[];
  http: Pick<LoadResult, 'sent' | 'ok' | 'non2xx' | 'errors' | 'errorCodes' | 'socketsOpened'> & {
    p50Ms: number;
    p99Ms: number;
  };
  ws: WsTally;
  /** Client messages the generations saw out of order (their own check, summed). */
  wsServerOutOfOrder: number;
  udp: UdpTally;
  upgradeMs: { ready: Percentiles; reload: Percentiles; predecessorExit: Percentiles };
  generations: GenerationSample[];
  supervisor: SupervisorSample[];
  verdicts: Verdict[];
  /** The supervisor's stderr (its events and the generations' logs); kept when a goal was missed. */
  logPath: string | null;
  machine: string;
  loadavg: [number, number];
}

// --- processes --------------------------------------------------------------------------------------

interface Supervisor {
  pid: number;
  child: ChildProcess;
  exited: Promise<void>;
  running(): boolean;
  /** The first stdout line (so far or from now on) matching `re`. */
  line(re: RegExp, ms: number): Promise<RegExpExecArray>;
}

function startSupervisor(socket: string, logPath: string, tracked: Set<number>): Supervisor {
  const log = fs.openSync(logPath, 'a');
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: '0', UDP_PORT: '0' };
  delete env.BATON_SOCKET;
  // detached: its own process group, so a Ctrl-C in the terminal reaches only the runner, which kills by pid.
  const child = spawn(process.execPath, [BATON, 'run', '--socket', socket, '--', process.execPath, APP], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', log],
    detached: true,
  });
  fs.closeSync(log);
  const pid = child.pid!;
  tracked.add(pid);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-65536)));
  const { exited, running } = untilExit(child, tracked);
  return {
    pid,
    child,
    exited,
    running,
    async line(re, ms) {
      const deadline = Date.now() + ms;
      for (;;) {
        const m = re.exec(out);
        if (m) return m;
        if (!running()) throw new Error(`baton run exited before printing ${re} (see ${logPath})`);
        if (Date.now() > deadline) throw new Error(`baton run: no ${re} within ${ms} ms (see ${logPath})`);
        await sleep(20);
      }
    },
  };
}

interface ReloadOutcome {
  ok: boolean;
  reason: string;
  upgrade: UpgradeRecord | null;
  wallMs: number;
}

/** `node bin/baton.js reload --socket … --json`, as an operator would run it. */
function reload(socket: string, tracked: Set<number>): Promise<ReloadOutcome> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [BATON, 'reload', '--socket', socket, '--json', '--timeout', '60'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const pid = child.pid!;
    tracked.add(pid);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // A hang detector only: the command gives up by itself after its --timeout.
    const timer = setTimeout(() => killPid(pid), 90_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      tracked.delete(pid);
      const wallMs = performance.now() - t0;
      try {
        const r = JSON.parse(stdout) as { ok: boolean; code?: string; reason?: string; upgrade: UpgradeRecord | null };
        resolve({
          ok: r.ok && code === 0,
          reason: r.ok ? '' : oneLine(`${r.code ?? ''} ${r.reason ?? ''}`),
          upgrade: r.upgrade,
          wallMs,
        });
      } catch {
        resolve({
          ok: false,
          reason: oneLine(`baton reload exited ${code ?? signal}: ${(stderr || stdout).slice(-500)}`),
          upgrade: null,
          wallMs,
        });
      }
    });
  });
}

/** A multi-line reason (a rollback quotes the generation's last output) on one line of a table. */
function oneLine(text: string, max = 400): string {
  const flat = text.trim().replace(/\s*\n\s*/g, ' ⏎ ');
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

function killPid(pid: number, group = false): void {
  for (const target of group ? [-pid, pid] : [pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** Alive and not a zombie waiting to be reaped. */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** A generation of supervisor `supPid` (guards against killing a recycled pid). */
function isGenerationOf(pid: number, supPid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`BATON_SUPERVISOR=${supPid}`);
  } catch {
    return false;
  }
}

/** Every generation pid the supervisor logged spawning. */
function spawnedPids(logPath: string): number[] {
  try {
    return [...fs.readFileSync(logPath, 'utf8').matchAll(/baton spawn supervisor=\d+ generation=\d+ child=(\d+)/g)].map(
      (m) => Number(m[1]),
    );
  } catch {
    return [];
  }
}

/** SIGTERM the supervisor (its generations drain), then SIGKILL whatever of ours is left. */
async function shutdown(sup: Supervisor, generationPids: number[], tracked: Set<number>): Promise<void> {
  if (sup.running()) {
    try {
      process.kill(sup.pid, 'SIGTERM');
    } catch {
      // gone
    }
    await Promise.race([sup.exited, sleep(30_000)]);
    if (sup.running()) killPid(sup.pid, true);
  }
  for (const pid of generationPids) {
    if (isGenerationOf(pid, sup.pid)) killPid(pid, true);
    tracked.delete(pid);
  }
}

// --- measurements -----------------------------------------------------------------------------------

function getStats(port: number): Promise<SoakStats> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/stats', agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as SoakStats);
        } catch (err) {
          reject(err as Error);
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('GET /stats timed out')));
    req.on('error', reject);
  });
}

/** /stats of generation `pid` (a fresh connection lands on the serving generation; retried until it is this one). */
async function statsOf(port: number, pid: number): Promise<SoakStats> {
  let last = '';
  for (let i = 0; i < 50; i++) {
    try {
      const s = await getStats(port);
      if (s.pid === pid) return s;
      last = `answered by pid ${s.pid}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`GET /stats: no answer from generation pid ${pid} (${last})`);
}

/** The supervisor's fd count and RSS, from /proc (null once it is gone). */
function processFootprint(pid: number): { fds: number; rss: number } | null {
  try {
    const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
    return { fds: fs.readdirSync(`/proc/${pid}/fd`).length, rss };
  } catch {
    return null;
  }
}

export function percentiles(values: number[]): Percentiles {
  return {
    n: values.length,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: values.length ? Math.max(...values) : 0,
  };
}

async function waitUntil(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// --- the run ----------------------------------------------------------------------------------------

interface Loads {
  http: Load;
  ws: WsLoad;
  udp: UdpLoad;
}

/** Start the three loads against generation 1; resolves once each of them gets answers. */
async function startLoads(port: number, udpPort: number, params: SoakParams): Promise<Loads> {
  const l: Loads = {
    http: startLoad({ port, connections: params.httpConnections, pauseMs: params.httpPauseMs, timeoutMs: 10_000 }),
    ws: startWsLoad(port, params.wsClients, params.wsIntervalMs),
    udp: startUdpLoad(udpPort, params.udpIntervalMs),
  };
  if (
    !(await waitUntil(
      () => l.ws.open() === params.wsClients && l.http.result.ok >= 100 && l.udp.tally.echoed >= 20,
      30_000,
    ))
  ) {
    await stopLoads(l);
    throw new Error(
      `the load did not start: ${l.ws.open()} WebSockets open, ${l.http.result.ok} HTTP answers, ` +
        `${l.udp.tally.echoed} UDP echoes`,
    );
  }
  return l;
}

/** Stop sending, give the answers in flight time to arrive, close the clients. */
async function stopLoads(loads: Loads) {
  const [http, ws, udp] = await Promise.all([loads.http.stop(), loads.ws.stop(5000), loads.udp.stop(2000)]);
  return { http, ws, udp };
}

type SoakParams = Omit<SoakOptions, 'tracked' | 'progress' | 'dir'>;

/** What one run holds while it goes. */
interface Run {
  params: SoakParams;
  sup: Supervisor;
  socket: string;
  logPath: string;
  port: number;
  tracked: Set<number>;
  loads: Loads;
  generations: GenerationSample[];
  supervisor: SupervisorSample[];
}

function newGeneration(generation: number, pid: number, tracked: Set<number>): GenerationSample {
  tracked.add(pid);
  return {
    generation,
    pid,
    atReady: null,
    beforeDrain: null,
    readyMs: null,
    reloadMs: null,
    predecessorExitMs: null,
    wsOutOfOrder: 0,
  };
}

/** Record a generation's /stats as its footprint before drain. */
async function measureBeforeDrain(run: Run, g: GenerationSample): Promise<void> {
  const s = await statsOf(run.port, g.pid);
  g.beforeDrain = footprintOf(s);
  g.wsOutOfOrder = s.wsOutOfOrder;
}

/**
 * Upgrade `i`: measure the serving generation, `baton reload`, wait for the old one to exit, measure the
 * new one and the supervisor, and let the new one serve some load. Returns why it failed, or null.
 */
async function upgradeOnce(run: Run, i: number): Promise<string | null> {
  const current = run.generations.at(-1)!;
  await measureBeforeDrain(run, current);
  const r = await reload(run.socket, run.tracked);
  if (!r.ok || !r.upgrade) return r.reason;
  const next = newGeneration(r.upgrade.generation, r.upgrade.pid, run.tracked);
  next.readyMs = r.upgrade.readyMs ?? null;
  next.reloadMs = r.wallMs;
  run.generations.push(next);
  const returned = performance.now();
  // Its connections have all moved (or closed) once it is gone: the new generation then holds the whole load.
  const exited = await waitUntil(() => !alive(current.pid), 40_000);
  if (exited) {
    next.predecessorExitMs = performance.now() - returned;
    run.tracked.delete(current.pid);
  }
  next.atReady = (await statsOf(run.port, next.pid)).atReady;
  sampleSupervisor(run.sup.pid, i, run.supervisor);
  const ok = run.loads.http.result.ok;
  await waitUntil(() => run.loads.http.result.ok >= ok + 20, 10_000);
  return exited ? null : `generation ${current.generation} (pid ${current.pid}) did not exit within 40 s`;
}

/** Upgrade one after another until done, the time bound, or 5 failures in a row. Returns why it stopped early. */
async function upgradeLoop(
  run: Run,
  failures: string[],
  say: (line: string) => void,
  deadline: number,
): Promise<string | null> {
  const { upgrades, pauseMs } = run.params;
  let failedInARow = 0;
  for (let i = 1; i <= upgrades; i++) {
    if (Date.now() >= deadline)
      return `stopped at the time bound (${run.params.minutes} min) after ${i - 1} of ${upgrades} upgrades`;
    if (!run.sup.running()) throw new Error(`baton run exited during the soak (see ${run.logPath})`);
    const failed = await upgradeOnce(run, i);
    if (failed) {
      failures.push(`upgrade ${i}: ${failed}`);
      say(`upgrade ${i} FAILED: ${failed}`);
      if (++failedInARow >= 5) return `stopped after 5 failed upgrades in a row (see ${run.logPath})`;
      continue;
    }
    failedInARow = 0;
    if (i % 10 === 0 || i === upgrades)
      say(progressLine(i, upgrades, run.generations.at(-1)!, run.supervisor.at(-1)!, run.loads));
    if (pauseMs) await sleep(pauseMs);
  }
  return null;
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const { tracked: given, progress, dir: givenDir, ...params } = options;
  const tracked = given ?? new Set<number>();
  const dir = givenDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'baton-soak-'));
  const socket = path.join(dir, 'soak.sock');
  const logPath = path.join(dir, 'baton.log');
  const startedAt = new Date();
  const loadavg0 = os.loadavg()[0]!;
  const generations: GenerationSample[] = [];
  const supervisor: SupervisorSample[] = [];
  const upgradesFailed: string[] = [];
  let stoppedEarly: string | null = null;
  let stopped: Awaited<ReturnType<typeof stopLoads>> | null = null;
  const sup = startSupervisor(socket, logPath, tracked);
  let loads: Loads | null = null;
  try {
    const m = await sup.line(/soak generation 1 pid (\d+) http (\d+) udp (\d+)/, 30_000);
    const [pid1, port, udpPort] = [Number(m[1]), Number(m[2]), Number(m[3])];
    generations.push(newGeneration(1, pid1, tracked));
    loads = await startLoads(port, udpPort, params);
    const run: Run = { params, sup, socket, logPath, port, tracked, loads, generations, supervisor };
    generations[0]!.atReady = (await statsOf(port, pid1)).atReady;
    sampleSupervisor(sup.pid, 0, supervisor);
    stoppedEarly = await upgradeLoop(
      run,
      upgradesFailed,
      progress ?? (() => {}),
      startedAt.getTime() + params.minutes * 60_000,
    );
    await measureBeforeDrain(run, generations.at(-1)!);
    stopped = await stopLoads(loads);
    loads = null;
  } finally {
    if (loads) await stopLoads(loads).catch(() => {});
    await shutdown(sup, [...new Set([...generations.map((g) => g.pid), ...spawnedPids(logPath)])], tracked);
  }
  const result: SoakResult = {
    options: params,
    startedAt: startedAt.toISOString(),
    wallMs: Date.now() - startedAt.getTime(),
    stoppedEarly,
    upgradesDone: generations.length - 1,
    upgradesFailed,
    http: httpSummary(stopped.http),
    ws: stopped.ws,
    wsServerOutOfOrder: generations.reduce((n, g) => n + g.wsOutOfOrder, 0),
    udp: stopped.udp,
    upgradeMs: {
      ready: percentiles(generations.flatMap((g) => (g.readyMs === null ? [] : [g.readyMs]))),
      reload: percentiles(generations.flatMap((g) => (g.reloadMs === null ? [] : [g.reloadMs]))),
      predecessorExit: percentiles(
        generations.flatMap((g) => (g.predecessorExitMs === null ? [] : [g.predecessorExitMs])),
      ),
    },
    generations,
    supervisor,
    verdicts: [],
    logPath,
    machine: machine(),
    loadavg: [loadavg0, os.loadavg()[0]!],
  };
  result.verdicts = verdicts(result);
  if (!givenDir && result.verdicts.every((v) => v.met)) {
    fs.rmSync(dir, { recursive: true, force: true });
    result.logPath = null;
  }
  return result;
}

function httpSummary(h: LoadResult): SoakResult['http'] {
  return {
    sent: h.sent,
    ok: h.ok,
    non2xx: h.non2xx,
    errors: h.errors,
    errorCodes: h.errorCodes,
    socketsOpened: h.socketsOpened,
    p50Ms: percentile(h.latenciesMs, 50),
    p99Ms: percentile(h.latenciesMs, 99),
  };
}

function footprintOf(s: SoakStats): Footprint {
  return { fds: s.fds, connections: s.connections, rss: s.rss, heapUsed: s.heapUsed };
}

function sampleSupervisor(pid: number, upgrade: number, into: SupervisorSample[]): void {
  const f = processFootprint(pid);
  if (f) into.push({ upgrade, ...f });
}

function progressLine(i: number, n: number, g: GenerationSample, s: SupervisorSample, l: Loads): string {
  const h = l.http.result;
  const w = l.ws.tally;
  const u = l.udp.tally;
  return (
    `upgrade ${i}/${n}: generation ${g.generation} ready in ${g.readyMs} ms, fds at ready ${g.atReady?.fds} ` +
    `(${g.atReady?.connections} connections); supervisor ${s.fds} fds, ${mib(s.rss)}; ` +
    `http ${h.sent} sent, ${h.errors} errors, ${h.non2xx} non-2xx; ws ${w.received}/${w.sent} answered, ` +
    `${w.disconnects} disconnects, ${w.gaps} gaps, ${w.dups} dups; ` +
    `udp ${u.echoed}/${u.sent} echoed`
  );
}

// --- verdicts and report ----------------------------------------------------------------------------

const rssAllowance = (ref: number) => Math.max(ref * TOLERANCE.rssRatio, TOLERANCE.rssBytes);

/** The fds a generation holds apart from its connections (one fd each). */
export const base = (f: Footprint) => f.fds - f.connections;

/**
 * Generation `g` holds no more fds than `ref` (+ the tolerance): in all before drain (the same load is on
 * both), and apart from its connections at ready and before drain (at ready, some of the previous
 * generation's connections may have arrived already, or not).
 */
export function fdsFlat(ref: GenerationSample, g: GenerationSample): boolean {
  const t = TOLERANCE.generationFds;
  if (!ref.atReady || !ref.beforeDrain || !g.atReady || !g.beforeDrain) return false;
  return (
    g.beforeDrain.fds <= ref.beforeDrain.fds + t &&
    base(g.atReady) <= base(ref.atReady) + t &&
    base(g.beforeDrain) <= base(ref.beforeDrain) + t
  );
}

export function verdicts(r: SoakResult): Verdict[] {
  const out: Verdict[] = [];
  const h = r.http;
  out.push({
    goal: 'HTTP: every request answered 2xx',
    tolerance: '0 errors, 0 non-2xx; sent = ok + non-2xx + errors',
    measured:
      `${h.sent} sent, ${h.ok} ok, ${h.non2xx} non-2xx, ${h.errors} ` +
      `errors${h.errors ? ` ${JSON.stringify(h.errorCodes)}` : ''}`,
    met: h.errors === 0 && h.non2xx === 0 && h.sent === h.ok + h.non2xx + h.errors && h.sent > 0,
  });
  const w = r.ws;
  out.push({
    goal: 'WebSocket: no message lost, duplicated or reordered, no disconnect',
    tolerance: '0 gaps, dups, unanswered, disconnects',
    measured:
      `${w.sent} sent, ${w.received} answered, ${w.gaps} gaps, ${w.dups} dups, ${w.unanswered} unanswered, ` +
      `${w.disconnects} disconnects, ${r.wsServerOutOfOrder} out of order at the server`,
    met:
      w.gaps + w.dups + w.unanswered + w.disconnects + r.wsServerOutOfOrder === 0 &&
      w.received === w.sent &&
      w.sent > 0,
  });
  const u = r.udp;
  out.push({
    goal: 'UDP: every datagram echoed once',
    tolerance: '0 lost, 0 duplicated, 0 send errors',
    measured: `${u.sent} sent, ${u.echoed} echoed, ${u.lost} lost, ${u.dups} dups, ${u.sendErrors} send errors`,
    met: u.lost + u.dups + u.sendErrors === 0 && u.echoed === u.sent && u.sent > 0,
  });
  out.push({
    goal: 'every upgrade succeeded',
    tolerance: `${r.options.upgrades} of ${r.options.upgrades}`,
    measured:
      `${r.upgradesDone} done, ${r.upgradesFailed.length} ` +
      `failed${r.stoppedEarly ? ` (${r.stoppedEarly})` : ''}${r.upgradesFailed.length ? `: ${r.upgradesFailed[0]}` : ''}`,
    met: r.upgradesFailed.length === 0 && r.upgradesDone === r.options.upgrades,
  });
  const ref = r.generations.find((g) => g.generation === 2);
  const last = r.generations.at(-1);
  if (ref?.beforeDrain && ref.atReady && last?.beforeDrain && last.atReady && last !== ref) {
    out.push({
      goal: 'generation fd count flat',
      tolerance:
        `last ≤ generation 2 + ${TOLERANCE.generationFds}: before drain, and apart from connections at ` +
        `ready and before drain`,
      measured:
        `before drain ${ref.beforeDrain.fds} → ${last.beforeDrain.fds}; apart from connections at ready ` +
        `${base(ref.atReady)} → ${base(last.atReady)}, before drain ${base(ref.beforeDrain)} → ` +
        `${base(last.beforeDrain)} (generation ${last.generation})`,
      met: fdsFlat(ref, last),
    });
    out.push({
      goal: 'generation RSS flat',
      tolerance: 'last ≤ generation 2 + max(20 %, 10 MiB), before drain',
      measured: `${mib(ref.beforeDrain.rss)} → ${mib(last.beforeDrain.rss)}`,
      met: last.beforeDrain.rss <= ref.beforeDrain.rss + rssAllowance(ref.beforeDrain.rss),
    });
  } else {
    out.push({
      goal: 'generation fd count and RSS flat',
      tolerance: 'needs generation 2 and a later one',
      measured: `${r.generations.length} generations`,
      met: false,
    });
  }
  const s0 = r.supervisor[0];
  const sRef = r.supervisor.find((s) => s.upgrade === supervisorWarmup(r.upgradesDone));
  const sLast = r.supervisor.at(-1);
  if (s0 && sRef && sLast && sLast.upgrade > 0) {
    out.push({
      goal: 'supervisor fd count flat',
      tolerance: `last ≤ first + ${TOLERANCE.supervisorFds}`,
      measured: `${s0.fds} → ${sLast.fds} (max ${Math.max(...r.supervisor.map((s) => s.fds))})`,
      met: sLast.fds <= s0.fds + TOLERANCE.supervisorFds,
    });
    out.push({
      goal: 'supervisor RSS flat',
      tolerance: `last ≤ after upgrade ${sRef.upgrade} + max(20 %, 10 MiB)`,
      measured:
        `${mib(s0.rss)} at start, ${mib(sRef.rss)} after upgrade ${sRef.upgrade}, ${mib(sLast.rss)} after ` +
        `upgrade ${sLast.upgrade}`,
      met: sLast.rss <= sRef.rss + rssAllowance(sRef.rss),
    });
  } else {
    out.push({
      goal: 'supervisor fd count and RSS flat',
      tolerance: 'needs samples',
      measured: `${r.supervisor.length} samples`,
      met: false,
    });
  }
  return out;
}

export const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
const ms = (v: number) => `${Math.round(v)} ms`;
const pct = (p: Percentiles) => (p.n ? `${ms(p.p50)} / ${ms(p.p90)} / ${ms(p.p99)} / ${ms(p.max)}` : '–');

/** first / last / max of one figure over the generations that have it. */
function series(r: SoakResult, pick: (g: GenerationSample) => number | undefined, fmt: (v: number) => string): string {
  const v = r.generations.map(pick).filter((x): x is number => x !== undefined);
  return v.length ? `${fmt(v[0]!)} / ${fmt(v.at(-1)!)} / ${fmt(Math.max(...v))}` : '–';
}

/** The summary as [measure, value] rows. */
export function summaryRows(r: SoakResult): string[][] {
  const h = r.http;
  const w = r.ws;
  const u = r.udp;
  const s0 = r.supervisor[0];
  const sl = r.supervisor.at(-1);
  const n = (v: number) => v.toLocaleString('en-US');
  return [
    ['measure', 'value'],
    [
      'upgrades',
      `${r.upgradesDone} of ${r.options.upgrades} (${r.upgradesFailed.length} failed) in ` +
        `${(r.wallMs / 1000).toFixed(0)} s`,
    ],
    [
      'HTTP requests sent / ok / non-2xx / errors',
      `${n(h.sent)} / ${n(h.ok)} / ${n(h.non2xx)} / ${n(h.errors)} (latency p50 ${h.p50Ms.toFixed(1)} ms, p99 ` +
        `${h.p99Ms.toFixed(1)} ms; ${h.socketsOpened} connections opened)`,
    ],
    ['WebSocket messages sent / answered', `${n(w.sent)} / ${n(w.received)} (${w.clients} clients)`],
    [
      'WebSocket gaps / dups / unanswered / disconnects',
      `${w.gaps} / ${w.dups} / ${w.unanswered} / ` +
        `${w.disconnects}${w.disconnects ? ` ${JSON.stringify(w.reasons)}` : ''}`,
    ],
    ['UDP datagrams sent / echoed / lost / dups', `${n(u.sent)} / ${n(u.echoed)} / ${u.lost} / ${u.dups}`],
    ['upgrade: spawn → serving (supervisor), p50 / p90 / p99 / max', pct(r.upgradeMs.ready)],
    ['upgrade: `baton reload` wall time, p50 / p90 / p99 / max', pct(r.upgradeMs.reload)],
    ['old generation exited after, p50 / p90 / p99 / max', pct(r.upgradeMs.predecessorExit)],
    ['generation fds before drain, first / last / max', series(r, (g) => g.beforeDrain?.fds, String)],
    ['generation connections before drain, first / last / max', series(r, (g) => g.beforeDrain?.connections, String)],
    [
      'generation fds apart from connections at ready, first / last / max',
      series(r, (g) => (g.atReady ? base(g.atReady) : undefined), String),
    ],
    [
      'generation fds apart from connections before drain, first / last / max',
      series(r, (g) => (g.beforeDrain ? base(g.beforeDrain) : undefined), String),
    ],
    ['generation RSS before drain, first / last / max', series(r, (g) => g.beforeDrain?.rss, mib)],
    ['generation heap used before drain, first / last / max', series(r, (g) => g.beforeDrain?.heapUsed, mib)],
    ['supervisor fds, first / last', s0 && sl ? `${s0.fds} / ${sl.fds}` : '–'],
    ['supervisor RSS, first / last', s0 && sl ? `${mib(s0.rss)} / ${mib(sl.rss)}` : '–'],
  ];
}

export function verdictRows(r: SoakResult): string[][] {
  return [
    ['goal', 'tolerance', 'measured', 'verdict'],
    ...r.verdicts.map((v) => [v.goal, v.tolerance, v.measured, v.met ? 'met' : 'NOT MET']),
  ];
}

/** Every `step`-th generation (and the last): its footprint, and the supervisor's after it started. */
export function generationRows(r: SoakResult, step: number): string[][] {
  const rows = [
    [
      'generation',
      'fds (connections) at ready',
      'fds (connections) before drain',
      'RSS before drain',
      'heap used',
      'supervisor fds',
      'supervisor RSS',
    ],
  ];
  const fds = (f: Footprint | null) => (f ? `${f.fds} (${f.connections})` : '–');
  for (const g of r.generations) {
    if (g.generation !== 1 && g.generation % step !== 0 && g !== r.generations.at(-1)) continue;
    const s = r.supervisor.find((x) => x.upgrade === g.generation - 1);
    rows.push([
      String(g.generation),
      fds(g.atReady),
      fds(g.beforeDrain),
      g.beforeDrain ? mib(g.beforeDrain.rss) : '–',
      g.beforeDrain ? mib(g.beforeDrain.heapUsed) : '–',
      String(s?.fds ?? '–'),
      s ? mib(s.rss) : '–',
    ]);
  }
  return rows;
}

export function machine(): string {
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  return `${os.cpus().length} CPUs (${cpu}), ${os.platform()} ${os.release()}, Node ${process.version}`;
}
