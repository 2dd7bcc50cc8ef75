/**
 * Random sessions against a live control socket (test/fuzz-control.test.ts): what a confused or hostile
 * same-uid peer might send, generated with fast-check from a fixed seed, and a runner that plays one
 * session over a real connection.
 *
 * A session is a list of steps: raw records (any header bytes, any payload, real fds attached — open
 * files, directories, socketpair ends), one framed message over the size limit, a wait for the server's
 * reply, a short sleep. Scenarios: garbage records, bad framing headers, random or truncated JSON, hellos
 * with a wrong version or wrong fields, valid messages in the wrong order (ready, welcome, register… before
 * hello), fds where none are expected and missing where required, oversized messages and records, partial
 * messages, connect-and-close, legitimate `status` sessions, and new-generation hellos followed by a
 * broken handoff; any session may be cut short at any step (the connection just closes there).
 *
 * expectationOf() says what the serving side must make of a session, by replaying its records through
 * the real framing and decoder: refused before hello (one `control-refused` line), a generation's hello
 * (one `generation-refused` / `upgrade-refused` / `rollback` line), a `status` that must be answered, or a
 * valid command answered in some way (nothing logged). It also rejects sessions that would legitimately
 * stop or take over the target — a `stop` command, a `reload` under a supervisor, a generation hello
 * followed by a valid `ready` — so a generator bug cannot pass for a server bug.
 */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { FdChannel } from '../src/fd/channel.js';
import { encodeMessage, FLAG_MORE, FRAMING_VERSION, MAGIC, Reassembler } from '../src/fd/framing.js';
import { native } from '../src/fd/native.js';
import { decode } from '../src/handoff/decode.js';
import { expectedFds, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, type Message } from '../src/handoff/messages.js';

/** What a real fd attached to a record is: an open file, a directory, one end of a fresh socketpair. */
export type FdKind = 'file' | 'dir' | 'pair';

export interface Rec {
  header: number[];
  payload: Buffer;
  /** That many bytes of '{' after the payload, allocated only when sent (a run holds thousands of sessions). */
  pad?: number;
  fds: FdKind[];
}

export type Step =
  | { do: 'send'; rec: Rec }
  /** One message of `bytes` bytes through FdChannel.send (framed, cut into records, with backpressure). */
  | { do: 'big'; bytes: number }
  /** Wait up to `ms` for the server's next message, or its close. */
  | { do: 'read'; ms: number }
  | { do: 'sleep'; ms: number };

export interface Session {
  scenario: string;
  steps: Step[];
}

/**
 * - refused: no valid hello first — the server logs `control-refused` with the reason, once
 * - generation: a valid new-generation hello — one `generation-refused` (supervised), or `upgrade-refused`
 *   or `rollback` (standalone) line
 * - status: a lone `status` command that must get its result
 * - answered: a valid command followed by more input, or a standalone `reload`: nothing logged
 */
export type Expectation = 'refused' | 'generation' | 'status' | 'answered';

export type Target = 'standalone' | 'supervised';

const CONTROL_MAX_FDS = 16;
/** The addon reads records into a 256 KiB buffer: a longer one arrives truncated (MSG_TRUNC). */
const RECV_BUF = 256 * 1024;

// --- building records ------------------------------------------------------------------------------------

const HEADER = [MAGIC, FRAMING_VERSION, 0, 0];
const HEADER_MORE = [MAGIC, FRAMING_VERSION, FLAG_MORE, 0];

const json = (o: unknown) => Buffer.from(JSON.stringify(o));

/** One well-framed message (all the payloads here fit one record). */
function message(data: Buffer, fds: FdKind[] = []): Step {
  return { do: 'send', rec: { header: HEADER, payload: data, fds } };
}

