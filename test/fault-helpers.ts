/**
 * Helpers for the fault matrix (test/fault-*.test.ts, docs/faults.md): the traffic whose fate each cell
 * measures, the fault app's stdout lines, and what the kernel says about who accepts on a listener.
 *
 * - Traffic: a counting keep-alive load (scripts/lib/http-load.ts: sent = ok + non2xx + errors) plus a
 *   probe that opens a fresh TCP connection every 20 ms and records each refusal (ECONNREFUSED). A
 *   connection that is accepted into the kernel's queue counts as not refused, whoever accepts it later:
 *   that is exactly "the port is open".
 * - "Accepting": a process accepts on a listening socket when the socket is registered for reading in its
 *   event loop's epoll instance (/proc/<pid>/fdinfo/<epoll fd> lists each registered file with its inode).
 *   Holding a copy of the fd is not accepting: the supervisor keeps one without polling it, and a new
 *   generation holds the inherited listener without polling it until ready(). "An fd owned by two
 *   generations' servers at once" is therefore defined as: two generations accepting on the same listener
 *   inode. That happens by design for a moment during each handover (the new generation accepts from
 *   ready(), the old one until its drain begins; the kernel gives each connection to exactly one of them);
 *   the matrix asserts that once a handoff has settled — succeeded or rolled back — exactly one generation
 *   accepts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startLoad, type Load, type LoadResult } from '../scripts/lib/http-load.js';
import { FIXTURES, tmpDir, waitFor, type Spawned } from './helpers.js';
import { alive, get, startSupervised, type Supervised } from './upgrade-helpers.js';

export const FAULT_APP = path.join(FIXTURES, 'fault-app.js');

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** How long a "hang" lasts before the test SIGCONTs the process (shorter than every timeout involved). */
export const HANG_MS = 1500;

/** The fault app's line when it acts: "fault gen=G pid=P step=S action=A inflight=I connections=C echo=E". */
export interface FaultHit {
  pid: number;
  inflight: number;
  connections: number;
  echo: number;
}

export const faultRe = (gen: number | string, step: string) =>
  new RegExp(
    `fault gen=${gen} pid=(\\d+) step=${step.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} action=\\w+ inflight=(\\d+) ` +
      `connections=(\\d+) echo=(\\d+)`,
  );

/** Wait for the fault app's line for `step` on `out`'s stdout. */
export async function faultHit(out: Spawned, gen: number | string, step: string, ms = 20_000): Promise<FaultHit> {
  const m = await out.line(faultRe(gen, step), ms);
  return { pid: Number(m[1]), inflight: Number(m[2]), connections: Number(m[3]), echo: Number(m[4]) };
}

/** The fault app's serving line: "generation G serving on http://127.0.0.1:PORT pid P echo=E extra=X". */
export const servingRe = (gen: number) =>
  new RegExp(`generation ${gen} serving on http://127\\.0\\.0\\.1:(\\d+) pid (\\d+) echo=(\\S+) extra=(\\S+)`);

export async function servingPid(out: Spawned, gen: number, ms = 20_000): Promise<number> {
  return Number((await out.line(servingRe(gen), ms))[2]);
}

/**
 * `n` requests on fresh connections to `port` that generation 1 (`pid`, printing to `stdout`) holds until `ms`
 * after its 'drain' (fault-app's ?replaced=1), or with 'released' from its 'drain' until the test's release()
 * (?replaced=1&released=1), returned once it holds them all; each promise gives the status or the error code.
 * Not a fixed hold from now: a reload on a loaded machine took longer than that, and the requests were answered
 * before the drain they must be in flight for ('generation 1 had 0 requests in flight').
 */
