/**
 * `npm start`: the main job on a fresh clone. Runs examples/http-server under `baton run`, drives a
 * keep-alive load against it (scripts/lib/http-load.ts, which accounts for every request), reloads it three
 * times under that load, and prints what happened: every request sent and how it ended, each reload's
 * times, whether the port ever refused a fresh connection, and a verdict. Exit code 0 only when nothing
 * failed.
 *
 * Progress is one live line on a terminal (rewritten in place), plain lines otherwise. Everything it starts
 * is stopped again — the supervisor gracefully (`baton stop`, then SIGTERM, then SIGKILL), any leftover
 * generation by pid — and its private tmp dir is removed, also on Ctrl-C (a second Ctrl-C forces).
 *
 *   npm start                the pace to watch: 2 s of load before the first reload and after each
 *   npm start -- --quick     the same run at the pace of a smoke test (0.5 s, and 1.5 s after the last reload):
 *                            what test/examples.test.ts runs, 5 s sooner
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { percentile, startLoad, type Load, type LoadResult } from './lib/http-load.js';

/** dist/scripts -> the package root. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BATON = path.join(ROOT, 'bin/baton.js');
const SERVER = path.join(ROOT, 'examples/http-server/server.js');
const HOST = '127.0.0.1';

const CONNECTIONS = 16;
/** Pause between a connection's requests: a modest load, not a benchmark. */
const PAUSE_MS = 5;
const RELOADS = 3;
const USAGE = 'usage: npm start [-- --quick]';
const ARGS = process.argv.slice(2);
const QUICK = ARGS.includes('--quick');
const WARMUP_MS = QUICK ? 500 : 2000;
const BETWEEN_MS = QUICK ? 500 : 2000;
/** After the last reload: longer than the drain's idle grace (1 s), so the last drain time is known. */
const COOLDOWN_MS = QUICK ? 1500 : 2000;
/** A fresh connection (no keep-alive) every this many ms: does the port ever refuse one? */
const PROBE_EVERY_MS = 50;
const START_TIMEOUT_MS = 20_000;
const RELOAD_TIMEOUT_S = 30;
const STOP_TIMEOUT_MS = 15_000;

const tty = process.stdout.isTTY === true;

interface ReloadOutcome {
  index: number;
  ok: boolean;
  generation?: number;
  pid?: number;
  readyMs?: number;
  drainMs?: number;
  /** Wall-clock time of the `baton reload` command, process start included. */
  commandMs: number;
  reason?: string;
  /** Connections the load client had to open anew from this reload until the next one (or the end): 0
   * means every keep-alive connection survived the reload, moved open to the new generation. */
  reconnects?: number;
}

interface ProbeStats {
  sent: number;
  ok: number;
  refused: number;
  otherErrors: number;
  errorCodes: Record<string, number>;
  generationsSeen: Set<number>;
}

interface UpgradeRecord {
  generation: number;
  pid: number;
  kind: string;
  outcome: string;
  readyMs?: number;
  drainMs?: number;
}

interface StatusData {
  generations: Array<{ generation: number; pid: number }>;
  upgrades?: UpgradeRecord[];
}

// --- state shared with the cleanup paths -----------------------------------------------------------------

const abort = new AbortController();
let interruptedBy: NodeJS.Signals | null = null;
let dir: string | null = null;
let supervisor: ChildProcess | null = null;
let supervisorExit: Promise<number | string> | null = null;
/** Every generation pid we learnt of (status, reload results, response bodies): killed if left over. */
const generationPids = new Set<number>();
let outputTail = '';
let phase = 'starting';
let load: Load | null = null;
let generationNow = 0;
let liveTimer: NodeJS.Timeout | null = null;
let liveShown = false;

function fmt(n: number): string {
  return n.toLocaleString('en-US');
}

function ms(n: number | undefined): string {
  return n === undefined ? '-' : `${fmt(Math.round(n))} ms`;
}