/** The same message cut into `parts` records (MORE on all but the last), as a long message would be. */
function split(data: Buffer, parts: number): Step[] {
  const size = Math.ceil(data.length / parts) || 1;
  const steps: Step[] = [];
  for (let i = 0; i < parts; i++) {
    const last = i === parts - 1;
    steps.push({
      do: 'send',
      rec: {
        header: last ? HEADER : HEADER_MORE,
        payload: data.subarray(i * size, last ? data.length : (i + 1) * size),
        fds: [],
      },
    });
  }
  return steps;
}

// --- arbitraries -----------------------------------------------------------------------------------------

const v = PROTOCOL_VERSION;
const pid = fc.integer({ min: 1, max: 4_194_304 });
const fdKinds = (min: number, max: number) =>
  fc.array(fc.constantFrom<FdKind>('file', 'dir', 'pair'), { minLength: min, maxLength: max });
const entry = { name: 'web', kind: 'tcp', address: { host: '127.0.0.1', port: 8080 } };

const helloStatus = pid.map((p) => ({ v, type: 'hello', role: 'control', pid: p, command: 'status' }));
const helloGeneration = fc.record(
  {
    v: fc.constant(v),
    type: fc.constant('hello'),
    role: fc.constant('generation'),
    pid,
    generation: fc.integer({ min: 1, max: 6 }),
    timeoutMs: fc.nat({ max: 60_000 }),
  },
  { requiredKeys: ['v', 'type', 'role', 'pid'] },
);
const anyHello = fc.oneof(helloStatus, helloGeneration);

/** Valid messages of every type but hello, with the fds their type carries. */
const notHello: fc.Arbitrary<{ o: object; fds: FdKind[] }> = fc.oneof(
  fdKinds(0, 1).map((fds) => ({ o: { v, type: 'ready', names: ['web'] }, fds })),
  fdKinds(1, 1).map((fds) => ({ o: { v, type: 'welcome', generation: 2, inventory: [entry] }, fds })),
  fdKinds(1, 1).map((fds) => ({ o: { v, type: 'register', entry }, fds })),
  fdKinds(1, 1).map((fds) => ({
    o: { v, type: 'migrate', items: [{ kind: 'raw', name: 'web', state: { n: 1 } }] },
    fds,
  })),
  fc
    .constantFrom<object>(
      { v, type: 'ready-ok' },
      { v, type: 'drain', timeoutMs: 1000, reason: 'upgrade' },
      { v, type: 'stats', connections: 3, state: 'serving' },
      { v, type: 'result', ok: true, command: 'status' },
      { v, type: 'refuse', code: 'ERR_BATON_REFUSED', reason: 'no' },
      { v, type: 'welcome', generation: 2, inventory: [] },
      { v, type: 'migrate-ok', count: 1 },
    )
    .map((o) => ({ o, fds: [] as FdKind[] })),
);

/** Records of random bytes: no baton framing at all, or by chance. */
const garbage = fc
  .array(fc.record({ bytes: fc.uint8Array({ maxLength: 200 }), fds: fdKinds(0, 3) }), { minLength: 1, maxLength: 3 })
  .map((recs): Step[] =>
    recs.map((r) => ({ do: 'send', rec: { header: [], payload: Buffer.from(r.bytes), fds: r.fds } })),
  );

/** The magic byte, then a random framing version, flags and reserved byte, on a valid hello. */
const badHeader = fc
  .tuple(fc.nat({ max: 255 }), fc.nat({ max: 255 }), fc.nat({ max: 255 }), anyHello, fdKinds(0, 2))
  .map(([ver, flags, reserved, hello, fds]): Step[] => [
    { do: 'send', rec: { header: [MAGIC, ver, flags, reserved], payload: json(hello), fds } },
    { do: 'read', ms: 2000 },
  ]);

/** Well-framed payloads that are not a valid message: random bytes and text, JSON of any shape, a valid
 * message cut short. */
