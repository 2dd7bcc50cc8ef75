/**
 * The migration receiver without its readiness watch (src/upgrader/migrate-receiver.ts): when the epoll set it
 * parks connections in cannot be made — epoll_create1 fails, EMFILE with a full fd table — it adopts every
 * connection at arrival, as before readiness ordering, and says why once.
 *
 * With a real full fd table (test/fixtures/tcp-full-table-app.ts): generation 2 fills its table, lowered to
 * 1024, leaving exactly the room the moved connections' fds take when they arrive (one batch), and only
 * then does generation 1 move them. The fds arrive; the watch for the first of them cannot be made. Every
 * connection must still answer from generation 2 with its own id, the failure be logged once with its code and
 * syscall, generation 2 keep serving (a new client is answered once its fillers are closed), and hold no fd
 * it should not: no epoll set beyond libuv's, no connection left behind once its client closed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { FIXTURES, openFds, tmpDir, waitFor } from './helpers.js';
import { connectLineClients, epollSets, LineClient, parseLine } from './migrate-helpers.js';
import { startSupervised } from './upgrade-helpers.js';
import { MIN_BATCH } from '../src/upgrader/pacing.js';

const APP = path.join(FIXTURES, 'tcp-full-table-app.js');
const PRLIMIT = spawnSync('prlimit', ['--version']).status === 0;
/**
 * Connections moved: they must arrive in one message, together filling the table, so no more than the smallest
 * batch the sender ever sends. The first batch is at most 32, but the sender also sizes batches by its own CPU
 * time per connection (pacing.ts), which is larger on a loaded machine; split, the first part's arrival would leave
 * room for the epoll set, and the rest would be cut off by the kernel if the set were still open (CI once timed
 * out here waiting for 20 connections; that run's log does not say which batches were sent).
 */
const N = MIN_BATCH;

test('no fd left for the readiness watch: every moved connection is adopted at arrival and answers', async (t) => {
  if (!PRLIMIT) return t.skip('prlimit (util-linux) is not installed');
  const dir = tmpDir(t);
  const s = await startSupervised(t, {
    app: APP,
    dir,
    servingLine: /generation 1 serving on tcp:\/\/127\.0\.0\.1:(\d+)/,
    env: { MOVE_COUNT: String(N), GO_FILE: path.join(dir, 'go') },
  });
  const clients: LineClient[] = [];
  t.after(() => {
    for (const c of clients) c.socket.destroy();
  });
  const ids = await connectLineClients(s.port, N, N, clients);
  const [gen1] = s.generationPids();
  const libuvEpoll = epollSets(gen1!);

  const reload = s.reload();
  const full = await s.sup.line(/generation 2 (?:fd table full but (\d+); fds (\d+) before|cannot fill .*)/, 30_000);
  if (!full[1]) return t.skip(full[0]);
  const moved = await s.sup.line(/generation 1 moved (\d+) of (\d+) connections/, 30_000);
  assert.deepEqual([Number(moved[1]), Number(moved[2])], [N, N], moved[0]);
  await s.sup.line(new RegExp(`generation 2 took ${N} connections in`), 30_000);
  const r = await reload;
  assert.equal(r.code, 0, r.stderr);

  // The watch could not be made, and the log says why, once (not once per connection: the receiver stops
  // trying), with the code and the syscall. Logged before the 'took' line, but on stderr: another pipe, which
  // on a loaded machine reached the test after stdout (4 busy loops beside it: 7 runs in 16 read no line).
  await waitFor(() => /migrate-adopt-failed /.test(s.sup.stderr()), 10_000, 'the migrate-adopt-failed log line');
  const failures = s.sup.stderr().match(/migrate-adopt-failed .*/g) ?? [];
  t.diagnostic(failures.join('\n'));
  assert.equal(failures.length, 1, failures.join('\n') || 'no migrate-adopt-failed line');
  assert.match(failures[0]!, /code=EMFILE/);
  assert.match(failures[0]!, /syscall=epoll_create1/);

  // Every connection moved, once, with its state: its next line is answered by generation 2 on the same id.
  for (const c of clients) c.socket.write('again\n');
  for (let i = 0; i < N; i++) {
    const a = parseLine(await clients[i]!.answer(2));
    assert.deepEqual(a, { gen: 2, id: ids[i], n: 2, text: 'again' }, `client ${i}`);
  }
  // Generation 2 serves new clients (its fillers were closed once the move was in).
  const fresh = new LineClient(s.port);
  clients.push(fresh);
  await fresh.connected();
  fresh.socket.write('new\n');
  assert.equal(parseLine(await fresh.answer(1)).gen, 2);

  // No fd it should not hold: no epoll set beyond libuv's (none was made), no filler, and once every client
  // closed, one fd fewer than before it filled its table — the migration channel, closed with generation 1.
  const gen2 = s.generationPids().find((pid) => pid !== gen1)!;
  assert.equal(epollSets(gen2), libuvEpoll, 'no epoll set left in generation 2 beyond its event loop');
  for (const c of clients) c.socket.destroy();
  const before = Number(full[2]);
  await waitFor(() => openFds(gen2).length === before - 1, 10_000, `generation 2 back to ${before - 1} fds`, 50);
  assert.equal(await s.shutdown(), 0);
});
