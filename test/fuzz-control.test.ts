/**
 * Fuzzing a live control socket: thousands of random sessions (test/fuzz-helpers.ts — garbage records,
 * bad framing, junk and truncated JSON, wrong versions and fields, messages in the wrong order, fds where
 * none belong and missing where required, oversized messages, partial messages, abrupt closes at every
 * step, silent peers, new-generation hellos followed by a broken handoff, and legitimate `status`
 * commands), 8 in flight, against the two kinds of serving side:
 *
 * - a standalone generation (test/fixtures/fuzz-app.ts, `Upgrader.start({ socket })`), which owns the
 *   control socket and serves HTTP itself;
 * - a `baton run` supervisor (its generation serves HTTP).
 *
 * Throughout, the target stays alive and answers HTTP (probed every 100 sessions), every `status` is
 * answered, and nothing but a refusal is ever sent to a peer that did not say a valid hello. Afterwards:
 * each refused session has exactly one log line with a clear reason (`control-refused`, or for a
 * generation's hello `generation-refused` / `upgrade-refused` / `rollback`), stderr holds nothing but baton
 * log lines (no stack trace, nothing uncaught), the target's /proc/<pid>/fd count is back to its baseline
 * (every fd we sent was closed on its side), ours is too, and a real upgrade still works.
 *
 * FUZZ_SESSIONS (default 10,000 per target) and FUZZ_SEED choose the run; `npm run fuzz` runs 50,000 per
 * target with a new seed each time. A failing session is printed with its steps, and the seed (in the
 * test's name) reproduces the whole run.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FdChannel } from '../src/fd/channel.js';
import { native } from '../src/fd/native.js';
import { expectFdsBackTo, fdCount, FIXTURES, spawnNode, tmpDir, waitFor, within } from './helpers.js';
import { alive, get, SERVING, startSupervised } from './upgrade-helpers.js';
import {
  describeSession,
  expectationOf,
  prepareFdDir,
  runAll,
  runSession,
  sampleSessions,
  SILENT,
  type Expectation,
  type Session,
  type SessionResult,
  type Target,
} from './fuzz-helpers.js';

const SESSIONS = Number(process.env.FUZZ_SESSIONS ?? 10_000);
/** FUZZ_SEED=random (npm run fuzz) picks a new one; it is in the test's name, to reproduce a failure. */
const SEED = process.env.FUZZ_SEED === 'random' ? Date.now() % 2 ** 31 : Number(process.env.FUZZ_SEED ?? 0xba70);
const CONCURRENCY = 8;
const PROBE_EVERY = 100;
const FUZZ_APP = path.join(FIXTURES, 'fuzz-app.js');

/** The reasons a refusal may give: each names what was wrong with the peer's input. */
const CLEAR_REASONS = [
  /^bad handoff message: \S/,
  /^bad record from peer: \S/,
  /^message from peer exceeds the limit/,
  /^a record from the peer (carried more fds than fit|was larger than any baton record)/,
  /^the peer closed the channel in the middle of a message/,
  /^the peer closed the control connection while we waited for \S/,
  /^timed out after \d+ ms waiting for \S/,
  /^pid \d+ is not the generation this supervisor is starting$/,
  /^upgrade in progress: /,
  /^the connection closed before "[\w-]+" could be sent$/,
  // The peer went away while the serving side was sending to it.
  /\b(EPIPE|ECONNRESET)\b/,
];

interface LogLine {
  level: 'info' | 'warn' | 'error';
  event: string;
  reason: string | null;
  line: string;
}

/** baton's text log lines (`baton WARN control-refused supervisor=1 reason="…"`), and anything else. */
function parseLog(text: string): { lines: LogLine[]; foreign: string[] } {
  const lines: LogLine[] = [];
  const foreign: string[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = /^baton (?:(WARN|ERROR) )?([\w-]+)(?: |$)/.exec(line);
    if (!m) {
      foreign.push(line);
      continue;
    }
    const r = / reason=("(?:[^"\\]|\\.)*"|\S+)/.exec(line);
    const reason = r ? (r[1]!.startsWith('"') ? (JSON.parse(r[1]!) as string) : r[1]!) : null;
    lines.push({ level: m[1] ? (m[1].toLowerCase() as 'warn' | 'error') : 'info', event: m[2]!, reason, line });
  }
  return { lines, foreign };
}

