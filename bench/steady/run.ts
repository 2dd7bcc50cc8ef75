/**
 * `npm run bench:steady`: what baton costs when nothing happens. The same handler (bench/upgrade/handler.ts)
 * served three ways, side by side, while nothing restarts:
 *
 *   plain node:http         bench/upgrade/naive.ts: http.createServer(handler).listen()
 *   baton run               `baton run -- node bench/upgrade/app.js` (an Upgrader listening, supervised)
 *   baton run --workers 1   the same with one worker per generation; skipped, with the reason, when this
 *                           baton run has no --workers flag
 *
 * each under keep-alive load and under `Connection: close` load (a new connection per request).
 *
 * Flags and environment: USAGE below (`npm run bench:steady -- --help`).
 *
 * Method: every server is started once and stays up (they listen on different ports, idle while another is
 * measured). Rounds are interleaved: round i runs each server once, in an order that alternates from one
 * round to the next (plain first, then last), so that drift in the machine's load falls on every server
 * alike. A round is its own load process (bench/steady/load.ts: scripts/lib/http-load.ts, every request
 * accounted for: sent = ok + non-2xx + errors) — a warm-up of 500 ms, then the measured phase. Per server:
 * the median over rounds of req/s and of p99 latency, with min–max; per baton row: the median of the
 * per-round ratios to plain node:http from the same round (pairs measured seconds apart share the load of
 * the machine, so their ratio is steadier than a ratio of medians), with min–max.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchFlags } from '../lib/args.js';
import { envInt, freePort, machine, stdoutLines, trackedProcesses, untilExit, writeDocSection } from '../lib/common.js';
import type { RoundResult } from './load.js';
import * as rounds from '../lib/rounds.js';
import { mdTable, type Spread, spread, textTable } from '../lib/rounds.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** dist/bench/steady -> the package root. */
const ROOT = path.resolve(HERE, '../../..');
const BATON = path.join(ROOT, 'bin/baton.js');
const PLAIN_APP = path.join(HERE, '../upgrade/naive.js');
const BATON_APP = path.join(HERE, '../upgrade/app.js');
const DOC = path.join(ROOT, 'docs/performance.md');
const MARK_START = '<!-- bench:steady:start -->';
const MARK_END = '<!-- bench:steady:end -->';

const USAGE = `usage: npm run bench:steady -- [--no-docs] [--quick] [--json]
  (no flags)   6 rounds of 4 s per server and connection mode; prints the table and writes its section of
               docs/performance.md
  --no-docs    measure and print only
  --quick      2 rounds of 1 s (a smoke run; implies --no-docs)
  --json       also print the result as one JSON line (last line)
environment: BENCH_ROUNDS (6, at least 5 for the docs), BENCH_ROUND_MS (4000), BENCH_CONNECTIONS (16)
`;
const { values: flags } = benchFlags('bench:steady', USAGE, {
  'no-docs': { type: 'boolean' },
  quick: { type: 'boolean' },
  json: { type: 'boolean' },
});
const QUICK = flags.quick === true || process.env.BENCH_QUICK === '1';
const ROUNDS = envInt('BENCH_ROUNDS', QUICK ? 2 : 6, 1, 100);
const ROUND_MS = envInt('BENCH_ROUND_MS', QUICK ? 1000 : 4000, 200, 60_000);
const CONNECTIONS = envInt('BENCH_CONNECTIONS', QUICK ? 4 : 16, 1, 200);
const WARMUP_MS = QUICK ? 200 : 500;
const WRITE_DOCS = !flags['no-docs'] && !QUICK && ROUNDS >= 5;
const START_TIMEOUT_MS = 20_000;

export type Mode = 'keepalive' | 'close';
export const MODES: Mode[] = ['keepalive', 'close'];
const MODE_TITLE: Record<Mode, string> = { keepalive: 'keep-alive', close: 'Connection: close' };

interface Server {
  key: string;
  title: string;
  port: number;
  /** Why it is not measured (set when it cannot run here). */
  skipped?: string;
}

const { tracked, killAll } = trackedProcesses();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Start `argv` (node) in its own process group on a free port and wait for its `ready … <pid>` line. */
async function startServer(argv: string[], log: string, what: string): Promise<number> {
  const port = await freePort();
  const err = fs.openSync(log, 'a');
  const env = { ...process.env, PORT: String(port) };
  const child = spawn(process.execPath, argv, { cwd: ROOT, env, stdio: ['ignore', 'pipe', err], detached: true });
  fs.closeSync(err);
  tracked.add(child.pid!);
  untilExit(child, tracked);
  const m = await stdoutLines(child, log)(/^ready (?:\d+ )?(\d+)/, START_TIMEOUT_MS, what);
  // A generation under baton run leads its own process group: kill it at the end too.
  tracked.add(Number(m[1]));
  child.stdout!.resume();
  return port;
}