/** Requests sent whose response has not arrived yet: not failures, just not finished at this instant. */
function inFlight(r: LoadResult): number {
  return r.sent - r.ok - r.non2xx - r.errors;
}

function counters(r: LoadResult): string {
  return (
    `requests ${fmt(r.sent)} ok ${fmt(r.ok)} in flight ${fmt(inFlight(r))} non-2xx ${fmt(r.non2xx)} errors ` +
    `${fmt(r.errors)}`
  );
}

/** "16 of 16 connections kept": how many of the load's keep-alive connections a reload did not cut. */
function kept(reconnects: number | undefined): string {
  if (reconnects === undefined) return '';
  const k = Math.max(0, CONNECTIONS - reconnects);
  return (
    `; ${k} of ${CONNECTIONS} keep-alive connections kept ` +
    `open${k === CONNECTIONS ? ' (moved to the new generation, no reconnect)' : ''}`
  );
}

// --- output ------------------------------------------------------------------------------------------------

function liveText(): string {
  const r = load?.result;
  const requests = r
    ? `requests ${fmt(r.sent)} ok ${fmt(r.ok)} in flight ` +
      `${fmt(inFlight(r))}${r.non2xx ? ` non-2xx ${fmt(r.non2xx)}` : ''} errors ${fmt(r.errors)}`
    : 'requests 0';
  const parts = [requests, `generation ${generationNow || '-'}`, phase];
  return parts.join(' | ');
}

function renderLive(): void {
  if (!tty) return;
  const width = Math.max(20, (process.stdout.columns ?? 100) - 1);
  let text = liveText();
  if (text.length > width) text = `${text.slice(0, width - 1)}…`;
  process.stdout.write(`\r\x1b[2K${text}`);
  liveShown = true;
}

/** A permanent line: above the live line on a terminal, a plain line otherwise. */
function say(line: string): void {
  if (tty && liveShown) process.stdout.write('\r\x1b[2K');
  process.stdout.write(`${line}\n`);
  if (tty && liveShown) renderLive();
}

/** On a terminal only the live line moves; elsewhere each step is a line of its own. */
function step(line: string): void {
  if (tty) renderLive();
  else say(line);
}

function endLive(): void {
  if (liveTimer) clearInterval(liveTimer);
  liveTimer = null;
  if (tty && liveShown) {
    renderLive();
    process.stdout.write('\n');
    liveShown = false;
  }
}

// --- processes ---------------------------------------------------------------------------------------------

function keepTail(chunk: Buffer): void {
  outputTail = (outputTail + chunk.toString('utf8')).slice(-6000);
}

/** Run `baton ARGS…`; never rejects. `signal`: abandon it on Ctrl-C (not for the cleanup's own commands). */
function baton(
  args: string[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BATON, ...args],
      { cwd: ROOT, timeout: timeoutMs, maxBuffer: 1 << 20, ...(signal ? { signal } : {}) },
      (err, stdout, stderr) => {
        // A non-zero exit has a numeric code; a timeout, an abort or a spawn failure has none.
        const raw: unknown = err ? err.code : 0;
        const code = typeof raw === 'number' ? raw : null;
        resolve({ code, stdout, stderr: stderr || (err && code === null ? err.message : '') });
      },
    );
  });
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, HOST, resolve);
  });
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Is `pid` still one of our example servers (and not a recycled pid)? */
function isOurServer(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(SERVER);
  } catch {
    return false;
  }
}

function killPid(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILL what is left of our processes, synchronously (also used from the 'exit' handler). */
function killLeftovers(): number[] {
  const killed: number[] = [];
  if (
    supervisor?.pid &&
    supervisor.exitCode === null &&
    supervisor.signalCode === null &&
    killPid(supervisor.pid, 'SIGKILL')
  )
    killed.push(supervisor.pid);
  for (const pid of generationPids) {
    if (alive(pid) && isOurServer(pid) && killPid(pid, 'SIGKILL')) killed.push(pid);
  }
  return killed;
}

function removeDir(): void {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = null;
}

function until<T>(p: Promise<T>, timeoutMs: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs))),
  ]);
}