const count = (lines: LogLine[], ...events: string[]) => lines.filter((l) => events.includes(l.event)).length;

function openFdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

interface FuzzTarget {
  target: Target;
  socket: string;
  dir: string;
  /** The process that owns the control socket (its fds are counted). */
  pid: number;
  port: number;
  /** What every HTTP answer must say: the serving generation did not change. */
  body: RegExp;
  stderr(): string;
}

/** Check one session's result against what the serving side must do with it. */
function checkSession(target: Target, s: Session, want: Expectation, r: SessionResult, which: string): void {
  const say = () =>
    `${which}, expected ${want}, got replies ${JSON.stringify(r.replies).slice(0, 500)}\n${describeSession(s)}`;
  const types = r.replies.map((x) => x.type);
  if (want === 'refused') {
    // Nothing — no fd above all — goes to a peer that has not said a valid hello.
    assert.deepEqual(types, [], say());
  } else if (want === 'status') {
    assert.equal(types[0], 'result', say());
    const reply = r.replies[0]!;
    assert.equal(reply.ok, true, say());
    assert.ok(Array.isArray((reply.data as { generations?: unknown[] } | undefined)?.generations), say());
  } else if (want === 'answered') {
    for (const x of r.replies) {
      assert.equal(x.type, 'result', say());
      // Standalone: a `reload` has no supervisor to start anything.
      if (!x.ok) assert.equal(x.code, 'ERR_BATON_NO_SUPERVISOR', say());
    }
  } else {
    for (const x of r.replies) {
      if (target === 'supervised') assert.deepEqual([x.type, x.code], ['refuse', 'ERR_BATON_REFUSED'], say());
      else if (x.type !== 'welcome')
        assert.deepEqual([x.type, x.code], ['refuse', 'ERR_BATON_UPGRADE_IN_PROGRESS'], say());
    }
  }
}

/** Log lines the target must have written for these sessions: [refused before hello, generation lines]. */
function expectedLines(wants: Expectation[]): { refused: number; generation: number } {
  return {
    refused: wants.filter((w) => w === 'refused').length,
    generation: wants.filter((w) => w === 'generation').length,
  };
}

function generationLines(target: Target, lines: LogLine[]): number {
  return target === 'supervised' ? count(lines, 'generation-refused') : count(lines, 'upgrade-refused', 'rollback');
}

/** Wait until the target has logged a line for every refused session so far. */
async function logsSettle(
  f: FuzzTarget,
  want: { refused: number; generation: number },
  what: string,
): Promise<LogLine[]> {
  let lines: LogLine[] = [];
  const settled = () => {
    lines = parseLog(f.stderr()).lines;
    return count(lines, 'control-refused') >= want.refused && generationLines(f.target, lines) >= want.generation;
  };
  await waitFor(
    settled,
    30_000,
    `${what}: ${want.refused} control-refused and ${want.generation} generation lines`,
    50,
  ).catch(() => {});
  assert.equal(count(lines, 'control-refused'), want.refused, `${what}: control-refused lines`);
  assert.equal(
    generationLines(f.target, lines),
    want.generation,
    `${what}: lines for refused or rolled-back generations`,
  );
  return lines;
}

/** `pid`'s fd count once it holds still (the server side of the last connections closes a moment after
 * their last reply): the same for 5 readings 100 ms apart, within 10 s. */
