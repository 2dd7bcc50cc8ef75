/**
 * Property-based fuzzing of the two pure decoders a peer's bytes go through before anything else looks at
 * them: src/fd/framing.ts (records -> messages, with their fds) and src/handoff/messages.ts (message ->
 * validated protocol message).
 *
 * messages.ts: every valid message of every type round-trips through encode()/decode() and keeps its fd
 * count (expectedFds); random bytes, truncated encodings, oversized input, a wrong `v`, an unknown `type`,
 * wrong field types, missing required fields and extra fields either decode to a valid message or throw an
 * Error with code ERR_BATON_PROTOCOL and a "bad handoff message: …" reason — never another exception.
 * framing.ts: any message cuts into records within the per-record limits and reassembles to itself; any
 * sequence of random records (bad headers, MORE flags, fds, over the limits) yields exactly the messages a
 * reference model predicts, or ERR_BATON_BAD_RECORD / ERR_BATON_MESSAGE_TOO_LARGE — after which every fd
 * of the failed message is closed (real fds, checked with fcntl).
 *
 * Fixed seed (FUZZ_SEED overrides it, FUZZ_RUNS the runs per property); fast-check prints the seed and the
 * shrunk counterexample on failure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fc from 'fast-check';
import {
  encodeMessage,
  FLAG_MORE,
  FRAMING_VERSION,
  HEADER_SIZE,
  MAGIC,
  RECORD_FDS_MAX,
  RECORD_PAYLOAD_MAX,
  Reassembler,
  type InMessage,
} from '../src/fd/framing.js';
import { native } from '../src/fd/native.js';
import { decode } from '../src/handoff/decode.js';
import { encode, expectedFds, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, type Message } from '../src/handoff/messages.js';
import { expectFdsBackTo, fdCount } from './helpers.js';

/** FUZZ_SEED=random (npm run fuzz) picks a new seed; fast-check prints it with any counterexample. */
const SEED = process.env.FUZZ_SEED === 'random' ? Date.now() % 2 ** 31 : Number(process.env.FUZZ_SEED ?? 0x6a7b0c1);
/** Runs per property (npm run fuzz: 30,000). */
const RUNS = Number(process.env.FUZZ_RUNS ?? 3000);
const params = (numRuns = RUNS) => ({ seed: SEED, numRuns: Math.ceil(numRuns) });

// --- arbitraries: one per message type, producing exactly what decode() returns ------------------------

const v = fc.constant(PROTOCOL_VERSION);
const posInt = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
const natInt = fc.nat({ max: Number.MAX_SAFE_INTEGER });
/** Non-empty strings of at most `max` UTF-16 units, any code points (names travel as JSON). */
const text = (max: number) =>
  fc.string({ minLength: 1, maxLength: Math.min(max, 40), unit: 'grapheme' }).filter((s) => s.length <= max);
/** JSON values without -0 (JSON.stringify turns it into 0), as peers send in `data` and `state`. */
const json = fc.jsonValue({ maxDepth: 3 }).map((j) => JSON.parse(JSON.stringify(j)) as unknown);

