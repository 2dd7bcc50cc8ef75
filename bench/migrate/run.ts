/**
 * `npm run bench:migrate`: how long it takes to move N open TCP connections to the next generation, against
 * the usual alternative, in the same run:
 *
 *   migrate     examples/tcp-echo under `baton run`; on `baton reload` the old generation hands every
 *               connection to the new one (upgrader.migrate / 'migrated'). Measured: from the old
 *               generation's 'drain' event (it starts moving) to the moment the new one adopted the last
 *               connection (timestamps printed by the two processes), per connection, and the new
 *               generation's event-loop delay meanwhile (perf_hooks.monitorEventLoopDelay, 1 ms resolution,
 *               from its ready() until the last connection arrived). Then every client sends a line, which
 *               must be answered by the new generation, and no client may have seen its connection close.
 *   reconnect   the same example with ECHO_MIGRATE=0: the old generation closes every connection on
 *               'drain' and the clients reconnect at once (no backoff — the best case for this approach).
 *               Measured: from the old generation's 'drain' event until every client is connected again
 *               and has had a line answered by the new generation.
 *
 *   npm run bench:migrate                  1,000 and 10,000 connections, 3 reloads each; prints the table and
 *                                          writes its section of docs/performance.md
 *   npm run bench:migrate -- --no-docs     measure and print only
 *   BENCH_QUICK=1 npm run bench:migrate    1,000 connections, 2 reloads (implies --no-docs)
 *
 * Environment: BENCH_SIZES (a comma list, default 1000,10000), BENCH_RELOADS (3). The benchmark process
 * holds every client socket and each generation every server-side one, so a size needs about that many fds
 * per process: sizes above `ulimit -n` minus a margin are capped, and the cap is printed. Everything is
 * started here, tracked by pid and killed at the end or on any failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** dist/bench/migrate -> the package root. */
const ROOT = path.resolve(HERE, '../../..');
const BATON = path.join(ROOT, 'bin/baton.js');
const ECHO = path.join(ROOT, 'examples/tcp-echo/server.js');
const DOC = path.join(ROOT, 'docs/performance.md');
const MARK_START = '<!-- bench:migrate:start -->';
const MARK_END = '<!-- bench:migrate:end -->';

