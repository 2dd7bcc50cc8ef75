/**
 * Socket.IO across upgrades (socket.io >= 4.6, an optional peer dependency: baton never imports it; it works
 * with the app's own Server). Verified against socket.io 4.8.4, engine.io 6.6.13, socket.io-adapter 2.5.9.
 *
 * A Socket.IO connection cannot move like a `ws` WebSocket: its state is spread over engine.io's socket
 * (transport, buffers, heartbeat), socket.io's Client and one Socket per namespace. It reconnects instead,
 * and Socket.IO's own connection state recovery (`connectionStateRecovery`, socket.io >= 4.6) makes the
 * reconnect lossless: the client sends its session id (`pid`) and the id of the last broadcast it got
 * (`offset`), and the server gives back its socket id, rooms, `socket.data` and the packets broadcast
 * since. So, the moment the new generation is ready, the old one:
 * 1. closes every engine.io socket (engine.io `socket.close()`: queued packets are flushed first). The
 *    reason is "forced close", which socket.io counts as recoverable: each Socket's session (sid, pid,
 *    rooms, data) is persisted in its namespace's adapter. The client sees "transport close" and reconnects
 *    after its reconnectionDelay (default 1 s ± 50 %) — to the new generation, the only one accepting.
 *    (`io.disconnectSockets(true)` would send a DISCONNECT packet instead, which tells clients not to
 *    reconnect — and is not recoverable.)
 * 2. carries the recovery state to the new generation over the migration channel (MigrationSender.carry):
 *    with the default in-memory adapter it lives only in this process — the sessions and the packet log
 *    (`adapter.sessions`, `adapter.packets`, socket.io-adapter's SessionAwareAdapter). The new generation
 *    puts the old log before its own and adds the sessions, so a client's offset — an id from the old
 *    log — is found there, and it gets the old generation's packets after it and then every packet the new
 *    generation broadcast since it became ready. The log is ordered by generation, not by time: both
 *    generations broadcast for a moment, and a new-generation packet stamped a millisecond before the
 * client's last old-generation one must still come after it (ordered by time, such a packet was lost). Until the state
 * has arrived, restoring a session waits
 *    for it (bounded): a client that reconnects very fast is not turned away.
 * An adapter that keeps sessions elsewhere (Redis streams, Postgres, MongoDB...) already recovers across
 * processes: nothing is carried (baton sees no in-memory session store).
 *
 * From step 1 on, the old generation refuses new handshakes and closes any session that still opens (see
 * closeTransports): a handshake can still reach it after its drain began.
 * Private internals used, in this file only: engine.io `engine.clients` (public in docs, an object by id),
 * `engine.opts.allowRequest` (a documented option, replaced at the drain),
 * socket.io `io._nsps` (the namespaces), socket.io-adapter's `adapter.sessions` / `adapter.packets` and
 * their shapes. Test: test/socket-io.test.ts.
 */
import { argTypeError } from '../fd/errors.js';
import type { ReconnectingServers } from '../upgrader/integration.js';

/** What baton uses of a socket.io Server. */
export interface SocketIoServerLike {
  engine: {
    clients: Record<string, EngineSocketLike>;
    clientsCount: number;
    opts: { allowRequest?: (req: unknown, fn: (message: string | null | undefined, ok: boolean) => void) => void };
    on(event: 'connection', fn: (socket: EngineSocketLike) => void): unknown;
  };
  _nsps: Map<string, NamespaceLike>;
  sockets: { on(event: 'new_namespace', fn: (nsp: NamespaceLike) => void): unknown };
}

interface EngineSocketLike {
  readyState: string;
  close(discard?: boolean): void;
  once(event: 'close', fn: () => void): unknown;
}

interface NamespaceLike {
  name: string;
  adapter: AdapterLike;
}

interface Session {
  sid: string;
  pid: string;
  rooms: string[];
  data: unknown;
  disconnectedAt: number;
}

interface StoredPacket {
  /** The generation that broadcast it (set by baton on packets carried over; unset: this generation). */
  batonGeneration?: number;
  id: string;
  opts: { rooms: Set<string>; except: Set<string>; flags?: Record<string, unknown> };
  data: unknown[];
  emittedAt: number;
}

interface AdapterLike {
  sessions?: Map<string, Session>;
  packets?: StoredPacket[];
  restoreSession?: (pid: string, offset: string) => unknown;
}

