/**
 * MigrationSender / MigrationReceiver in one process, over a socketpair, with real TCP connections on
 * 127.0.0.1: the byte-exact edge cases of moving a connection that the multi-process tests only hit by chance.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { closeFds, socketpair } from '../src/fd/fds.js';
import { threadCpuMicros } from '../src/fd/process.js';
import { MigrationReceiver, MigrationSender } from '../src/upgrader/migrate.js';
import { MIN_BATCH } from '../src/upgrader/pacing.js';
import { closeServer, listenTcp } from './fd-helpers.js';
import { expectFdsBackTo, fdCount, waitFor, within } from './helpers.js';

/** A connected pair: `client` (the test's) and `server` (the side that moves). */
async function tcpPair(
  t: Parameters<typeof listenTcp>[0],
): Promise<{ client: net.Socket; server: net.Socket; listener: net.Server }> {
  let onConnection!: (s: net.Socket) => void;
  const accepted = new Promise<net.Socket>((resolve) => (onConnection = resolve));
  const listener = await listenTcp(t, '127.0.0.1', (s) => onConnection(s));
  const client = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
  const server = await accepted;
  if (client.connecting) await new Promise((r) => client.once('connect', r));
  return { client, server, listener };
}

/** An app's 'close' handler on `socket` that spends `micros` µs of the event loop's CPU time. */
function spendOnClose(socket: net.Socket, micros: number): void {
  socket.once('close', () => {
    const start = threadCpuMicros();
    while (threadCpuMicros() - start < micros);
  });
}

/** A connection to move, a sender and a receiver over a socketpair; `done()` closes everything it opened. */
async function moving(t: Parameters<typeof listenTcp>[0]) {
  const base = fdCount();
  const { client, server, listener } = await tcpPair(t);
  const [senderFd, receiverFd] = socketpair();
  const sender = new MigrationSender(senderFd);
  const receiver = new MigrationReceiver(receiverFd);
  const arrived = new Promise<{ socket: net.Socket; item: { name: string; state?: unknown }; pending: Buffer }>(
    (resolve) => receiver.once('connection', (socket, item, pending) => resolve({ socket, item, pending })),
  );
  const done = async (moved: net.Socket) => {
    moved.destroy();
    client.destroy();
    sender.close();
    receiver.close();
    await closeServer(listener);
    await expectFdsBackTo(base, 'after the move');
  };
  return { client, server, sender, arrived, done };
}

test(
  "a connection moved right after a 'data' listener was attached keeps every byte the client sends while it waits " +
    'to leave',
  async (t) => {
    const base = fdCount();
    const { client, server, listener } = await tcpPair(t);
    const [senderFd, receiverFd] = socketpair();
    const sender = new MigrationSender(senderFd);
    // What a generation does with a connection that arrives while it is draining: start serving it (a 'data'
    // listener, which schedules a resume on the next tick) and move it on at once.
    server.on('data', (d) =>
      assert.fail(`the old side must not read after move(): got ${JSON.stringify(d.toString())}`),
    );
    const moved = sender.move(server, 'raw', 'x', { id: 1 });
    // The batch cannot leave yet: the receiver has not announced its room. Meanwhile the client writes, and
    // turns of the event loop pass (polls in which a restarted read would take the bytes into this process).
    client.write('hello ');
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 2));
    client.write('world\n');
    await new Promise((r) => setTimeout(r, 20));
    const receiver = new MigrationReceiver(receiverFd);
    const arrived = new Promise<{ socket: net.Socket; pending: Buffer }>((resolve) =>
      receiver.once('connection', (socket, _item, pending) => resolve({ socket, pending })),
    );
    await within(moved, 5000, 'the move completes');
    const { socket, pending } = await within(arrived, 5000, 'the connection arrives');
    let got = pending.toString();
    socket.setEncoding('utf8').on('data', (d: string) => (got += d));
    await waitFor(() => got.includes('\n'), 5000, 'every byte reaches the new side', 5);
    assert.equal(got, 'hello world\n', 'in order, none lost, none twice');
    socket.destroy();
    client.destroy();
    sender.close();
    receiver.close();
    await closeServer(listener);
    await expectFdsBackTo(base, 'after the move');
  },
);