const address = fc.oneof(
  fc.record({
    host: fc.oneof(fc.constantFrom('', '127.0.0.1', '::1', 'localhost'), fc.string({ maxLength: 256 })),
    port: fc.integer({ min: 0, max: 65535 }),
  }),
  fc.record({ path: text(4096) }),
);
const entry = fc.record(
  {
    name: text(200),
    kind: fc.constantFrom('tcp', 'unix', 'udp4', 'udp6', 'control'),
    address,
    origin: fc.constantFrom('activation', 'fdstore'),
    unnamed: fc.constant(true), // decode() drops `unnamed: false`
  },
  { requiredKeys: ['name', 'kind', 'address'] },
);
const hello = fc.oneof(
  fc.record(
    {
      v,
      type: fc.constant('hello'),
      role: fc.constant('generation'),
      pid: posInt,
      generation: posInt,
      timeoutMs: natInt,
      features: fc.array(text(32), { maxLength: 16 }),
    },
    { requiredKeys: ['v', 'type', 'role', 'pid'] },
  ),
  fc.record(
    {
      v,
      type: fc.constant('hello'),
      role: fc.constant('control'),
      pid: posInt,
      command: fc.constantFrom('reload', 'status', 'stop'),
      generation: posInt,
      timeoutMs: natInt,
    },
    { requiredKeys: ['v', 'type', 'role', 'pid', 'command'] },
  ),
);
const arbitraries: Record<Message['type'], fc.Arbitrary<unknown>> = {
  hello,
  welcome: fc.record({
    v,
    type: fc.constant('welcome'),
    generation: posInt,
    inventory: fc.array(entry, { maxLength: 8 }),
  }),
  refuse: fc.record({ v, type: fc.constant('refuse'), code: text(256), reason: text(4096) }),
  register: fc.record({ v, type: fc.constant('register'), entry }),
  ready: fc.record({ v, type: fc.constant('ready'), names: fc.array(fc.string({ maxLength: 30 }), { maxLength: 8 }) }),
  'ready-ok': fc.record({ v, type: fc.constant('ready-ok') }),
  drain: fc.record({ v, type: fc.constant('drain'), timeoutMs: natInt, reason: fc.constantFrom('upgrade', 'stop') }),
  stats: fc.record({
    v,
    type: fc.constant('stats'),
    connections: natInt,
    state: fc.constantFrom('starting', 'serving', 'draining'),
  }),
  result: fc.record(
    {
      v,
      type: fc.constant('result'),
      ok: fc.boolean(),
      command: fc.constantFrom('reload', 'status', 'stop'),
      code: text(256),
      reason: text(65536),
      data: json.filter((d) => d !== null),
    },
    { requiredKeys: ['v', 'type', 'ok', 'command'] },
  ),
  migrate: fc.record({
    v,
    type: fc.constant('migrate'),
    items: fc.array(
      fc.record(
        {
          kind: fc.constantFrom('raw', 'http', 'ws'),
          name: text(200),
          state: json.filter((d) => d !== null),
          pending: fc.base64String({ maxLength: 40 }),
        },
        { requiredKeys: ['kind', 'name'] },
      ),
      { minLength: 1, maxLength: 6 },
    ),
  }),
  lend: fc.record({
    v,
    type: fc.constant('lend'),
    slot: fc.nat({ max: 4095 }),
    names: fc.array(text(200), { minLength: 1, maxLength: 8 }),
  }),
  unlend: fc.record({ v, type: fc.constant('unlend'), slot: fc.nat({ max: 4095 }) }),
  lent: fc.record({
    v,
    type: fc.constant('lent'),
    slot: fc.nat({ max: 4095 }),
    served: fc.array(text(200), { maxLength: 8 }),
    refused: fc.array(fc.record({ name: text(200), code: text(64), reason: text(4096) }), { maxLength: 4 }),
  }),
  'migrate-ok': fc.record({ v, type: fc.constant('migrate-ok'), count: natInt }),
  'migrate-end': fc.record({ v, type: fc.constant('migrate-end') }),
  'migrate-done': fc.record({ v, type: fc.constant('migrate-done') }),
  'migrate-channel': fc.record({ v, type: fc.constant('migrate-channel') }),
  'migrate-carry': fc.record({
    v,
    type: fc.constant('migrate-carry'),
    name: text(200),
    part: text(4096),
    last: fc.boolean(),
  }),
};
const TYPES = Object.keys(arbitraries) as Message['type'][];
const anyMessage = fc.oneof(...TYPES.map((t) => arbitraries[t])) as fc.Arbitrary<Message>;

