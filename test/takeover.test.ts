/**
 * After a supervisor crash (SIGKILL), a new `baton run` with the same control socket takes over from the
 * generation left behind (the orphan; src/upgrader/orphan.ts, src/cli/takeover.ts): keep-alive requests and
 * WebSockets move to the new supervisor's first generation as in a reload, the orphan exits, and the new
 * supervisor works as usual. Also: the orphan dies in the middle of the takeover (before or after handing
 * its listeners over), and a port held by something that cannot be taken over fails with a clear reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';
import { startLoad } from '../scripts/lib/http-load.js';
import {
  expectLostAtMost,
  expectNothingLost,
  FAULT_APP,
  faultHit,
  holds,
  listenerInode,
  servedBy,
  servingPid,
  servingRe,
  startProbe,
  summary,
  superviseFaultApp,
} from './fault-helpers.js';
import { ROOT, spawnNode, tmpDir, waitFor, within, type Spawned } from './helpers.js';
import { alive, BATON, baton, isGenerationOf, startSupervised } from './upgrade-helpers.js';

const WS_APP = path.join(ROOT, 'examples/websocket/server.js');
const WS_SERVING = (gen: number) => new RegExp(`generation ${gen} serving WebSockets on ws://127\\.0\\.0\\.1:(\\d+)`);

interface WsClient {
  ws: WebSocket;
  sent: number;
  /** The next message number expected back. */
  expected: number;
  problems: string[];
  closes: number[];
  /** Which generation answered the last message. */
  lastGen: number;
}

/** A WebSocket to the example app: each message n is answered "<generation> <echoed count> <n>". */
function connectWs(port: number, id: number): Promise<WsClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/c${id}`, { perMessageDeflate: false });
    const c: WsClient = { ws, sent: 0, expected: 0, problems: [], closes: [], lastGen: 0 };
    ws.on('message', (data) => {
      const [gen, echoed, n] = String(data).split(' ').map(Number) as [number, number, number];
      if (n !== c.expected || echoed !== c.expected + 1)
        c.problems.push(`expected #${c.expected}/${c.expected + 1}, got #${n}/${echoed}`);
      c.expected = n + 1;
      c.lastGen = gen;
    });
    ws.on('close', (code) => c.closes.push(code));
    ws.once('open', () => resolve(c));
    ws.once('error', reject);
  });
}

/** Send one message on every open client every 100 ms; returns a stop function. */
function chatter(clients: WsClient[]): () => void {
  const timer = setInterval(() => {
    for (const c of clients) if (c.ws.readyState === WebSocket.OPEN) c.ws.send(String(c.sent++));
  }, 100);
  return () => clearInterval(timer);
}

/** Wait until every client's latest answer came from generation `gen` (and some messages since). */
async function answeredBy(clients: WsClient[], gen: number, what: string): Promise<void> {
  await waitFor(() => clients.every((c) => c.lastGen === gen), 20_000, what);
  const marks = clients.map((c) => c.expected);
  await waitFor(() => clients.every((c, i) => c.expected >= marks[i]! + 2), 20_000, `${what}: echoes go on`);
}