async function steadyFdCount(pid: number): Promise<number> {
  let last = -1;
  let same = 0;
  for (
    let deadline = Date.now() + 10_000;
    same < 5 && Date.now() < deadline;
    await new Promise((r) => setTimeout(r, 100))
  ) {
    const now = openFdCount(pid);
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return last;
}

/** Wait (bounded) until `pid` has `baseline` fds open. */
async function fdsBackTo(pid: number, baseline: number, what: string): Promise<void> {
  let now = openFdCount(pid);
  await waitFor(() => (now = openFdCount(pid)) === baseline, 30_000, what, 50).catch(() => {});
  assert.equal(now, baseline, `${what}: ${now} fds open in pid ${pid}, ${baseline} before`);
}

async function probe(f: FuzzTarget, what: string): Promise<void> {
  assert.ok(alive(f.pid), `the target (pid ${f.pid}) is alive ${what}`);
  const r = await get(f.port);
  assert.equal(r.status, 200, what);
  assert.match(r.body, f.body, `the same generation serves ${what}`);
}

/** A reason without its particulars (values, numbers, details), to count reasons by kind. */
function gist(reason: string): string {
  return reason
    .replace(/^(bad handoff message|bad record from peer): /, '')
    .replace(/ \(.*$|;.*$/, '')
    .replace(/"[^"]*"/g, '"…"')
    .replace(/0x[0-9a-f]+|-?\d+(\.\d+)?(e[-+]?\d+)?/g, 'N')
    .replace(/^protocol version .*/, 'protocol version …')
    .replace(/^unknown type .*/, 'unknown type …');
}

async function fuzz(t: TestContext, f: FuzzTarget): Promise<void> {
  const started = Date.now();
  const warmUp = sampleSessions(f.target, 50, SEED + 1);
  const list = sampleSessions(f.target, SESSIONS, SEED);
  const wantWarm = warmUp.map((s) => expectationOf(s, f.target));
  const wants = list.map((s) => expectationOf(s, f.target));
  const run = (name: string, sessions: Session[], expectations: Expectation[], onProbe: (n: number) => Promise<void>) =>
    runAll(f.socket, sessions, {
      dir: f.dir,
      concurrency: CONCURRENCY,
      probeEvery: PROBE_EVERY,
      check: (s, r, i) => checkSession(f.target, s, expectations[i]!, r, `${name} ${i} (seed ${SEED})`),
      probe: onProbe,
    });

  // Warm-up: whatever the target allocates once (lazily) is allocated before the baselines are taken.
  await run('warm-up session', warmUp, wantWarm, async () => {});
  const warm = expectedLines(wantWarm);
  await logsSettle(f, warm, 'after the warm-up');
  await probe(f, 'after the warm-up');
  const targetBase = await steadyFdCount(f.pid);
  const ownBase = fdCount();

  // Two silent peers hold a connection until the hello timeout throws them out, during the run.
  const silent = [SILENT, SILENT].map((s) => runSession(f.socket, s, f.dir));
  for (const p of silent) p.catch(() => {}); // awaited below; a failure is reported there
  await run('session', list, wants, (n) => probe(f, `after ${n} sessions`));
  for (const r of await within(Promise.all(silent), 20_000, 'the silent peers are closed by the hello timeout')) {
    assert.deepEqual([r.replies, r.closedByServer], [[], true], 'a silent peer gets nothing and is closed');
  }
  const ms = Date.now() - started;

  // One log line with a clear reason per refused session; nothing else on stderr.
  const want = expectedLines(wants);
  const lines = await logsSettle(
    f,
    { refused: warm.refused + want.refused + silent.length, generation: warm.generation + want.generation },
    `after ${SESSIONS} sessions`,
  );
  const { foreign } = parseLog(f.stderr());
  assert.deepEqual(foreign, [], 'stderr holds only baton log lines (no stack trace, no uncaught error)');
  assert.equal(
    count(lines, 'control-dropped', 'control-accept-error', 'crash', 'supervisor-gone'),
    0,
    'no dropped connection, accept error or crash',
  );
  if (f.target === 'standalone')
    assert.equal(
      count(lines, 'upgrade-start'),
      count(lines, 'rollback'),
      'every upgrade a fuzzed hello started was rolled back',
    );
  const unclear = lines.filter(
    (l) => l.level !== 'info' && !CLEAR_REASONS.some((re) => l.reason !== null && re.test(l.reason)),
  );
  assert.deepEqual(
    unclear.map((l) => l.line),
    [],
    'every warning gives a clear reason',
  );
  const timeouts = lines.filter(
    (l) => l.event === 'control-refused' && /waiting for hello/.test(l.reason ?? ''),
  ).length;
  assert.ok(timeouts >= silent.length, `the silent peers were refused for their silence (${timeouts} hello timeouts)`);

  // The target is unaffected and closed every fd it was sent; so did we.
  await probe(f, 'at the end');
  await fdsBackTo(f.pid, targetBase, `the target after ${SESSIONS} sessions`);
  await expectFdsBackTo(ownBase, `${SESSIONS} sessions (the fuzzer's own fds)`, 10_000);

  const by = (keys: string[]) =>
    Object.entries(keys.reduce<Record<string, number>>((o, k) => ((o[k] = (o[k] ?? 0) + 1), o), {}))
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
  t.diagnostic(`${f.target}: ${SESSIONS} sessions (seed ${SEED}) in ${(ms / 1000).toFixed(1)} s: ${by(wants)}`);
  t.diagnostic(`scenarios: ${by(list.map((s) => s.scenario.replace(/ \(cut.*/, '')))}`);
  t.diagnostic(
    `warnings: ${by(lines.filter((l) => l.level !== 'info').map((l) => `${l.event}: ${gist(l.reason ?? '')}`))}`,
  );
}

test(
  'found by fuzzing: zero-length records (one carrying an fd) end the channel with ERR_BATON_BAD_RECORD; the fd ' +
    'is closed',
  async () => {
    // A batch of nothing but empty records made the receive path throw a TypeError, leaking their fds.
    const base = fdCount();
    const [a, b] = FdChannel.pair();
    const closed = new Promise<Error | undefined>((resolve) => b.once('close', resolve));
    const file = fs.openSync('/dev/null', 'r');
    assert.equal(native.sendRecord(a.fd, Buffer.alloc(0), null, [file]), true);
    assert.equal(native.sendRecord(a.fd, Buffer.alloc(0), null, null), true);
    fs.closeSync(file);
    const err = (await within(closed, 5000, 'the receiving channel closes')) as Error & { code?: string };
    assert.equal(err?.code, 'ERR_BATON_BAD_RECORD');
    assert.match(err.message, /a 0-byte record is shorter than the 4-byte header; closed 1 fds it carried/);
    a.close();
    await expectFdsBackTo(base, 'zero-length records');
  },
);

test(`fuzz: ${SESSIONS} random sessions (seed ${SEED}) against a standalone generation's control socket; it serves ` +
  `on and still upgrades`, {
  timeout: 600_000,
}, async (t) => {
  const dir = tmpDir(t);
  prepareFdDir(dir);
  const socket = path.join(dir, 'c.sock');
  const env = { FUZZ_SOCKET: socket, PORT: '0' };
  const app = spawnNode(t, FUZZ_APP, [], env);
  const port = Number((await app.line(SERVING(1), 20_000))[1]);
  await fuzz(t, {
    target: 'standalone',
    socket,
    dir,
    pid: app.pid,
    port,
    body: new RegExp(`^generation 1 pid ${app.pid}\\n$`),
    stderr: app.stderr,
  });

  // A real successor still takes over: the control socket works after all that.
  const next = spawnNode(t, FUZZ_APP, [], { ...env, PORT: String(port) });
  assert.equal(Number((await next.line(SERVING(2), 20_000))[1]), port);
  assert.equal(await within(app.exited, 20_000, 'generation 1 exits after the takeover'), 0, app.stderr().slice(-2000));
  assert.match((await get(port)).body, new RegExp(`^generation 2 pid ${next.pid}\\n$`));
});

test(`fuzz: ${SESSIONS} random sessions (seed ${SEED}) against a baton run supervisor's control socket; it serves on ` +
  `and still reloads`, {
  timeout: 600_000,
}, async (t) => {
  const s = await startSupervised(t, { app: FUZZ_APP });
  prepareFdDir(s.dir);
  const [gen1] = await s.serving();
  assert.ok(gen1);
  await fuzz(t, {
    target: 'supervised',
    socket: s.socket,
    dir: s.dir,
    pid: s.sup.pid,
    port: s.port,
    body: new RegExp(`^generation 1 pid ${gen1.pid}\\n$`),
    stderr: s.sup.stderr,
  });
  assert.ok(alive(gen1.pid), 'generation 1 never stopped serving');

  // A real reload still works.
  const r = await s.reload();
  assert.equal(r.code, 0, `baton reload: ${r.stdout} ${r.stderr}`);
  await s.sup.line(SERVING(2), 20_000);
  assert.match((await get(s.port)).body, /^generation 2 pid \d+\n$/);
  assert.equal(await s.shutdown(), 0);
});
