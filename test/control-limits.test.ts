/**
 * One test per limit of the control socket (the table in docs/security.md), each against a live `baton run`
 * supervisor and a live standalone generation (examples/http-server), with raw connections from this
 * process (FdChannel.connect) that send what a broken or hostile peer of the same user would:
 *
 * - a message over 1 MiB, and one with 17 fds (the limits are 1 MiB and 16 fds per message): that connection
 *   is closed, the reason logged, and the fds that came with it closed by the server — each is an end of a
 *   socketpair whose other end, here, sees its end of stream only once every copy is closed;
 * - a burst of 65 messages before hello: the serving side queues none of them (a link keeps up to 64
 *   unsolicited messages): the first one ends the connection;
 * - silence: no hello within the hello timeout closes the connection (`baton run --hello-timeout 1`, the
 *   Upgrader's `helloTimeout: 1000`: the same timer as the default 5 s, without waiting 5 s twice); bad values
 *   of both are refused;
 * - more connections than the 64 a control socket keeps open at once: the extra ones get a `refuse`
 *   (ERR_BATON_TOO_MANY_CONNECTIONS) and are closed at once, without waiting for their hello; `status` and
 *   `reload` commands get that refusal while they are held (nothing is started; the CLI prints the reason
 *   and exits 1), a `control-dropped` line is logged at most once a second with a count, and once the
 *   connections go away `baton status` works again.
 *
 * After each: the app still answers HTTP, every process is alive, and the fd counts of the supervisor and
 * the generation (entries of /proc/<pid>/fd) are back to where they were. Also here: FdChannelServer's
 * `maxChannels` and `dropNotice` options on their own; the 64-message queue on the client sides (`baton`
 * commands, a joining generation) against a fake control socket; inventory entries and ready names (4096)
 * at the decoder. Elsewhere: migrated state (64 KiB) in test/migrate-edge.test.ts, the fd channel's
 * defaults in test/channel-limits.test.ts, RLIMIT_NOFILE in test/rlimit.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FdChannel, FdChannelServer, closeFds, dupFd, type DropInfo } from '../src/fd/index.js';
import { isOpen, socketpair } from '../src/fd/fds.js';
import { GenerationClient } from '../src/handoff/client.js';
import { sendCommand } from '../src/handoff/control.js';
import { decode } from '../src/handoff/decode.js';
import { CONTROL_CHANNEL_LIMITS, MAX_CONTROL_CONNECTIONS, MAX_MESSAGE_BYTES } from '../src/handoff/messages.js';
import { expectFdsBackTo, fdCount, spawnNode, tmpDir, waitFor, within } from './helpers.js';
import { alive, baton, BEHAVIOUR_APP, get, HTTP_EXAMPLE, SERVING, startSupervised } from './upgrade-helpers.js';
import { Upgrader } from '../src/index.js';

type Cleanup = Parameters<typeof tmpDir>[0];
type Kind = 'supervised' | 'standalone';
const KINDS: Kind[] = ['supervised', 'standalone'];

/** A running app whose control socket the test attacks. */
interface Target {
  kind: Kind;
  socket: string;
  port: number;
  /** The processes whose fd counts must come back: the supervisor and its generation, or the standalone generation. */
  pids: number[];
  /** Control connections the socket's owner holds itself (the supervisor: its serving generation's). */
  ownChannels: number;
  /** What the socket's owner logged (a supervised generation's stderr goes through the supervisor). */
  log(): string;
  /** What the app answers on GET /. */
  body: RegExp;
}

/**
 * The target: examples/http-server under `baton run` or standalone. With `helloTimeoutS`: `baton run
 * --hello-timeout S`, or standalone the behaviour app (test/fixtures/behaviour-app.ts) started with
 * `helloTimeout` (the example takes no options).
 */
