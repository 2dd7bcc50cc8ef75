/**
 * What a request and a connection cost the server, in instructions: the servers of `npm run bench:steady`
 * (plain node:http, `baton run`) run under `valgrind --tool=callgrind`, which counts the instructions a
 * process executes (all its threads: JIT and GC included). Unlike time, the count hardly moves when the
 * machine is busy, so a difference of a few percent between two servers shows on a shared machine.
 *
 *   npm run build && node dist/bench/steady/instructions.js [--requests N] [--warmup N] [--repeat N]
 *                                                         [--only plain,baton] [--keep DIR]
 *
 * For each server and connection mode (keep-alive, `Connection: close`): send `warmup` requests (the JIT
 * settles), zero the counters (callgrind_control -z), send `requests` requests from 4 connections, dump
 * the counters (callgrind_control -d) and divide by the number of requests; `repeat` times. What the
 * server executes while idle (its timers), per second, is measured first and subtracted ("net"). With --keep
 * the dumps stay in DIR for callgrind_annotate (which functions the difference is in).
 * Needs valgrind (skips with a message without it). Slow: a server under callgrind runs ~50× slower.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, stdoutLines, trackedProcesses, untilExit } from '../lib/common.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../../..');
const BATON = path.join(ROOT, 'bin/baton.js');
const PLAIN_APP = path.join(HERE, '../upgrade/naive.js');
const BATON_APP = path.join(HERE, '../upgrade/app.js');

const argv = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : def;
};
const REQUESTS = Number(opt('--requests', '1000'));
const WARMUP = Number(opt('--warmup', '1000'));
const REPEAT = Number(opt('--repeat', '2'));
const ONLY = opt('--only', 'plain,baton').split(',');
const KEEP = opt('--keep', '');
const CONNECTIONS = 4;
const IDLE_MS = 5000;
type Mode = 'keepalive' | 'close';

const { tracked, killAll } = trackedProcesses();

/** Exactly `n` requests from CONNECTIONS loops; rejects on the first failure (nothing may fail here). */
async function requests(port: number, n: number, mode: Mode): Promise<void> {
  const agent = new http.Agent({ keepAlive: mode === 'keepalive', maxSockets: CONNECTIONS });
  const headers = mode === 'close' ? { connection: 'close' } : undefined;
  let left = n;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, agent, headers, timeout: 60_000 }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
    });
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (left > 0) {
        left--;
        await one();
      }
    }),
  );
  agent.destroy();
}

function callgrindControl(flag: string, pid: number): void {
  const r = spawnSync('callgrind_control', [flag, String(pid)], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`callgrind_control ${flag} ${pid}: ${r.stderr || r.stdout}`);
}

/** The total instruction count (Ir) of the newest dump in `dir` for `pid`. */
async function lastDumpTotal(dir: string, pid: number, before: Set<string>): Promise<number> {
  for (let i = 0; i < 600; i++) {
    const fresh = fs.readdirSync(dir).filter((f) => f.startsWith(`callgrind.${pid}`) && !before.has(f));
    for (const f of fresh) {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      const m = /^(?:totals|summary): (\d+)/m.exec(text);
      if (m) {
        before.add(f);
        return Number(m[1]);
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no callgrind dump for ${pid} in ${dir}`);
}

async function start(key: string, dir: string, port: number): Promise<number> {
  const vg = ['valgrind', '--tool=callgrind', `--callgrind-out-file=${dir}/callgrind.%p`, '--dump-instr=no'];
  // Repeatable counts: V8's optimizing tiers off (--max-opt=1: the interpreter and the baseline compiler,
  // which compile the same code after the same number of calls) and no background threads. With them on,
  // under valgrind, the counts kept falling for tens of thousands of requests (245k, 122k, 63k instructions
  // per request in three rounds after the same 4,000-request warm-up; still 281k, 219k, 171k after 6,000
  // with --single-threaded). Unoptimized JavaScript costs more than optimized, so these counts overstate
  // what JavaScript (all of baton's per-request work) costs next to Node's C++: an upper bound.
  const node = [process.execPath, '--single-threaded', '--max-opt=1'];
  const cmd =
    key === 'plain'
      ? [...vg, ...node, PLAIN_APP]
      : [
          process.execPath,
          BATON,
          'run',
          '--ready-timeout',
          '600',
          '--socket',
          path.join(dir, 'baton.sock'),
          '--',
          ...vg,
          ...node,
          BATON_APP,
        ];
  const log = path.join(dir, `${key}.log`);
  const err = fs.openSync(log, 'a');
  const env = { ...process.env, PORT: String(port) };
  const child = spawn(cmd[0]!, cmd.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', err], detached: true });
  fs.closeSync(err);
  tracked.add(child.pid!);
  untilExit(child, tracked);
  const m = await stdoutLines(child, log)(/^ready (?:\d+ )?(\d+)/, 600_000, key);
  child.stdout!.resume();
  const pid = Number(m[1]);
  tracked.add(pid);
  return pid;
}

async function main(): Promise<void> {
  if (spawnSync('valgrind', ['--version']).status !== 0) {
    console.log('valgrind is not installed: skipping');
    return;
  }
  const dir = KEEP || fs.mkdtempSync(path.join(os.tmpdir(), 'bench-steady-ir-'));
  fs.mkdirSync(dir, { recursive: true });
  console.log(`instructions per request (callgrind), ${REQUESTS} after ${WARMUP} warm-up, ${CONNECTIONS} connections`);
  const seen = new Set<string>();
  for (const key of ONLY) {
    const port = await freePort();
    const pid = await start(key, dir, port);
    // What the server executes with no request at all (its timers: baton's event-loop monitor and stats),
    // per second. Under callgrind a request takes ~50× longer than natively, so the timers' share of a
    // request is ~50× too large: it is taken out of the "net" figure.
    callgrindControl('-z', pid);
    const idleFrom = performance.now();
    await new Promise((r) => setTimeout(r, IDLE_MS));
    callgrindControl('-d', pid);
    const idlePerMs = (await lastDumpTotal(dir, pid, seen)) / (performance.now() - idleFrom);
    const idle = Math.round(idlePerMs * 1000).toLocaleString('en-US');
    console.log(`  ${key.padEnd(6)} idle      ${idle} instructions per second`);
    for (const mode of ['keepalive', 'close'] as Mode[]) {
      await requests(port, WARMUP, mode);
      const raw: number[] = [];
      const netOfIdle: number[] = [];
      for (let i = 0; i < REPEAT; i++) {
        callgrindControl('-z', pid);
        const t0 = performance.now();
        await requests(port, REQUESTS, mode);
        callgrindControl('-d', pid);
        const ms = performance.now() - t0;
        const total = await lastDumpTotal(dir, pid, seen);
        raw.push(total / REQUESTS);
        netOfIdle.push((total - idlePerMs * ms) / REQUESTS);
      }
      const fmt = (xs: number[]) => xs.map((x) => Math.round(x).toLocaleString('en-US')).join(' / ');
      const line = `${fmt(netOfIdle)} instructions per request, net of idle (raw ${fmt(raw)})`;
      console.log(`  ${key.padEnd(6)} ${mode.padEnd(9)} ${line}`);
    }
    for (const p of [pid]) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  if (!KEEP) fs.rmSync(dir, { recursive: true, force: true });
  else console.log(`dumps in ${dir}`);
}

main()
  .catch((err: Error) => {
    console.error(err.stack ?? err.message);
    process.exitCode = 1;
  })
  .finally(() => killAll());
