/**
 * Acceptance: zero-downtime upgrades in standalone mode (no supervisor). examples/http-server runs with
 * BATON_SOCKET; each new process started with the same environment takes over from the one serving
 * (it inherits the listener and the control socket; the old one drains and exits). 10 takeovers under a
 * keep-alive load: not one request fails. A second newcomer that arrives while a takeover is in
 * progress is refused with ERR_BATON_UPGRADE_IN_PROGRESS, without disturbing anything. And successors
 * that fail before ready() (exit 1, SIGKILL) roll back: the serving process carries on, and takes the
 * next successor as usual.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startLoad } from '../scripts/lib/http-load.js';
import { spawnNode, tmpDir, waitFor, within, type Spawned } from './helpers.js';
import { alive, baton, BEHAVIOUR_APP, get, HTTP_EXAMPLE, SERVING, waitExit } from './upgrade-helpers.js';

const TAKEOVERS = 10;

async function first(t: Parameters<typeof tmpDir>[0]) {
  const dir = tmpDir(t);
  const socket = path.join(dir, 'c.sock');
  const p = spawnNode(t, HTTP_EXAMPLE, [], { BATON_SOCKET: socket, PORT: '0' });
  const port = Number((await p.line(SERVING(1), 20_000))[1]);
  return { dir, socket, port, p };
}

test('standalone: 10 successive processes take over under load, no request fails', { timeout: 180_000 }, async (t) => {
  const { socket, port, p } = await first(t);
  const load = startLoad({ port, connections: 20, pauseMs: 2, timeoutMs: 10_000, durationMs: 120_000 });
  t.after(() => load.stop());
  await waitFor(() => load.result.ok >= 200, 20_000, 'the load running against generation 1');

  let prev: Spawned = p;
  for (let i = 0; i < TAKEOVERS; i++) {
    const gen = i + 2;
    const before = load.result.ok;
    const next = spawnNode(t, HTTP_EXAMPLE, [], { BATON_SOCKET: socket, PORT: String(port) });
    const m = await next.line(SERVING(gen), 20_000);
    assert.equal(Number(m[1]), port, 'the new process serves on the same port');
    assert.equal(
      await within(prev.exited, 20_000, `generation ${gen - 1} exits after the takeover`),
      0,
      prev.stderr().slice(-2000),
    );
    assert.match(
      prev.stderr(),
      new RegExp(`baton upgraded gen=${gen - 1} pid=${prev.pid} next=${gen} peer=${next.pid}`),
    );
    await waitFor(
      () => /baton listen gen=\d+ pid=\d+ name=web address=127\.0\.0\.1:\d+ inherited=true/.test(next.stderr()),
      10_000,
      `generation ${gen} logs its inherited listener (stderr: it may reach the test after the serving line)`,
    );
    await waitFor(() => load.result.ok >= before + 50, 10_000, `requests served by generation ${gen}`);
    prev = next;
  }
  const result = await load.stop();
  t.diagnostic(
    `http-load: sent ${result.sent}, ok ${result.ok}, errors ${result.errors}, connections opened ` +
      `${result.socketsOpened}`,
  );
  assert.equal(result.errors, 0, `failed requests: ${JSON.stringify(result.errorCodes)}`);
  assert.equal(result.non2xx, 0);
  assert.equal(result.sent, result.ok);
  assert.ok(result.ok >= 500, `only ${result.ok} requests completed`);
  assert.match((await get(port)).body, new RegExp(`generation ${TAKEOVERS + 1} \\(pid ${prev.pid}\\)`));

  // The control socket moved along: `baton status` reaches the last generation; `baton stop` stops it.
  const st = await baton(['status', '--json', '--socket', socket]);
  assert.equal(st.code, 0, st.stderr);
  const gens = (JSON.parse(st.stdout) as { generations: Array<{ generation: number; pid: number; state: string }> })
    .generations;
  assert.deepEqual(
    gens.map((g) => [g.generation, g.pid, g.state]),
    [[TAKEOVERS + 1, prev.pid, 'serving']],
  );
  const stop = await baton(['stop', '--socket', socket]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal(await within(prev.exited, 20_000, 'the last generation exits on baton stop'), 0);
  assert.equal(fs.existsSync(socket), false, 'a stopped standalone generation removes its control socket');
});

test('standalone: a second newcomer during a takeover is refused (ERR_BATON_UPGRADE_IN_PROGRESS); serving goes on', {
  timeout: 180_000,
}, async (t) => {
  const { dir, socket, port, p } = await first(t);
  const load = startLoad({ port, connections: 10, pauseMs: 2, timeoutMs: 10_000, durationMs: 120_000 });
  t.after(() => load.stop());
  await waitFor(() => load.result.ok >= 100, 20_000, 'the load running against generation 1');

  // A successor that joins (inherits the sockets) and calls ready() only once the test lets it.
  const behaviour = path.join(dir, 'behaviour');
  fs.writeFileSync(behaviour, 'held-ready');
  const slow = spawnNode(t, BEHAVIOUR_APP, [], { BATON_SOCKET: socket, PORT: String(port), BEHAVIOUR_FILE: behaviour });
  await slow.line(/generation 2 pid \d+ held-ready/, 20_000);

  // Meanwhile a third process tries to take over as well.
  const third = spawnNode(t, HTTP_EXAMPLE, [], { BATON_SOCKET: socket, PORT: String(port) });
  const code = await within(third.exited, 20_000, 'the refused newcomer exits');
  assert.notEqual(code, 0, 'the refused newcomer must not start serving');
  assert.match(third.stderr(), /ERR_BATON_UPGRADE_IN_PROGRESS/);
  assert.match(third.stderr(), /upgrade in progress/);
  assert.doesNotMatch(third.stdout(), /serving on/);
  assert.match(p.stderr(), new RegExp(`baton WARN upgrade-refused gen=1 pid=${p.pid} peer=${third.pid}`));
  assert.ok(alive(p.pid), 'the serving generation is still there');

  // The held successor completes its takeover; the first generation drains and exits.
  fs.writeFileSync(`${behaviour}.release`, '');
  await slow.line(SERVING(2), 20_000);
  assert.equal(await within(p.exited, 20_000, 'generation 1 exits after the takeover'), 0, p.stderr().slice(-2000));
  const before = load.result.ok;
  await waitFor(() => load.result.ok >= before + 50, 10_000, 'requests served by generation 2');
  const result = await load.stop();
  assert.equal(result.errors, 0, `failed requests: ${JSON.stringify(result.errorCodes)}`);
  assert.equal(result.non2xx, 0);
  assert.equal(result.sent, result.ok);
  assert.match((await get(port)).body, new RegExp(`generation 2 pid ${slow.pid}`));
  await waitExit(third.pid, 5000, 'the refused newcomer is gone');
});

test('standalone: successors that fail before ready() (exit 1, SIGKILL) cost nothing; the next one takes over', {
  timeout: 180_000,
}, async (t) => {
  const { dir, socket, port, p } = await first(t);
  const load = startLoad({ port, connections: 10, pauseMs: 2, timeoutMs: 10_000, durationMs: 120_000 });
  t.after(() => load.stop());
  await waitFor(() => load.result.ok >= 100, 20_000, 'the load running against generation 1');
  const behaviour = path.join(dir, 'behaviour');
  const env = { BATON_SOCKET: socket, PORT: String(port), BEHAVIOUR_FILE: behaviour };
  const served = async (what: string) => {
    const before = load.result.ok;
    await waitFor(() => load.result.ok >= before + 50, 10_000, `requests served ${what}`);
  };

  // Exits with code 1 after inheriting the listener and the control socket.
  fs.writeFileSync(behaviour, 'exit1');
  const failing = spawnNode(t, BEHAVIOUR_APP, [], env);
  assert.equal(await within(failing.exited, 20_000, 'the failing successor exits'), 1);
  await waitFor(() => /baton WARN rollback gen=1 /.test(p.stderr()), 10_000, 'generation 1 reports the rollback');
  await served('after the first rollback');

  // SIGKILLed while it holds the inherited sockets, before ready().
  fs.writeFileSync(behaviour, 'hang');
  const hung = spawnNode(t, BEHAVIOUR_APP, [], env);
  await hung.line(/generation 2 pid \d+ hang/, 20_000);
  process.kill(hung.pid, 'SIGKILL');
  await within(hung.exited, 10_000, 'the killed successor is gone');
  await waitFor(
    () => (p.stderr().match(/baton WARN rollback gen=1 /g) ?? []).length === 2,
    10_000,
    'generation 1 reports the second rollback',
  );
  await served('after the second rollback');
  assert.ok(alive(p.pid), 'generation 1 still serves');
  const st = await baton(['status', '--json', '--socket', socket]);
  assert.equal(st.code, 0, st.stderr);
  assert.deepEqual(
    (JSON.parse(st.stdout) as { generations: Array<{ generation: number; state: string }> }).generations.map((g) => [
      g.generation,
      g.state,
    ]),
    [[1, 'serving']],
  );

  // A good successor now takes over as usual.
  const next = spawnNode(t, HTTP_EXAMPLE, [], { BATON_SOCKET: socket, PORT: String(port) });
  await next.line(SERVING(2), 20_000);
  assert.equal(await within(p.exited, 20_000, 'generation 1 exits after the takeover'), 0);
  await served('by generation 2');
  const result = await load.stop();
  assert.equal(result.errors, 0, `failed requests: ${JSON.stringify(result.errorCodes)}`);
  assert.equal(result.non2xx, 0);
  assert.equal(result.sent, result.ok);
});