async function start(t: Cleanup, kind: Kind, helloTimeoutS?: number): Promise<Target> {
  if (kind === 'supervised') {
    const runArgs = helloTimeoutS === undefined ? [] : ['--hello-timeout', String(helloTimeoutS)];
    const s = await startSupervised(t, { runArgs });
    const gen = (await s.serving())[0]!.pid;
    const log = () => s.sup.stderr();
    return { kind, socket: s.socket, port: s.port, pids: [s.sup.pid, gen], ownChannels: 1, log, body: HELLO_BODY };
  }
  const socket = path.join(tmpDir(t), 'c.sock');
  const env = { BATON_SOCKET: socket, PORT: '0' };
  const p =
    helloTimeoutS === undefined
      ? spawnNode(t, HTTP_EXAMPLE, [], env)
      : spawnNode(t, BEHAVIOUR_APP, [], { ...env, HELLO_TIMEOUT: String(helloTimeoutS * 1000) });
  const port = Number((await p.line(SERVING(1), 20_000))[1]);
  const body = helloTimeoutS === undefined ? HELLO_BODY : /generation 1 pid \d+/;
  return { kind, socket, port, pids: [p.pid], ownChannels: 0, log: () => p.stderr(), body };
}

/** examples/http-server's answer. */
const HELLO_BODY = /hello from generation 1/;

/** What each open fd of `pid` is (readlink of /proc/<pid>/fd/N), for a failure message that says what leaked. */
function fdTargets(pid: number): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.push(`${fd}->${fs.readlinkSync(`/proc/${pid}/fd/${fd}`)}`);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

interface Baseline {
  counts: number[];
  targets: string[][];
}

/**
 * The fd counts to come back to, taken after a status round trip — anything opened lazily is open by then —
 * once the server has closed that connection (it closes right after answering; we wait for its end).
 */
async function baseline(target: Target): Promise<Baseline> {
  const c = await raw(target.socket);
  await c.ch.send(Buffer.from(JSON.stringify(HELLO_STATUS)));
  await within(c.gone, 10_000, 'the status connection closed by the server');
  assert.equal(c.messages[0]?.type, 'result', `status before the test: ${JSON.stringify(c.messages)}`);
  return {
    counts: target.pids.map((pid) => fs.readdirSync(`/proc/${pid}/fd`).length),
    targets: target.pids.map(fdTargets),
  };
}

/** The app serves, nobody crashed, and no fd was left behind in the supervisor or the generation. */
async function expectIntact(target: Target, base: Baseline, what: string): Promise<void> {
  assert.match((await get(target.port)).body, target.body, `${what}: the app answers`);
  for (const pid of target.pids) assert.ok(alive(pid), `${what}: pid ${pid} is alive`);
  assert.doesNotMatch(
    target.log(),
    /baton (ERROR|WARN) (crash|supervisor-gone|rollback)/,
    `${what}: nothing crashed or lost contact`,
  );
  const now = () => target.pids.map((pid) => fs.readdirSync(`/proc/${pid}/fd`).length);
  try {
    await waitFor(
      () => now().every((n, i) => n === base.counts[i]),
      10_000,
      `${what}: fd counts back to ${base.counts.join('/')}`,
      50,
    );
  } catch (err) {
    const diff = target.pids.map((pid, i) => {
      const then = new Set(base.targets[i]);
      const current = fdTargets(pid);
      const added = current.filter((f) => !then.has(f));
      const gone = base.targets[i]!.filter((f) => !current.includes(f));
      return `pid ${pid}: +[${added.join(', ')}] -[${gone.join(', ')}]`;
    });
    assert.fail(`${(err as Error).message}, now ${now().join('/')}: ${diff.join('; ')}`);
  }
}

/** A raw connection to a control socket: records what the server sends, and when it closes the connection. */
interface Raw {
  ch: FdChannel;
  messages: Array<Record<string, unknown>>;
  closed(): boolean;
  /** Resolves when the server has closed the connection (or it closed for any reason). */
  gone: Promise<void>;
}