const junkPayload = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  fc.string({ maxLength: 200, unit: 'binary' }).map((s) => Buffer.from(s)),
  fc.jsonValue({ maxDepth: 3 }).map(json),
  fc.tuple(anyHello, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })).map(([h, at]) => {
    const b = json(h);
    return b.subarray(0, Math.floor(at * b.length));
  }),
  fc
    .record({
      v: fc.jsonValue({ maxDepth: 1 }),
      type: fc.jsonValue({ maxDepth: 1 }),
      role: fc.jsonValue({ maxDepth: 1 }),
      pid: fc.jsonValue({ maxDepth: 1 }),
    })
    .map(json),
);
const junk = fc
  .tuple(junkPayload, fdKinds(0, 2))
  .map(([payload, fds]): Step[] => [message(payload, fds), { do: 'read', ms: 2000 }]);

const wrongVersion = fc
  .tuple(anyHello, fc.constantFrom<unknown>(0, 2, '1', null, 1.5, -1, [1], {}, true, 'one', 1e3, undefined))
  .map(([hello, ver]): Step[] => {
    const o: Record<string, unknown> = { ...hello, v: ver };
    if (ver === undefined) delete o.v;
    return [message(json(o)), { do: 'read', ms: 2000 }];
  });

/** A hello with one field of the wrong type or out of range. */
const badHello = fc
  .tuple(
    anyHello,
    fc.constantFrom<[string, unknown]>(
      ['role', 'supervisor'],
      ['role', ''],
      ['role', 1],
      ['role', null],
      ['pid', 0],
      ['pid', -1],
      ['pid', '1'],
      ['pid', 1.5],
      ['pid', 2 ** 53],
      ['pid', null],
      ['command', 'restart'],
      ['command', ''],
      ['command', 7],
      ['generation', 0],
      ['generation', -2],
      ['generation', '2'],
      ['generation', 1.5],
      ['timeoutMs', -1],
      ['timeoutMs', 'x'],
      ['timeoutMs', 1.5],
      ['type', 'Hello'],
      ['type', 'helo'],
      ['type', ''],
      ['type', null],
    ),
  )
  .map(([hello, [key, value]]): Step[] => {
    const o: Record<string, unknown> = { ...hello, [key]: value };
    // A wrong command only matters for role control; for a generation, make the role the wrong field.
    if (key === 'command' && o.role !== 'control') o.role = 'control';
    return [message(json(o)), { do: 'read', ms: 2000 }];
  });

/** A valid message that only the serving side sends, or one that belongs later in the handoff, first;
 * sometimes followed by a hello, which must not count any more. */
const wrongOrder = fc.tuple(notHello, fc.option(anyHello, { nil: null })).map(([first, hello]): Step[] => {
  const steps: Step[] = [message(json(first.o), first.fds)];
  if (hello) steps.push(message(json(hello)));
  steps.push({ do: 'read', ms: 2000 });
  return steps;
});

/** A valid hello carrying fds (it carries none): up to the control socket's 16, or past it. */
const helloWithFds = fc
  .tuple(anyHello, fc.oneof(fdKinds(1, 4), fdKinds(CONTROL_MAX_FDS + 1, CONTROL_MAX_FDS + 6)))
  .map(([hello, fds]): Step[] => [message(json(hello), fds), { do: 'read', ms: 2000 }]);

/** Over the limits: a message over 1 MiB, a record longer than the receiver reads (sent with a larger
 * SO_SNDBUF), too many fds across the records of one message. */
