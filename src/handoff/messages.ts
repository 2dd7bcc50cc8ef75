/**
 * The handoff protocol's messages: one JSON object per FdChannel message, fds attached where a message
 * carries sockets. Every message has `v` (the protocol version) and `type`. decode() validates shape and
 * types field by field and says exactly what is wrong; the caller closes any fds that came with a bad or
 * unexpected message.
 *
 * See docs/protocol.md for the sequence and the states on each side.
 */
export const PROTOCOL_VERSION = 1;

/** What a named socket is. 'control' is the control socket itself (standalone mode hands it over). */
export type SocketKind = 'tcp' | 'unix' | 'udp4' | 'udp6' | 'control';

/** Where it is bound. Addresses are compared to decide whether an inherited socket fits a listen() call. */
export type SocketAddress = { host: string; port: number } | { path: string };

export interface InventoryEntry {
  name: string;
  kind: SocketKind;
  address: SocketAddress;
  /**
   * A socket the service manager passed in (see docs/systemd.md), and how loosely it fits a request:
   * 'activation' (socket activation: the unit decides the address, so any listen() of a stream kind, or
   * bindDgram() of the same type, takes it) or 'fdstore' (from systemd's fd store: the same port or path,
   * whatever host the app names — only the numeric address is known). Absent: fits() decides.
   */
  origin?: 'activation' | 'fdstore';
  /** An activated socket without a name: the first listen()/bindDgram() of a fitting kind that finds no
   * socket of its own name takes it (by position), under its own name. */
  unnamed?: boolean;
}

export type Role = 'generation' | 'control';
/** 'reexec': replace the supervisor's own image (`baton reload --supervisor`, src/cli/reexec.ts). */
export const CONTROL_COMMANDS = ['reload', 'status', 'stop', 'reexec'] as const;
export type ControlCommand = (typeof CONTROL_COMMANDS)[number];

/**
 * What a generation can do beyond the protocol's base, announced in its hello: the serving side sends a message
 * of a feature only to a peer that announced it, so an app built with an older baton is never sent one (it would
 * take it for a protocol error and end the connection). 'lend': the `lend` / `unlend` messages.
 */
export const FEATURES = ['lend'] as const;
export type Feature = (typeof FEATURES)[number];

export interface Hello {
  v: number;
  type: 'hello';
  role: Role;
  pid: number;
  /** For role 'generation': what it can do (FEATURES; names it does not know are kept, and ignored). */
  features?: string[];
  /** For role 'generation' under a supervisor: the number the supervisor gave it (BATON_GENERATION). */
  generation?: number;
  /** For role 'control'. */
  command?: ControlCommand;
  /** For 'reload': how long the caller will wait, in ms. */
  timeoutMs?: number;
  /** For 'reload' (`baton reload --rolling`): replace the workers one slot at a time, this once. */
  rolling?: boolean;
  /** For 'reload' (`baton reload --workers M`): the new number of workers per generation, or 'max'. */
  workers?: number | 'max';
}

/** How `baton reload` asks for its reload (the fields of its hello). */
export type ReloadOptions = Pick<Hello, 'rolling' | 'workers'>;

/** Sent to a new generation: the sockets it may inherit. fds are attached in inventory order. */
export interface Welcome {
  v: number;
  type: 'welcome';
  generation: number;
  inventory: InventoryEntry[];
}

export interface Refuse {
  v: number;
  type: 'refuse';
  code: string;
  reason: string;
}

/** A generation tells the supervisor about a socket it bound itself; one fd attached. */
export interface Register {
  v: number;
  type: 'register';
  entry: InventoryEntry;
}

/** The new generation serves; `names` are the inherited or registered sockets it uses. */
export interface Ready {
  v: number;
  type: 'ready';
  names: string[];
}

export interface ReadyOk {
  v: number;
  type: 'ready-ok';
}

/** Supervisor to a generation: you were replaced (or the service stops): stop accepting, drain, exit. */
export interface Drain {
  v: number;
  type: 'drain';
  timeoutMs: number;
  reason: 'upgrade' | 'stop';
}