export async function heldUntilReplaced(
  port: number,
  pid: number,
  stdout: () => string,
  n: number,
  ms: number | 'released',
): Promise<Array<Promise<number | string>>> {
  const how = ms === 'released' ? 'until released' : `for ${ms} ms`;
  const held = () =>
    (stdout().match(new RegExp(`generation 1 pid ${pid} holds a request ${how} after it is replaced`, 'g')) ?? [])
      .length;
  const before = held();
  const query = ms === 'released' ? 'replaced=1&released=1' : `delay=${ms}&replaced=1`;
  const requests = Array.from({ length: n }, () =>
    get(port, `/?${query}`, 60_000).then(
      (r) => r.status,
      (err: NodeJS.ErrnoException) => err.code ?? err.message,
    ),
  );
  await waitFor(() => held() === before + n, 10_000, `generation 1 holding the ${n} slow requests`);
  return requests;
}

// --- traffic ---------------------------------------------------------------------------------------

export interface ProbeResult {
  attempts: number;
  connected: number;
  refused: number;
  /** Other connect errors, by code. */
  errors: Record<string, number>;
  /** When each refusal happened (Date.now()). */
  refusedAt: number[];
}

export interface Probe {
  readonly result: ProbeResult;
  stop(): Promise<ProbeResult>;
}

/** A fresh connection every `everyMs`, one at a time; each is closed as soon as it is established. */
export function startProbe(port: number, everyMs = 20): Probe {
  const result: ProbeResult = { attempts: 0, connected: 0, refused: 0, errors: {}, refusedAt: [] };
  let stopping = false;
  const once = () =>
    new Promise<void>((resolve) => {
      result.attempts++;
      const socket = net.connect({ host: '127.0.0.1', port });
      const timer = setTimeout(
        () => socket.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })),
        10_000,
      );
      socket.once('connect', () => {
        result.connected++;
        socket.destroy();
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNREFUSED') {
          result.refused++;
          result.refusedAt.push(Date.now());
        } else result.errors[err.code ?? err.message] = (result.errors[err.code ?? err.message] ?? 0) + 1;
      });
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  const loop = (async () => {
    while (!stopping) {
      await once();
      await sleep(everyMs);
    }
  })();
  return {
    result,
    async stop() {
      stopping = true;
      await loop;
      return result;
    },
  };
}

export interface Traffic {
  load: Load;
  probe: Probe;
  /** Wait until the load has had `n` more requests answered. */
  served(what: string, n?: number, ms?: number): Promise<void>;
  stop(): Promise<{ load: LoadResult; probe: ProbeResult }>;
}

/** 8 keep-alive connections (a request every 5 ms each) and the probe, against 127.0.0.1:port. */
export async function startTraffic(t: { after(fn: () => unknown): void }, port: number): Promise<Traffic> {
  const load = startLoad({ port, connections: 8, pauseMs: 5, timeoutMs: 20_000 });
  const probe = startProbe(port);
  let stopped: Promise<{ load: LoadResult; probe: ProbeResult }> | null = null;
  const stop = () => (stopped ??= Promise.all([load.stop(), probe.stop()]).then(([l, p]) => ({ load: l, probe: p })));
  t.after(stop);
  const served = async (what: string, n = 50, ms = 20_000) => {
    const before = load.result.ok;
    await waitFor(() => load.result.ok >= before + n, ms, `requests served ${what}`);
  };
  await served('before the fault');
  await waitFor(() => probe.result.connected >= 5, 10_000, 'the probe connecting');
  return { load, probe, served, stop };
}

/** A summary for diagnostics and assertion messages. */
export function summary(r: { load: LoadResult; probe: ProbeResult }): string {
  const l = r.load;
  const p = r.probe;
  return (
    `load: sent ${l.sent}, ok ${l.ok}, non2xx ${l.non2xx}, errors ${l.errors} ${JSON.stringify(l.errorCodes)}, ` +
    `connections opened ${l.socketsOpened}; ` +
    `probe: ${p.attempts} connects, ${p.connected} connected, ${p.refused} refused, other errors ` +
    `${JSON.stringify(p.errors)}`
  );
}

export type Outcome = { load: LoadResult; probe: ProbeResult };
type Diag = { diagnostic(msg: string): void };