const oversized = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.nat({ max: 4096 }).map((extra): Step[] => [
      { do: 'big', bytes: MAX_MESSAGE_BYTES + 1 + extra },
      { do: 'read', ms: 2000 },
    ]),
  },
  {
    weight: 3,
    arbitrary: fc.nat({ max: 512 }).map((extra): Step[] => [
      { do: 'send', rec: { header: HEADER, payload: Buffer.alloc(0), pad: RECV_BUF + 1 + extra, fds: [] } },
      { do: 'read', ms: 2000 },
    ]),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(fdKinds(6, 9), fdKinds(6, 9), fdKinds(5, 9)).map(([a, b, c]): Step[] => [
      { do: 'send', rec: { header: HEADER_MORE, payload: Buffer.from('{"v":1,'), fds: a } },
      { do: 'send', rec: { header: HEADER_MORE, payload: Buffer.from('"type":"hello",'), fds: b } },
      {
        do: 'send',
        rec: { header: HEADER, payload: Buffer.from('"role":"control","pid":1,"command":"status"}'), fds: c },
      },
      { do: 'read', ms: 2000 },
    ]),
  },
);

/** A hello cut into records, the connection closed before its last one (or after a bare MORE record). */
const partial = fc.oneof(
  fc
    .tuple(anyHello, fc.integer({ min: 2, max: 4 }), fc.nat({ max: 20 }))
    .map(([hello, parts, ms]): Step[] => [...split(json(hello), parts).slice(0, -1), { do: 'sleep', ms }]),
  fdKinds(0, 2).map((fds): Step[] => [{ do: 'send', rec: { header: HEADER_MORE, payload: Buffer.alloc(0), fds } }]),
);

/** Connect and close at once, or after a moment of silence. */
const empty = fc.oneof(
  fc.constant<Step[]>([]),
  fc.nat({ max: 30 }).map((ms): Step[] => [{ do: 'sleep', ms }]),
);

/** The legitimate control session: must be answered. Sometimes the hello comes in several records. */
const status = fc
  .tuple(helloStatus, fc.integer({ min: 1, max: 3 }))
  .map(([hello, parts]): Step[] => [...split(json(hello), parts), { do: 'read', ms: 10_000 }]);

/** A valid status command, then junk: answered (or not, if the junk ends the connection first); nothing
 * to log either way. */
const statusThenJunk = fc
  .tuple(
    helloStatus,
    fc.array(
      fc.oneof(
        junkPayload.map((p) => message(p)),
        notHello.map((n) => message(json(n.o), n.fds)),
      ),
      { minLength: 1, maxLength: 3 },
    ),
  )
  .map(([hello, rest]): Step[] => [message(json(hello)), ...rest, { do: 'read', ms: 500 }]);

/** What a broken new generation sends after its hello — never a valid `ready`, which would be a real
 * takeover of a standalone target. */
const afterHello: fc.Arbitrary<Step> = fc.oneof(
  junkPayload.map((p) => message(p)),
  fdKinds(0, 2)
    .filter((f) => f.length !== 1)
    .map((fds) => message(json({ v, type: 'register', entry }), fds)),
  fdKinds(1, 1).map((fds) =>
    message(json({ v, type: 'register', entry: { name: '', kind: 'tcp', address: {} } }), fds),
  ),
  fdKinds(1, 1).map((fds) => message(json({ v, type: 'register', entry }), fds)),
  fdKinds(2, 3).map((fds) => message(json({ v, type: 'ready', names: ['web'] }), fds)),
  fc.constantFrom<unknown>('web', [1], null, {}).map((names) => message(json({ v, type: 'ready', names }))),
  fc.constant(message(json({ v: 2, type: 'ready', names: ['web'] }))),
  fc.constant(message(json({ v, type: 'stats', connections: 1, state: 'starting' }))),
  fc.constant(message(json({ v, type: 'stats', connections: -1, state: 'lost' }))),
  helloGeneration.map((h) => message(json(h))),
  fdKinds(1, 1).map((fds) => message(json({ v, type: 'welcome', generation: 9, inventory: [entry] }), fds)),
  fc.constant<Step>({ do: 'send', rec: { header: HEADER_MORE, payload: Buffer.from('{"v":1,"type":"rea'), fds: [] } }),
  fdKinds(CONTROL_MAX_FDS + 1, CONTROL_MAX_FDS + 4).map((fds) => message(json({ v, type: 'ready', names: [] }), fds)),
  fc.nat({ max: 20 }).map((ms): Step => ({ do: 'sleep', ms })),
);
/** A new generation's hello, then (after the welcome, or at once: before the offer) a broken handoff. */
const generation = fc
  .tuple(helloGeneration, fc.boolean(), fc.array(afterHello, { maxLength: 3 }))
  .map(([hello, wait, rest]): Step[] => [
    message(json(hello)),
    ...(wait ? [{ do: 'read', ms: 5000 } as Step] : []),
    ...rest,
    { do: 'read', ms: 100 },
  ]);