async function raw(socket: string): Promise<Raw> {
  const ch = await FdChannel.connect(socket, { timeout: 10_000 });
  const messages: Array<Record<string, unknown>> = [];
  let closed = false;
  ch.on('message', (data, fds) => {
    closeFds(fds);
    messages.push(JSON.parse(data.toString()) as Record<string, unknown>);
  });
  ch.on('error', () => {});
  const gone = new Promise<void>((resolve) =>
    ch.once('close', () => {
      closed = true;
      resolve();
    }),
  );
  return { ch, messages, closed: () => closed, gone };
}

/**
 * An fd to send whose fate we can see: one end of a socketpair. Once the test has closed its own copy, the
 * other end (watched here) reads its end of stream exactly when the server has closed every copy it got.
 */
function tracer(t: Cleanup): { fd: number; released: Promise<void>; dropOurs(): void } {
  const [watched, sent] = socketpair();
  const watcher = FdChannel.fromFd(watched);
  watcher.on('error', () => {});
  t.after(() => watcher.close());
  let ours = true;
  t.after(() => {
    if (ours) closeFds([sent]);
  });
  return {
    fd: sent,
    released: new Promise((resolve) => watcher.once('close', () => resolve())),
    dropOurs() {
      if (ours) closeFds([sent]);
      ours = false;
    },
  };
}

/** What a connection past the limit is told (a `refuse` with ERR_BATON_TOO_MANY_CONNECTIONS). */
const CONTROL_REFUSAL =
  `the control socket is at its limit of ${MAX_CONTROL_CONNECTIONS} open connections; try ` +
  `again once some have closed`;
const HELLO_STATUS = { v: 1, type: 'hello', role: 'control', pid: process.pid, command: 'status', timeoutMs: 5000 };

/** Wait for the connection to be closed by the server, and for its reason to be logged. */
async function refusedFor(target: Target, conn: Raw, reason: RegExp, what: string): Promise<void> {
  await within(conn.gone, 15_000, `${what}: the server closes the connection`);
  await waitFor(
    () => new RegExp(`baton WARN control-refused .*${reason.source}`).test(target.log()),
    10_000,
    `${what}: the reason is logged`,
  );
}

// --- FdChannelServer: maxChannels and dropNotice, in this process ---------------------------------------

test('FdChannelServer maxChannels: past the limit a connection gets the notice and is closed; "drop" says who', async (t) => {
  const sock = path.join(tmpDir(t), 's');
  const server = await FdChannelServer.listen(sock, { maxChannels: 2, dropNotice: Buffer.from('busy') });
  t.after(() => server.close());
  assert.equal(server.maxChannels, 2);
  const accepted: FdChannel[] = [];
  server.on('channel', (ch) => accepted.push(ch));
  const drops: DropInfo[] = [];
  server.on('drop', (info) => drops.push(info));
  const first = await raw(sock);
  const second = await raw(sock);
  await waitFor(() => accepted.length === 2, 5000, 'two channels accepted');
  assert.equal(server.channels, 2);

  // The third: accepted by the kernel, told why, closed; the first two are untouched.
  const third = await FdChannel.connect(sock);
  const got: string[] = [];
  third.on('message', (data) => got.push(data.toString()));
  await within(new Promise((r) => third.once('close', r)), 5000, 'the third connection is closed');
  assert.deepEqual(got, ['busy']);
  assert.equal(drops.length, 1);
  assert.deepEqual(drops[0], {
    peer: { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() },
    channels: 2,
  });
  assert.equal(accepted.length, 2);
  assert.equal(first.closed() || second.closed(), false);

  // One closes: there is room for one more.
  accepted[0]!.close();
  await waitFor(() => server.channels === 1, 5000, 'the count goes down when a channel closes');
  const fourth = await raw(sock);
  await waitFor(() => accepted.length === 3, 5000, 'the next connection is accepted');
  assert.equal(server.channels, 2);
  assert.equal(drops.length, 1);
  for (const c of [first, second, fourth]) c.ch.close();
  accepted.forEach((ch) => ch.close());
});