/** Nothing was lost: every request answered 2xx, every fresh connection accepted. */
export function expectNothingLost(t: Diag, r: Outcome): void {
  const what = summary(r);
  t.diagnostic(what);
  assert.equal(r.load.errors, 0, what);
  assert.equal(r.load.non2xx, 0, what);
  assert.equal(r.load.sent, r.load.ok, what);
  assert.equal(r.probe.refused, 0, `connections refused: ${what}`);
  assert.deepEqual(r.probe.errors, {}, what);
}

/**
 * How most cells end: the traffic is served by generation `gen` (`when`: a note for the message), nothing
 * was lost, and `pid` alone accepts on `port` among `pids`.
 */
export async function servedWithoutLoss(
  t: Diag,
  traffic: Traffic,
  port: number,
  pids: Iterable<number>,
  gen: number,
  pid: number,
  when = '',
): Promise<void> {
  await traffic.served(`by generation ${gen}${when}`);
  expectNothingLost(t, await traffic.stop());
  await expectOnlyAccepting(port, pids, pid, `generation ${gen} alone accepts`);
}

/** At most `n` requests failed, each by a reset (in flight on, or sent to, a connection of the killed
 * process: one per connection at most); no connection refused. */
export function expectLostAtMost(t: Diag, r: Outcome, n: number): void {
  const what = summary(r);
  t.diagnostic(`${what}; at most ${n} may fail`);
  assert.ok(r.load.errors <= n, `${r.load.errors} requests failed, at most ${n} expected: ${what}`);
  for (const code of Object.keys(r.load.errorCodes))
    assert.ok(code === 'ECONNRESET' || code === 'EPIPE', `unexpected error ${code}: ${what}`);
  assert.equal(r.load.non2xx, 0, what);
  assert.equal(r.load.sent, r.load.ok + r.load.errors, what);
  assert.equal(r.probe.refused, 0, `connections refused: ${what}`);
  assert.deepEqual(r.probe.errors, {}, what);
}

/** The answer to a fresh GET names generation `gen` and its pid. */
export async function servedBy(port: number, gen: number, pid: number): Promise<void> {
  assert.match((await get(port)).body, new RegExp(`^generation ${gen} pid ${pid}\\n$`));
}

// --- who holds and who accepts a listener ------------------------------------------------------------

/** The inode of the socket listening on 127.0.0.1:port, from /proc/net/tcp. */
export function listenerInode(port: number): number | null {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === '0A') return Number(f[9]);
  }
  return null;
}