/** A generation's periodic report to the supervisor. */
export interface Stats {
  v: number;
  type: 'stats';
  connections: number;
  state: 'starting' | 'serving' | 'draining';
  /** Connections its servers accepted since it started (not those that moved to it). */
  accepted?: number;
  /** Of `connections`, those moved to it and not continued yet (parked by its migration receiver). */
  arriving?: number;
  /** The last report of a drain: connections moved to the next generation, and those that could not move
   * (closed politely instead). */
  moved?: number;
  notMoved?: number;
  /** ...and by reason (ERR_BATON_* codes). */
  notMovedReasons?: Record<string, number>;
  /** The event loop since the previous report: delay p99 (ms, the timer resolution taken off) and the
   * fraction of the time it was busy (0..1). */
  loop?: LoopStats;
  /** Open connections by kind (http, sse, ws, raw, h2, ...): what a draining generation is waiting for. */
  kinds?: Record<string, number>;
  /** A draining generation's wait: 'predecessor' (the one before it is still handing connections over)
   * or 'connections' (its own). */
  waiting?: 'predecessor' | 'connections';
}

/**
 * Supervisor to a serving worker (`baton run --workers N`, docs/workers.md): serve slot `slot`'s sockets too, one
 * fd per name in `names`, each with what you listen on under that name, until `unlend` (or your drain). A slot
 * with no live worker (its worker crashed and is respawning; a slot a scale-down removed) is lent so that its
 * queue is served; the supervisor keeps its own copy, so closing the borrowed one later loses nothing.
 */
export interface Lend {
  v: number;
  type: 'lend';
  slot: number;
  names: string[];
}

/** Supervisor to a worker: stop serving slot `slot`'s sockets (close the borrowed copies). */
export interface Unlend {
  v: number;
  type: 'unlend';
  slot: number;
}

/** A worker's answer to `lend`: the names it serves now, and why not the others (an ERR_BATON_* code and a
 * reason: a name it does not listen on, a socket it could not use). */
export interface Lent {
  v: number;
  type: 'lent';
  slot: number;
  served: string[];
  refused: Array<{ name: string; code: string; reason: string }>;
}

export interface LoopStats {
  delayP99Ms: number;
  utilization: number;
}

/** Answer to a control command. */
export interface Result {
  v: number;
  type: 'result';
  ok: boolean;
  command: ControlCommand;
  /** For failures: an ERR_BATON_* code and a human reason. */
  code?: string;
  reason?: string;
  /** Command-specific payload (the status report, the upgrade record). */
  data?: unknown;
}

/** What a migrated connection is, so the new generation knows whom to give it to. */
export type MigrationKind = 'raw' | 'http' | 'ws';

export interface MigrationItem {
  kind: MigrationKind;
  /** The listener it was accepted on (an http server continues it; raw: informational). */
  name: string;
  /** The application's per-connection state (raw), JSON. */
  state?: unknown;
  /** Bytes read from the socket but not processed, base64. */
  pending?: string;
}

/** Old generation to new, on the migration channel: connections, one fd per item, in order. */
export interface Migrate {
  v: number;
  type: 'migrate';
  items: MigrationItem[];
}

/**
 * New generation to old: that many connections of the last batch are adopted (flow control), and `room`
 * more fds fit in its fd table (RLIMIT_NOFILE less what is open and a reserve). The first migrate-ok,
 * sent when the channel is made, has count 0 and only announces the room.
 */
export interface MigrateOk {
  v: number;
  type: 'migrate-ok';
  count: number;
  room?: number;
  /** What adopting the last batch cost, CPU µs per connection (building its sockets and objects, the app's
   * 'connection' handlers included): the sender sizes its next batches by it (src/upgrader/pacing.ts). */
  cost?: number;
}

/**
 * New generation to old, on the migration channel: "I am draining myself: move nothing more to me". With
 * an fd (a new channel whose other end the newest generation has): move the rest there instead. Without
 * (no newer generation: a stop), close them politely. Either way the old generation answers `migrate-done`
 * on this channel once the batches already sent here are acknowledged. See "When a generation exits" in
 * src/upgrader/migrate.ts.
 */
export interface MigrateEnd {
  v: number;
  type: 'migrate-end';
}

/** Old generation to new: nothing more will come on this migration channel. */
export interface MigrateDone {
  v: number;
  type: 'migrate-done';
}

/**
 * Old generation to new: application state that is not a connection (Socket.IO's recovery sessions), as
 * JSON text in parts of at most MAX_CARRY_PART bytes; the receiver joins the parts of `name` until `last`.
 */
export interface MigrateCarry {
  v: number;
  type: 'migrate-carry';
  name: string;
  part: string;
  last: boolean;
}

/**
 * A draining generation to its successor: one end of a new migration channel (1 fd) from a generation older
 * than the sender, which was still handing connections over: receive them too.
 */
export interface MigrateChannel {
  v: number;
  type: 'migrate-channel';
}

/** Largest part of a migrate-carry message (the receiver takes messages of up to 9 MiB). */
export const MAX_CARRY_PART = 4 * 1024 * 1024;