/** Standalone only: `reload` has no supervisor to start anything; it is answered with ok: false. */
const reload = pid.map((p): Step[] => [
  message(json({ v, type: 'hello', role: 'control', pid: p, command: 'reload' })),
  { do: 'read', ms: 10_000 },
]);

/** Any session for `target`; a third of them cut short at a random step (an abrupt close there). */
export function sessions(target: Target): fc.Arbitrary<Session> {
  const scenarios: Array<[string, number, fc.Arbitrary<Step[]>]> = [
    ['garbage', 8, garbage],
    ['bad-header', 6, badHeader],
    ['junk', 12, junk],
    ['wrong-version', 6, wrongVersion],
    ['bad-hello', 8, badHello],
    ['wrong-order', 10, wrongOrder],
    ['hello-with-fds', 6, helloWithFds],
    ['oversized', 3, oversized],
    ['partial', 5, partial],
    ['empty', 5, empty],
    ['status', 8, status],
    ['status-then-junk', 4, statusThenJunk],
    ['generation', 15, generation],
  ];
  if (target === 'standalone') scenarios.push(['reload', 4, reload]);
  const one = fc.oneof(
    ...scenarios.map(([name, weight, arb]) => ({ weight, arbitrary: arb.map((steps) => ({ scenario: name, steps })) })),
  );
  return fc.tuple(one, fc.nat({ max: 2 }), fc.nat()).map(([s, third, cut]) => {
    if (third !== 0 || s.steps.length === 0) return s;
    const at = cut % s.steps.length;
    return { scenario: `${s.scenario} (cut at step ${at})`, steps: s.steps.slice(0, at) };
  });
}

/** Connect and say nothing: the server gives up after its 5 s hello timeout and closes. */
export const SILENT: Session = { scenario: 'silent', steps: [{ do: 'read', ms: 15_000 }] };

/** `count` sessions from `seed`: the same seed always gives the same sessions. */
export function sampleSessions(target: Target, count: number, seed: number): Session[] {
  return fc.sample(sessions(target), { seed, numRuns: count });
}

// --- what the server must make of a session --------------------------------------------------------------

/**
 * Replay the session's records through the real framing (control socket limits) and decoder, as the
 * serving side will. Throws if the session would legitimately stop or take over the target.
 */