const args = new Set(process.argv.slice(2));
const QUICK = process.env.BENCH_QUICK === '1';
const WRITE_DOCS = !args.has('--no-docs') && !QUICK;
const envInt = (name: string, def: number, min: number, max: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max}, got ${raw}`);
  return n;
};
const RELOADS = envInt('BENCH_RELOADS', QUICK ? 2 : 3, 1, 20);
const SIZES = (process.env.BENCH_SIZES ?? (QUICK ? '1000' : '1000,10000')).split(',').map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new Error(`BENCH_SIZES: bad size ${s}`);
  return n;
});
/** fds a process needs besides the connections (stdio, epoll, listeners, channels, node's own). */
const FD_MARGIN = 300;
/** Connections opened at a time (the listen backlog is 511). */
const CONNECT_BATCH = 200;
const GLOBAL_LIMIT_MS = 15 * 60_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const now = () => performance.timeOrigin + performance.now();
const LOAD_AT_START = os.loadavg()[0]!.toFixed(2);
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
const tracked = new Set<number>();
function killTracked(): void {
  for (const pid of tracked) {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  tracked.clear();
}
process.on('exit', killTracked);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killTracked();
    process.exit(130);
  });
}

interface Supervisor {
  child: ChildProcess;
  socket: string;
  /** Resolves with the first stdout line from now on matching `re`. */
  nextLine(re: RegExp, ms: number, what: string): Promise<RegExpExecArray>;
  stop(): Promise<void>;
}

/** `baton run -- node examples/tcp-echo/server.js` in a private directory; generations are tracked by pid. */
function supervise(dir: string, env: NodeJS.ProcessEnv): Supervisor {
  const socket = path.join(dir, 's.sock');
  const log = path.join(dir, 'baton.log');
  const child = spawn(process.execPath, [BATON, 'run', '--socket', socket, '--', process.execPath, ECHO], {
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
  let buf = '';
  const waiters = new Set<(line: string) => void>();
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      for (const w of [...waiters]) w(line);
    }
  });
  return {
    child,
    socket,
    nextLine(re, ms, what) {
      return new Promise((resolve, reject) => {
        const done = (err: Error | null, m?: RegExpExecArray) => {
          clearTimeout(timer);
          waiters.delete(onLine);
          child.off('exit', onExit);
          if (err) reject(err);
          else resolve(m!);
        };
        const onLine = (line: string) => {
          const m = re.exec(line);
          if (m) done(null, m);
        };
        const onExit = () => done(new Error(`${what}: the supervisor exited (see ${log})`));
        const timer = setTimeout(() => done(new Error(`${what}: no ${re} within ${ms} ms (see ${log})`)), ms);
        waiters.add(onLine);
        child.once('exit', onExit);
      });
    },
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

/** One connection to the echo server; in reconnect mode it reconnects as soon as the server closes it. */
class Client {
  socket!: net.Socket;
  /** Generation of the last answer. */
  gen = 0;
  /** When the last answer arrived (epoch ms). */
  answeredAt = 0;
  /** Closes the client did not ask for. */
  dropped = 0;
  connectErrors = 0;
  #buf = '';
  #stopping = false;
  #onAnswer: (() => void) | null = null;

  constructor(
    readonly target: net.NetConnectOpts,
    readonly reconnect: boolean,
  ) {}

  /** Connect and have one line answered. */
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
        if (this.#stopping) return;
        if (this.socket !== s) return;
        if (!this.answeredAt) {
          reject(new Error('closed before the first answer'));
          return;
        }
        this.dropped++;
        if (this.reconnect) void this.#reopen();
      });
      this.#onAnswer = () => resolve();
    });
  }

  async #reopen(): Promise<void> {
    for (let attempt = 0; !this.#stopping; attempt++) {
      try {
        await this.open();
        return;
      } catch {
        this.connectErrors++;
        await sleep(Math.min(10 * 2 ** attempt, 500));
      }
    }
  }

  /** Send a line; resolves with the generation that answered it. */
  ask(): Promise<number> {
    return new Promise((resolve) => {
      this.#onAnswer = () => resolve(this.gen);
      this.socket.write('ping\n');
    });
  }

  close(): void {
    this.#stopping = true;
    this.socket?.destroy();
  }

  #data(d: string): void {
    this.#buf += d;
    let nl: number;
    while ((nl = this.#buf.indexOf('\n')) >= 0) {
      const line = this.#buf.slice(0, nl);
      this.#buf = this.#buf.slice(nl + 1);
      const gen = Number(line.slice(0, line.indexOf(':')));
      if (!Number.isInteger(gen)) continue;
      this.gen = gen;
      this.answeredAt = now();
      const f = this.#onAnswer;
      this.#onAnswer = null;
      f?.();
    }
  }
}

async function openAll(clients: Client[]): Promise<void> {
  for (let i = 0; i < clients.length; i += CONNECT_BATCH) await Promise.all(clients.slice(i, i + CONNECT_BATCH).map((c) => c.open()));
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
  /** migrate: the new generation's event-loop delay while connections arrived, ms. */
  loopP50?: number;
  loopP99?: number;
  loopMax?: number;
  /** Client sockets that saw a close they did not ask for (reconnect: every one, by design). */
  dropped: number;
  /** reconnect: connection attempts that failed and were retried. */
  connectErrors?: number;
}

interface Row {
  approach: 'migrate' | 'reconnect';
  n: number;
  samples: Sample[];
}

async function measure(approach: 'migrate' | 'reconnect', n: number): Promise<Row> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-migrate-'));
  const sup = supervise(dir, approach === 'reconnect' ? { ECHO_MIGRATE: '0' } : {});
  const clients: Client[] = [];
  try {
    const port = Number((await sup.nextLine(/generation 1 \(pid \d+\) serving on tcp:\/\/127\.0\.0\.1:(\d+)/, 20_000, 'generation 1 serving'))[1]);
    for (let i = 0; i < n; i++) clients.push(new Client({ host: '127.0.0.1', port }, approach === 'reconnect'));
    const t0 = performance.now();
    await openAll(clients);
    process.stdout.write(`  ${approach} ${n}: ${n} clients connected in ${(performance.now() - t0).toFixed(0)} ms\n`);
    const samples: Sample[] = [];
    for (let i = 0; i < RELOADS; i++) {
      const oldGen = i + 1;
      const gen = i + 2;
      await sleep(300); // let the previous generation finish exiting
      const started = sup.nextLine(new RegExp(`generation ${oldGen} migrating (\\d+) connections t=([\\d.]+)`), 60_000, `generation ${oldGen} draining`);
      const movedLine = sup.nextLine(new RegExp(`generation ${oldGen} moved (\\d+) of (\\d+) connections in ([\\d.]+) ms`), 120_000, `generation ${oldGen} moved`);
      const adoptedLine = sup.nextLine(
        new RegExp(`generation ${gen} adopted (\\d+) connections first=([\\d.]+) last=([\\d.]+) .*p50=([\\d.]+) p99=([\\d.]+) max=([\\d.]+) ms`),
        120_000,
        `generation ${gen} adopted`,
      );
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
        if (Number(moved[1]) !== n) throw new Error(`generation ${oldGen}: ${moved[0]}`);
        if (Number(adopted[1]) !== n) throw new Error(`generation ${gen} adopted ${adopted[1]} connections, expected ${n}`);
        sample = {
          ms: Number(adopted[3]) - drainAt,
          oldMs: Number(moved[3]),
          loopP50: Number(adopted[4]),
          loopP99: Number(adopted[5]),
          loopMax: Number(adopted[6]),
          dropped: clients.reduce((a, c) => a + c.dropped, 0) - droppedBefore,
        };
        // Every connection is the new generation's now: each answers a line from there.
        for (let j = 0; j < n; j += CONNECT_BATCH) {
          const gens = await Promise.all(clients.slice(j, j + CONNECT_BATCH).map((c) => c.ask()));
          const wrong = gens.filter((g) => g !== gen).length;
          if (wrong) throw new Error(`${wrong} clients were answered by another generation than ${gen}`);
        }
      } else {
        await waitUntil(() => clients.every((c) => c.gen === gen), 120_000, `every client reconnected to generation ${gen}`);
        sample = {
          ms: Math.max(...clients.map((c) => c.answeredAt)) - drainAt,
          dropped: clients.reduce((a, c) => a + c.dropped, 0) - droppedBefore,
          connectErrors: clients.reduce((a, c) => a + c.connectErrors, 0) - errorsBefore,
        };
      }
      samples.push(sample);
      process.stdout.write(`  ${approach} ${n}: reload ${i + 1}: ${sample.ms.toFixed(1)} ms${sample.loopMax !== undefined ? `, event-loop delay max ${sample.loopMax} ms` : ''}, ${sample.dropped} closed\n`);
    }
    return { approach, n, samples };
  } finally {
    for (const c of clients) c.close();
    await sup.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    await sleep(500); // let the kernel release the sockets before the next run
  }
}

// --- report -----------------------------------------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const fmt = (x: number, digits = 1) => x.toFixed(digits);
const range = (xs: number[], digits = 1) => (xs.length > 1 ? ` (${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)})` : '');

function tableLines(rows: Row[]): string[] {
  const lines = [
    '| connections | approach | until all are served by the new generation, ms | per connection, µs | old generation: drain → last move acknowledged, ms | new generation event-loop delay p99 / max, ms | client sockets closed |',
    '|---:|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const ms = r.samples.map((s) => s.ms);
    const dropped = r.samples.reduce((a, s) => a + s.dropped, 0);
    if (r.approach === 'migrate') {
      const old = r.samples.map((s) => s.oldMs!);
      const p99 = r.samples.map((s) => s.loopP99!);
      const max = r.samples.map((s) => s.loopMax!);
      lines.push(
        `| ${r.n.toLocaleString('en-US')} | migrate (baton) | ${fmt(median(ms))}${range(ms)} | ${fmt((median(ms) * 1000) / r.n, 1)} | ${fmt(median(old))}${range(old)} | ${fmt(median(p99), 2)} / ${fmt(median(max), 2)} (worst ${fmt(Math.max(...max), 2)}) | ${dropped} |`,
      );
    } else {
      const errors = r.samples.reduce((a, s) => a + (s.connectErrors ?? 0), 0);
      lines.push(
        `| ${r.n.toLocaleString('en-US')} | drain and reconnect | ${fmt(median(ms))}${range(ms)} | ${fmt((median(ms) * 1000) / r.n, 1)} | – | – | ${dropped} (every one, by design${errors ? `; ${errors} reconnect attempts failed and were retried` : ''}) |`,
      );
    }
  }
  return lines;
}

function section(rows: Row[], notes: string[]): string {
  const date = new Date().toISOString().slice(0, 10);
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  const tenK = rows.find((r) => r.approach === 'migrate' && r.n >= 10_000);
  const goal = tenK
    ? `Moving ${tenK.n.toLocaleString('en-US')} raw TCP connections took ${fmt(median(tenK.samples.map((s) => s.ms)))} ms (median of ${tenK.samples.length}); the goal for 10,000 WebSockets is 100 ms.`
    : 'No run with 10,000 connections (see the note on `ulimit -n`).';
  return `${MARK_START}
