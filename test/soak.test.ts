/**
 * The soak, short: the harness of `npm run soak` (bench/soak/soak.ts) with 20 upgrades instead of 200.
 * bench/soak/app.ts (HTTP + WebSocket + UDP echo) runs under `baton run` and is upgraded 20 times with
 * `baton reload` while 8 keep-alive HTTP connections, 50 WebSocket clients exchanging numbered messages and
 * a numbered UDP stream run against it. Nothing may be lost, and neither the generations nor the supervisor
 * may grow in fds.
 *
 * Every process is killed by pid: runSoak does it at its end, and the pids it still tracks are killed
 * after the test whatever happened (the generations run detached, in their own process groups).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  DEFAULTS,
  fdsFlat,
  runSoak,
  summaryRows,
  TOLERANCE,
  verdictRows,
  type SoakResult,
} from '../bench/soak/soak.js';
import { tmpDir } from './helpers.js';

const UPGRADES = 20;

function logTail(r: SoakResult): string {
  try {
    return fs.readFileSync(r.logPath!, 'utf8').slice(-3000);
  } catch {
    return '(no log)';
  }
}

test(`soak: ${UPGRADES} upgrades under HTTP + WebSocket + UDP load, nothing lost, fd counts flat`, {
  timeout: 240_000,
}, async (t) => {
  const dir = tmpDir(t);
  const tracked = new Set<number>();
  t.after(() => {
    for (const pid of tracked) {
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  });
  // Bounded: no upgrade starts after 2 minutes (20 upgrades take well under one on a busy 2-core machine).
  // Each upgrade already waits for the new generation to answer 20 HTTP requests under the whole load before the
  // next; the pause after it is only a breath (it was 200 ms: 4 s of the test's 12 waiting).
  const r = await runSoak({ ...DEFAULTS, upgrades: UPGRADES, minutes: 2, pauseMs: 50, dir, tracked });
  for (const [k, v] of summaryRows(r).slice(1)) t.diagnostic(`${k}: ${v}`);
  for (const [goal, , measured, verdict] of verdictRows(r).slice(1)) t.diagnostic(`${verdict}: ${goal} (${measured})`);

  assert.equal(r.stoppedEarly, null, `${r.stoppedEarly}\n${logTail(r)}`);
  assert.deepEqual(r.upgradesFailed, [], logTail(r));
  assert.equal(r.upgradesDone, UPGRADES);
  assert.deepEqual(
    r.generations.map((g) => g.generation),
    Array.from({ length: UPGRADES + 1 }, (_, i) => i + 1),
    'one generation per upgrade, in order',
  );

  const h = r.http;
  assert.equal(h.sent, h.ok + h.non2xx + h.errors, 'every HTTP request is accounted for');
  assert.equal(h.errors, 0, `HTTP errors: ${JSON.stringify(h.errorCodes)}`);
  assert.equal(h.non2xx, 0, 'HTTP non-2xx');
  assert.ok(h.ok >= 20 * UPGRADES, `only ${h.ok} HTTP requests answered`);

  const w = r.ws;
  assert.equal(w.disconnects, 0, `WebSocket disconnects: ${JSON.stringify(w.reasons)}`);
  assert.equal(w.gaps, 0, 'WebSocket gaps (a message or an answer lost)');
  assert.equal(w.dups, 0, 'WebSocket duplicates');
  assert.equal(w.unanswered, 0, 'WebSocket messages never answered');
  assert.equal(r.wsServerOutOfOrder, 0, 'client messages out of order at the server');
  assert.equal(w.received, w.sent);
  assert.ok(w.sent >= w.clients, `only ${w.sent} WebSocket messages sent`);

  const u = r.udp;
  assert.equal(u.lost, 0, `${u.lost} of ${u.sent} UDP datagrams never echoed`);
  assert.equal(u.dups, 0, 'UDP echoes duplicated');
  assert.equal(u.sendErrors, 0, 'UDP send errors');
  assert.equal(u.echoed, u.sent);
  assert.ok(u.sent >= 100, `only ${u.sent} UDP datagrams sent`);

  // fds: every generation from 2 on (the first that inherits sockets and receives moved connections)
  // holds what generation 2 held, give or take a connection being opened or closed while counting: in all
  // before drain (the same load is on each), and apart from its connections (one fd each) at ready —
  // when the previous generation's connections may or may not have arrived — and before drain.
  const ref = r.generations[1]!;
  assert.ok(ref.atReady && ref.beforeDrain, 'generation 2 was measured');
  for (const g of r.generations.slice(1)) {
    assert.ok(g.atReady && g.beforeDrain, `generation ${g.generation} was measured`);
    assert.ok(
      fdsFlat(ref, g),
      `generation ${g.generation}: fds (connections) ${JSON.stringify([g.atReady, g.beforeDrain])}, generation 2: ` +
        `${JSON.stringify([ref.atReady, ref.beforeDrain])}`,
    );
  }
  // The last generation serves every HTTP and WebSocket connection (+ the one of the /stats request).
  assert.equal(
    r.generations.at(-1)!.beforeDrain!.connections,
    DEFAULTS.httpConnections + DEFAULTS.wsClients + 1,
    'connections on the last generation',
  );
  // The supervisor, sampled before the first upgrade and after each one: flat.
  assert.equal(r.supervisor.length, UPGRADES + 1, 'a supervisor sample per upgrade');
  const first = r.supervisor[0]!.fds;
  for (const s of r.supervisor)
    assert.ok(
      s.fds <= first + TOLERANCE.supervisorFds,
      `supervisor: ${s.fds} fds after upgrade ${s.upgrade}, ${first} before the first`,
    );
});