/** Keys without which a message of that type is invalid (beyond `v` and `type`). */
const REQUIRED: Record<Message['type'], string[]> = {
  hello: ['role', 'pid'],
  welcome: ['generation', 'inventory'],
  refuse: ['code', 'reason'],
  register: ['entry'],
  ready: ['names'],
  'ready-ok': [],
  drain: ['timeoutMs', 'reason'],
  stats: ['connections', 'state'],
  lend: ['slot', 'names'],
  unlend: ['slot'],
  lent: ['slot', 'served', 'refused'],
  result: ['ok', 'command'],
  migrate: ['items'],
  'migrate-ok': ['count'],
  'migrate-end': [],
  'migrate-done': [],
  'migrate-channel': [],
  'migrate-carry': ['name', 'part', 'last'],
};

// --- the contract every input must meet ------------------------------------------------------------------

/**
 * decode(bytes) either returns a valid message — one that survives another encode/decode unchanged and has
 * a sane fd range — or throws an Error with code ERR_BATON_PROTOCOL and a short, clear reason. Returns
 * which, so properties can demand one of them.
 */
function decodeOrReject(bytes: Buffer, maxBytes?: number): { msg: Message } | { err: Error & { code?: string } } {
  let msg: Message;
  try {
    msg = maxBytes === undefined ? decode(bytes) : decode(bytes, maxBytes);
  } catch (err) {
    assert.ok(err instanceof Error, `decode threw a non-Error: ${String(err)}`);
    const e = err as Error & { code?: string };
    assert.equal(e.constructor, Error, `decode threw ${e.constructor.name}: ${e.message.slice(0, 200)}`);
    assert.equal(e.code, 'ERR_BATON_PROTOCOL', `decode threw code ${e.code}: ${e.message.slice(0, 200)}`);
    assert.match(e.message, /^bad handoff message: \S/);
    // A reason, not an echo of the input: it goes into a log line.
    assert.ok(e.message.length <= 300, `a ${e.message.length}-character reason: ${e.message.slice(0, 300)}…`);
    return { err: e };
  }
  assert.ok(TYPES.includes(msg.type));
  assert.equal(msg.v, PROTOCOL_VERSION);
  assert.deepStrictEqual(decode(encode(msg)), msg, 'a decoded message decodes to itself again');
  const [min, max] = expectedFds(msg);
  assert.ok(Number.isInteger(min) && Number.isInteger(max) && min >= 0 && min <= max, `expectedFds ${min}..${max}`);
  return { msg };
}

function rejected(bytes: Buffer, maxBytes?: number): Error {
  const r = decodeOrReject(bytes, maxBytes);
  assert.ok(
    'err' in r,
    `decoded to a valid ${'msg' in r ? r.msg.type : ''} message: ${bytes.toString('utf8').slice(0, 300)}`,
  );
  return r.err;
}

const asJson = (o: unknown) => Buffer.from(JSON.stringify(o));
const canonical = <T>(o: T): T => JSON.parse(JSON.stringify(o)) as T;

// --- messages.ts -----------------------------------------------------------------------------------------

test(`decoder: every valid message round-trips with its fd count (seed ${SEED})`, () => {
  for (const type of TYPES) {
    fc.assert(
      fc.property(arbitraries[type] as fc.Arbitrary<Message>, (m) => {
        const back = decode(encode(m));
        assert.deepStrictEqual(back, canonical(m));
        assert.deepStrictEqual(expectedFds(back), expectedFds(m));
      }),
      params(RUNS / 5),
    );
  }
  // The fd counts the protocol allows, per type.
  fc.assert(
    fc.property(anyMessage, (m) => {
      const [min, max] = expectedFds(m);
      const want =
        m.type === 'welcome'
          ? [m.inventory.length, m.inventory.length]
          : m.type === 'migrate'
            ? [m.items.length, m.items.length]
            : m.type === 'lend'
              ? [m.names.length, m.names.length]
              : m.type === 'register'
                ? [1, 1]
                : m.type === 'ready' || m.type === 'drain' || m.type === 'migrate-end'
                  ? [0, 1]
                  : m.type === 'migrate-channel'
                    ? [1, 1]
                    : [0, 0];
      assert.deepStrictEqual([min, max], want);
    }),
    params(),
  );
});