/** Does `pid` hold an fd for socket `inode`? */
export function holds(pid: number, inode: number): boolean {
  let fds: string[];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`;
    } catch {
      return false;
    }
  });
}

const EPOLLIN = 0x1;

/** Is socket `inode` registered for reading in one of `pid`'s epoll instances (its event loop accepts on it)? */
export function accepts(pid: number, inode: number): boolean {
  let fds: string[];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  const hex = inode.toString(16);
  for (const fd of fds) {
    let link: string;
    try {
      link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (link !== 'anon_inode:[eventpoll]') continue;
    let info: string;
    try {
      info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    for (const m of info.matchAll(/^tfd:\s+\d+\s+events:\s+([0-9a-f]+)\s.*\bino:([0-9a-f]+)/gm)) {
      if (m[2] === hex && (parseInt(m[1]!, 16) & EPOLLIN) !== 0) return true;
    }
  }
  return false;
}

/** Of `pids`, those alive and accepting on the listener at 127.0.0.1:port (empty if nothing listens). */
export function acceptingPids(port: number, pids: Iterable<number>): number[] {
  const inode = listenerInode(port);
  if (inode === null) return [];
  return [...new Set(pids)].filter((pid) => alive(pid) && accepts(pid, inode));
}

/** Wait until exactly `want` (of `pids`) accepts on 127.0.0.1:port — the settled state after a handoff. */
export async function expectOnlyAccepting(
  port: number,
  pids: Iterable<number>,
  want: number,
  what: string,
  ms = 10_000,
): Promise<void> {
  const list = [...pids, want];
  let now: number[] = [];
  try {
    await waitFor(
      () => {
        now = acceptingPids(port, list);
        return now.length === 1 && now[0] === want;
      },
      ms,
      what,
      50,
    );
  } catch {
    throw new Error(
      `${what}: expected only pid ${want} to accept on 127.0.0.1:${port}, but these do: [${now.join(', ')}] ` +
        `(candidates ${[...new Set(list)].join(', ')})`,
    );
  }
}

/**
 * Is `pid` running and one of this cell's processes — its environment carries `marker`, a path unique to
 * the cell? Pids wrap around quickly on a busy machine: a pid reused by someone else's process is not ours,
 * and a zombie (its environment reads empty) has exited.
 */
export function running(pid: number, marker: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(marker) && alive(pid);
  } catch {
    return false;
  }
}

/** Every pid in `pids` has exited, within `ms`. */
export async function expectAllGone(
  pids: Iterable<number>,
  isRunning: (pid: number) => boolean,
  what: string,
  ms = 15_000,
): Promise<void> {
  const list = [...new Set(pids)];
  try {
    await waitFor(() => list.every((p) => !isRunning(p)), ms, what, 50);
  } catch {
    throw new Error(`${what}: still running: ${list.filter(isRunning).join(', ')}`);
  }
}

/** SIGCONT a pid if it still exists (a stopped process must not outlive its test). */
export function cont(pid: number): void {
  try {
    process.kill(pid, 'SIGCONT');
  } catch {
    // gone
  }
}

// --- a supervised fault app -------------------------------------------------------------------------

export interface FaultWorld {
  s: Supervised;
  faultFile: string;
  holdFile: string;
  /** Generation 1's pid. */
  gen1: number;
  traffic: Traffic;
  /** Every pid seen so far: the supervisor and each generation (its spawn line or its own lines). */
  pids(): number[];
  /** Generation `gen` acts at `step` (the fault app reads the file at each step). */
  fault(gen: number, step: string, action: 'kill' | 'hang' | 'hold' | 'exit1'): void;
  /** Let a process that holds at a step go on. */
  release(): void;
  /** Is `pid` a running process of this cell (not a zombie, not a reused pid)? */
  running(pid: number): boolean;
}

/**
 * `baton run` the fault app (generation 1 serving, traffic running against it). `readyTimeout` and
 * `drainTimeout` in seconds (defaults 10 and 10: every cell settles well within them unless it waits
 * for one on purpose).
 */
export async function superviseFaultApp(
  t: { after(fn: () => unknown): void },
  opts: { readyTimeout?: number; drainTimeout?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<FaultWorld> {
  const dir = tmpDir(t);
  const faultFile = path.join(dir, 'fault');
  const holdFile = path.join(dir, 'release');
  fs.writeFileSync(faultFile, '');
  const s = await startSupervised(t, {
    app: FAULT_APP,
    dir,
    env: { FAULT_FILE: faultFile, HOLD_FILE: holdFile, ...opts.env },
    runArgs: ['--ready-timeout', String(opts.readyTimeout ?? 10), '--drain-timeout', String(opts.drainTimeout ?? 10)],
  });
  const gen1 = await servingPid(s.sup, 1);
  const traffic = await startTraffic(t, s.port);
  const seen = new Set<number>([s.sup.pid, gen1]);
  return {
    s,
    faultFile,
    holdFile,
    gen1,
    traffic,
    pids() {
      for (const pid of s.generationPids()) seen.add(pid);
      for (const m of s.sup.stdout().matchAll(/\bpid[= ](\d+)/g)) seen.add(Number(m[1]));
      return [...seen];
    },
    fault(gen, step, action) {
      fs.appendFileSync(faultFile, `${gen} ${step} ${action}\n`);
    },
    release() {
      fs.writeFileSync(holdFile, '');
    },
    running: (pid) => running(pid, `HOLD_FILE=${holdFile}`),
  };
}
