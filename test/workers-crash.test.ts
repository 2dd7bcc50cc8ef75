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
import { get, startSupervised, type Supervised, waitExit } from './upgrade-helpers.js';

const APP = path.join(FIXTURES, 'worker-app.js');
/** A probe's bound: without the lend a probe queued in slot 1 waits for the held respawn, far longer. */
const PROBE_TIMEOUT_MS = 5000;
/** Fresh connections probed while worker 1 is down. */
const PROBES_WHILE_DOWN = 150;

type Cleanup = Parameters<typeof startSupervised>[0];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Start 2 workers whose respawned worker 1 (generation 2) waits for `gate` before it listens. */
async function start(t: Cleanup, env: NodeJS.ProcessEnv = {}): Promise<{ s: Supervised; gate: string }> {
  const dir = tmpDir(t);
  const gate = path.join(dir, 'go');
  const s = await startSupervised(t, {
    app: APP,
    dir,
    env: { HOLD_AT: '2:1', HOLD_FILE: gate, ...env },
    runArgs: ['--workers', '2'],
  });
  return { s, gate };
}

/** The pid of worker `index` of generation `generation`, from its stdout line. */
async function workerPid(s: Supervised, index: number, generation: number): Promise<number> {
  const m = await s.sup.line(new RegExp(`worker ${index} of 2 generation ${generation} pid (\\d+)`), 30_000);
  return Number(m[1]);
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
  /** Opened after the test saw the victim gone. */
  afterKill: boolean;
  pid?: number;
  code?: string;
}

test('kill -9 of worker 1, its respawn held: worker 0 serves slot 1 meanwhile, no fresh connection fails', async (t) => {
  const { s, gate } = await start(t, {});
  const p0 = await workerPid(s, 0, 1);
  const p1 = await workerPid(s, 1, 1);
  assert.equal(fdsOn(p0, 'tcp', s.port), 1, 'worker 0 holds its own slot socket only');
  let killed = false;
  const probes: Probe[] = [];
  const prober = (async () => {
    for (;;) {
      const afterKill = killed;
      try {
        const { status, body } = await get(s.port, '/', PROBE_TIMEOUT_MS);
        probes.push(status === 200 ? { afterKill, pid: Number(body.split(' ')[0]) } : { afterKill, code: `${status}` });
      } catch (err) {
        probes.push({ afterKill, code: (err as NodeJS.ErrnoException).code ?? (err as Error).message });
        if (afterKill) return; // the test fails: no need to wait out the rest
      }
      if (probes.filter((p) => p.afterKill).length >= PROBES_WHILE_DOWN) return;
      await sleep(10);
    }
  })();
  await sleep(300);
  process.kill(p1, 'SIGKILL');
  await waitExit(p1, 10_000, 'worker 1 is gone');
  killed = true;
  await within(prober, 120_000, 'the probes');
  const after = probes.filter((p) => p.afterKill);
  const failedAfter = after.filter((p) => p.code);
  assert.deepEqual(
    failedAfter.map((p) => p.code),
    [],
    `${failedAfter.length} of ${after.length} fresh connections opened after the kill failed`,
  );
  assert.equal(after.length, PROBES_WHILE_DOWN);
  const servedBy = new Set(after.map((p) => p.pid));
  assert.deepEqual([...servedBy], [p0], 'worker 0 answers every fresh connection while worker 1 is down');
  // Sequential probes: at most the one the victim held at the kill can fail (its connection died with it).
  const failedBefore = probes.filter((p) => !p.afterKill && p.code);
  assert.ok(failedBefore.length <= 1, `before the kill was seen: ${failedBefore.map((p) => p.code).join(', ')}`);
  for (const p of failedBefore) assert.match(p.code!, /ECONNRESET|socket hang up/);
  assert.equal(fdsOn(p0, 'tcp', s.port), 2, 'worker 0 holds slot 1 socket as well (lent)');

  fs.writeFileSync(gate, '');
  const p1b = await workerPid(s, 1, 2);
  await waitFor(() => fdsOn(p0, 'tcp', s.port) === 1, 10_000, 'worker 0 closes its copy of slot 1 socket');
  const counts = new Map<number, number>();
  for (let i = 0; i < 100; i++) {
    const { status, body } = await get(s.port, '/', PROBE_TIMEOUT_MS);
    assert.equal(status, 200);
    const pid = Number(body.split(' ')[0]);
    counts.set(pid, (counts.get(pid) ?? 0) + 1);
  }
  assert.deepEqual(
    [...counts.keys()].sort((a, b) => a - b),
    [p0, p1b].sort((a, b) => a - b),
    'both slots answer, slot 1 by the new worker 1',
  );
  assert.equal(await s.shutdown(), 1, 'a serving worker crashed: exit 1, as with one worker');
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
  const { s, gate } = await start(t, { UDP: '1' });
  const udpPort = Number((await s.sup.line(/udp port (\d+)/, 10_000))[1]);
  const p0 = await workerPid(s, 0, 1);
  const p1 = await workerPid(s, 1, 1);
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
  process.kill(p1, 'SIGKILL');
  await waitExit(p1, 10_000, 'worker 1 is gone');
  for (let round = 0; round < 5; round++) {
    for (const c of slot1) assert.equal(await ask(c, udpPort), p0, `round ${round}: worker 0 answers slot 1's flows`);
  }
  assert.equal(fdsOn(p0, 'udp', udpPort), 2, 'worker 0 holds slot 1 socket as well (lent)');

  fs.writeFileSync(gate, '');
  const p1b = await workerPid(s, 1, 2);
  await waitFor(() => fdsOn(p0, 'udp', udpPort) === 1, 10_000, 'worker 0 closes its copy of slot 1 socket');
  for (const c of slot1) assert.equal(await ask(c, udpPort), p1b, 'the new worker 1 answers slot 1 flows');
  assert.equal(await s.shutdown(), 1);
});