// --- the fresh-connection prober ---------------------------------------------------------------------------

function startProber(port: number): { stats: ProbeStats; stop(): Promise<void> } {
  const stats: ProbeStats = { sent: 0, ok: 0, refused: 0, otherErrors: 0, errorCodes: {}, generationsSeen: new Set() };
  let stopping = false;
  const one = () =>
    new Promise<void>((resolve) => {
      stats.sent++;
      let settled = false;
      const fail = (err: NodeJS.ErrnoException) => {
        if (settled) return;
        settled = true;
        if (err.code === 'ECONNREFUSED') stats.refused++;
        else stats.otherErrors++;
        const code = err.code ?? err.message;
        stats.errorCodes[code] = (stats.errorCodes[code] ?? 0) + 1;
        resolve();
      };
      const req = http.get(
        { host: HOST, port, path: '/', agent: false, headers: { connection: 'close' }, timeout: 5000 },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('error', fail);
          res.on('end', () => {
            if (settled) return;
            settled = true;
            if (res.statusCode === 200) stats.ok++;
            else stats.otherErrors++;
            const m = /generation (\d+) \(pid (\d+)\)/.exec(body);
            if (m) {
              const gen = Number(m[1]);
              stats.generationsSeen.add(gen);
              generationPids.add(Number(m[2]));
              generationNow = Math.max(generationNow, gen);
            }
            resolve();
          });
        },
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('probe timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', fail);
    });
  const done = (async () => {
    while (!stopping) {
      await one();
      await sleep(PROBE_EVERY_MS);
    }
  })();
  return {
    stats,
    stop() {
      stopping = true;
      return done;
    },
  };
}

// --- the demo ----------------------------------------------------------------------------------------------

async function status(sock: string, signal?: AbortSignal): Promise<StatusData | null> {
  const r = await baton(['status', '--socket', sock, '--json'], 10_000, signal);
  if (r.code !== 0) return null;
  try {
    const data = JSON.parse(r.stdout) as StatusData;
    for (const g of data.generations) generationPids.add(g.pid);
    for (const u of data.upgrades ?? []) if (u.pid) generationPids.add(u.pid);
    return data;
  } catch {
    return null;
  }
}

async function waitForLine(re: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!re.test(outputTail)) {
    if (supervisor!.exitCode !== null || supervisor!.signalCode !== null)
      throw new Error('the supervisor exited before the server was serving');
    // The supervisor would keep respawning a generation 1 that fails to start: no point in waiting.
    if (/rollback supervisor=\d+ generation=1 /.test(outputTail))
      throw new Error('the server failed to start (its output is below)');
    if (Date.now() > deadline) throw new Error(`the server did not start within ${timeoutMs} ms`);
    await sleep(25, undefined, { signal: abort.signal });
  }
}

async function reload(sock: string, index: number): Promise<ReloadOutcome> {
  phase = `reload ${index}/${RELOADS} …`;
  renderLive();
  const t0 = performance.now();
  const r = await baton(
    ['reload', '--socket', sock, '--json', '--timeout', String(RELOAD_TIMEOUT_S)],
    (RELOAD_TIMEOUT_S + 10) * 1000,
    abort.signal,
  );
  const commandMs = performance.now() - t0;
  let parsed: { ok: boolean; reason?: string; upgrade: UpgradeRecord | null } | null = null;
  try {
    parsed = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
  } catch {
    // not JSON: the command failed before reaching the supervisor
  }
  const out: ReloadOutcome = { index, ok: r.code === 0 && !!parsed?.ok, commandMs };
  if (parsed?.upgrade) {
    out.generation = parsed.upgrade.generation;
    out.pid = parsed.upgrade.pid;
    out.readyMs = parsed.upgrade.readyMs;
    if (out.pid) generationPids.add(out.pid);
  }
  if (!out.ok)
    out.reason = abort.signal.aborted
      ? 'interrupted'
      : (parsed?.reason ?? r.stderr.trim()) || `baton reload exited with ${r.code}`;
  if (out.ok && out.generation) generationNow = Math.max(generationNow, out.generation);
  phase = out.ok
    ? `reload ${index}/${RELOADS} ✓ ${ms(out.readyMs)}`
    : `reload ${index}/${RELOADS} ✗ ${out.reason!.split('\n')[0]}`;
  return out;
}