test('FdChannelServer maxChannels 0 drops every connection; without a dropNotice they are just closed', async (t) => {
  const sock = path.join(tmpDir(t), 's');
  const server = await FdChannelServer.listen(sock, { maxChannels: 0 });
  t.after(() => server.close());
  server.on('channel', () => assert.fail('no channel may be accepted'));
  let drops = 0;
  server.on('drop', () => drops++);
  const c = await raw(sock);
  await within(c.gone, 5000, 'the connection is closed');
  assert.deepEqual(c.messages, []);
  assert.equal(drops, 1);
  assert.equal(server.channels, 0);
});

test('FdChannelServer: bad maxChannels / dropNotice are TypeErrors with a code; nothing is left open', async (t) => {
  const dir = tmpDir(t);
  const sock = path.join(dir, 's');
  const before = fdCount();
  for (const maxChannels of [-1, 1.5, Number.NaN, '3', null]) {
    await assert.rejects(FdChannelServer.listen(sock, { maxChannels: maxChannels as number }), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
      message: /"options\.maxChannels" argument must be an integer >= 0 or Infinity/,
    });
  }
  for (const dropNotice of ['busy', Buffer.alloc(64 * 1024 + 1)]) {
    await assert.rejects(FdChannelServer.listen(sock, { dropNotice: dropNotice as Buffer }), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
      message: /"options\.dropNotice"/,
    });
  }
  assert.equal(fs.existsSync(sock), false, 'no socket file was created');
  // fromFd owns the fd it is given, even when its options are wrong.
  const server = await FdChannelServer.listen(sock);
  t.after(() => server.close());
  const fd = dupFd(server.fd);
  assert.throws(() => FdChannelServer.fromFd(fd, sock, { maxChannels: -1 }), {
    name: 'TypeError',
    code: 'ERR_INVALID_ARG_TYPE',
  });
  assert.equal(isOpen(fd), false, 'fromFd closed the fd it was given');
  server.close();
  await expectFdsBackTo(before, 'bad options');
  // The default: no limit.
  const open = await FdChannelServer.listen(sock);
  t.after(() => open.close());
  assert.equal(open.maxChannels, Infinity);
});

// --- against live control sockets -----------------------------------------------------------------------