export type Message =
  | Hello
  | Welcome
  | Refuse
  | Register
  | Ready
  | ReadyOk
  | Drain
  | Stats
  | Lend
  | Unlend
  | Lent
  | Result
  | Migrate
  | MigrateOk
  | MigrateEnd
  | MigrateDone
  | MigrateCarry
  | MigrateChannel;
export type MessageType = Message['type'];

/** How many fds a message may carry: [at least, at most]. `ready` and `drain` may carry the migration
 * channel (one end of a socketpair the new generation made). */
export function expectedFds(msg: Message): [number, number] {
  if (msg.type === 'welcome') return [msg.inventory.length, msg.inventory.length];
  if (msg.type === 'register') return [1, 1];
  if (msg.type === 'lend') return [msg.names.length, msg.names.length];
  if (msg.type === 'migrate') return [msg.items.length, msg.items.length];
  if (msg.type === 'ready' || msg.type === 'drain' || msg.type === 'migrate-end') return [0, 1];
  if (msg.type === 'migrate-channel') return [1, 1];
  return [0, 0];
}

export function encode(msg: Message): Buffer {
  return Buffer.from(JSON.stringify(msg));
}

/** Connections per migrate message: one SEQPACKET record's worth of fds, so a batch is one sendmsg. */
export const MAX_MIGRATION_BATCH = 253;

/** The largest message we accept: an inventory of a few hundred sockets fits easily. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

/** Most connections a control socket keeps open at once. Legitimate ones: one per live generation (the
 * serving one, one starting, and each still draining after a reload — up to `drainTimeout`, 30 s) plus
 * one per running `baton` command; 64 leaves room for a reload every second or so with slow drains. Each
 * connection costs an fd and, until its hello arrives (5 s at most), a little memory. */
export const MAX_CONTROL_CONNECTIONS = 64;

/** Options of a control socket's FdChannelServer (supervisor, standalone generation). Per connection: what
 * a peer may send there is `hello`, `register` (1 fd), `ready` (at most 1 fd), `stats` and `lent`, so reassembly
 * stops at the protocol's own size. Past MAX_CONTROL_CONNECTIONS open at once, a new connection gets a
 * `refuse` (ERR_BATON_TOO_MANY_CONNECTIONS: the CLI and a new generation report it as such) and is
 * closed. */
export const CONTROL_CHANNEL_LIMITS = {
  maxMessageBytes: MAX_MESSAGE_BYTES,
  maxMessageFds: 16,
  maxChannels: MAX_CONTROL_CONNECTIONS,
  dropNotice: encode({
    v: PROTOCOL_VERSION,
    type: 'refuse',
    code: 'ERR_BATON_TOO_MANY_CONNECTIONS',
    reason:
      `the control socket is at its limit of ${MAX_CONTROL_CONNECTIONS} open connections; try again once some ` +
      `have closed`,
  }),
} as const;

/**
 * Does an inherited socket fit what listen()/bindDgram() asks for now? Hosts compare as the application
 * wrote them ('' for "all interfaces"; '127.0.0.1' and 'localhost' differ on purpose: the inherited socket
 * is bound to one exact address). A requested port 0 ("any port") accepts the inherited socket's port, so
 * an app on an ephemeral port keeps it across upgrades.
 */
export function fits(inherited: SocketAddress, requested: SocketAddress): boolean {
  if ('path' in inherited || 'path' in requested)
    return 'path' in inherited && 'path' in requested && inherited.path === requested.path;
  return inherited.host === requested.host && (requested.port === 0 || inherited.port === requested.port);
}

/**
 * Does an offered inventory entry fit a listen()/bindDgram() of `kind` at `requested`? Sockets from the
 * service manager fit more loosely (see InventoryEntry.origin); the rest must be of the same kind and fit().
 */
export function entryFits(entry: InventoryEntry, kind: SocketKind, requested: SocketAddress): boolean {
  if (entry.origin === 'activation') {
    const stream = (k: SocketKind) => k === 'tcp' || k === 'unix';
    return entry.kind === kind || (stream(entry.kind) && stream(kind));
  }
  if (entry.kind !== kind) return false;
  if (entry.origin === 'fdstore') {
    if ('path' in entry.address || 'path' in requested) return fits(entry.address, requested);
    return requested.port === 0 || entry.address.port === requested.port;
  }
  return fits(entry.address, requested);
}

export function formatAddress(a: SocketAddress): string {
  if ('path' in a) return a.path;
  const host = a.host === '' ? '*' : a.host.includes(':') ? `[${a.host}]` : a.host;
  return `${host}:${a.port}`;
}
