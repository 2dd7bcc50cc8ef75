/**
 * `baton run --workers 2`, a worker killed with SIGKILL while serving (docs/workers.md, "Crash of one worker"):
 * its slot's socket stays open in the supervisor, which lends it to the live sibling until the respawned worker
 * is back. The respawn is held back (HOLD_AT: the new worker 1 waits for a file before it listens), so that the
 * slot stays empty as long as the test needs: every fresh TCP connection opened after the kill was observed
 * must be answered by worker 0 (without the lend, those hashed to slot 1 wait in its queue until the respawn,
 * and time out), and every UDP datagram sent from a flow that hashes to slot 1 too. Once worker 1 is back,
 * worker 0 has closed its borrowed copy (its fds in /proc) and slot 1 is served by the new worker 1 alone.
 *
 * Real processes, 127.0.0.1, bounded waits; startSupervised's cleanup kills the supervisor and every worker
 * by pid.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { FIXTURES, tmpDir, waitFor, within } from './helpers.js';
import { baton, get, startSupervised, type Supervised, waitExit } from './upgrade-helpers.js';

const APP = path.join(FIXTURES, 'worker-app.js');
/** A probe's bound: without the lend a probe queued in slot 1 waits for the held respawn, far longer. */
const PROBE_TIMEOUT_MS = 5000;
/** Fresh connections probed while worker 1 is down. */
const PROBES_WHILE_DOWN = 150;