export function expectationOf(s: Session, target: Target): Expectation {
  const r = new Reassembler({ maxMessageBytes: MAX_MESSAGE_BYTES, maxMessageFds: CONTROL_MAX_FDS });
  const messages: Message[] = [];
  let broken = false;
  const records: Array<{ data: Buffer; fds: number } | 'read'> = [];
  for (const step of s.steps) {
    if (step.do === 'send') records.push({ data: recordBytes(step.rec), fds: step.rec.fds.length });
    else if (step.do === 'big')
      for (const rec of encodeMessage(Buffer.alloc(step.bytes), []))
        records.push({ data: Buffer.concat([rec.header, rec.payload ?? Buffer.alloc(0)]), fds: 0 });
    else if (step.do === 'read') records.push('read');
  }
  let sentAfterFirst = false;
  let readAfterFirst = false;
  for (const rec of records) {
    if (rec === 'read') {
      if (messages.length) readAfterFirst = true;
      continue;
    }
    if (messages.length) sentAfterFirst = true;
    if (broken) continue;
    // Fake fds (negative: nothing is closed) stand for the real ones.
    const fds = rec.fds ? Array.from({ length: rec.fds }, (_, i) => -1 - i) : null;
    let m;
    try {
      if (rec.data.length > RECV_BUF) throw new Error('MSG_TRUNC');
      m = r.push(rec.data, fds);
    } catch {
      broken = true;
      continue;
    }
    if (!m) continue;
    try {
      const msg = decode(m.data);
      const [min, max] = expectedFds(msg);
      if (m.fds.length < min || m.fds.length > max) throw new Error('fds');
      // A standalone target would hand over to a generation that says hello, then a valid ready.
      if (msg.type === 'ready' && messages[0]?.type === 'hello' && messages[0].role === 'generation')
        throw new Error(`generator bug: a generation's hello, then a valid ready (${s.scenario})`);
      messages.push(msg);
    } catch (err) {
      if ((err as Error).message.startsWith('generator bug')) throw err;
      broken = true;
    }
  }
  const first = messages[0];
  if (first?.type !== 'hello') return 'refused';
  if (first.role === 'generation') return 'generation';
  if (first.command === 'stop' || (first.command === 'reload' && target === 'supervised'))
    throw new Error(`generator bug: a valid '${first.command}' (${s.scenario})`);
  if (first.command === 'status' && !sentAfterFirst && readAfterFirst) return 'status';
  return 'answered';
}

/** A record's bytes as the server receives them (a long one only as long as the server reads). */
function recordBytes(rec: Rec): Buffer {
  const parts = [Buffer.from(rec.header), rec.payload];
  if (rec.pad) parts.push(Buffer.alloc(Math.min(rec.pad, RECV_BUF + 1), 0x7b));
  return Buffer.concat(parts);
}

// --- running a session -----------------------------------------------------------------------------------

export interface Reply {
  type: string;
  ok?: boolean;
  code?: string;
  data?: unknown;
}

