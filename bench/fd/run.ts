/**
 * `npm run bench:fd`: throughput of baton's fd channel against a C program doing the same sendmsg/recvmsg
 * loop, with 1, 16 and 253 fds per message.
 *
 * Flags: USAGE below (`npm run bench:fd -- --help`).
 *
 * For each batch size, a baton receiver and sender run as two spawned Node processes (FdChannelServer /
 * FdChannel.connect over a Unix socket; the sender takes its rounds as commands on stdin), and
 * bench/fd/baseline.c (compiled here with `cc -O2` into bench/fd/.bin/ when missing or older than its
 * source) runs once per round. One warm-up round each, then ROUNDS measured rounds, alternating C and
 * baton so that any change in the machine's load falls on both. Both send the same messages (baton's
 * 4-byte header, a 16-byte payload, K fds) in the same number; both receivers close every fd they get.
 * Each figure is the median of its rounds. Every round is capped in time, and the whole bench is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchFlags } from '../lib/args.js';
import { compileC, writeDocSection } from '../lib/common.js';
import { median, type RoundResult } from './protocol.js';

/** dist/bench/fd -> the package root. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SRC = path.join(ROOT, 'bench/fd/baseline.c');
const BIN = path.join(ROOT, 'bench/fd/.bin/baseline');
const DOC = path.join(ROOT, 'docs/performance.md');

/** Messages per measured round, per batch size: each C round takes a few tenths of a second. */
const CASES = [
  { k: 1, messages: 200_000 },
  { k: 16, messages: 100_000 },
  { k: 253, messages: 10_000 },
];
const ROUNDS = 5;
/** No round runs longer than this (the sender stops early and the rate is taken over what it sent). */
const CAP_MS = 2_000;
/** Any single child process is killed after this. */
const CHILD_LIMIT_MS = 40_000;
/** The ≥ 0.8× target applies to batches of at least this many fds. */
const TARGET_RATIO = 0.8;
const TARGET_MIN_K = 16;

const USAGE = `usage: npm run bench:fd -- [--no-docs] [--k=K,K]
  (no flags)   measure, print the table, write it into docs/performance.md
  --no-docs    measure and print only
  --k=16       these batch sizes only (a comma list of 1, 16, 253; never writes the docs)
`;
const { values: flags } = benchFlags('bench:fd', USAGE, { 'no-docs': { type: 'boolean' }, k: { type: 'string' } });

const MARK_START = '<!-- bench:fd:start -->';
const MARK_END = '<!-- bench:fd:end -->';

interface Row {
  k: number;
  messages: number;
  c: RoundResult;
  baton: RoundResult;
  ratio: number;
  cRounds: RoundResult[];
  batonRounds: RoundResult[];
}

const live = new Set<ChildProcess>();
function killAll(): void {
  for (const child of live)
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | string>;
}

function start(cmd: string, args: string[], stdin: 'ignore' | 'pipe' = 'ignore'): Run {
  const child = spawn(cmd, args, { stdio: [stdin, 'pipe', 'pipe'] });
  live.add(child);
  child.stdin?.on('error', () => {}); // EPIPE if it died: its exit status tells why
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_LIMIT_MS);
  const exited = new Promise<number | string>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve(code ?? signal ?? -1);
    });
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function finish(run: Run, what: string): Promise<string> {
  const status = await run.exited;
  if (status !== 0) throw new Error(`${what} failed (exit ${status}): ${run.stderr().slice(-2000)}`);
  return run.stdout();
}

async function runBaseline(k: number, messages: number): Promise<RoundResult> {
  const out = await finish(start(BIN, [String(k), String(messages), String(CAP_MS / 1000)]), `baseline ${k}`);
  return JSON.parse(out) as RoundResult;
}

/** Resolves with the next complete stdout line of `run` after `from` characters. */
function nextLine(run: Run, from: number, what: string): Promise<{ line: string; end: number }> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const nl = run.stdout().indexOf('\n', from);
      if (nl < 0) return;
      cleanup();
      resolve({ line: run.stdout().slice(from, nl), end: nl + 1 });
    };
    const onExit = (status: number | string) => {
      cleanup();
      reject(new Error(`${what}: the process exited (${status}): ${run.stderr().slice(-2000)}`));
    };
    const cleanup = () => {
      run.child.stdout!.off('data', check);
      run.child.off('exit', onExit);
    };
    run.child.stdout!.on('data', check);
    run.child.once('exit', onExit);
    check();
  });
}

/** A baton receiver and sender, started once per batch size; the sender runs rounds on command. */
class BatonPair {
  #dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-'));
  #receiver: Run | null = null;
  #sender: Run | null = null;
  #read = 0;