/** The JSON form of one namespace's recovery state. */
interface CarriedNamespace {
  sessions: Session[];
  packets: Array<{
    gen: number;
    id: string;
    opts: { rooms: string[]; except: string[]; flags?: Record<string, unknown> };
    data: unknown[];
    emittedAt: number;
  }>;
}

export type CarriedSocketIo = Record<string, CarriedNamespace>;

const CARRY_NAME = 'socket.io';
/** How long engine.io sockets get to flush their queued packets before they are closed at once. */
const FLUSH_GRACE_MS = 1000;
/** How long restoring a session may wait for the old generation's state. */
const RESTORE_WAIT_MS = 5000;

/** Throw a TypeError unless `io` looks like a socket.io Server. */
function checkSocketIo(io: unknown): SocketIoServerLike {
  const s = io as Partial<SocketIoServerLike>;
  if (
    typeof io !== 'object' ||
    io === null ||
    typeof s.engine !== 'object' ||
    s.engine === null ||
    typeof s.engine.clients !== 'object' ||
    typeof s.engine.opts !== 'object' ||
    typeof s.engine.on !== 'function' ||
    !(s._nsps instanceof Map)
  ) {
    throw argTypeError('io', "a Server from the 'socket.io' package (>= 4.6)", io);
  }
  return io as SocketIoServerLike;
}

/** Does `x` look like socket.io's Server, engine.io's Server, or engine.io's private ws server? (for the
 * TypeError of webSocketServer(), which cannot move these). */
export function socketIoPart(x: unknown): string | null {
  if (typeof x !== 'object' || x === null) return null;
  const o = x as Record<string, unknown>;
  if (o._nsps instanceof Map && typeof o.engine === 'object') return 'a socket.io Server';
  if (typeof o.clients === 'object' && typeof o.clientsCount === 'number' && typeof o.handleUpgrade === 'function')
    return 'an engine.io Server (io.engine)';
  const opts = o.options as Record<string, unknown> | undefined;
  if (opts && opts.noServer === true && opts.clientTracking === false)
    return "a WebSocketServer without client tracking (engine.io's io.engine.ws is one)";
  return null;
}

/** Why a draining generation refuses a handshake (engine.io answers 403, or 400 to a WebSocket upgrade). */
const REFUSED = 'this server is draining (baton): reconnect to its successor';

/**
 * Old generation: close every engine.io socket; resolves when all are closed (or forced after a grace).
 *
 * From now on it refuses new handshakes: one can still reach this generation after its drain began — on a
 * keep-alive connection it still holds (behind a request in flight), or accepted just before it stopped
 * accepting — and its session would belong to nobody: not closed here, its recovery state not carried, a
 * WebSocket one holding the generation until the drain timeout (test/socket-io.test.ts). Refused, the client
 * keeps its session id and offset and retries after its reconnection delay, against the successor (the only
 * one accepting), where its session is recovered. (Accepting and closing it at once would reconnect a
 * little sooner, but a session opened here — a new client's room joins, a recovered one's restore — is lost.)
 * A handshake already verified when the drain began can still open its session after it (engine.io's
 * handshake is async): every 'connection' from now on is closed too.
 */
function closeTransports(io: SocketIoServerLike): Promise<number> {
  const engine = io.engine;
  engine.opts.allowRequest = (_req, fn) => fn(REFUSED, false);
  return new Promise((resolve) => {
    const open = new Set<EngineSocketLike>();
    let closed = 0;
    let flushing = true;
    let done = false;
    const finish = () => {
      clearTimeout(timer);
      flushing = false; // a late one, from now on: closed at once
      done = true;
      resolve(closed);
    };
    const timer = setTimeout(() => {
      // Still flushing (a polling client with no request pending): close without flushing.
      flushing = false;
      for (const s of open) if (s.readyState !== 'closed') s.close(true);
    }, FLUSH_GRACE_MS);
    const close = (s: EngineSocketLike) => {
      open.add(s);
      s.once('close', () => {
        open.delete(s);
        closed++;
        if (!open.size && !done) finish();
      });
      s.close(!flushing);
    };
    engine.on('connection', close);
    for (const s of Object.values(engine.clients)) close(s);
    if (!open.size) finish();
  });
}

/** The in-memory recovery state of every namespace (null if no namespace keeps one in memory). */
function recoveryState(io: SocketIoServerLike, generation: number): CarriedSocketIo | null {
  const out: CarriedSocketIo = {};
  let any = false;
  for (const nsp of io._nsps.values()) {
    const a = nsp.adapter;
    if (!(a.sessions instanceof Map) || !Array.isArray(a.packets)) continue;
    any = true;
    out[nsp.name] = {
      sessions: [...a.sessions.values()],
      packets: a.packets.map((p) => ({
        gen: p.batonGeneration ?? generation,
        id: p.id,
        opts: {
          rooms: [...p.opts.rooms],
          except: [...p.opts.except],
          ...(p.opts.flags ? { flags: p.opts.flags } : {}),
        },
        data: p.data,
        emittedAt: p.emittedAt,
      })),
    };
  }
  return any ? out : null;
}