export interface SessionResult {
  replies: Reply[];
  /** The server ended the connection before we did. */
  closedByServer: boolean;
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Real fds to attach: a file and a directory of `dir`, and fresh socketpairs. The caller closes them. */
function openFds(kinds: FdKind[], dir: string): { send: number[]; opened: number[] } {
  const send: number[] = [];
  const opened: number[] = [];
  try {
    for (const k of kinds) {
      if (k === 'pair') {
        const [a, b] = native.socketpair();
        opened.push(a, b);
        send.push(a);
      } else {
        const fd = fs.openSync(k === 'dir' ? dir : path.join(dir, 'fuzz-file'), 'r');
        opened.push(fd);
        send.push(fd);
      }
    }
  } catch (err) {
    native.closeMany(opened);
    throw err;
  }
  return { send, opened };
}

/** Prepare `dir` for openFds(). */
export function prepareFdDir(dir: string): void {
  fs.writeFileSync(path.join(dir, 'fuzz-file'), 'fuzz\n');
}

/**
 * One raw record, written with sendmsg directly on the channel's socket (so any header goes out). Returns
 * false once the server has closed the connection. Our copies of the fds are closed whatever happens:
 * the kernel holds its own while the record is in flight.
 */
async function sendRecord(ch: FdChannel, rec: Rec, dir: string): Promise<boolean> {
  const { send, opened } = openFds(rec.fds, dir);
  try {
    const payload = rec.pad ? Buffer.concat([rec.payload, Buffer.alloc(rec.pad, 0x7b)]) : rec.payload;
    // The default send buffer (208 KiB) refuses a record longer than the receiver reads (EMSGSIZE).
    if (payload.length >= RECV_BUF && !ch.closed)
      native.setsockoptInt(ch.fd, native.constants.SOL_SOCKET!, native.constants.SO_SNDBUF!, 2 * RECV_BUF);
    for (let tries = 0; tries < 2000; tries++) {
      if (ch.closed) return false;
      if (native.sendRecord(ch.fd, Buffer.from(rec.header), payload.length ? payload : null, send.length ? send : null))
        return true;
      await delay(5); // EAGAIN: the server has not read the previous records yet
    }
    throw new Error('a record stayed unsent for 10 s: the server stopped reading');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPIPE' || code === 'ECONNRESET') return false; // the server closed on us: fine
    throw err;
  } finally {
    native.closeMany(opened);
  }
}

/** Play one session against the control socket at `socketPath`. Every fd we open, or receive, is closed. */
export async function runSession(socketPath: string, s: Session, dir: string): Promise<SessionResult> {
  const ch = await FdChannel.connect(socketPath, { timeout: 10_000 });
  const replies: Reply[] = [];
  let closedByServer = false;
  let closing = false;
  let wake: (() => void) | null = null;
  ch.on('message', (data, fds) => {
    native.closeMany(fds); // a welcome brings the target's listeners: not ours to keep
    try {
      const m = decode(data) as Message & Partial<Reply>;
      replies.push({ type: m.type, ok: m.ok, code: m.code, data: m.data });
    } catch (err) {
      replies.push({ type: `undecodable: ${(err as Error).message}` });
    }
    wake?.();
  });
  ch.on('error', () => {}); // the close that follows is what counts
  ch.once('close', () => {
    if (!closing) closedByServer = true;
    wake?.();
  });
  try {
    for (const step of s.steps) {
      if (ch.closed) break;
      if (step.do === 'sleep') await delay(step.ms);
      else if (step.do === 'big') await ch.send(Buffer.alloc(step.bytes, 0x20)).catch(() => {});
      else if (step.do === 'send') {
        if (!(await sendRecord(ch, step.rec, dir))) break;
      } else {
        const before = replies.length;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, step.ms);
          function done() {
            clearTimeout(timer);
            wake = null;
            resolve();
          }
          wake = done;
          if (replies.length > before || ch.closed) done();
        });
      }
    }
  } finally {
    closing = true;
    ch.close();
  }
  return { replies, closedByServer };
}

/** Play `list` with `concurrency` sessions in flight; `check` judges each result, `probe` runs after every
 * `probeEvery` sessions (one at a time). Stops at the first failure. */
export async function runAll(
  socketPath: string,
  list: Session[],
  opts: {
    dir: string;
    concurrency: number;
    probeEvery: number;
    check(s: Session, r: SessionResult, i: number): void;
    probe(done: number): Promise<void>;
  },
): Promise<void> {
  let next = 0;
  let done = 0;
  let probing: Promise<void> = Promise.resolve();
  const worker = async () => {
    while (next < list.length) {
      const i = next++;
      const s = list[i]!;
      try {
        let r: SessionResult;
        try {
          r = await runSession(socketPath, s, opts.dir);
        } catch (err) {
          throw new Error(`session ${i} failed to run: ${(err as Error).message}\n${describeSession(s)}`);
        }
        opts.check(s, r, i);
        if (++done % opts.probeEvery === 0) {
          const n = done;
          probing = probing.then(() => opts.probe(n));
          await probing;
        }
      } catch (err) {
        next = list.length; // the other workers stop too
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  await probing;
}

/** A session, readably (for a failure message). */
export function describeSession(s: Session): string {
  const steps = s.steps.map((st) => {
    if (st.do !== 'send') return `  ${st.do} ${'ms' in st ? `${st.ms} ms` : `${st.bytes} bytes`}`;
    const p = st.rec.payload;
    const text =
      p.length > 200 || st.rec.pad ? `${p.length + (st.rec.pad ?? 0)} bytes` : JSON.stringify(p.toString('latin1'));
    return (
      `  record header [${st.rec.header.join(',')}] payload ` +
      `${text}${st.rec.fds.length ? ` fds [${st.rec.fds.join(',')}]` : ''}`
    );
  });
  return `${s.scenario}:\n${steps.join('\n')}`;
}