  constructor(readonly k: number) {}

  async start(): Promise<void> {
    const sock = path.join(this.#dir, 'ch.sock');
    this.#receiver = start(process.execPath, [path.join(HERE, 'receiver.js'), sock, String(CHILD_LIMIT_MS)]);
    await nextLine(this.#receiver, 0, 'baton receiver');
    this.#sender = start(
      process.execPath,
      [path.join(HERE, 'sender.js'), sock, String(this.k), String(CAP_MS)],
      'pipe',
    );
    this.#read = (await nextLine(this.#sender, 0, 'baton sender')).end;
  }

  async round(messages: number): Promise<RoundResult> {
    const sender = this.#sender!;
    const reply = nextLine(sender, this.#read, `baton sender ${this.k}`);
    sender.child.stdin!.write(`round ${messages}\n`);
    const { line, end } = await reply;
    this.#read = end;
    return JSON.parse(line) as RoundResult;
  }

  /** Let both processes finish: the sender closes the channel, and the receiver exits on that. */
  async stop(): Promise<void> {
    try {
      if (this.#sender) {
        this.#sender.child.stdin!.end('quit\n');
        await finish(this.#sender, `baton sender ${this.k}`);
      }
      if (this.#receiver) await finish(this.#receiver, `baton receiver ${this.k}`);
    } finally {
      this.kill();
    }
  }

  /** After a failure: SIGKILL whatever still runs (by pid), remove the socket directory. */
  kill(): void {
    for (const run of [this.#sender, this.#receiver]) {
      if (run && run.child.pid !== undefined && run.child.exitCode === null && run.child.signalCode === null) {
        try {
          process.kill(run.child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    fs.rmSync(this.#dir, { recursive: true, force: true });
  }
}

function pick(results: RoundResult[]): RoundResult {
  const m = median(results.map((r) => r.messagesPerSec));
  return (
    results.find((r) => r.messagesPerSec === m) ?? {
      messages: median(results.map((r) => r.messages)),
      seconds: median(results.map((r) => r.seconds)),
      messagesPerSec: m,
      fdsPerSec: median(results.map((r) => r.fdsPerSec)),
      capped: results.some((r) => r.capped),
    }
  );
}

const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

function table(rows: Row[]): string {
  const lines = [
    '| fds/msg | C msgs/s | C fds/s | baton msgs/s | baton fds/s | ratio | target (≥ 0.8× for ≥ 16 fds) |',
    '|--------:|---------:|--------:|-------------:|------------:|------:|:-----------------------------|',
  ];
  for (const r of rows) {
    const target = r.k < TARGET_MIN_K ? 'n/a' : r.ratio >= TARGET_RATIO ? 'met' : 'NOT met';
    lines.push(
      `| ${r.k} | ${fmt(r.c.messagesPerSec)} | ${fmt(r.c.fdsPerSec)} | ${fmt(r.baton.messagesPerSec)} | ` +
        `${fmt(r.baton.fdsPerSec)} | ${r.ratio.toFixed(2)}× | ${target} |`,
    );
  }
  return lines.join('\n');
}

function machine(): string {
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  return `${os.availableParallelism()} CPUs (nproc), ${cpu}; Node ${process.version}; Linux ${os.release()}`;
}

const loadAtStart = os.loadavg()[0]!.toFixed(2);

/** What the numbers rest on, for whoever reads the table. */
const NOTES = `What makes the difference on baton's side: both receivers spend most of their time in the kernel
(\`recvmsg\` installing the fds, one \`close\` per fd), so what counts is what baton adds per message. The
addon exchanges fds with JavaScript through typed arrays (\`recvBatch\`, \`sendRecordInt32\`,
\`closeInt32\` in \`native/\`, wrapped in \`src/fd/native.ts\`) rather than reading and building
JavaScript arrays element by element through N-API; small records of one read share one Buffer; a
single-record message is delivered without copying its fds; and \`closeFds\` makes the \`close\` syscall
directly, since glibc's \`close()\` is a cancellation point that costs extra in a multithreaded process
(any Node process). Both receivers still close fds one \`close\` per fd.

The machine has 2 cores for 2 busy processes (plus Node's own threads), so rates move by several
percent between rounds and between runs; the rounds above show the spread of this run.`;

function section(rows: Row[], date: string): string {
  const capped = rows.filter((r) => r.c.capped || r.baton.capped);
  return `${MARK_START}
## fd channel (npm run bench:fd)

Throughput of \`FdChannel\` against a C program doing the same \`sendmsg\`/\`recvmsg\` loop
(\`bench/fd/baseline.c\`, built with \`cc -O2\`), for 1, 16 and 253 fds per message.

Method:

- Every message is one SOCK_SEQPACKET record as baton frames it: the 4-byte header, a 16-byte payload and
  K fds in one SCM_RIGHTS (K dups of one \`/dev/null\` fd). Sender and receiver are separate processes.
- C: a socketpair, then fork; blocking \`sendmsg\` in the parent, blocking \`recvmsg\` with
  \`MSG_CMSG_CLOEXEC\` in the child, which closes every fd it receives.
- baton: two spawned Node processes (no IPC channel): the receiver listens with \`FdChannelServer\` and
  closes every received fd with \`closeFds\`; the sender connects with \`FdChannel.connect\` and calls
  \`send()\` in a loop, waiting for a send's promise only when the channel had to queue
  (\`pendingRecords > 0\`).
- Both send the same number of messages per round (${CASES.map((c) => `${fmt(c.messages)} for K=${c.k}`).join(', ')}),
  capped at ${CAP_MS / 1000} s. A round is timed from the first send to the receiver's answer to an end
  message. One warm-up round each (a C run; an unmeasured baton round in the same processes, for the
  JIT), then ${ROUNDS} measured rounds, alternating C and baton; each figure is the median of its
  rounds. ratio = baton msgs/s ÷ C msgs/s.

Machine: ${machine()}; 1-minute load average ${loadAtStart} when the bench started. Measured ${date}.

${table(rows)}

Every round, in msgs/s (C | baton):

${rows
  .map(
    (r) =>
      `- K=${r.k}: ${r.cRounds.map((x) => fmt(x.messagesPerSec)).join(', ')} | ` +
      `${r.batonRounds.map((x) => fmt(x.messagesPerSec)).join(', ')}`,
  )
  .join('\n')}
${
  capped.length
    ? `\nRounds that hit the time cap (rate taken over what was sent): K=${capped.map((r) => r.k).join(', ')}.\n`
    : ''
}
${NOTES}
${MARK_END}`;
}

function writeDoc(rows: Row[]): void {
  writeDocSection(DOC, MARK_START, MARK_END, section(rows, new Date().toISOString().slice(0, 10)));
  console.log(`\nwrote ${path.relative(ROOT, DOC)}`);
}

async function main(): Promise<void> {
  const writeDocs = !flags['no-docs'];
  const only = flags.k;
  const cases = only !== undefined ? CASES.filter((c) => only.split(',').map(Number).includes(c.k)) : CASES;
  compileC(SRC, BIN, ROOT);
  console.log(`bench:fd on ${machine()}`);
  const rows: Row[] = [];
  for (const { k, messages } of cases) {
    const pair = new BatonPair(k);
    const c: RoundResult[] = [];
    const baton: RoundResult[] = [];
    try {
      await pair.start();
      await runBaseline(k, messages); // warm-up
      await pair.round(Math.min(messages, 20_000)); // warm-up: the JIT
      for (let i = 0; i < ROUNDS; i++) {
        c.push(await runBaseline(k, messages));
        baton.push(await pair.round(messages));
      }
    } catch (err) {
      pair.kill();
      throw err;
    }
    await pair.stop();
    const row = { k, messages, c: pick(c), baton: pick(baton), ratio: 0, cRounds: c, batonRounds: baton };
    row.ratio = row.baton.messagesPerSec / row.c.messagesPerSec;
    rows.push(row);
    console.log(
      `K=${k}: C ${c.map((r) => fmt(r.messagesPerSec)).join(' / ')} msgs/s; ` +
        `baton ${baton.map((r) => fmt(r.messagesPerSec)).join(' / ')} msgs/s; ratio ${row.ratio.toFixed(2)}`,
    );
  }
  console.log(`\n${table(rows)}`);
  const big = rows.filter((r) => r.k >= TARGET_MIN_K);
  const met = big.every((r) => r.ratio >= TARGET_RATIO);
  console.log(
    `\ntarget ≥ ${TARGET_RATIO}× the C baseline for batches ≥ ${TARGET_MIN_K} fds: ` +
      `${big.length === 0 ? 'not measured' : met ? 'met' : 'NOT met'}`,
  );
  if (writeDocs && only === undefined) writeDoc(rows);
}

const deadline = setTimeout(() => {
  console.error('bench:fd: took longer than 110 s; giving up');
  killAll();
  process.exit(1);
}, 110_000);
deadline.unref();

main().then(
  () => {
    killAll();
  },
  (err) => {
    console.error(err);
    killAll();
    process.exitCode = 1;
  },
);