/** `baton run` again on `dir`/s.sock (not waiting for anything); its generations are killed after the test. */
function runAgain(
  t: { after(fn: () => unknown): void },
  dir: string,
  app: string,
  env: NodeJS.ProcessEnv = {},
  args: string[] = [],
): Spawned & { generations(): number[] } {
  const sup = spawnNode(t, BATON, ['run', '--socket', path.join(dir, 's.sock'), ...args, '--', process.execPath, app], {
    PORT: '0',
    ...env,
  });
  const generations = () =>
    [...sup.stderr().matchAll(/baton spawn supervisor=\d+ generation=\d+ child=(\d+)/g)].map((m) => Number(m[1]));
  t.after(() => {
    for (const pid of generations()) {
      if (!isGenerationOf(pid, sup.pid)) continue;
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  });
  return Object.assign(sup, { generations });
}

/**
 * The fault app under `baton run` with traffic; the supervisor SIGKILLed, the orphan serving on; then `fault`
 * is set and `baton run` started again on the same socket (PORT 'same': the orphan's port, else 0).
 */
async function orphanThen(
  t: Parameters<typeof superviseFaultApp>[0],
  fault: [number, string, 'kill' | 'hold'],
  env: { PORT?: 'same'; orphanEnv?: NodeJS.ProcessEnv } = {},
) {
  const w = await superviseFaultApp(t, { env: env.orphanEnv });
  process.kill(w.s.sup.pid, 'SIGKILL');
  await w.s.sup.exited;
  await w.traffic.served('by the orphan');
  w.fault(...fault);
  const port = env.PORT === 'same' ? { PORT: String(w.s.port) } : {};
  const s2 = runAgain(t, w.s.dir, FAULT_APP, { FAULT_FILE: w.faultFile, HOLD_FILE: w.holdFile, ...port });
  return { w, s2 };
}

test('supervisor SIGKILL → a new baton run takes over: 0 failed requests, every WebSocket kept, the orphan exits, ' +
  'reload works', {
  timeout: 120_000,
}, async (t) => {
  const s1 = await startSupervised(t, { app: WS_APP, servingLine: WS_SERVING(1) });
  const [orphan] = s1.generationPids();
  const load = startLoad({ port: s1.port, connections: 8, pauseMs: 5, timeoutMs: 20_000 });
  const probe = startProbe(s1.port);
  t.after(() => Promise.all([load.stop(), probe.stop()]));
  const clients = await Promise.all(Array.from({ length: 40 }, (_, i) => connectWs(s1.port, i)));
  t.after(() => clients.forEach((c) => c.ws.terminate()));
  const stopChatter = chatter(clients);
  t.after(stopChatter);
  await answeredBy(clients, 1, 'generation 1 answers every WebSocket');

  process.kill(s1.sup.pid, 'SIGKILL');
  await s1.sup.exited;
  // The orphan serves on without its supervisor.
  const before = load.result.ok;
  await waitFor(() => load.result.ok >= before + 100, 20_000, 'the orphan serves on');
  await answeredBy(clients, 1, 'the orphan answers every WebSocket');
  const lost = await baton(['status', '--socket', s1.socket]);
  assert.equal(lost.code, 1);
  assert.match(
    lost.stderr,
    new RegExp(`its supervisor is gone; pid ${orphan} serves on without it\\. Start \`baton run\` again`),
  );

  const s2 = await startSupervised(t, { app: WS_APP, dir: s1.dir, servingLine: WS_SERVING(2) });
  assert.equal(s2.port, s1.port, 'the new generation serves on the same port');
  assert.match(
    s2.sup.stderr(),
    new RegExp(`baton takeover supervisor=${s2.sup.pid} orphan=${orphan} generation=1 listeners=1`),
  );
  await answeredBy(clients, 2, "generation 2 (the new supervisor's) answers every WebSocket");
  await waitFor(() => !alive(orphan!), 20_000, 'the orphan drains and exits');
  await waitFor(
    () => /baton takeover-done supervisor=\d+ orphan=\d+/.test(s2.sup.stderr()),
    5000,
    'the takeover is reported done',
  );

  // The new supervisor holds its own copy of the listener: the port outlives its generations.
  const inode = listenerInode(s1.port);
  assert.ok(inode !== null && holds(s2.sup.pid, inode), 'the new supervisor holds a copy of the listener');
  const st = await s2.status();
  assert.equal(st.supervisor.pid, s2.sup.pid);
  assert.deepEqual(
    st.generations.map((g) => [g.generation, g.state]),
    [[2, 'serving']],
  );
  assert.equal(st.upgrades.at(-1)?.kind, 'takeover');
  assert.deepEqual(
    st.listeners.map((l) => l.address),
    [`127.0.0.1:${s1.port}`],
  );

  // A later reload moves the connections as usual.
  const r = await s2.reload();
  assert.equal(r.code, 0, `baton reload: ${r.stdout} ${r.stderr}`);
  assert.match(r.stdout, /generation 3 \(pid \d+\) is serving/);
  await answeredBy(clients, 3, 'generation 3 answers every WebSocket after the reload');

  stopChatter();
  const result = { load: await load.stop(), probe: await probe.stop() };
  t.diagnostic(summary(result));
  expectNothingLost(t, result);
  for (const c of clients) {
    assert.deepEqual(c.problems, [], 'every echo in order');
    assert.deepEqual(c.closes, [], 'no WebSocket closed');
    assert.equal(c.ws.readyState, WebSocket.OPEN);
  }
  assert.equal(await s2.shutdown(), 0);
});

test('the orphan dies mid-takeover (after handing over its listeners): the new generation serves on the same ' +
  'listener, no refusal, no EADDRINUSE', {
  timeout: 90_000,
}, async (t) => {
  const { w, s2 } = await orphanThen(t, [2, 'after-inventory', 'hold']);
  await faultHit(s2, 2, 'after-inventory');
  process.kill(w.gen1, 'SIGKILL'); // the orphan dies after sending its listeners, before the handover
  await waitFor(() => !alive(w.gen1), 10_000, 'the orphan is gone');
  w.release();
  const n = await servingPid(s2, 2);
  assert.equal(Number(servingRe(2).exec(s2.stdout())![1]), w.s.port, 'the same port');
  await waitFor(
    () => /baton WARN takeover-incomplete supervisor=\d+ orphan=\d+ alive=false/.test(s2.stderr()),
    10_000,
    'the supervisor notes the orphan died',
  );
  await w.traffic.served('by the new generation');
  // Only the orphan's own connections (8 keep-alive) could fail; no connection was refused: the listener
  // stayed open in the new supervisor and generation while nobody accepted.
  expectLostAtMost(t, await w.traffic.stop(), 8);
  await servedBy(w.s.port, 2, n);
  assert.deepEqual(s2.generations(), [n], 'one generation started, no crash loop');
  process.kill(s2.pid, 'SIGTERM');
  assert.equal(await s2.exited, 0);
});

test('the orphan dies when the takeover begins (before its listeners): the new supervisor starts afresh on the freed ' +
  'port', {
  timeout: 90_000,
}, async (t) => {
  // The port is pinned: the orphan's death frees it, and the fresh generation binds it again.
  const { w, s2 } = await orphanThen(t, [1, 'event:upgrade-start', 'kill'], { PORT: 'same' });
  const n = await servingPid(s2, 1);
  await waitFor(
    () => /baton WARN takeover-failed supervisor=\d+ orphan=\d+ reason=/.test(s2.stderr()),
    10_000,
    'the supervisor logs the failed takeover (stderr: it may reach the test after the serving line)',
  );
  assert.equal(w.running(w.gen1), false);
  await w.traffic.served('by the fresh generation');
  // The port was closed from the orphan's death to the fresh bind: refusals and resets are expected here.
  t.diagnostic(summary(await w.traffic.stop()));
  await servedBy(w.s.port, 1, n);
  assert.deepEqual(s2.generations(), [n], 'one generation started, no crash loop');
  process.kill(s2.pid, 'SIGTERM');
  assert.equal(await s2.exited, 0);
});

test('the orphan rolls back before the new generation is ready (its readyTimeout): it is told to stop and drains; ' +
  'nothing lost', {
  timeout: 90_000,
}, async (t) => {
  // The orphan waits 2 s for the new generation's ready; that generation holds (mid-fd-transfer) until then.
  const { w, s2 } = await orphanThen(t, [2, 'mid-fd-transfer', 'hold'], { orphanEnv: { READY_TIMEOUT: '2000' } });
  await faultHit(s2, 2, 'mid-fd-transfer');
  await waitFor(
    () => /baton WARN orphan-gone supervisor=\d+ orphan=\d+/.test(s2.stderr()),
    20_000,
    'the orphan rolls back',
  );
  await w.traffic.served('by the orphan after its rollback');
  w.release();
  const n = await servingPid(s2, 2);
  await waitFor(
    () => /baton orphan-stopped supervisor=\d+ orphan=\d+/.test(s2.stderr()),
    10_000,
    'the orphan is told to stop',
  );
  assert.match(s2.stderr(), /baton WARN takeover-incomplete supervisor=\d+ orphan=\d+ alive=true/);
  await waitFor(() => !w.running(w.gen1), 20_000, 'the orphan drains and exits');
  await w.traffic.served('by the new generation alone');
  expectNothingLost(t, await w.traffic.stop());
  await servedBy(w.s.port, 2, n);
  process.kill(s2.pid, 'SIGTERM');
  assert.equal(await s2.exited, 0);
});

test('two new baton runs race for the orphan: exactly one takes over, the other exits 1 and says why', {
  timeout: 90_000,
}, async (t) => {
  const s1 = await startSupervised(t, { app: WS_APP, servingLine: WS_SERVING(1) });
  const [orphan] = s1.generationPids();
  const load = startLoad({ port: s1.port, connections: 4, pauseMs: 5, timeoutMs: 20_000 });
  t.after(() => load.stop());
  process.kill(s1.sup.pid, 'SIGKILL');
  await s1.sup.exited;
  const racers = [runAgain(t, s1.dir, WS_APP), runAgain(t, s1.dir, WS_APP)];
  try {
    await waitFor(
      () => racers.some((r) => WS_SERVING(2).test(r.stdout())) && racers.some((r) => r.child.exitCode !== null),
      30_000,
      'one racer serving, the other exited',
    );
  } catch (err) {
    // Once in ~12 runs of the suite this timed out (CI, 2026-12-07) with nothing to say which part: name it.
    const said = racers.map(
      (r, i) =>
        `racer ${i + 1} (pid ${r.pid}, exit ${r.child.exitCode}):\n--- stdout\n${r.stdout().slice(-2000)}` +
        `\n--- stderr\n${r.stderr().slice(-4000)}`,
    );
    throw new Error(`${(err as Error).message}\n${said.join('\n')}`);
  }
  const winner = racers.find((r) => WS_SERVING(2).test(r.stdout()))!;
  const loser = racers.find((r) => r !== winner)!;
  assert.equal(await loser.exited, 1);
  assert.match(
    loser.stderr(),
    /baton: cannot start the supervisor: .*(another process is listening on it|another baton run is taking over pid \d+)/,
  );
  assert.deepEqual(loser.generations(), [], 'the loser started no generation');
  assert.equal(winner.generations().length, 1, 'the winner started one generation');
  await waitFor(() => !alive(orphan!), 20_000, 'the orphan drains and exits');
  const result = await load.stop();
  assert.equal(result.errors, 0, JSON.stringify(result.errorCodes));
  assert.equal(result.sent, result.ok);
  process.kill(winner.pid, 'SIGTERM');
  assert.equal(await winner.exited, 0);
});

test('a port held by a process that cannot be taken over: the failure names EADDRINUSE and the likely cause, and is ' +
  'bounded', {
  timeout: 60_000,
}, async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.after(() => blocker.close());
  const port = (blocker.address() as net.AddressInfo).port;
  const dir = tmpDir(t);
  const sup = runAgain(t, dir, path.join(ROOT, 'examples/http-server/server.js'), { PORT: String(port) }, [
    '--max-starts',
    '3',
  ]);
  assert.equal(await within(sup.exited, 30_000, 'the supervisor gives up'), 1);
  assert.equal(sup.generations().length, 3, 'three starts, then it gave up');
  const giveUp = /baton: giving up: 3 starts in a row failed; .*/s.exec(sup.stderr())?.[0] ?? '';
  assert.match(giveUp, /EADDRINUSE/);
  assert.match(
    giveUp,
    /hint: the address is in use by another process — most likely a generation orphaned by a crashed supervisor/,
  );
});