test(
  'a connection state JSON cannot encode (a function, a BigInt, a cycle): ERR_BATON_STATE_NOT_SERIALIZABLE, the ' +
    'socket untouched',
  async (t) => {
    const base = fdCount();
    const { client, server, listener } = await tcpPair(t);
    const [senderFd, receiverFd] = socketpair();
    const sender = new MigrationSender(senderFd);
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    for (const [what, state] of [
      ['a function', () => 1],
      ['a BigInt', { n: 1n }],
      ['a cycle', cycle],
    ] as const) {
      await assert.rejects(sender.move(server, 'raw', 'x', state), { code: 'ERR_BATON_STATE_NOT_SERIALIZABLE' }, what);
    }
    // Still this process's connection, and it works.
    const echoed = new Promise<string>((resolve) => client.once('data', (d) => resolve(d.toString())));
    server.write('still here');
    assert.equal(await within(echoed, 5000, 'the connection still serves'), 'still here');
    server.destroy();
    client.destroy();
    sender.close();
    closeFds([receiverFd]);
    await closeServer(listener);
    await expectFdsBackTo(base, 'after the refused moves');
  },
);

test("the sender sizes its batches by its own work too: an app's slow 'close' handler on moved sockets shrinks them", async (t) => {
  const { server, sender, arrived, done } = await moving(t);
  assert.equal(sender.ownCost, null, 'nothing measured before the first batch');
  // The old side's 'close' handlers run when the moved batch's sockets are destroyed, in the same turn as the
  // send: they are part of what a batch blocks this generation for. 20 ms of the event loop's CPU (not wall time,
  // nor the other threads') for one socket.
  spendOnClose(server, 20_000);
  await within(sender.move(server, 'raw', 'x', { id: 1 }), 5000, 'the move completes');
  const { socket } = await within(arrived, 5000, 'the connection arrives');
  await waitFor(() => sender.ownCost !== null, 5000, 'the batch is measured', 5);
  assert.ok(sender.ownCost! >= 20_000, `the close handler counted: ${sender.ownCost} µs per connection`);
  assert.equal(sender.batchSize, MIN_BATCH, 'the smallest batches');
  await done(socket);
});

test('an overloaded event loop (a turn of 600 ms) lets the sender send bigger batches', async (t) => {
  const { server, sender, arrived, done } = await moving(t);
  // 1 ms of the loop's CPU per moved socket: the old generation's own 4 ms slice allows only the smallest batches.
  spendOnClose(server, 1_000);
  await within(sender.move(server, 'raw', 'x', { id: 1 }), 5000, 'the move completes');
  const { socket } = await within(arrived, 5000, 'the connection arrives');
  await waitFor(() => sender.ownCost !== null, 5000, 'the batch is measured', 5);
  await within(sender.settled(), 5000, 'the batch is acknowledged');
  assert.equal(sender.batchSize, MIN_BATCH, 'the smallest batches while turns are short');
  // A turn of the event loop that takes 600 ms (an overloaded generation answering its clients): sendable() waits
  // for the rest of it, and measures it.
  setImmediate(() => {
    const start = performance.now();
    while (performance.now() - start < 600);
  });
  await sender.sendable();
  assert.ok(
    sender.batchSize > MIN_BATCH,
    `a tenth of a 600 ms turn allows more: ${sender.batchSize} (${sender.ownCost} µs per connection)`,
  );
  await done(socket);
});

test('the state arrives as it was when move() took it: any JSON, spliced into the message as its JSON', async (t) => {
  const { client, server, sender, arrived, done } = await moving(t);
  const state = {
    quote: 'a "b" \\ c',
    lines: 'x\ny\u2028z',
    unicode: 'é 🚀 \u0000',
    nested: [1, 2.5, -0, null, true, { deep: { er: [] } }],
    html: '</script><!--',
  };
  const expected = JSON.parse(JSON.stringify(state));
  client.write('partial li');
  await new Promise((r) => setTimeout(r, 20)); // read by this side: it moves as pending bytes
  const moved = sender.move(server, 'raw', 'a "name"', state, Buffer.from('app bytes|'));
  state.quote = 'changed after move()';
  await within(moved, 5000, 'the move completes');
  const { socket, item, pending } = await within(arrived, 5000, 'the connection arrives');
  assert.deepEqual(item.state, expected, 'the snapshot taken by move(), every character intact');
  assert.equal(item.name, 'a "name"');
  assert.equal(pending.toString(), 'app bytes|partial li');
  await done(socket);
});