/** Whether this baton run has a --workers flag (another part of the project adds it). */
function hasWorkersFlag(): boolean {
  const r = spawnSync(process.execPath, [BATON, 'run', '--help'], { encoding: 'utf8', timeout: 10_000 });
  return /--workers\b/.test(`${r.stdout}${r.stderr}`);
}

async function startServers(dir: string): Promise<Server[]> {
  const log = (name: string) => path.join(dir, `${name}.log`);
  const baton = (name: string, extra: string[]) => [
    BATON,
    'run',
    '--socket',
    path.join(dir, `${name}.sock`),
    ...extra,
    '--',
    process.execPath,
    BATON_APP,
  ];
  const servers: Server[] = [
    { key: 'plain', title: 'plain node:http', port: await startServer([PLAIN_APP], log('plain'), 'plain node:http') },
    { key: 'baton', title: 'baton run', port: await startServer(baton('baton', []), log('baton'), 'baton run') },
  ];
  const workers: Server = { key: 'workers', title: 'baton run --workers 1', port: 0 };
  if (hasWorkersFlag()) {
    workers.port = await startServer(baton('workers', ['--workers', '1']), log('workers'), 'baton run --workers 1');
  } else workers.skipped = 'skipped: this baton run has no --workers flag';
  servers.push(workers);
  return servers;
}

function runRound(port: number, mode: Mode): Promise<RoundResult> {
  const args = [port, CONNECTIONS, WARMUP_MS, ROUND_MS, mode];
  return rounds.runRound(args, WARMUP_MS + ROUND_MS + 30_000, tracked);
}

// --- figures ----------------------------------------------------------------------------------------

export interface Row {
  mode: Mode;
  server: string;
  title: string;
  skipped?: string;
  rounds: RoundResult[];
  reqPerSec?: Spread;
  p99?: Spread;
  /** Per-round ratios to plain node:http (baton rows). */
  rpsRatio?: Spread;
  p99Ratio?: Spread;
  sent: number;
  ok: number;
  non2xx: number;
  errors: number;
}

function rowOf(mode: Mode, server: Server, rounds: RoundResult[], plain: RoundResult[] | null): Row {
  const sum = (k: 'sent' | 'ok' | 'non2xx' | 'errors') => rounds.reduce((a, r) => a + r[k], 0);
  const counts = { sent: sum('sent'), ok: sum('ok'), non2xx: sum('non2xx'), errors: sum('errors') };
  const row: Row = { mode, server: server.key, title: server.title, rounds, ...counts };
  if (server.skipped) return { ...row, skipped: server.skipped };
  row.reqPerSec = spread(rounds.map((r) => r.reqPerSec));
  row.p99 = spread(rounds.map((r) => r.p99));
  if (plain) {
    row.rpsRatio = spread(rounds.map((r, i) => r.reqPerSec / plain[i]!.reqPerSec));
    row.p99Ratio = spread(rounds.map((r, i) => r.p99 / plain[i]!.p99));
  }
  return row;
}

const fmtSpread = (s: Spread | undefined, digits: number, unit = '') =>
  s ? `${s.median.toFixed(digits)}${unit} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})` : '—';

function tableRows(rows: Row[]): string[][] {
  const head = ['connections', 'server', 'req/s median (min–max)', 'req/s vs plain', 'p99 ms median (min–max)'];
  head.push('p99 vs plain', 'sent = ok + non-2xx + errors');
  return [
    head,
    ...rows.map((r) =>
      r.skipped
        ? [MODE_TITLE[r.mode], r.title, r.skipped, '', '', '', '']
        : [
            MODE_TITLE[r.mode],
            r.title,
            fmtSpread(r.reqPerSec, 0),
            r.rpsRatio ? fmtSpread(r.rpsRatio, 3, '×') : '1',
            fmtSpread(r.p99, 2),
            r.p99Ratio ? fmtSpread(r.p99Ratio, 3, '×') : '1',
            `${r.sent} = ${r.ok} + ${r.non2xx} + ${r.errors}`,
          ],
    ),
  ];
}