type Cleanup = Parameters<typeof startSupervised>[0];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Start `workers` workers whose respawns `hold` (G:I, ...: generation 2 is a lane's first respawn) wait for
 * `gate` before they listen. */
async function start(
  t: Cleanup,
  options: { workers?: number; hold?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ s: Supervised; gate: string; pid: (index: number, generation: number) => Promise<number> }> {
  const dir = tmpDir(t);
  const gate = path.join(dir, 'go');
  const workers = options.workers ?? 2;
  const s = await startSupervised(t, {
    app: APP,
    dir,
    env: { HOLD_AT: options.hold ?? '2:1', HOLD_FILE: gate, ...options.env },
    runArgs: ['--workers', String(workers)],
  });
  // The pid of worker `index` of generation `generation`, from its stdout line.
  const pid = async (index: number, generation: number) => {
    const line = new RegExp(`worker ${index} of ${workers} generation ${generation} pid (\\d+)`);
    return Number((await s.sup.line(line, 30_000))[1]);
  };
  return { s, gate, pid };
}

/** The inodes of the sockets bound to 127.0.0.1:`port` (TCP: listening; UDP: any), from /proc/net. */
function socketInodes(kind: 'tcp' | 'udp', port: number): Set<string> {
  const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const inodes = new Set<string>();
  for (const line of fs.readFileSync(`/proc/net/${kind}`, 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === want && (kind === 'udp' || f[3] === '0A')) inodes.add(f[9]!);
  }
  return inodes;
}

/** How many of `pid`'s fds are sockets bound to 127.0.0.1:`port`. */
function fdsOn(pid: number, kind: 'tcp' | 'udp', port: number): number {
  const inodes = socketInodes(kind, port);
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && inodes.has(m[1]!)) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

interface Probe {
  /** Opened after the test saw every victim gone (mark()). */
  afterKill: boolean;
  pid?: number;
  code?: string;
}

/**
 * Fresh connections one after another, 10 ms apart, from now until PROBES_WHILE_DOWN have been opened after
 * mark() (or one of those fails: the test fails then, no need to wait out the rest). Sequential, so at each kill
 * at most one connection is in the victim's hands: that one may fail (it dies with the process), and only before
 * mark().
 */
function startProbes(port: number): { probes: Probe[]; mark(): void; done: Promise<void> } {
  const probes: Probe[] = [];
  let killed = false;
  const done = (async () => {
    for (;;) {
      const afterKill = killed;
      try {
        const { status, body } = await get(port, '/', PROBE_TIMEOUT_MS);
        probes.push(status === 200 ? { afterKill, pid: Number(body.split(' ')[0]) } : { afterKill, code: `${status}` });
      } catch (err) {
        probes.push({ afterKill, code: (err as NodeJS.ErrnoException).code ?? (err as Error).message });
        if (afterKill) return;
      }
      if (probes.filter((p) => p.afterKill).length >= PROBES_WHILE_DOWN) return;
      await sleep(10);
    }
  })();
  return { probes, mark: () => (killed = true), done: within(done, 120_000, 'the probes') };
}

/** No probe opened after mark() failed, all of them were answered by `pid`; at most `kills` failed before. */
function checkProbes(probes: Probe[], pid: number, kills: number): void {
  const after = probes.filter((p) => p.afterKill);
  const failedAfter = after.filter((p) => p.code);
  assert.deepEqual(
    failedAfter.map((p) => p.code),
    [],
    `${failedAfter.length} of ${after.length} fresh connections opened after the kill failed`,
  );
  assert.equal(after.length, PROBES_WHILE_DOWN);
  assert.deepEqual([...new Set(after.map((p) => p.pid))], [pid], `worker ${pid} answers every fresh connection`);
  const failedBefore = probes.filter((p) => !p.afterKill && p.code);
  assert.ok(failedBefore.length <= kills, `before the kill was seen: ${failedBefore.map((p) => p.code).join(', ')}`);
  for (const p of failedBefore) assert.match(p.code!, /ECONNRESET|socket hang up/);
}

/** Which pids answer 100 fresh connections, sorted. */
async function answering(port: number): Promise<number[]> {
  const pids = new Set<number>();
  for (let i = 0; i < 100; i++) {
    const { status, body } = await get(port, '/', PROBE_TIMEOUT_MS);
    assert.equal(status, 200);
    pids.add(Number(body.split(' ')[0]));
  }
  return [...pids].sort((a, b) => a - b);
}

/**
 * Probe fresh connections while `victims` are killed one after another (`between` runs before each kill but the
 * first), then PROBES_WHILE_DOWN more once all are seen gone: those must all be answered by `survivor`.
 */
async function probeThroughKills(
  port: number,
  survivor: number,
  victims: number[],
  between: () => Promise<void> = async () => {},
): Promise<void> {
  const probing = startProbes(port);
  await sleep(300);
  for (const [i, victim] of victims.entries()) {
    if (i > 0) await between();
    await kill(victim);
  }
  probing.mark();
  await probing.done;
  checkProbes(probing.probes, survivor, victims.length);
}

/** SIGKILL `pid` and wait until it is gone. */
async function kill(pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  await waitExit(pid, 10_000, `worker ${pid} is gone`);
}

const sorted = (pids: number[]) => [...pids].sort((a, b) => a - b);

test('kill -9 of worker 1, its respawn held: worker 0 serves slot 1 meanwhile, no fresh connection fails', async (t) => {
  const { s, gate, pid } = await start(t);
  const p0 = await pid(0, 1);
  const p1 = await pid(1, 1);
  assert.equal(fdsOn(p0, 'tcp', s.port), 1, 'worker 0 holds its own slot socket only');
  await probeThroughKills(s.port, p0, [p1]);
  assert.equal(fdsOn(p0, 'tcp', s.port), 2, "worker 0 holds slot 1's socket as well (lent)");
  const loans = (await s.status()) as unknown as { loans: Array<{ slot: number; worker: number; pid: number }> };
  assert.deepEqual(
    loans.loans.map(({ slot, worker, pid }) => ({ slot, worker, pid })),
    [{ slot: 1, worker: 0, pid: p0 }],
    'baton status --json lists the loan',
  );
  const text = await baton(['status', '--socket', s.socket]);
  assert.match(text.stdout, new RegExp(`slot 1 has no worker: served meanwhile by worker 0 \\(pid ${p0}\\): web`));

  fs.writeFileSync(gate, '');
  const p1b = await pid(1, 2);
  await waitFor(() => fdsOn(p0, 'tcp', s.port) === 1, 10_000, "worker 0 closes its copy of slot 1's socket");
  assert.deepEqual(await answering(s.port), sorted([p0, p1b]), 'both slots answer, slot 1 by the new worker 1');
  assert.deepEqual(((await s.status()) as unknown as { loans: unknown[] }).loans, [], 'no loan left');
  assert.equal(await s.shutdown(), 1, 'a serving worker crashed: exit 1, as with one worker');
});

test('3 workers: the borrower dies too: both empty slots are lent to the last live worker', async (t) => {
  const { s, gate, pid } = await start(t, { workers: 3, hold: '2:0,2:1' });
  const [p0, p1, p2] = [await pid(0, 1), await pid(1, 1), await pid(2, 1)];
  await probeThroughKills(s.port, p2, [p1, p0], async () => {
    // Slot 1 went to the least loaded live worker, the lowest index of a tie: worker 0. Now kill the borrower.
    await waitFor(() => fdsOn(p0, 'tcp', s.port) === 2, 10_000, 'worker 0 borrows slot 1');
    assert.equal(fdsOn(p2, 'tcp', s.port), 1);
  });
  assert.equal(fdsOn(p2, 'tcp', s.port), 3, 'worker 2 serves slots 0, 1 and 2');

  fs.writeFileSync(gate, '');
  const [p0b, p1b] = [await pid(0, 2), await pid(1, 2)];
  await waitFor(() => fdsOn(p2, 'tcp', s.port) === 1, 10_000, 'worker 2 closes both borrowed copies');
  assert.deepEqual(await answering(s.port), sorted([p0b, p1b, p2]), 'every slot answered by its own worker');
  assert.equal(await s.shutdown(), 1);
});

/** Send one datagram from `socket` to 127.0.0.1:`port`; resolves with the answering pid. */
function ask(socket: dgram.Socket, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off('message', onMessage);
      reject(Object.assign(new Error('no answer'), { code: 'ETIMEDOUT' }));
    }, PROBE_TIMEOUT_MS);
    const onMessage = (msg: Buffer) => {
      clearTimeout(timer);
      resolve(Number(msg.toString().split(' ')[0]));
    };
    socket.once('message', onMessage);
    socket.send('ping', port, '127.0.0.1');
  });
}

