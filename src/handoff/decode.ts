/**
 * decode(): parse one handoff message and validate it field by field, saying exactly what is wrong (an
 * ERR_BATON_PROTOCOL error); checkAddress()/checkEntry() for the inventory entries inside. The messages
 * themselves, their limits and encode() are in messages.ts.
 */
import { batonError, type BatonError } from '../fd/errors.js';
import {
  CONTROL_COMMANDS,
  type Hello,
  type InventoryEntry,
  MAX_CARRY_PART,
  MAX_MESSAGE_BYTES,
  MAX_MIGRATION_BATCH,
  type Message,
  type MigrateOk,
  type MigrationItem,
  PROTOCOL_VERSION,
  type Result,
  type SocketAddress,
  type Stats,
} from './messages.js';

function bad(reason: string): BatonError {
  return batonError('ERR_BATON_PROTOCOL', `bad handoff message: ${reason}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A value the peer sent, as a reason shows it: short whatever it is. JSON.stringify would copy up to 1 MiB
 * of the peer's input into a log line, and throws a RangeError (not a protocol error) on a deeply nested
 * array (found by fuzzing: `{"v":[[[…]]]}`).
 */
function shown(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (isObject(v)) return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return String(v);
}

function str(o: Record<string, unknown>, key: string, max = 256): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > max)
    throw bad(`"${key}" must be a non-empty string of at most ${max} characters`);
  return v;
}

function int(o: Record<string, unknown>, key: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw bad(`"${key}" must be an integer from ${min} to ${max}`);
  return v;
}

function oneOf<T extends string>(o: Record<string, unknown>, key: string, values: readonly T[]): T {
  const v = o[key];
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v))
    throw bad(`"${key}" must be one of ${values.join(', ')}`);
  return v as T;
}

const KINDS = ['tcp', 'unix', 'udp4', 'udp6', 'control'] as const;
/** A lend carries one fd per name: what one SCM_RIGHTS record holds. */
const MAX_LEND_NAMES = MAX_MIGRATION_BATCH;
/** Worker slots: far more than any machine's cores. */
const MAX_SLOT = 4095;

export function checkAddress(v: unknown): SocketAddress {
  if (!isObject(v)) throw bad('"address" must be an object');
  if (typeof v.path === 'string') return { path: str(v, 'path', 4096) };
  const host = v.host;
  if (typeof host !== 'string' || host.length > 256) throw bad('"host" must be a string ("" for all interfaces)');
  return { host, port: int(v, 'port', 0, 65535) };
}

export function checkEntry(v: unknown): InventoryEntry {
  if (!isObject(v)) throw bad('an inventory entry must be an object');
  const entry: InventoryEntry = {
    name: str(v, 'name', 200),
    kind: oneOf(v, 'kind', KINDS),
    address: checkAddress(v.address),
  };
  if (v.origin !== undefined) entry.origin = oneOf(v, 'origin', ['activation', 'fdstore'] as const);
  if (v.unnamed !== undefined) {
    if (typeof v.unnamed !== 'boolean') throw bad('"unnamed" must be a boolean');
    if (v.unnamed) entry.unnamed = true;
  }
  return entry;
}

/** Parse and validate one message. Throws ERR_BATON_PROTOCOL with the reason. */
export function decode(data: Buffer, maxBytes = MAX_MESSAGE_BYTES): Message {
  if (data.length > maxBytes) throw bad(`${data.length} bytes is over the ${maxBytes}-byte limit`);
  let o: unknown;
  try {
    o = JSON.parse(data.toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  if (!isObject(o)) throw bad('not a JSON object');
  if (o.v !== PROTOCOL_VERSION) throw bad(`protocol version ${shown(o.v)} (this baton speaks ${PROTOCOL_VERSION})`);
  const v = PROTOCOL_VERSION;
  switch (o.type) {
    case 'hello': {
      const role = oneOf(o, 'role', ['generation', 'control'] as const);
      const msg: Hello = { v, type: 'hello', role, pid: int(o, 'pid', 1) };
      if (o.generation !== undefined) msg.generation = int(o, 'generation', 1);
      if (role === 'control') msg.command = oneOf(o, 'command', CONTROL_COMMANDS);
      if (o.timeoutMs !== undefined) msg.timeoutMs = int(o, 'timeoutMs', 0);
      if (o.rolling !== undefined) {
        if (typeof o.rolling !== 'boolean') throw bad('"rolling" must be a boolean');
        msg.rolling = o.rolling;
      }
      if (o.workers !== undefined) msg.workers = o.workers === 'max' ? 'max' : int(o, 'workers', 1, 65536);
      if (o.features !== undefined) msg.features = strings(o, 'features', 16, 32);
      return msg;
    }
    case 'welcome': {
      if (!Array.isArray(o.inventory) || o.inventory.length > 4096)
        throw bad('"inventory" must be an array of at most 4096 entries');
      return { v, type: 'welcome', generation: int(o, 'generation', 1), inventory: o.inventory.map(checkEntry) };
    }
    case 'refuse':
      return { v, type: 'refuse', code: str(o, 'code'), reason: str(o, 'reason', 4096) };
    case 'register':
      return { v, type: 'register', entry: checkEntry(o.entry) };
    case 'ready': {
      if (!Array.isArray(o.names) || o.names.length > 4096 || !o.names.every((n) => typeof n === 'string'))
        throw bad('"names" must be an array of strings');
      return { v, type: 'ready', names: o.names as string[] };
    }
    case 'ready-ok':
      return { v, type: 'ready-ok' };
    case 'drain':
      return {
        v,
        type: 'drain',
        timeoutMs: int(o, 'timeoutMs'),
        reason: oneOf(o, 'reason', ['upgrade', 'stop'] as const),
      };
    case 'stats': {
      const state = oneOf(o, 'state', ['starting', 'serving', 'draining'] as const);
      const msg: Stats = { v, type: 'stats', connections: int(o, 'connections'), state };
      if (o.kinds !== undefined) {
        const k = o.kinds;
        if (!isObject(k) || Object.keys(k).length > 16) throw bad('"kinds" must be an object of at most 16 counts');
        msg.kinds = {};
        for (const name of Object.keys(k)) {
          if (name.length > 32 || name === '__proto__') throw bad('a "kinds" name must be at most 32 characters');
          msg.kinds[name] = int(k, name);
        }
      }
      if (o.accepted !== undefined) msg.accepted = int(o, 'accepted');
      if (o.arriving !== undefined) msg.arriving = int(o, 'arriving', 0, msg.connections);
      if (o.moved !== undefined) {
        msg.moved = int(o, 'moved');
        msg.notMoved = int(o, 'notMoved');
      }
      if (o.waiting !== undefined) msg.waiting = oneOf(o, 'waiting', ['predecessor', 'connections'] as const);
      checkLoopAndReasons(o, msg);
      return msg;
    }
    case 'lend': {
      const names = strings(o, 'names', MAX_LEND_NAMES, 200);
      if (names.length === 0) throw bad('"names" must not be empty');
      return { v, type: 'lend', slot: int(o, 'slot', 0, MAX_SLOT), names };
    }
    case 'unlend':
      return { v, type: 'unlend', slot: int(o, 'slot', 0, MAX_SLOT) };
    case 'lent': {
      if (!Array.isArray(o.refused) || o.refused.length > MAX_LEND_NAMES) {
        throw bad(`"refused" must be an array of at most ${MAX_LEND_NAMES} entries`);
      }
      const refused = o.refused.map((r: unknown) => {
        if (!isObject(r)) throw bad('a "refused" entry must be an object');
        return { name: str(r, 'name', 200), code: str(r, 'code', 64), reason: str(r, 'reason', 4096) };
      });
      const served = strings(o, 'served', MAX_LEND_NAMES, 200);
      return { v, type: 'lent', slot: int(o, 'slot', 0, MAX_SLOT), served, refused };
    }
    case 'result': {
      if (typeof o.ok !== 'boolean') throw bad('"ok" must be a boolean');
      const msg: Result = { v, type: 'result', ok: o.ok, command: oneOf(o, 'command', CONTROL_COMMANDS) };
      if (o.code !== undefined) msg.code = str(o, 'code');
      if (o.reason !== undefined) msg.reason = str(o, 'reason', 65536);
      if (o.data !== undefined) msg.data = o.data;
      return msg;
    }
    case 'migrate': {
      if (!Array.isArray(o.items) || o.items.length === 0 || o.items.length > MAX_MIGRATION_BATCH)
        throw bad(`"items" must be an array of 1 to ${MAX_MIGRATION_BATCH} entries`);
      return {
        v,
        type: 'migrate',
        items: o.items.map((it: unknown) => {
          if (!isObject(it)) throw bad('a migration item must be an object');
          const item: MigrationItem = {
            kind: oneOf(it, 'kind', ['raw', 'http', 'ws'] as const),
            name: str(it, 'name', 200),
          };
          if (it.state !== undefined) item.state = it.state;
          if (it.pending !== undefined) {
            if (typeof it.pending !== 'string') throw bad('"pending" must be a base64 string');
            item.pending = it.pending;
          }
          return item;
        }),
      };
    }
    case 'migrate-ok': {
      const msg: MigrateOk = { v, type: 'migrate-ok', count: int(o, 'count') };
      if (o.room !== undefined) msg.room = int(o, 'room', 0);
      if (o.cost !== undefined) msg.cost = int(o, 'cost', 0);
      return msg;
    }
    case 'migrate-end':
      return { v, type: 'migrate-end' };
    case 'migrate-done':
      return { v, type: 'migrate-done' };
    case 'migrate-channel':
      return { v, type: 'migrate-channel' };
    case 'migrate-carry': {
      if (typeof o.last !== 'boolean') throw bad('"last" must be a boolean');
      return {
        v,
        type: 'migrate-carry',
        name: str(o, 'name', 200),
        part: str(o, 'part', MAX_CARRY_PART),
        last: o.last,
      };
    }
    default:
      throw bad(`unknown type ${shown(o.type)}`);
  }
}

/** `o[key]`: an array of at most `max` strings of 1 to `length` characters. */
function strings(o: Record<string, unknown>, key: string, max: number, length: number): string[] {
  const v = o[key];
  if (
    !Array.isArray(v) ||
    v.length > max ||
    !v.every((s) => typeof s === 'string' && s.length > 0 && s.length <= length)
  ) {
    throw bad(`"${key}" must be an array of at most ${max} strings of 1 to ${length} characters`);
  }
  return v as string[];
}

/** The event-loop figures and not-moved reasons of a `stats` message. */
function checkLoopAndReasons(o: Record<string, unknown>, msg: Stats): void {
  if (o.loop !== undefined) {
    const loop = o.loop;
    const num = (key: string, max: number) => {
      const n = isObject(loop) ? loop[key] : undefined;
      if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > max) {
        throw bad(`"loop.${key}" must be a number from 0 to ${max}`);
      }
      return n;
    };
    msg.loop = { delayP99Ms: num('delayP99Ms', 3_600_000), utilization: num('utilization', 1) };
  }
  if (o.notMovedReasons !== undefined) {
    const nm = o.notMovedReasons;
    // Reasons are ERR_BATON_* codes: a handful. The bound keeps a peer from growing the supervisor's tallies.
    if (!isObject(nm) || Object.keys(nm).length > 32) throw bad('"notMovedReasons": an object, up to 32 reasons');
    msg.notMovedReasons = {};
    for (const reason of Object.keys(nm)) {
      if (!/^[A-Z0-9_]{1,64}$/.test(reason)) throw bad(`"notMovedReasons": ${shown(reason)} is not an error code`);
      msg.notMovedReasons[reason] = int(nm, reason);
    }
  }
}