test('decoder: random bytes and random JSON decode to a valid message or ERR_BATON_PROTOCOL', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (b) => void decodeOrReject(Buffer.from(b))),
    params(),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 300, unit: 'binary' }), (s) => void decodeOrReject(Buffer.from(s))),
    params(),
  );
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (j) => void decodeOrReject(asJson(j))),
    params(),
  );
  // Objects that look like messages: `v: 1`, a known type, then anything at all in the fields.
  const fieldNames = [
    ...new Set(Object.values(REQUIRED).flat()),
    'generation',
    'command',
    'timeoutMs',
    'code',
    'data',
    'state',
    'pending',
    'name',
    'kind',
    'address',
  ];
  const lookalike = fc.record({
    v: fc.oneof(fc.constant(PROTOCOL_VERSION), fc.jsonValue({ maxDepth: 1 })),
    type: fc.oneof(fc.constantFrom(...TYPES), fc.jsonValue({ maxDepth: 1 })),
    fields: fc.dictionary(fc.constantFrom(...fieldNames), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 }),
  });
  fc.assert(
    fc.property(lookalike, ({ v: ver, type, fields }) => void decodeOrReject(asJson({ ...fields, v: ver, type }))),
    params(),
  );
});

test('decoder: a truncated encoding, or one with trailing garbage, is "not JSON"', () => {
  fc.assert(
    fc.property(anyMessage, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (m, at) => {
      const full = encode(m);
      const cut = full.subarray(0, Math.floor(at * full.length));
      assert.match(rejected(cut).message, /not JSON/);
    }),
    params(),
  );
  fc.assert(
    fc.property(anyMessage, fc.constantFrom('}', ',', 'x', ']', '{}', '"'), (m, junk) => {
      assert.match(rejected(Buffer.concat([encode(m), Buffer.from(junk)])).message, /not JSON/);
    }),
    params(RUNS / 3),
  );
});

test('decoder: input over the size limit is refused before it is parsed', () => {
  // Small limits keep this cheap; the real 1 MiB limit once, just over and exactly at it.
  fc.assert(
    fc.property(anyMessage, fc.nat({ max: 64 }), (m, slack) => {
      const bytes = encode(m);
      const limit = Math.max(0, bytes.length - 1 - slack);
      assert.match(rejected(bytes, limit).message, new RegExp(`${bytes.length} bytes is over the ${limit}-byte limit`));
      decodeOrReject(bytes, bytes.length); // exactly at the limit: judged on its content
    }),
    params(),
  );
  const padded = (n: number) => {
    const head = Buffer.from(`{"v":1,"type":"ready-ok","pad":"`);
    return Buffer.concat([head, Buffer.alloc(n - head.length - 2, 'a'), Buffer.from('"}')]);
  };
  assert.equal(decode(padded(MAX_MESSAGE_BYTES)).type, 'ready-ok');
  assert.match(rejected(padded(MAX_MESSAGE_BYTES + 1)).message, /over the 1048576-byte limit/);
});

test('decoder: a wrong `v` names the version; an unknown `type` names the type', () => {
  const notOne = fc.jsonValue({ maxDepth: 2 }).filter((x) => x !== PROTOCOL_VERSION);
  fc.assert(
    fc.property(anyMessage, fc.option(notOne, { nil: undefined }), (m, ver) => {
      const o: Record<string, unknown> = { ...m, v: ver };
      if (ver === undefined) delete o.v;
      assert.match(rejected(asJson(o)).message, /protocol version .* \(this baton speaks 1\)$/);
    }),
    params(),
  );
  const notAType = fc.jsonValue({ maxDepth: 2 }).filter((x) => !(TYPES as unknown[]).includes(x));
  fc.assert(
    fc.property(anyMessage, notAType, (m, type) => {
      assert.match(rejected(asJson({ ...m, type })).message, /unknown type /);
    }),
    params(),
  );
});

