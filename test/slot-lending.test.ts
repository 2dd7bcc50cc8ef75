/**
 * SlotLending (src/cli/slot-lending.ts), the supervisor's decision of who serves a slot with no serving worker,
 * driven without processes: real slot sockets (SlotSockets on 127.0.0.1), lanes whose serving generation the test
 * sets, and sessions that record what would be sent. Covers: a crash lends the slot whole to a serving sibling and
 * its return takes it back; a borrower that dies too — its loans go to another, nothing is sent to the dead one; a
 * worker that did not announce the 'lend' feature is never sent one; a name that becomes a group later is lent on
 * its own; nothing while stopping; a re-exec (resumed()) takes every slot back first; a scale-down's kept sockets
 * (SlotSockets.resize, fewer lanes) are lent to the remaining workers — the call the scaling work makes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Generation } from '../src/cli/generation.js';
import type { Generations } from '../src/cli/generations.js';
import { SlotLending } from '../src/cli/slot-lending.js';
import { SlotSockets } from '../src/cli/slots.js';

type Cleanup = { after(fn: () => unknown): void };

/** A serving generation whose session records the lends and unlends sent to it. */
function worker(pid: number, features = ['lend']) {
  const sent: string[] = [];
  const session = {
    link: { closed: false },
    has: (f: string) => features.includes(f),
    lend: async (slot: number, sockets: ReadonlyArray<{ name: string }>) => {
      sent.push(`lend ${slot} ${sockets.map((s) => s.name).join(',')}`);
    },
    unlend: async (slot: number) => {
      sent.push(`unlend ${slot}`);
    },
    on: () => session,
  };
  const g = { generation: 1, pid, state: 'serving', session } as unknown as Generation;
  return { g, sent };
}

function setup(t: Cleanup, n: number, options: { features?: (i: number) => string[] } = {}) {
  const slots = new SlotSockets({ slots: n });
  t.after(() => slots.close());
  slots.bind('web', { kind: 'tcp', host: '127.0.0.1', port: 0 });
  slots.bind('dns', { kind: 'udp', host: '127.0.0.1', port: 0 });
  const workers = Array.from({ length: n }, (_, i) => worker(1000 + i, options.features?.(i)));
  const lanes = workers.map((w) => ({ current: w.g as Generation | null }));
  let stopping = false;
  const events: string[] = [];
  const lending = new SlotLending({
    slots,
    lanes: () => lanes as unknown as Generations[],
    stopping: () => stopping,
    log: (_level, event, fields) => events.push(`${event} ${JSON.stringify(fields)}`),
  });
  const sent = () => workers.map((w) => w.sent.splice(0));
  return { slots, workers, lanes, lending, events, sent, stop: () => (stopping = true) };
}

/** Worker `i` is gone: its generation exited (or a respawn is not back yet). */
function down(lanes: Array<{ current: Generation | null }>, i: number): void {
  (lanes[i]!.current as { state: string }).state = 'exited';
  lanes[i]!.current = null;
}

test('a crashed worker: its slot is lent whole to a serving sibling, and taken back when it is back', (t) => {
  const { lanes, lending, sent } = setup(t, 3);
  lending.reassign();
  assert.deepEqual(sent(), [[], [], []], 'every slot serves: nothing to lend');
  down(lanes, 1);
  lending.reassign();
  assert.deepEqual(sent(), [['lend 1 web,dns'], [], []], 'the least loaded, lowest index: worker 0');
  assert.deepEqual(
    lending.loans().map((l) => [l.slot, l.pid, l.names]),
    [[1, 1000, ['web', 'dns']]],
  );
  lending.reassign();
  assert.deepEqual(sent(), [[], [], []], 'nothing changed: nothing sent');
  const back = worker(2001);
  lanes[1]!.current = back.g;
  lending.reassign();
  assert.deepEqual(sent(), [['unlend 1'], [], []]);
  assert.deepEqual(back.sent, []);
  assert.deepEqual(lending.loans(), []);
});

test('the borrower dies too: its own slot and the one it borrowed go to another, nothing sent to it', (t) => {
  const { lanes, lending, sent, events } = setup(t, 3);
  down(lanes, 1);
  lending.reassign();
  assert.deepEqual(sent(), [['lend 1 web,dns'], [], []]);
  down(lanes, 0);
  lending.reassign();
  assert.deepEqual(sent(), [[], [], ['lend 0 web,dns', 'lend 1 web,dns']]);
  assert.ok(events.some((e) => e.startsWith('slot-unlent') && e.includes('gone since')));
  down(lanes, 2);
  lending.reassign();
  assert.deepEqual(sent(), [[], [], []], 'no serving worker: the sockets wait in the supervisor');
  assert.deepEqual(lending.loans(), []);
});

test("a worker that did not announce 'lend' (an older baton in the app) is never sent one", (t) => {
  const { lanes, lending, sent } = setup(t, 3, { features: (i) => (i === 0 ? [] : ['lend']) });
  down(lanes, 1);
  lending.reassign();
  assert.deepEqual(sent(), [[], [], ['lend 1 web,dns']], 'worker 2 borrows, worker 0 cannot');
  down(lanes, 2);
  lending.reassign();
  assert.deepEqual(sent(), [[], [], []], 'only worker 0 serves, and it cannot borrow: nothing is lent');
});

test('a name that becomes a group later is lent on its own; nothing is sent while stopping', (t) => {
  const { slots, lanes, lending, sent, stop } = setup(t, 2);
  down(lanes, 1);
  lending.reassign();
  assert.deepEqual(sent(), [['lend 1 web,dns'], []]);
  slots.bind('api', { kind: 'tcp', host: '127.0.0.1', port: 0 });
  lending.reassign();
  assert.deepEqual(sent(), [['lend 1 api'], []]);
  stop();
  lanes[1]!.current = worker(2001).g;
  lending.reassign();
  assert.deepEqual(sent(), [[], []], 'the drain closes what each worker borrowed');
});

test('resumed() after a re-exec: every serving worker returns every slot it is not to keep', (t) => {
  const { lanes, lending, sent } = setup(t, 3);
  down(lanes, 1);
  lending.resumed();
  assert.deepEqual(sent(), [['unlend 2', 'lend 1 web,dns'], [], ['unlend 0', 'unlend 1']]);
});

test('a scale-down: the kept sockets of the removed slots are lent to the remaining workers', (t) => {
  const { slots, lanes, lending, sent } = setup(t, 4);
  lending.reassign();
  assert.deepEqual(sent(), [[], [], [], []]);
  // What `baton reload --workers 2` does: the slot count and the lanes shrink, then reassign().
  slots.resize(2);
  lanes.splice(2);
  lending.reassign();
  assert.deepEqual(sent().slice(0, 2), [['lend 2 web,dns'], ['lend 3 web,dns']]);
  // Growing again reuses the kept sockets: the new lanes serve them, the loans end.
  slots.resize(4);
  lanes.push({ current: worker(3002).g }, { current: worker(3003).g });
  lending.reassign();
  assert.deepEqual(sent().slice(0, 2), [['unlend 2'], ['unlend 3']]);
});