## Live connection migration (npm run bench:migrate)

How long a reload takes to hand N open connections to the new generation, for raw TCP
([\`examples/tcp-echo\`](../examples/tcp-echo/) under \`baton run\`: \`upgrader.migrate()\` in the old generation,
\`'migrated'\` in the new one), beside the usual alternative in the same run — the old generation closes every
connection and the clients reconnect at once (no backoff, its best case). ${date}, Node ${process.version},
${os.cpus().length} × ${cpu}, ${os.platform()} ${os.release()}, 1-minute load average ${LOAD_AT_START} when the bench
started; ${RELOADS} reloads per row, median (min–max). The benchmark process holds the clients; all processes
share the same cores.

${tableLines(rows).join('\n')}

- **until all are served by the new generation**: migrate — from the old generation's \`'drain'\` event (it
  starts calling \`migrate()\`) to the moment the new generation adopted the last connection (timestamps
  printed by the two processes, same clock); after that every client sends a line, which the new generation
  answers. Reconnect — from the same \`'drain'\` event until every client has reconnected and had a line
  answered by the new generation.
- **old generation**: from \`'drain'\` until the new generation acknowledged the last batch (253 connections
  per message, one acknowledgement each, which paces the move).
- **event-loop delay**: \`perf_hooks.monitorEventLoopDelay\` (1 ms resolution) in the new generation, from its
  \`ready()\` until the last connection arrived: how long its other work could have waited.
- ${goal} WebSocket numbers come with the WebSocket migration.
- Where the time goes: the old generation is mostly idle during the move; the new generation spends it
  adopting fds — the addon's probe of each fd and \`new net.Socket({ fd })\` — in batches of 253, and the old
  one sends a batch only after the previous one is acknowledged, so the move is serial. Each batch shows as
  one stretch of event-loop delay in the new generation (the max column). Every new generation starts with
  a cold JIT, as it would in production.
- Drain and reconnect: ${RECONNECT_NOTE}
${notes.map((n) => `- ${n}`).join('\n')}
${MARK_END}`;
}

function writeDoc(text: string): void {
  let doc: string;
  if (!fs.existsSync(DOC)) {
    doc = `# Performance\n\nMeasurements of baton's moving parts. Each section is written by the benchmark it names.\n\n${text}\n`;
  } else {
    const old = fs.readFileSync(DOC, 'utf8');
    const a = old.indexOf(MARK_START);
    const b = old.indexOf(MARK_END);
    if (a >= 0 && b > a) doc = old.slice(0, a) + text + old.slice(b + MARK_END.length);
    else doc = `${old.replace(/\s*$/, '')}\n\n${text}\n`;
  }
  fs.mkdirSync(path.dirname(DOC), { recursive: true });
  fs.writeFileSync(DOC, doc);
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
      const note = `${n.toLocaleString('en-US')} connections requested, but \`ulimit -n\` is ${limit} (each process holds one fd per connection, plus ${FD_MARGIN} spare): measured ${max.toLocaleString('en-US')} instead.`;
      console.log(note);
      notes.push(note);
      if (max > 0 && !sizes.includes(max)) sizes.push(max);
    }
  }
  console.log(`bench:migrate: sizes ${sizes.join(', ')}, ${RELOADS} reloads each; ulimit -n ${limit}`);
  const rows: Row[] = [];
  for (const n of sizes) {
    rows.push(await measure('migrate', n));
    rows.push(await measure('reconnect', n));
  }
  console.log('');
  for (const l of tableLines(rows)) console.log(l);
  if (WRITE_DOCS) writeDoc(section(rows, notes));
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`bench:migrate failed: ${err.stack ?? err.message}`);
    killTracked();
    process.exit(1);
  },
);