for (const kind of KINDS) {
  test(`${kind}: a message over 1 MiB closes that connection only, and the fds that came with it`, {
    timeout: 120_000,
  }, async (t) => {
    const target = await start(t, kind);
    const base = await baseline(target);
    const fd = tracer(t);
    const c = await raw(target.socket);
    const big = Buffer.from(JSON.stringify({ ...HELLO_STATUS, padding: 'x'.repeat(MAX_MESSAGE_BYTES) }));
    assert.ok(big.length > MAX_MESSAGE_BYTES);
    // The server stops reading at the limit and closes: the rest of our message fails to go (EPIPE).
    const sending = c.ch.send(big, [fd.fd]).catch(() => {});
    fd.dropOurs();
    await refusedFor(
      target,
      c,
      /message from peer exceeds the limit \(\d+ bytes \/ 1 fds so far; at most 1048576 bytes and 16 fds\)/,
      'oversized message',
    );
    await sending;
    await within(fd.released, 10_000, 'the server closed the fd that came with the oversized message');
    assert.deepEqual(c.messages, [], 'no answer to an oversized message');
    await expectIntact(target, base, 'oversized message');
    assert.equal((await sendCommand(target.socket, 'status', 10_000)).ok, true, 'the control socket still answers');
  });

  test(`${kind}: a message with 17 fds (the limit is 16) closes that connection; all 17 fds are closed`, {
    timeout: 120_000,
  }, async (t) => {
    const target = await start(t, kind);
    const base = await baseline(target);
    const fd = tracer(t);
    const c = await raw(target.socket);
    // The same fd 17 times: the server receives 17 distinct fds, and our watcher sees its end of stream only
    // when all 17 are closed.
    await c.ch.send(Buffer.from(JSON.stringify(HELLO_STATUS)), Array(17).fill(fd.fd)).catch(() => {});
    fd.dropOurs();
    await refusedFor(
      target,
      c,
      /message from peer exceeds the limit \(\d+ bytes \/ 17 fds so far; at most 1048576 bytes and 16 fds\)/,
      '17 fds',
    );
    await within(fd.released, 10_000, 'the server closed all 17 fds');
    assert.deepEqual(c.messages, []);
    await expectIntact(target, base, '17 fds');
    assert.equal((await sendCommand(target.socket, 'status', 10_000)).ok, true, 'the control socket still answers');
  });

  test(`${kind}: a burst of 65 messages before hello: the first one ends the connection, nothing is queued`, {
    timeout: 120_000,
  }, async (t) => {
    const target = await start(t, kind);
    const base = await baseline(target);
    const c = await raw(target.socket);
    // The serving side expects hello first: it does not queue the others (up to 64, as a link would for
    // messages nobody waits for yet) but ends the connection at the first one.
    const stats = Buffer.from(JSON.stringify({ v: 1, type: 'stats', connections: 0, state: 'serving' }));
    const sends = Array.from({ length: 65 }, () => c.ch.send(stats).catch(() => {}));
    await refusedFor(
      target,
      c,
      /bad handoff message: \\"stats\\" arrived before hello, which must come first/,
      '65 messages before hello',
    );
    await Promise.all(sends);
    assert.deepEqual(c.messages, []);
    await expectIntact(target, base, '65 messages before hello');
  });

  test(`${kind}: no hello within the hello timeout (1 s here) closes the connection; the app serves meanwhile`, {
    timeout: 120_000,
  }, async (t) => {
    const target = await start(t, kind, 1);
    const base = await baseline(target);
    const c = await raw(target.socket);
    // While the silent connection is open, everything else works.
    assert.equal((await sendCommand(target.socket, 'status', 10_000)).ok, true);
    assert.equal((await get(target.port)).status, 200);
    await refusedFor(target, c, /timed out after 1000 ms waiting for hello/, 'silence');
    assert.deepEqual(c.messages, []);
    await expectIntact(target, base, 'silence');
  });

  test(`${kind}: past ${MAX_CONTROL_CONNECTIONS} open control connections new ones are refused at once; status works ` +
    `again once they go`, {
    timeout: 120_000,
  }, async (t) => {
    const target = await start(t, kind);
    const base = await baseline(target);
    // Fill the socket up to its limit with silent connections (each is closed after 5 s without hello, so
    // everything below happens within that window; they are opened in a few milliseconds).
    const held: Raw[] = [];
    t.after(() => held.forEach((h) => h.ch.close()));
    for (let i = 0; i < MAX_CONTROL_CONNECTIONS - target.ownChannels; i++) held.push(await raw(target.socket));

    // The next ones are accepted (the backlog never fills), told why, and closed at once — before the
    // 5 s hello timeout could have closed anything.
    const extras = await Promise.all(Array.from({ length: 5 }, () => raw(target.socket)));
    await within(Promise.all(extras.map((e) => e.gone)), 10_000, 'the extra connections are closed');
    assert.equal(held.filter((h) => h.closed()).length, 0, 'the held connections are all still open');
    for (const e of extras) {
      assert.deepEqual(e.messages, [
        { v: 1, type: 'refuse', code: 'ERR_BATON_TOO_MANY_CONNECTIONS', reason: CONTROL_REFUSAL },
      ]);
    }
    // What a `baton` command gets — status, and for the supervisor reload, which starts nothing — (the CLI
    // prints the reason and exits 1)...
    const commands = kind === 'supervised' ? (['status', 'reload'] as const) : (['status'] as const);
    for (const command of commands) {
      const r = await sendCommand(target.socket, command, 10_000);
      assert.deepEqual([r.ok, r.code, r.reason], [false, 'ERR_BATON_TOO_MANY_CONNECTIONS', CONTROL_REFUSAL], command);
    }
    // ...and the CLI itself (status: no side effect if it got through). Its start takes a moment: if the
    // held connections timed out meanwhile (5 s without hello, on a very slow machine), its outcome proves
    // nothing either way.
    const cli = await baton(['status', '--socket', target.socket]);
    if (held.some((h) => h.closed()))
      t.diagnostic('baton status finished after the held connections timed out: not checked');
    else {
      assert.equal(cli.code, 1, `baton status: ${cli.stdout} ${cli.stderr}`);
      assert.equal(cli.stderr, `baton status: ${CONTROL_REFUSAL}\n`);
      assert.equal(cli.stdout, '');
    }
    // Dropped connections are logged at most once a second, with a count: 5 extras + the commands (+ the CLI).
    const dropped = () =>
      [...target.log().matchAll(/baton WARN control-dropped .*?count=(\d+)/g)].map((m) => Number(m[1]));
    await waitFor(() => dropped().reduce((a, b) => a + b, 0) >= 6, 10_000, 'every drop counted in the log');
    assert.ok(
      dropped().length < dropped().reduce((a, b) => a + b, 0),
      `drops in a burst share a line: ${dropped().join(', ')}`,
    );
    assert.match(
      target.log(),
      new RegExp(
        `control-dropped .*peer=${process.pid} reason="the control socket already has ${MAX_CONTROL_CONNECTIONS} ` +
          `connections open`,
      ),
    );
    if (kind === 'supervised')
      assert.doesNotMatch(target.log(), /baton spawn .*generation=2/, 'the refused reload started nothing');

    // They go: the control socket answers again, and nothing is left behind.
    held.forEach((h) => h.ch.close());
    await within(Promise.all(held.map((h) => h.gone)), 10_000, 'the held connections close');
    const st = await baton(['status', '--json', '--socket', target.socket]);
    assert.equal(st.code, 0, st.stderr);
    assert.equal((JSON.parse(st.stdout) as { generations: Array<{ state: string }> }).generations[0]!.state, 'serving');
    await expectIntact(target, base, 'held connections');
  });
}

