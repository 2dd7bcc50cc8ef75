/**
 * The C driver of the stall measurement (`npm run bench:migrate -- --client=c`, the default): bench/migrate/pinger.c
 * — built here with `cc -O2` into bench/migrate/.bin/ when missing or older than its source — holds its own N
 * connections to the echo app and pings them as stall.ts's Pinger does. Why: see the top of pinger.c.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { compileC, stdoutLines } from '../lib/common.js';
import { RoundTrips, type StallSource } from './stall.js';

/** Fields per record of pinger.c's output: client, generation, sent, round trip, late. */
const FIELDS = 5;

export class CPinger implements StallSource {
  trips: RoundTrips;
  #wrongCount = 0;
  #dropped = 0;
  /** CPU time (user + system) pinger.c used from its start until stopped, ms. */
  cpuMs = 0;
  readonly #child: ReturnType<typeof spawn>;
  readonly #nextLine: ReturnType<typeof stdoutLines>;
  readonly #out: string;
  readonly #exited: Promise<void>;

  private constructor(
    child: ReturnType<typeof spawn>,
    nextLine: ReturnType<typeof stdoutLines>,
    out: string,
    n: number,
  ) {
    this.#child = child;
    this.#nextLine = nextLine;
    this.#out = out;
    this.trips = new RoundTrips(n);
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /**
   * Build pinger.c if needed, start it with `n` connections of `kind` to 127.0.0.1:`port`, each to send a message
   * every `period` ms once started, and resolve once
   * each had its first message answered (with how long connecting all took, ms). `tracked` gets its pid.
   */
  static async open(
    root: string,
    kind: 'tcp' | 'ws',
    port: number,
    n: number,
    period: number,
    tracked: Set<number>,
    log: string,
  ): Promise<{ pinger: CPinger; connectMs: number }> {
    const bin = path.join(root, 'bench/migrate/.bin/pinger');
    compileC(path.join(root, 'bench/migrate/pinger.c'), bin, root);
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'baton-pinger-')), 'trips.bin');
    const child = spawn(bin, [kind, '127.0.0.1', String(port), String(n), String(period), out], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    tracked.add(child.pid!);
    child.once('exit', () => tracked.delete(child.pid!));
    child.stdin!.on('error', () => {}); // EPIPE if it died: its stderr (in the log) says why
    child.stderr!.setEncoding('utf8').on('data', (d: string) => fs.appendFileSync(log, d));
    const nextLine = stdoutLines(child, log);
    const pinger = new CPinger(child, nextLine, out, n);
    try {
      const ready = await nextLine(/^ready ([\d.]+)/, 120_000, `pinger: ${n} connections`);
      return { pinger, connectMs: Number(ready[1]) };
    } catch (err) {
      await pinger.close();
      throw err;
    }
  }

  start(): void {
    this.#child.stdin!.write('start\n');
  }

  dropped(): number {
    return this.#dropped;
  }

  wrongCount(): number {
    return this.#wrongCount;
  }

  /** Stop sending; resolves once every answer came and the round trips are read, rejects if some never came
   * (after pinger.c's own 30 s) or after `ms`. */
  async stop(ms: number): Promise<void> {
    const done = this.#nextLine(/^done (\d+) (\d+) (\d+) (\d+) (\d+)/, ms, 'pinger: the last answers');
    this.#child.stdin!.write('stop\n');
    const m = await done;
    this.#wrongCount = Number(m[2]);
    this.#dropped = Number(m[3]);
    this.cpuMs = Number(m[5]);
    const raw = fs.readFileSync(this.#out);
    const f = new Float64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8);
    // pinger.c's clock is CLOCK_MONOTONIC, as process.hrtime; performance.now() runs on the same clock from an
    // origin of its own.
    const offset = Number(process.hrtime.bigint()) / 1e6 - performance.now();
    const trips = new RoundTrips(this.trips.clients);
    for (let i = 0; i + FIELDS <= f.length; i += FIELDS)
      trips.add(f[i]!, f[i + 2]! - offset, f[i + 3]!, f[i + 1]!, f[i + 4]!);
    this.trips = trips;
    if (Number(m[4])) throw new Error(`pinger: ${m[4]} echoes still unanswered after 30 s`);
  }

  /** Close its connections (it exits at EOF on stdin); SIGKILL after 5 s. */
  async close(): Promise<void> {
    this.#child.stdin!.end();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5000);
    await this.#exited;
    clearTimeout(timer);
    fs.rmSync(path.dirname(this.#out), { recursive: true, force: true });
  }
}