/** Goal: ≥ 0.99× the req/s of plain node:http and p99 within 5%, for every measured baton row. */
function goalLines(rows: Row[]): string[] {
  return rows
    .filter((r) => r.rpsRatio && r.p99Ratio)
    .map((r) => {
      const met = r.rpsRatio!.median >= 0.99 && r.p99Ratio!.median <= 1.05;
      const ratios = `req/s ${r.rpsRatio!.median.toFixed(3)}×, p99 ${r.p99Ratio!.median.toFixed(3)}× plain node:http`;
      return `${r.title}, ${MODE_TITLE[r.mode]}: ${ratios} (goal ≥ 0.99×, ≤ 1.05×: ${met ? 'met' : 'not met'})`;
    });
}

/** How far apart the per-round ratios of the baton rows were: what this run can resolve. */
function noise(rows: Row[]): string {
  const r = rows.filter((x) => x.rpsRatio).map((x) => x.rpsRatio!);
  if (r.length === 0) return 'no baton row was measured';
  const lo = Math.min(...r.map((x) => x.min));
  const hi = Math.max(...r.map((x) => x.max));
  const verdict = hi - lo > 0.05 ? 'a few percent cannot be told from noise in this run' : 'rounds agree within 5%';
  return `the per-round req/s ratios ranged from ${lo.toFixed(2)}× to ${hi.toFixed(2)}×, so ${verdict}`;
}

function docSection(rows: Row[], loadavg: string): string {
  return `${MARK_START}
## Steady state: what baton costs when nothing happens

Written by \`npm run bench:steady\` (bench/steady/run.ts). The handler of bench/upgrade/handler.ts served by
plain node:http, by \`baton run\` (an Upgrader listening, supervised) and by \`baton run --workers 1\`, while
nothing restarts. ${ROUNDS} interleaved rounds of ${ROUND_MS / 1000} s per server (after a ${WARMUP_MS} ms warm-up),
the order alternating from round to round; ${CONNECTIONS} client connections, each sending one request after
another (scripts/lib/http-load.ts, in a process of its own: every request counted), with keep-alive and with
\`Connection: close\` (a new connection per request). Figures: median over rounds (min–max); "vs plain" is the
median of the per-round ratios to plain node:http measured in the same round.

Machine: ${machine()};
load average (1 min) ${loadavg}. **The machine was shared** with other work while this ran (and the load client
shares its CPUs with the server):
${noise(rows)}.
The instruction counts below resolve what time cannot here.

${mdTable(tableRows(rows))}

${goalLines(rows)
  .map((l) => `- ${l}`)
  .join('\n')}
${MARK_END}`;
}

// --- main -------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-steady-'));
  const load0 = os.loadavg()[0]!;
  const what = `${ROUNDS} rounds × ${ROUND_MS} ms per server and mode, ${CONNECTIONS} connections`;
  console.log(`bench:steady — ${what}; ${machine()}; load average ${load0.toFixed(2)}\n`);
  const servers = await startServers(dir);
  const measured = servers.filter((s) => !s.skipped);
  const results = new Map<string, RoundResult[]>();
  for (const mode of MODES) {
    for (const s of measured) results.set(`${mode}/${s.key}`, []);
    for (let i = 0; i < ROUNDS; i++) {
      const order = i % 2 === 0 ? measured : [...measured].reverse();
      for (const s of order) {
        const r = await runRound(s.port, mode);
        results.get(`${mode}/${s.key}`)!.push(r);
        const figures = `${Math.round(r.reqPerSec)} req/s, p99 ${r.p99.toFixed(2)} ms, ${r.errors} errors`;
        console.log(`  ${MODE_TITLE[mode]} round ${i + 1}/${ROUNDS} ${s.title}: ${figures}`);
      }
      await sleep(50);
    }
  }
  const rows: Row[] = [];
  for (const mode of MODES) {
    const plain = results.get(`${mode}/plain`)!;
    for (const s of servers) {
      rows.push(rowOf(mode, s, results.get(`${mode}/${s.key}`) ?? [], s.key === 'plain' ? null : plain));
    }
  }
  const loadavg = `${load0.toFixed(2)} → ${os.loadavg()[0]!.toFixed(2)}`;
  console.log(`\n${textTable(tableRows(rows))}\n`);
  for (const l of goalLines(rows)) console.log(l);
  console.log(`\nload average ${loadavg}`);
  if (WRITE_DOCS) {
    writeDocSection(DOC, MARK_START, MARK_END, docSection(rows, loadavg));
    console.log(`wrote ${path.relative(ROOT, DOC)}`);
  }
  if (flags.json) {
    console.log(JSON.stringify({ rounds: ROUNDS, roundMs: ROUND_MS, connections: CONNECTIONS, rows }));
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

main()
  .catch((err: Error) => {
    console.error(err.stack ?? err.message);
    process.exitCode = 1;
  })
  .finally(() => killAll());