test('the hello timeout: baton run --hello-timeout and the Upgrader option helloTimeout take more than 0', async () => {
  const help = await baton(['run', '--help']);
  assert.match(
    help.stdout,
    /--hello-timeout S +seconds a process that connects to the control socket has to say hello/,
  );
  for (const bad of ['0', '-1', 'soon']) {
    const r = await baton(['run', '--hello-timeout', bad, '--', 'true']);
    assert.equal(r.code, 2, `--hello-timeout ${bad}: ${r.stderr}`);
    assert.match(r.stderr, /--hello-timeout takes a number of seconds/);
  }
  // 0 would mean no limit to the handoff's timers: a silent peer holding one of the 64 connections forever.
  for (const bad of [0, -1, '5000', Number.NaN, Number.POSITIVE_INFINITY]) {
    await assert.rejects(
      Upgrader.start({ helloTimeout: bad as number, logger: false }),
      (err: Error & { code?: string }) =>
        err instanceof TypeError && err.code === 'ERR_INVALID_ARG_TYPE' && /options\.helloTimeout/.test(err.message),
      `helloTimeout ${String(bad)}`,
    );
  }
});

test('the control socket options: 1 MiB, 16 fds, 64 connections, and the refusal a dropped connection gets', () => {
  assert.equal(CONTROL_CHANNEL_LIMITS.maxMessageBytes, 1024 * 1024);
  assert.equal(CONTROL_CHANNEL_LIMITS.maxMessageFds, 16);
  assert.equal(CONTROL_CHANNEL_LIMITS.maxChannels, 64);
  assert.deepEqual(decode(Buffer.from(CONTROL_CHANNEL_LIMITS.dropNotice)), {
    v: 1,
    type: 'refuse',
    code: 'ERR_BATON_TOO_MANY_CONNECTIONS',
    reason: CONTROL_REFUSAL,
  });
});

// --- the 64 unsolicited messages a link queues: the client sides --------------------------------------

/** A fake control socket in this process that answers every connection's first message with `messages`
 * (each with its `fds`), and counts the connections the client side has closed. */