test('decoder: a required field missing, or of a wrong type, is refused with the field named', () => {
  const withMissing = anyMessage.chain((m) => fc.tuple(fc.constant(m), fc.constantFrom(...requiredOf(m))));
  fc.assert(
    fc.property(withMissing, ([m, key]) => {
      const o: Record<string, unknown> = { ...m };
      delete o[key];
      rejected(asJson(o));
    }),
    params(),
  );
  // Any JSON value in place of any field: valid (if it happens to fit) or ERR_BATON_PROTOCOL, never worse.
  const withReplaced = anyMessage.chain((m) =>
    fc.tuple(
      fc.constant(m),
      fc.constantFrom(
        ...Object.keys(m)
          .filter((k) => k !== 'v' && k !== 'type')
          .concat(['__none__']),
      ),
      fc.jsonValue({ maxDepth: 3 }),
    ),
  );
  fc.assert(
    fc.property(withReplaced, ([m, key, value]) => void decodeOrReject(asJson({ ...m, [key]: value }))),
    params(),
  );
  // Nested: a field of an inventory entry, an address or a migration item replaced.
  const nested = fc.tuple(
    fc.oneof(arbitraries.welcome, arbitraries.register, arbitraries.migrate) as fc.Arbitrary<Message>,
    fc.constantFrom('name', 'kind', 'address', 'origin', 'unnamed', 'host', 'port', 'path', 'state', 'pending'),
    fc.jsonValue({ maxDepth: 2 }),
  );
  fc.assert(
    fc.property(nested, ([m, key, value]) => void decodeOrReject(asJson(replaceDeep(canonical(m), key, value)))),
    params(),
  );
  // Type errors a careless peer makes: numbers as strings, strings as numbers, floats, negatives.
  const wrong = fc.constantFrom<unknown>(
    '1',
    1.5,
    -1,
    0,
    true,
    null,
    [],
    {},
    '',
    'x'.repeat(70000),
    Number.MAX_SAFE_INTEGER + 2,
  );
  fc.assert(
    fc.property(
      anyMessage.chain((m) => fc.tuple(fc.constant(m), fc.constantFrom(...requiredOf(m)), wrong)),
      ([m, key, value]) => {
        const r = decodeOrReject(asJson({ ...m, [key]: value }));
        if ('err' in r) assert.match(r.err.message, fieldNamed(key));
      },
    ),
    params(),
  );
});

test('decoder: unknown extra fields are ignored (forward compatibility)', () => {
  const extras = fc.dictionary(
    fc.string({ minLength: 1, maxLength: 12 }).map((k) => `x-${k}`),
    fc.jsonValue({ maxDepth: 2 }),
    { maxKeys: 5 },
  );
  fc.assert(
    fc.property(anyMessage, extras, (m, x) => {
      assert.deepStrictEqual(decode(asJson({ ...x, ...m })), decode(encode(m)));
    }),
    params(),
  );
});

test('decoder: hostile shapes — deep nesting, huge strings, prototype keys — fail cleanly', () => {
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
  // Just under 1 MiB of nesting in every position a value is echoed or walked.
  for (const field of ['v', 'type', 'role', 'names', 'inventory', 'entry', 'data']) {
    const n = 500_000;
    const body =
      field === 'v'
        ? `{"v":${deep(n)}}`
        : `{"v":1,"type":${field === 'type' ? deep(n) : '"hello"'},"${field}":${deep(n)}}`;
    decodeOrReject(Buffer.from(body));
  }
  // Opaque payloads (a result's data, a migration item's state) pass through as they are.
  assert.equal(
    decode(Buffer.from(`{"v":1,"type":"result","ok":true,"command":"status","data":${deep(400_000)}}`)).type,
    'result',
  );
  // Long strings where a short one is expected: the reason stays short.
  for (const o of [
    { v: 'x'.repeat(900_000) },
    { v: 1, type: 'y'.repeat(900_000) },
    { v: 1, type: 'refuse', code: 'c'.repeat(900_000), reason: 'r' },
  ]) {
    rejected(asJson(o));
  }
  for (const key of ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty']) {
    decodeOrReject(Buffer.from(`{"${key}":{"v":1,"type":"ready-ok"}}`));
    decodeOrReject(
      Buffer.from(
        `{"v":1,"type":"register","entry":{"${key}":{"name":"a"},"name":"x","kind":"tcp","address":{"${key}":1,"host":"","port":1}}}`,
      ),
    );
    assert.deepStrictEqual(decode(Buffer.from(`{"v":1,"type":"ready","names":["${key}"]}`)).type, 'ready');
  }
});

