/**
 * A new generation whose fd table fills up in the middle of a move (src/upgrader/fd-room.ts). The migration
 * receiver announces its room with each acknowledgement, and the old generation never sends more fds than that:
 * past RLIMIT_NOFILE the kernel cuts the fds off the message (MSG_CTRUNC) and those connections are lost while
 * the old generation believes they moved. With a full table the receiver cannot even read /proc to measure its
 * room (EMFILE): it used to announce "no limit" then, and the next batch went straight into the full table.
 *
 * test/fixtures/tcp-fills-table-app.ts: generation 2 starts with room for about 100 connections (below two full
 * batches: it measures again at every acknowledgement). Generation 1 moves its first connection alone — it comes
 * with bytes (the start of a line), so generation 2 adopts it on arrival — and generation 2 fills its fd table
 * completely right then, before it acknowledges that batch. Nothing else is in flight: generation 1 moves the
 * other 20 only once that batch is acknowledged. Every one of them must be told goodbye by generation 1
 * (ERR_BATON_NO_ROOM) — none closed silently, no fd cut off a message; the first keeps its state and partial line
 * in generation 2; generation 2 serves new clients once its app closed its fillers, and holds no fd it should not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES, openFds, tmpDir, waitFor } from './helpers.js';
import { connectLineClients, LineClient, parseLine } from './migrate-helpers.js';
import { startSupervised } from './upgrade-helpers.js';

const APP = path.join(FIXTURES, 'tcp-fills-table-app.js');
const PRLIMIT = spawnSync('prlimit', ['--version']).status === 0;
/** Connections moved after the first, once generation 2's table is full. */
const REST = 20;

/** What a client's connection ended with: the old generation's goodbye, or nothing (closed without a word). */
function ending(c: LineClient): string {
  const last = c.lines.at(-1) ?? '';
  const bye = /^1:[^:]+:-:bye (\S+)$/.exec(last);
  return bye ? `bye ${bye[1]}` : `closed after ${JSON.stringify(last)}`;
}

test('a new generation whose fd table fills during a move: the rest are closed politely, none is cut', async (t) => {
  if (!PRLIMIT) return t.skip('prlimit (util-linux) is not installed');
  const dir = tmpDir(t);
  const freeFile = path.join(dir, 'free');
  const s = await startSupervised(t, {
    app: APP,
    dir,
    servingLine: /generation 1 serving on tcp:\/\/127\.0\.0\.1:(\d+)/,
    env: { FREE_FILE: freeFile },
  });
  const clients: LineClient[] = [];
  t.after(() => {
    for (const c of clients) c.socket.destroy();
  });
  // The first client leaves the start of a line in generation 1 (one write: read at once with the line it
  // follows, whose answer we wait for). It moves with the connection as pending bytes.
  const first = new LineClient(s.port);
  clients.push(first);
  await first.connected();
  first.socket.write('hello\npart');
  const firstId = parseLine(await first.answer(1)).id;
  await connectLineClients(s.port, REST, 10, clients);
  const rest = clients.slice(1);

  const reload = s.reload();
  const ready = await s.sup.line(/generation 2 (?:ready; fds (\d+)|cannot fill .*)/, 30_000);
  if (!ready[1]) return t.skip(ready[0]);
  const moving = await s.sup.line(/generation 1 moves (\S+) first with (\d+) pending bytes/, 30_000);
  assert.deepEqual([moving[1], moving[2]], [firstId, '4'], 'the first connection moves alone, with "part"');
  await s.sup.line(/generation 2 fd table full/, 30_000);
  const moved = await s.sup.line(/generation 1 moved (\d+) of (\d+) connections; not moved:(.*)/, 30_000);
  const r = await reload;
  assert.equal(r.code, 0, r.stderr);

  // Every other client was told why by generation 1 and closed — none lost on the way, silently.
  await waitFor(() => rest.every((c) => c.closed), 30_000, 'every client not moved is closed');
  const endings = rest.map(ending);
  const expected = rest.map(() => 'bye ERR_BATON_NO_ROOM');
  assert.deepEqual(endings, expected, `${moved[0]}\n${s.sup.stderr().slice(-3000)}`);
  assert.deepEqual([Number(moved[1]), Number(moved[2]), moved[3]], [1, REST + 1, ` ERR_BATON_NO_ROOM=${REST}`]);
  assert.doesNotMatch(s.sup.stderr(), /ERR_BATON_TRUNCATED|MSG_CTRUNC|migrate-adopt-failed/);

  // The app frees its fds: generation 2 goes on with the connection that moved (its state and partial line)
  // and serves new clients.
  fs.writeFileSync(freeFile, '');
  await s.sup.line(/generation 2 freed its fd table/, 30_000);
  first.socket.write('ial\n');
  assert.deepEqual(parseLine(await first.answer(2)), { gen: 2, id: firstId, n: 2, text: 'partial' });
  const fresh = new LineClient(s.port);
  clients.push(fresh);
  await fresh.connected();
  fresh.socket.write('new\n');
  assert.equal(parseLine(await fresh.answer(1)).gen, 2);

  // No fd it should not hold: once every client closed and generation 1 is gone, one fd fewer than when it was
  // ready — the migration channel, closed with generation 1.
  const gen2 = s.generationPids()[1]!;
  for (const c of clients) c.socket.destroy();
  const before = Number(ready[1]);
  await waitFor(() => openFds(gen2).length === before - 1, 10_000, `generation 2 back to ${before - 1} fds`, 50);
  assert.equal(await s.shutdown(), 0);
});