async function fakeServer(
  t: Cleanup,
  messages: Array<{ data: object; fds?: number[] }>,
): Promise<{ sock: string; ended(): number }> {
  const sock = path.join(tmpDir(t), 'fake.sock');
  const server = await FdChannelServer.listen(sock);
  t.after(() => server.close());
  let ended = 0;
  server.on('channel', (ch) => {
    ch.on('error', () => {});
    ch.once('close', () => ended++);
    ch.once('message', () => {
      for (const m of messages) ch.send(Buffer.from(JSON.stringify(m.data)), m.fds ?? []).catch(() => {});
    });
    t.after(() => ch.close());
  });
  return { sock, ended: () => ended };
}

test(
  'client side: a control socket that sends 65 unsolicited messages before the result: ERR_BATON_PROTOCOL, the ' +
    'connection is closed',
  async (t) => {
    const stats = { data: { v: 1, type: 'stats', connections: 0, state: 'serving' } };
    const flood = await fakeServer(t, Array(65).fill(stats));
    await assert.rejects(sendCommand(flood.sock, 'status', 10_000), {
      code: 'ERR_BATON_PROTOCOL',
      message: /the peer sent more than 64 unsolicited messages/,
    });
    await waitFor(() => flood.ended() === 1, 5000, 'the client closed its connection');
    // 64 unsolicited messages are kept for a later expect(): a result after them is still found.
    const result = { data: { v: 1, type: 'result', ok: true, command: 'status', data: {} } };
    const ok = await fakeServer(t, [...Array(64).fill(stats), result]);
    assert.equal((await sendCommand(ok.sock, 'status', 10_000)).ok, true);
    await waitFor(() => ok.ended() === 1, 5000, 'the client closed its connection');
  },
);

test(
  'client side: a serving side that sends 65 drain messages with fds before the welcome: the join fails, every fd ' +
    'is closed',
  async (t) => {
    const fd = tracer(t);
    const drain = { data: { v: 1, type: 'drain', timeoutMs: 1000, reason: 'stop' }, fds: [fd.fd] };
    const fake = await fakeServer(t, Array(65).fill(drain));
    await assert.rejects(GenerationClient.join(fake.sock, { timeoutMs: 10_000 }), {
      code: 'ERR_BATON_PROTOCOL',
      message: /the peer sent more than 64 unsolicited messages/,
    });
    fd.dropOurs();
    // The 64 queued drains each held a copy of the fd, and the 65th one: all are closed with the link.
    await within(fd.released, 10_000, 'every fd that came with the unsolicited messages is closed');
  },
);

// --- limits enforced by the decoder ---------------------------------------------------------------------

test('decoder: a welcome of 4096 inventory entries is accepted, 4097 is ERR_BATON_PROTOCOL', () => {
  const entries = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      name: `s${i}`,
      kind: 'tcp',
      address: { host: '127.0.0.1', port: 1 + (i % 65535) },
    }));
  const welcome = (n: number) =>
    Buffer.from(JSON.stringify({ v: 1, type: 'welcome', generation: 2, inventory: entries(n) }));
  const ok = decode(welcome(4096));
  assert.equal(ok.type === 'welcome' && ok.inventory.length, 4096);
  assert.throws(() => decode(welcome(4097)), {
    code: 'ERR_BATON_PROTOCOL',
    message: /"inventory" must be an array of at most 4096 entries/,
  });
});

test('decoder: ready with 4096 names is accepted, 4097 is ERR_BATON_PROTOCOL', () => {
  const ready = (n: number) =>
    Buffer.from(JSON.stringify({ v: 1, type: 'ready', names: Array.from({ length: n }, (_, i) => `s${i}`) }));
  const ok = decode(ready(4096));
  assert.equal(ok.type === 'ready' && ok.names.length, 4096);
  assert.throws(() => decode(ready(4097)), {
    code: 'ERR_BATON_PROTOCOL',
    message: /"names" must be an array of strings/,
  });
});