// --- framing.ts ------------------------------------------------------------------------------------------

test(`framing: any message cuts into records within the limits and reassembles to itself (seed ${SEED})`, () => {
  // Fake fds (negative: closeMany skips them) so that nothing real is touched by the round trip.
  const sizes = fc.oneof(
    { weight: 8, arbitrary: fc.nat({ max: 300 }) },
    { weight: 1, arbitrary: fc.nat({ max: 3 * RECORD_PAYLOAD_MAX + 10 }) },
  );
  fc.assert(
    fc.property(
      sizes,
      fc.oneof(
        { weight: 8, arbitrary: fc.nat({ max: 8 }) },
        { weight: 1, arbitrary: fc.nat({ max: 3 * RECORD_FDS_MAX + 5 }) },
      ),
      fc.nat(),
      (bytes, nfds, salt) => {
        const data = Buffer.alloc(bytes, salt & 0xff);
        const fds = Array.from({ length: nfds }, (_, i) => -1 - i);
        const records = encodeMessage(data, fds);
        assert.equal(
          records.length,
          Math.max(1, Math.ceil(bytes / RECORD_PAYLOAD_MAX), Math.ceil(nfds / RECORD_FDS_MAX)),
        );
        const r = new Reassembler({ maxMessageBytes: bytes, maxMessageFds: nfds });
        let out: InMessage | null = null;
        for (const [i, rec] of records.entries()) {
          assert.ok((rec.payload?.byteLength ?? 0) <= RECORD_PAYLOAD_MAX && (rec.fds?.length ?? 0) <= RECORD_FDS_MAX);
          assert.equal(rec.header[2], i === records.length - 1 ? 0 : FLAG_MORE);
          const m = r.push(Buffer.concat([rec.header, rec.payload ?? Buffer.alloc(0)]), rec.fds ? [...rec.fds] : null);
          if (i < records.length - 1) assert.equal(m, null);
          else out = m;
        }
        assert.ok(out, 'the last record completes the message');
        assert.ok(data.equals(out.data));
        assert.deepStrictEqual(out.fds, fds);
        assert.equal(r.partial, false);
      },
    ),
    params(RUNS / 3),
  );
});

interface RawRecord {
  header: number[];
  payload: number;
  fds: number;
}

/** A record as a peer might send it: mostly well formed, sometimes with a bad header. */
const rawRecord: fc.Arbitrary<RawRecord> = fc.record({
  header: fc.oneof(
    { weight: 6, arbitrary: fc.boolean().map((more) => [MAGIC, FRAMING_VERSION, more ? FLAG_MORE : 0, 0]) },
    { weight: 1, arbitrary: fc.array(fc.nat({ max: 255 }), { maxLength: 6 }) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.nat({ max: 255 }), fc.nat({ max: 255 }))
        .map(([flags, reserved]) => [MAGIC, FRAMING_VERSION, flags, reserved]),
    },
  ),
  payload: fc.nat({ max: 40 }),
  fds: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat({ max: 4 }) }),
});

/** The framing rules, restated: what the Reassembler must answer for each record. */
function modelPush(
  state: { bytes: number; fds: number },
  rec: RawRecord,
  limits: { maxMessageBytes: number; maxMessageFds: number },
): 'more' | 'message' | 'BAD_RECORD' | 'TOO_LARGE' {
  const h = rec.header;
  if (h.length < HEADER_SIZE || h[0] !== MAGIC || h[1] !== FRAMING_VERSION || h[3] !== 0 || (h[2]! & ~FLAG_MORE) !== 0)
    return 'BAD_RECORD';
  state.bytes += rec.payload + h.length - HEADER_SIZE;
  state.fds += rec.fds;
  if (state.bytes > limits.maxMessageBytes || state.fds > limits.maxMessageFds) return 'TOO_LARGE';
  return h[2]! & FLAG_MORE ? 'more' : 'message';
}