test('UDP: datagrams of flows that hash to slot 1 are answered by worker 0 while worker 1 is down', async (t) => {
  const { s, gate, pid } = await start(t, { env: { UDP: '1' } });
  const udpPort = Number((await s.sup.line(/udp port (\d+)/, 10_000))[1]);
  const p0 = await pid(0, 1);
  const p1 = await pid(1, 1);
  const clients: dgram.Socket[] = [];
  t.after(() => {
    for (const c of clients) c.close();
  });
  // A flow (source port) hashes to one slot for good: the group's sockets are all held by the supervisor.
  const slot1: dgram.Socket[] = [];
  for (let i = 0; i < 24; i++) {
    const c = dgram.createSocket('udp4');
    await new Promise<void>((r) => c.bind(0, '127.0.0.1', r));
    clients.push(c);
    if ((await ask(c, udpPort)) === p1) slot1.push(c);
  }
  assert.ok(slot1.length > 0, 'some of 24 flows hash to slot 1');
  await kill(p1);
  for (let round = 0; round < 5; round++) {
    for (const c of slot1) assert.equal(await ask(c, udpPort), p0, `round ${round}: worker 0 answers slot 1's flows`);
  }
  assert.equal(fdsOn(p0, 'udp', udpPort), 2, "worker 0 holds slot 1's socket as well (lent)");

  fs.writeFileSync(gate, '');
  const p1b = await pid(1, 2);
  await waitFor(() => fdsOn(p0, 'udp', udpPort) === 1, 10_000, "worker 0 closes its copy of slot 1's socket");
  for (const c of slot1) assert.equal(await ask(c, udpPort), p1b, 'the new worker 1 answers slot 1 flows');
  assert.equal(await s.shutdown(), 1);
});
