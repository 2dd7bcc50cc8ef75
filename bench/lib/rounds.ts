/**
 * What the benchmarks that measure in rounds share (bench/steady, bench/workers): one round as a load process of
 * its own (bench/steady/load.ts), the spread of a figure over rounds, and the tables they print and write.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RoundResult } from '../steady/load.js';

/** dist/bench/lib -> the package root. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const LOAD = path.join(ROOT, 'dist/bench/steady/load.js');

/**
 * One round: bench/steady/load.ts with `args` (its argv after the script: port, connections, warm-up ms, measured
 * ms, mode, …), in its own process — tracked in `tracked` while it runs, killed `limitMs` after it started.
 */
export function runRound(args: Array<string | number>, limitMs: number, tracked: Set<number>): Promise<RoundResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LOAD, ...args.map(String)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    tracked.add(child.pid!);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      tracked.delete(child.pid!);
      if (code !== 0) return reject(new Error(`load process exited with ${code}: ${err.slice(-2000)}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as RoundResult);
    });
  });
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export function spread(values: number[]): Spread {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]! };
}

/** Columns padded to their widest cell, two spaces apart. */
export function textTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A Markdown table; the first row is the head. */
export function mdTable(rows: string[][]): string {
  return [rows[0]!, rows[0]!.map(() => '---'), ...rows.slice(1)].map((r) => `| ${r.join(' | ')} |`).join('\n');
}