test(
  'framing: random records give exactly the modelled messages or a coded error, and every fd of a failed message ' +
    'is closed',
  (t) => {
    const devnull = fs.openSync('/dev/null', 'r');
    t.after(() => fs.closeSync(devnull));
    const base = fdCount();
    const limits = fc.record({ maxMessageBytes: fc.nat({ max: 120 }), maxMessageFds: fc.nat({ max: 6 }) });
    fc.assert(
      fc.property(limits, fc.array(rawRecord, { minLength: 1, maxLength: 12 }), (lim, recs) => {
        const r = new Reassembler(lim);
        const state = { bytes: 0, fds: 0 };
        let pending: number[] = []; // fds of the message being assembled (owned by the Reassembler)
        for (const rec of recs) {
          const fds = Array.from({ length: rec.fds }, () => native.dup(devnull));
          const record = Buffer.concat([Buffer.from(rec.header), Buffer.alloc(rec.payload, 0x61)]);
          const want = modelPush(state, rec, lim);
          let got: ReturnType<Reassembler['push']>;
          try {
            got = r.push(record, fds.length ? fds : null);
          } catch (err) {
            const e = err as Error & { code?: string };
            assert.equal(e.constructor, Error);
            assert.equal(
              e.code,
              want === 'BAD_RECORD'
                ? 'ERR_BATON_BAD_RECORD'
                : want === 'TOO_LARGE'
                  ? 'ERR_BATON_MESSAGE_TOO_LARGE'
                  : '(no error)',
              e.message,
            );
            assert.match(e.message, /^(bad record from peer|message from peer exceeds the limit)/);
            for (const fd of [...pending, ...fds])
              assert.equal(native.isOpen(fd), false, `fd ${fd} of the failed message is closed`);
            assert.equal(r.partial, false);
            return; // the channel ends here
          }
          assert.notEqual(want, 'BAD_RECORD');
          assert.notEqual(want, 'TOO_LARGE');
          pending = pending.concat(fds);
          if (want === 'more') {
            assert.equal(got, null);
            assert.equal(r.partial, true);
            continue;
          }
          assert.ok(got);
          assert.equal(got.data.length, state.bytes);
          assert.deepStrictEqual(got.fds, pending);
          native.closeMany(got.fds); // the message's fds are ours now
          pending = [];
          state.bytes = 0;
          state.fds = 0;
        }
        // Whatever is left over is a partial message: abort() closes it.
        assert.equal(r.abort(), pending.length);
        for (const fd of pending) assert.equal(native.isOpen(fd), false);
      }),
      params(),
    );
    return expectFdsBackTo(base, 'random records');
  },
);

// --- helpers ---------------------------------------------------------------------------------------------

/** How a reason names the field it is about. */
function fieldNamed(key: string): RegExp {
  if (key === 'v') return /protocol version/;
  if (key === 'type') return /unknown type/;
  // Structures: the reason names the part inside that is wrong.
  if (key === 'entry' || key === 'inventory' || key === 'items') return /"[\w-]+"|an inventory entry|a migration item/;
  return new RegExp(`"${key}"`);
}

function requiredOf(m: Message): string[] {
  const keys = ['v', 'type', ...REQUIRED[m.type]];
  if (m.type === 'hello' && m.role === 'control') keys.push('command');
  return keys;
}

/** Replace `key` wherever it occurs below the top level (entries, addresses, items). */
function replaceDeep(o: unknown, key: string, value: unknown, depth = 0): unknown {
  if (Array.isArray(o)) return o.map((x) => replaceDeep(x, key, value, depth + 1));
  if (typeof o !== 'object' || o === null) return o;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(o))
    out[k] = depth > 0 && k === key ? value : replaceDeep(x, key, value, depth + 1);
  if (depth > 0 && !(key in out) && 'kind' in out) out[key] = value;
  return out;
}
