/**
 * The examples, run for real under `baton run` (separate processes, 127.0.0.1, a private tmp socket dir):
 * examples/udp-echo and examples/express answer, are reloaded, and answer again from the next generation
 * with nothing failing in between; examples/sse and examples/socket-io keep their clients through two reloads
 * with no event missing; and `npm start`'s script (dist/scripts/demo.js) runs to the end with a
 * non-TTY stdout, exits 0 and prints a summary with zero errors. Every process is killed by pid afterwards:
 * the supervisors and their generations (which run detached, in their own process groups).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, spawnNode, tmpDir, within, type Spawned } from './helpers.js';
import { alive, baton, get, isGenerationOf, waitExit } from './upgrade-helpers.js';

const BATON = path.join(ROOT, 'bin/baton.js');
const EXAMPLES = path.join(ROOT, 'examples');
const DEMO = path.join(ROOT, 'dist/scripts/demo.js');

type Cleanup = Parameters<typeof tmpDir>[0];

interface Supervised {
  sup: Spawned;
  socket: string;
  port: number;
  reload(): Promise<{ generation: number; pid: number }>;
  /** SIGTERM the supervisor and wait for it to exit (its generations drain first). */
  shutdown(): Promise<number | string>;
}

/** `baton run` the example `app` with PORT=0; resolves once `serving` (capturing the port) is printed. */
async function supervise(t: Cleanup, app: string, serving: RegExp): Promise<Supervised> {
  const socket = path.join(tmpDir(t), 's.sock');
  const sup = spawnNode(t, BATON, ['run', '--socket', socket, '--', process.execPath, app], { PORT: '0' });
  t.after(() => {
    // spawnNode SIGKILLs the supervisor; its generations are killed here, if they are still its own.
    for (const m of sup.stderr().matchAll(/baton spawn supervisor=\d+ generation=\d+ child=(\d+)/g)) {
      const pid = Number(m[1]);
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
  const port = Number((await sup.line(serving, 20_000))[1]);
  return {
    sup,
    socket,
    port,
    async reload() {
      const r = await baton(['reload', '--socket', socket], { timeoutMs: 60_000 });
      assert.equal(r.code, 0, `baton reload failed: ${r.stdout} ${r.stderr}`);
      const m = /generation (\d+) \(pid (\d+)\) is serving/.exec(r.stdout);
      assert.ok(m, `baton reload printed: ${r.stdout}`);
      return { generation: Number(m[1]), pid: Number(m[2]) };
    },
    shutdown() {
      if (sup.child.exitCode === null && sup.child.signalCode === null) process.kill(sup.pid, 'SIGTERM');
      return within(sup.exited, 20_000, 'the supervisor exits after SIGTERM');
    },
  };
}

/** Send `text` to udp 127.0.0.1:port and resolve with the first reply (reject after `ms`). */
function udpAsk(port: number, text: string, ms = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no reply to ${JSON.stringify(text)} within ${ms} ms`));
    }, ms);
    socket.once('message', (msg) => {
      clearTimeout(timer);
      socket.close();
      resolve(msg.toString());
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.close();
      reject(err);
    });
    socket.send(text, port, '127.0.0.1');
  });
}

test('examples/udp-echo: echoes with the generation, across reloads, without losing a datagram', async (t) => {
  const s = await supervise(
    t,
    path.join(EXAMPLES, 'udp-echo/server.js'),
    /generation 1 \(pid \d+\) echoing on udp 127\.0\.0\.1:(\d+)/,
  );
  const first = /generation 1 \(pid (\d+)\)/.exec(s.sup.stdout())!;
  assert.equal(await udpAsk(s.port, 'seq 1'), 'seq 1 from generation 1');

  const next = await s.reload();
  assert.equal(next.generation, 2);
  // Until generation 1 has closed its copy, either generation may read a datagram; once it has exited,
  // only generation 2 answers, on the same port.
  await waitExit(Number(first[1]), 15_000, 'generation 1 exits after the reload');
  assert.equal(await udpAsk(s.port, 'seq 2'), 'seq 2 from generation 2');

  // The example client sends throughout a second reload: every datagram gets its reply.
  const client = spawnNode(t, path.join(EXAMPLES, 'udp-echo/client.js'), [String(s.port), '0', '20']);
  await client.line(/answered by generation 2/, 10_000);
  assert.equal((await s.reload()).generation, 3);
  await client.line(/answered by generation 3/, 10_000);
  process.kill(client.pid, 'SIGINT');
  assert.equal(await within(client.exited, 10_000, 'the udp client exits'), 0, client.stdout().slice(-2000));
  const summary = /client: sent (\d+), replies (\d+), lost (\d+), duplicates (\d+); generations (.*)/.exec(
    client.stdout(),
  );
  assert.ok(summary, client.stdout().slice(-2000));
  assert.equal(summary[3], '0', `lost datagrams: ${summary[0]}`);
  assert.equal(summary[1], summary[2], 'every datagram sent got a reply');
  assert.equal(summary[5], '2 -> 3');

  assert.equal(await s.shutdown(), 0, s.sup.stderr().slice(-2000));
  assert.equal(alive(next.pid), false, 'generation 2 exited');
});

test('examples/express: an Express app is reloaded; a request in flight finishes on the old generation', async (t) => {
  const s = await supervise(
    t,
    path.join(EXAMPLES, 'express/server.js'),
    /generation 1 \(pid \d+\) serving express on http:\/\/127\.0\.0\.1:(\d+)/,
  );
  const r1 = await get(s.port, '/');
  assert.equal(r1.status, 200);
  const body1 = JSON.parse(r1.body) as { generation: number; pid: number };
  assert.equal(body1.generation, 1);

  // A slow request started before the reload is answered by generation 1 while generation 2 takes over.
  const slow = get(s.port, '/slow?ms=1500', 20_000);
  await within(connectionOnGeneration1(s.socket), 15_000, 'generation 1 reporting the slow connection');
  const next = await s.reload();
  assert.equal(next.generation, 2);

  // New connections reach generation 2 as soon as generation 1 has stopped accepting; none fails meanwhile.
  await within(pollUntil(s.port, 2), 15_000, 'a response from generation 2');

  const slowRes = await within(slow, 20_000, 'the slow request');
  assert.equal(slowRes.status, 200);
  assert.equal(
    (JSON.parse(slowRes.body) as { generation: number }).generation,
    1,
    'the request in flight finished on generation 1',
  );
  await waitExit(body1.pid, 15_000, 'generation 1 exits once drained');

  assert.equal(await s.shutdown(), 0, s.sup.stderr().slice(-2000));
  assert.equal(alive(next.pid), false, 'generation 2 exited');
});

/** Poll `baton status` until generation 1 reports an open connection (its stats come every 500 ms). */
async function connectionOnGeneration1(socket: string): Promise<void> {
  for (;;) {
    const r = await baton(['status', '--json', '--socket', socket]);
    assert.equal(r.code, 0, r.stderr);
    const st = JSON.parse(r.stdout) as { generations: Array<{ generation: number; connections: number }> };
    if (st.generations.some((g) => g.generation === 1 && g.connections > 0)) return;
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** GET / over fresh connections until generation `want` answers; every response must be a 200. */
async function pollUntil(port: number, want: number): Promise<void> {
  for (;;) {
    const r = await get(port, '/');
    assert.equal(r.status, 200, r.body);
    const { generation } = JSON.parse(r.body) as { generation: number };
    if (generation === want) return;
    assert.ok(generation < want, r.body);
    await new Promise((res) => setTimeout(res, 10));
  }
}

test('npm start -- --quick (dist/scripts/demo.js), stdout not a TTY: three reloads under load, exits 0 with errors 0', async (t) => {
  assert.ok(fs.existsSync(DEMO), 'dist/scripts/demo.js is built');
  const bad = spawnNode(t, DEMO, ['--fast']);
  assert.equal(await within(bad.exited, 20_000, 'the demo refuses an unknown argument'), 2);
  assert.match(bad.stderr(), /demo: unknown argument "--fast"\nusage: npm start \[-- --quick\]/);
  // --quick: the same run with 0.5 s pauses instead of 2 s (1.5 s after the last reload).
  const demo = spawnNode(t, DEMO, ['--quick']);
  t.after(() => {
    // Should the demo die before its own cleanup: its supervisor (detached) and generations, by pid.
    const out = demo.stdout();
    const pids = [...out.matchAll(/supervisor pid (\d+)/g), ...out.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1]));
    for (const pid of pids) {
      try {
        if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(path.join(ROOT, 'examples/http-server')))
          process.kill(pid, 'SIGKILL');
        else if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(BATON)) process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  const code = await within(demo.exited, 120_000, 'the demo finishes');
  const out = demo.stdout();
  assert.equal(code, 0, `demo failed:\n${out}\n${demo.stderr().slice(-3000)}`);
  // Plain lines, not a live line: no carriage returns or escape sequences without a TTY.
  assert.doesNotMatch(out, /[\r\x1b]/);
  assert.match(out, /reload 3\/3 ✓ generation 4/);
  const summary = /requests {2}sent ([\d,]+) {2}ok ([\d,]+) {2}non-2xx 0 {2}errors 0\n/.exec(out);
  assert.ok(summary, out);
  assert.equal(summary[1], summary[2], 'every request sent was answered 2xx');
  assert.match(out, /reloads {3}3 of 3 served/);
  // The demo's point: the same connections survive each reload (moved, not reconnected).
  const kept = [...out.matchAll(/(\d+) of (\d+) keep-alive connections kept open/g)];
  assert.equal(kept.length, 3, out);
  for (const k of kept) assert.equal(k[1], k[2], `every keep-alive connection survived: ${k[0]}`);
  assert.match(out, /never refused: [\d,]+ fresh connections, 0 refused/);
  assert.match(out, /supervisor stopped gracefully \(exit code 0\); no leftover processes; tmp dir removed/);
  assert.match(out, /^verdict: PASS/m);

  // Nothing it started is still running.
  const supPid = Number(/supervisor pid (\d+)/.exec(out)![1]);
  const genPids = [...out.matchAll(/generation \d+ \(pid (\d+)\)/g)].map((m) => Number(m[1]));
  assert.equal(genPids.length >= 3, true, out);
  for (const pid of [supPid, ...genPids]) assert.equal(alive(pid), false, `pid ${pid} is still running`);
});

/**
 * Run an example's counting client (5 clients) through two reloads; returns its summary line. Each reload
 * starts once every client gets its events from the current generation ("all 5 clients on generation G"), and
 * the client is stopped (SIGINT: it prints its summary and exits) once every client has followed the second:
 * no fixed waits (they were 1.5 s, 2.5 s and the client's 9-10 s). A gap at a reload shows in the first event
 * after it, so every gap is counted by then.
 */
async function countThroughReloads(
  t: Cleanup,
  s: Supervised,
  client: string,
  summary: RegExp,
): Promise<RegExpExecArray> {
  const c = spawnNode(t, client, [String(s.port), '5', '120']);
  const allOn = (gen: number) => c.line(new RegExp(`^all 5 clients on generation ${gen}$`, 'm'), 30_000);
  await allOn(1);
  assert.equal((await s.reload()).generation, 2);
  await allOn(2);
  assert.equal((await s.reload()).generation, 3);
  await allOn(3);
  process.kill(c.pid, 'SIGINT');
  assert.equal(await within(c.exited, 20_000, 'the client exits'), 0, c.stderr().slice(-2000));
  const m = summary.exec(c.stdout());
  assert.ok(m, c.stdout().slice(-2000));
  return m;
}

test('examples/sse: EventSource clients follow two reloads with Last-Event-ID, no event missing', async (t) => {
  const s = await supervise(
    t,
    path.join(EXAMPLES, 'sse/server.js'),
    /generation 1 serving SSE on http:\/\/127\.0\.0\.1:(\d+)/,
  );
  const m = await countThroughReloads(
    t,
    s,
    path.join(EXAMPLES, 'sse/client.js'),
    /events (\d+), missing (\d+), reconnects (\d+), generations (.*)/,
  );
  assert.equal(m[2], '0', m[0]);
  assert.ok(Number(m[1]) > 0 && m[4]!.endsWith('3'), m[0]);
  assert.equal(await s.shutdown(), 0, s.sup.stderr().slice(-2000));
});

test('examples/socket-io: clients follow two reloads with their sessions recovered, no tick missing', async (t) => {
  const s = await supervise(
    t,
    path.join(EXAMPLES, 'socket-io/server.js'),
    /generation 1 serving Socket\.IO on http:\/\/127\.0\.0\.1:(\d+)/,
  );
  const m = await countThroughReloads(
    t,
    s,
    path.join(EXAMPLES, 'socket-io/client.js'),
    /ticks (\d+), missing (\d+), reconnects (\d+) \(recovered (\d+)\), generations (.*)/,
  );
  assert.equal(m[2], '0', m[0]);
  assert.equal(m[3], m[4], `every reconnect recovered its session: ${m[0]}`);
  assert.ok(Number(m[3]) > 0 && m[5]!.endsWith('3'), m[0]);
  assert.equal(await s.shutdown(), 0, s.sup.stderr().slice(-2000));
});