/**
 * New generation: merge `state` (from an older generation) into the namespaces' adapters: sessions this
 * generation does not know are added; packets it does not have join its log, ordered by the generation
 * that broadcast them, then as they were (after quick reloads, the states of two older generations may
 * arrive in either order), and before this generation's own.
 */
function mergeRecoveryState(io: SocketIoServerLike, state: unknown, only?: NamespaceLike): void {
  if (!state || typeof state !== 'object') return;
  const carriedState = state as CarriedSocketIo;
  for (const n of only ? [only] : io._nsps.values()) {
    const carried = carriedState[n.name];
    const a = n.adapter;
    if (!carried || !(a.sessions instanceof Map) || !Array.isArray(a.packets)) continue;
    for (const s of carried.sessions) if (!a.sessions.has(s.pid)) a.sessions.set(s.pid, s);
    const known = new Set(a.packets.map((p) => p.id));
    const old = carried.packets
      .filter((p) => !known.has(p.id))
      .map((p) => ({
        batonGeneration: p.gen,
        id: p.id,
        opts: {
          rooms: new Set(p.opts.rooms),
          except: new Set(p.opts.except),
          ...(p.opts.flags ? { flags: p.opts.flags } : {}),
        },
        data: p.data,
        emittedAt: p.emittedAt,
      }));
    if (!old.length) continue;
    a.packets.push(...old);
    // Stable: packets of one generation keep their order.
    a.packets.sort((x, y) => (x.batonGeneration ?? Infinity) - (y.batonGeneration ?? Infinity) || 0);
  }
}

/**
 * New generation: restoring a session this generation does not know waits (bounded) until `arrived()`
 * resolves — an older generation's state is here and merged, or none will come. `carriedSoFar()`: the
 * states merged so far, for namespaces created later.
 */
function restoreAfterCarry(
  io: SocketIoServerLike,
  arrived: () => Promise<unknown>,
  carriedSoFar: () => unknown[],
): void {
  const wrap = (nsp: NamespaceLike) => {
    const a = nsp.adapter;
    const restore = a.restoreSession;
    if (typeof restore !== 'function' || !(a.sessions instanceof Map)) return;
    a.restoreSession = async function (this: AdapterLike, pid: string, offset: string) {
      if (!a.sessions!.has(pid))
        await Promise.race([arrived(), new Promise((r) => setTimeout(r, RESTORE_WAIT_MS).unref())]);
      return restore.call(this, pid, offset);
    };
  };
  for (const nsp of io._nsps.values()) wrap(nsp);
  io.sockets.on('new_namespace', (nsp) => {
    wrap(nsp);
    for (const state of carriedSoFar()) mergeRecoveryState(io, state, nsp);
  });
}

/** The socket.io Servers of one generation (Upgrader.socketIo()): the upgrader's view of them. */
export class SocketIoServers implements ReconnectingServers {
  readonly carryName = CARRY_NAME;
  readonly #servers: SocketIoServerLike[] = [];

  get size(): number {
    return this.#servers.length;
  }

  check(io: unknown): object {
    return checkSocketIo(io);
  }

  add(server: object): void {
    const io = server as SocketIoServerLike;
    if (!this.#servers.includes(io)) this.#servers.push(io);
  }

  awaitCarried(arrived: () => Promise<unknown>, carriedSoFar: () => unknown[]): void {
    for (const io of this.#servers) restoreAfterCarry(io, arrived, carriedSoFar);
  }

  merge(state: unknown): void {
    for (const io of this.#servers) mergeRecoveryState(io, state);
  }

  async closeAll(generation: number): Promise<{ closed: number; state: unknown }> {
    const closed = (await Promise.all(this.#servers.map((io) => closeTransports(io)))).reduce((a, n) => a + n, 0);
    const states = this.#servers.map((io) => recoveryState(io, generation)).filter((x) => x !== null);
    // One value for every server (normally one): namespaces by name; a second server's would merge into the
    // first's namespaces of the same name, which is what the new generation's single server needs.
    return { closed, state: states.length ? Object.assign({}, ...states) : null };
  }
}
