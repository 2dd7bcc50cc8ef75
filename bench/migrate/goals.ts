/**
 * bench:migrate's pass/fail lines for the goals of "what a reload costs each connection":
 *   - each client's slowest echo during a reload, p99 over the clients, ≤ 50 ms at 10,000 connections;
 *   - at 1,000 connections, ≤ 2× the same figure without a reload (measured in the same run);
 *   - the move (old generation's 'drain' → last connection adopted) ≤ 1.5× the floor of bench/migrate/floor.ts:
 *     only building the objects a moved connection needs (`net.Socket`, and for a WebSocket a `ws` WebSocket on
 *     it) for as many fresh fds, in one fresh process. Its first run is taken (cold, as a new generation is),
 *     per connection, times the connections moved (floor.ts holds 3 fds per connection, so it measures at most
 *     what `ulimit -n` allows and the figure is scaled).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

export interface GoalRow {
  kind: 'tcp' | 'ws';
  n: number;
  /** Each client's time between messages, ms. */
  period: number;
  /** p99 over the clients of each one's slowest echo, ms: without a reload, during one. */
  baseP99: number;
  reloadP99: number;
  /** The stall's move (drain → last adopted, every client talking), ms. */
  moveMs: number[];
  /** The timed reloads' moves of the same size and kind (idle clients), ms; none with --stall-only. */
  idleMoveMs: number[];
}

/** µs per connection of bench/migrate/floor.ts's first (cold) run, for bare sockets and for WebSockets. */
export interface Floor {
  n: number;
  socketUs: number;
  wsUs: number;
}

const KIND: Record<GoalRow['kind'], string> = { tcp: 'raw TCP', ws: 'WebSockets' };

/** Run floor.js (built next to this file) for `n` connections, one run of each. */
export function measureFloor(n: number): Promise<Floor> {
  const script = path.join(path.dirname(new URL(import.meta.url).pathname), 'floor.js');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, String(n), '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      const each = (label: string) =>
        Number(new RegExp(`^  ${label}: wall [\\d.]+ ms \\(([\\d.]+) µs each\\)`, 'm').exec(out)?.[1] ?? NaN);
      const measured = Number(/^floor: (\d+) connections/m.exec(out)?.[1] ?? NaN);
      const floor = { n: measured, socketUs: each('net\\.Socket'), wsUs: each('net\\.Socket \\+ ws WebSocket') };
      if (code !== 0 || Number.isNaN(floor.socketUs + floor.wsUs + floor.n))
        reject(new Error(`floor.js exited ${code}: ${out}`));
      else resolve(floor);
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** One line per goal that applies to a row: "goal …: figures — PASS|FAIL". */
export function goalLines(rows: GoalRow[], floor: Floor | null): string[] {
  const lines: string[] = [];
  const f = (x: number) => x.toFixed(1);
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  for (const r of rows) {
    const what = `${r.n.toLocaleString('en-US')} ${KIND[r.kind]}, a message every ${r.period} ms`;
    if (r.n >= 10_000) {
      lines.push(
        `goal: stall p99 ≤ 50 ms at 10,000 (${what}): p99 ${f(r.reloadP99)} ms during the reload ` +
          `(${f(r.baseP99)} ms without) — ${verdict(r.reloadP99 <= 50)}`,
      );
    }
    if (r.n === 1000) {
      const ratio = r.reloadP99 / r.baseP99;
      lines.push(
        `goal: stall p99 ≤ 2× the no-reload p99 at 1,000 (${what}): ${f(r.reloadP99)} ms vs ${f(r.baseP99)} ms ` +
          `(${ratio.toFixed(2)}×) — ${verdict(ratio <= 2)}`,
      );
    }
    if (!floor) continue;
    const us = r.kind === 'ws' ? floor.wsUs : floor.socketUs;
    const floorMs = (us * r.n) / 1000;
    const moves: [string, number[]][] = [
      [what, r.moveMs],
      [`${r.n.toLocaleString('en-US')} ${KIND[r.kind]}, idle: the timed reloads`, r.idleMoveMs],
    ];
    for (const [label, ms] of moves) {
      if (!ms.length) continue;
      const move = median(ms);
      lines.push(
        `goal: move ≤ 1.5× the floor (${label}): ${f(move)} ms vs floor ${f(floorMs)} ms (${f(us)} µs each, cold, ` +
          `floor.ts at ${floor.n.toLocaleString('en-US')}) = ${(move / floorMs).toFixed(2)}× — ` +
          `${verdict(move <= 1.5 * floorMs)}`,
      );
    }
  }
  return lines;
}
