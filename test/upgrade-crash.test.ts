/**
 * Acceptance: a generation that crashes while serving (SIGKILL) does not close the port. The supervisor
 * keeps its own copy of the listener, so connections made while no generation runs wait in the kernel's
 * accept queue until the respawned generation accepts them: a client that opens one connection after the
 * other throughout never sees ECONNREFUSED. The one request that may be in flight on the killed process
 * at that moment may be reset — that request was lost with the process, not with the port.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from './helpers.js';
import { get, SERVING, startSupervised, waitExit } from './upgrade-helpers.js';

test('baton run: SIGKILL of the serving generation: no ECONNREFUSED, generation 2 is respawned and serves', {
  timeout: 120_000,
}, async (t) => {
  const s = await startSupervised(t);
  const gen1 = (await s.serving())[0]!;
  assert.equal(gen1.generation, 1);

  // Sequential client: a fresh connection for every request, no pause.
  const outcomes: Array<{ gen: number } | { error: string }> = [];
  let stopping = false;
  const client = (async () => {
    const deadline = Date.now() + 60_000;
    while (!stopping && Date.now() < deadline) {
      try {
        const r = await get(s.port, '/', 10_000);
        const m = /generation (\d+)/.exec(r.body);
        outcomes.push(r.status === 200 && m ? { gen: Number(m[1]) } : { error: `status ${r.status}` });
      } catch (err) {
        outcomes.push({ error: (err as NodeJS.ErrnoException).code ?? (err as Error).message });
      }
    }
  })();
  t.after(() => {
    stopping = true;
    return client;
  });
  const fromGen = (n: number) => outcomes.filter((o) => 'gen' in o && o.gen === n).length;
  await waitFor(() => fromGen(1) >= 50, 20_000, 'the client served by generation 1');

  process.kill(gen1.pid, 'SIGKILL');
  await waitExit(gen1.pid, 10_000, 'generation 1 dies');
  await s.sup.line(SERVING(2), 20_000);
  await waitFor(() => fromGen(2) >= 50, 20_000, 'the client served by the respawned generation 2');
  stopping = true;
  await client;

  const errors = outcomes.filter((o): o is { error: string } => 'error' in o).map((o) => o.error);
  t.diagnostic(
    `requests: ${outcomes.length}; from gen 1: ${fromGen(1)}, gen 2: ${fromGen(2)}; errors: ${JSON.stringify(errors)}`,
  );
  assert.ok(!errors.includes('ECONNREFUSED'), `connection refused while no generation ran: ${JSON.stringify(errors)}`);
  // At most the one request in flight on the killed process, reset with it.
  assert.ok(
    errors.length <= 1 && errors.every((e) => e === 'ECONNRESET'),
    `unexpected errors: ${JSON.stringify(errors)}`,
  );
  // Generation 1 served until it died, generation 2 from then on: never back and forth.
  const firstGen2 = outcomes.findIndex((o) => 'gen' in o && o.gen === 2);
  assert.ok(outcomes.slice(firstGen2).every((o) => !('gen' in o) || o.gen === 2));
  assert.ok(outcomes.slice(0, firstGen2).every((o) => !('gen' in o) || o.gen === 1));

  const st = await s.status();
  assert.deepEqual(
    st.generations.map((g) => [g.generation, g.state]),
    [[2, 'serving']],
  );
  assert.notEqual(st.generations[0]!.pid, gen1.pid);
  const respawn = st.upgrades.find((u) => u.generation === 2);
  assert.deepEqual(respawn && [respawn.kind, respawn.outcome], ['respawn', 'serving']);
  assert.deepEqual(st.listeners, [{ name: 'web', kind: 'tcp', address: `127.0.0.1:${s.port}` }]);
  assert.match(
    s.sup.stderr(),
    new RegExp(`baton ERROR crash supervisor=${s.sup.pid} generation=1 child=${gen1.pid} code=null signal=SIGKILL`),
  );
  assert.match((await get(s.port)).body, /generation 2 /);

  // It stops by itself on SIGTERM (its exit code may report the earlier crash: 1).
  const code = await s.shutdown();
  assert.ok(code === 0 || code === 1, `supervisor exit: ${code}`);
  await waitExit(st.generations[0]!.pid, 10_000, 'generation 2 exits with the supervisor');
});