/** Stop the supervisor gracefully (`baton stop`, else SIGTERM); SIGKILL if it does not go. Returns how it ended. */
async function stopSupervisor(sock: string): Promise<string> {
  if (!supervisor || !supervisorExit) return 'not started';
  if (supervisor.exitCode !== null || supervisor.signalCode !== null) return `had exited (${await supervisorExit})`;
  let how = 'stopped gracefully';
  const r = await baton(['stop', '--socket', sock], 10_000);
  if (r.code !== 0) killPid(supervisor.pid!, 'SIGTERM');
  let exit = await until(supervisorExit, STOP_TIMEOUT_MS);
  if (exit === 'timeout') {
    how = 'did not stop in time: killed';
    killPid(supervisor.pid!, 'SIGKILL');
    exit = await until(supervisorExit, 5000);
  }
  return `${how} (exit ${exit === 0 ? 'code 0' : exit})`;
}

async function main(): Promise<number> {
  const unknown = ARGS.find((a) => a !== '--quick');
  if (unknown !== undefined) {
    process.stderr.write(`demo: unknown argument ${JSON.stringify(unknown)}\n${USAGE}\n`);
    return 2;
  }
  const port = await freePort();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-demo-'));
  const sock = path.join(dir, 'baton.sock');

  say(`baton demo: examples/http-server under \`baton run\` on http://${HOST}:${port}`);
  say(
    `${CONNECTIONS} keep-alive connections send requests throughout, plus a fresh connection every ${PROBE_EVERY_MS} ` +
      `ms; ${RELOADS} reloads`,
  );

  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), HOST };
  delete env.BATON_SOCKET;
  delete env.BATON_SUPERVISOR;
  delete env.BATON_GENERATION;
  // detached: a Ctrl-C in the terminal reaches only this script, which then stops the supervisor gracefully
  // (a supervisor that also got the SIGINT would take our SIGTERM as a second signal and force).
  supervisor = spawn(
    process.execPath,
    [BATON, 'run', '--socket', sock, '--drain-timeout', '5', '--', process.execPath, SERVER],
    {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  supervisorExit = new Promise((resolve) => supervisor!.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  supervisor.on('error', (err) => keepTail(Buffer.from(`\n${err.message}\n`)));
  supervisor.stdout!.on('data', keepTail);
  supervisor.stderr!.on('data', keepTail);

  const results: ReloadOutcome[] = [];
  /** The load's socketsOpened when each reload began: the differences are each reload's reconnects. */
  const openedAt: number[] = [];
  let prober: ReturnType<typeof startProber> | null = null;
  let loadResult: LoadResult | null = null;
  let failure: string | null = null;
  let stopHow = 'not started';
  let leftovers: number[] = [];
  try {
    await waitForLine(/generation 1 serving on/, START_TIMEOUT_MS);
    await status(sock, abort.signal);
    generationNow = 1;
    step(`supervisor pid ${supervisor.pid}; generation 1 serving`);
    if (tty) liveTimer = setInterval(renderLive, 100);

    phase = 'warming up';
    load = startLoad({ host: HOST, port, connections: CONNECTIONS, pauseMs: PAUSE_MS, timeoutMs: 5000 });
    prober = startProber(port);
    await sleep(WARMUP_MS, undefined, { signal: abort.signal });
    step(`load running: ${counters(load.result)}`);

    for (let i = 1; i <= RELOADS; i++) {
      openedAt.push(load.result.socketsOpened);
      const r = await reload(sock, i);
      results.push(r);
      if (r.ok)
        step(
          `reload ${i}/${RELOADS} ✓ generation ${r.generation} (pid ${r.pid}) serving, ready in ${ms(r.readyMs)} ` +
            `(\`baton reload\` took ${ms(r.commandMs)}) | ${counters(load.result)}`,
        );
      else step(`reload ${i}/${RELOADS} ✗ ${r.reason}`);
      abort.signal.throwIfAborted();
      await sleep(i < RELOADS ? BETWEEN_MS : COOLDOWN_MS, undefined, { signal: abort.signal });
    }
    phase = 'stopping';
  } catch (err) {
    if (!abort.signal.aborted) failure = (err as Error).message;
    phase = abort.signal.aborted ? 'interrupted' : 'failed';
  } finally {
    // Every request in flight finishes (5 s timeout each), so sent = ok + non-2xx + errors afterwards.
    if (load) {
      await until(load.stop(), 15_000);
      loadResult = load.result;
      results.forEach((x, i) => (x.reconnects = (openedAt[i + 1] ?? loadResult!.socketsOpened) - openedAt[i]!));
    }
    if (prober) await until(prober.stop(), 10_000);
    endLive();
    // The drain time of a replaced generation is known once it has exited: read it before stopping.
    const data = supervisor.exitCode === null ? await status(sock) : null;
    for (const r of results) {
      const rec = data?.upgrades?.find((u) => u.generation === r.generation && u.kind === 'reload');
      if (rec?.drainMs !== undefined) r.drainMs = rec.drainMs;
    }
    if (!tty)
      say(interruptedBy ? `interrupted (${interruptedBy}): stopping` : 'stopping the load, then the supervisor');
    stopHow = await stopSupervisor(sock);
    leftovers = killLeftovers();
    removeDir();
  }

  // --- summary ---
  const r =
    loadResult ??
    ({ sent: 0, ok: 0, non2xx: 0, errors: 0, errorCodes: {}, latenciesMs: [], durationMs: 0 } as unknown as LoadResult);
  const p = prober?.stats ?? {
    sent: 0,
    ok: 0,
    refused: 0,
    otherErrors: 0,
    errorCodes: {},
    generationsSeen: new Set<number>(),
  };
  const okReloads = results.filter((x) => x.ok).length;
  const refused = (r.errorCodes.ECONNREFUSED ?? 0) + p.refused;
  const codes = Object.entries({ ...r.errorCodes })
    .map(([c, n]) => `${c} ×${n}`)
    .join(', ');
  const rate = r.durationMs ? Math.round((r.sent / r.durationMs) * 1000) : 0;
  const gens = [...p.generationsSeen].sort((a, b) => a - b);

  const lines: string[] = ['', 'summary'];
  if (load) {
    lines.push(
      `  requests  sent ${fmt(r.sent)}  ok ${fmt(r.ok)}  non-2xx ${fmt(r.non2xx)}  errors ` +
        `${fmt(r.errors)}${codes ? ` (${codes})` : ''}`,
    );
    lines.push(
      `            ${CONNECTIONS} keep-alive connections, ${(r.durationMs / 1000).toFixed(1)} s, ${fmt(rate)} req/s, ` +
        `latency p50 ${percentile(r.latenciesMs, 50).toFixed(1)} ms, p99 ${percentile(r.latenciesMs, 99).toFixed(1)} ` +
        `ms`,
    );
    lines.push(
      `  reloads   ${okReloads} of ${RELOADS} ` +
        `served${results.length < RELOADS ? ` (${RELOADS - results.length} not attempted)` : ''}`,
    );
    for (const x of results) {
      if (x.ok) {
        lines.push(
          `            ${x.index}. generation ${x.generation} (pid ${x.pid}) ready in ${ms(x.readyMs)}; the old ` +
            `generation drained in ${x.drainMs === undefined ? '(still draining)' : ms(x.drainMs)}; \`baton reload\` ` +
            `took ${ms(x.commandMs)}${kept(x.reconnects)}`,
        );
      } else {
        lines.push(`            ${x.index}. ${x.reason === 'interrupted' ? 'interrupted' : `FAILED: ${x.reason}`}`);
      }
    }
    const probeErr = p.otherErrors
      ? `, ${fmt(p.otherErrors)} failed otherwise (${
          Object.entries(p.errorCodes)
            .filter(([c]) => c !== 'ECONNREFUSED')
            .map(([c, n]) => `${c} ×${n}`)
            .join(', ') || 'non-200'
        })`
      : '';
    lines.push(
      refused === 0
        ? `  port      never refused: ${fmt(p.sent)} fresh connections, 0 refused${probeErr}; answered by ` +
            `generation${gens.length > 1 ? 's' : ''} ${gens.join(', ') || '-'}`
        : `  port      REFUSED ${fmt(refused)} connection(s) (${fmt(p.refused)} of ${fmt(p.sent)} fresh ` +
            `ones)${probeErr}`,
    );
  }
  lines.push(
    `  cleanup   supervisor ${stopHow}; ` +
      `${leftovers.length ? `killed leftover pid(s) ${leftovers.join(', ')}` : 'no leftover processes'}; tmp dir ` +
      `removed`,
  );

  const problems: string[] = [];
  if (failure) problems.push(failure);
  if (r.errors) problems.push(`${fmt(r.errors)} request errors`);
  if (r.non2xx) problems.push(`${fmt(r.non2xx)} non-2xx responses`);
  if (refused) problems.push(`${fmt(refused)} refused connections`);
  if (p.otherErrors) problems.push(`${fmt(p.otherErrors)} failed fresh connections`);
  if (okReloads < RELOADS && !interruptedBy && load) problems.push(`${RELOADS - okReloads} reload(s) failed`);
  if (r.ok === 0 && !interruptedBy && load) problems.push('no request succeeded');
  if (leftovers.length) problems.push('processes were left over');
  if (!interruptedBy && !stopHow.startsWith('stopped gracefully')) problems.push(`the supervisor ${stopHow}`);

  let code: number;
  if (interruptedBy) {
    lines.push(
      `verdict: INTERRUPTED (${interruptedBy}) after ${okReloads} reload(s); ` +
        `${problems.length ? problems.join(', ') : `${fmt(r.sent)} requests so far, none failed`}`,
    );
    code = interruptedBy === 'SIGINT' ? 130 : 143;
  } else if (problems.length === 0) {
    const allKept = results.every((x) => x.reconnects === 0);
    lines.push(
      `verdict: PASS — ${RELOADS} reloads under load, ${fmt(r.sent)} requests, none failed, the port never refused a ` +
        `connection${allKept ? `, and all ${CONNECTIONS} keep-alive connections survived every reload` : ''}`,
    );
    code = 0;
  } else {
    lines.push(`verdict: FAIL — ${problems.join('; ')}`);
    code = 1;
  }
  for (const l of lines) say(l);
  if (code === 1 && outputTail) {
    process.stderr.write(
      `\nlast output of the supervisor and its generations:\n${outputTail.trim().split('\n').slice(-30).join('\n')}\n`,
    );
  }
  return code;
}

// --- signals and last-resort cleanup -----------------------------------------------------------------------

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (interruptedBy) {
      // A second signal: no more waiting.
      killLeftovers();
      removeDir();
      process.exit(130);
    }
    interruptedBy = sig;
    abort.abort();
  });
}
process.on('exit', () => {
  killLeftovers();
  removeDir();
});

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    endLive();
    process.stderr.write(`baton demo: ${err.stack ?? err.message}\n`);
    process.exitCode = 1;
  },
);
