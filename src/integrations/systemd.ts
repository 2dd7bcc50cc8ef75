/**
 * baton and the service manager (systemd, or anything speaking its protocols): what to tell it when, and
 * which sockets it passed in. The wire protocols themselves are in src/fd/systemd.ts.
 *
 * - ServiceNotifier: READY=1 once serving; RELOADING=1 (with MONOTONIC_USEC) when an upgrade starts and
 *   READY=1 when it ends, whatever the outcome (Type=notify-reload); STOPPING=1; STATUS= with the
 *   generation and the listener count; WATCHDOG=1 at half of WATCHDOG_USEC; MAINPID= when a standalone
 *   successor becomes the main process; FDSTORE=1 / FDSTOREREMOVE=1 to keep listeners in the fd store.
 * - serviceSockets(): LISTEN_FDS as inventory entries (named by LISTEN_FDNAMES, kind and address read
 *   from the sockets), for the supervisor's inventory or a first standalone / plain generation.
 *
 * Who notifies: under `baton run` the supervisor is the service's main process and the only one that
 * talks to the manager (generations never see NOTIFY_SOCKET). Without a supervisor, the serving
 * generation does, and hands the main-process role to its successor (MAINPID=) at the upgrade.
 */
import { closeFds } from '../fd/fds.js';
import { dupFd } from '../fd/fd-of.js';
import { probe, type FdInfo } from '../fd/probe.js';
import { monotonicUsec, sdListenFds, sdNotify, sdWatchdog, type NotifyFields } from '../fd/systemd.js';
import { Inventory, type Held } from '../handoff/inventory.js';
import type { InventoryEntry, SocketAddress, SocketKind } from '../handoff/messages.js';
import type { ServiceManager, ServiceOptions, ServingInfo } from '../upgrader/integration.js';
import type { LogFields, Logger } from '../upgrader/logger.js';

/** Inventory names of activated sockets that have no name of their own (taken by position). */
export const UNNAMED_PREFIX = '__baton_activated_';

/** A socket the service manager passed: its fd is owned by the caller and close-on-exec. */
export type ServiceSocket = Held;

type Log = (level: 'info' | 'warn', event: string, fields: LogFields) => void;

/**
 * The sockets the service manager passed to this process (LISTEN_FDS for LISTEN_PID), as inventory
 * entries; the variables are removed from the environment. A name from LISTEN_FDNAMES
 * (FileDescriptorName=, --fdname=, FDNAME=) is the name listen() asks for; a socket without one — or with
 * systemd's defaults, "unknown" or the socket unit's own name ("app.socket") — goes to the first listen()
 * of a fitting kind that has no socket of its own name. `stored`: named sockets are this service's own,
 * back from the fd store (matched by port or path); otherwise they come from socket activation (the unit
 * decides the address: any address fits). Fds of other kinds (connections, files) are closed with a warning.
 */
export function serviceSockets(stored: boolean, log: Log): ServiceSocket[] {
  const out: ServiceSocket[] = [];
  const seen = new Set<string>();
  let index = 0;
  for (const { fd, name } of sdListenFds({ unsetEnv: true })) {
    const position = index++;
    let info: FdInfo;
    try {
      info = probe(fd);
    } catch (err) {
      closeFds([fd]);
      log('warn', 'listen-fd-unusable', { position, name, reason: (err as Error).message });
      continue;
    }
    const kind = kindOf(info);
    const address = kind ? addressOf(info) : null;
    if (!kind || !address) {
      closeFds([fd]);
      log('warn', 'listen-fd-unsupported', {
        position,
        name,
        kind: info.kind,
        reason: 'baton takes listening TCP and Unix stream sockets and UDP sockets',
      });
      continue;
    }
    const named = name !== null && name !== 'unknown' && !name.endsWith('.socket') && name.length <= 200;
    const entry: InventoryEntry = {
      name: `${UNNAMED_PREFIX}${position}`,
      kind,
      address,
      origin: named && stored ? 'fdstore' : 'activation',
    };
    if (!named) entry.unnamed = true;
    else if (seen.has(name)) {
      log('warn', 'listen-fd-duplicate', {
        position,
        name,
        reason: 'only the first socket of a name is used; it is closed unless a listener takes it',
      });
    } else {
      seen.add(name);
      entry.name = name;
    }
    out.push({ entry, fd });
  }
  return out;
}

function kindOf(info: FdInfo): SocketKind | null {
  if (info.kind === 'tcp-listener') return 'tcp';
  if (info.kind === 'unix-listener') return 'unix';
  if (info.kind === 'udp') return info.family === 'IPv6' ? 'udp6' : info.family === 'IPv4' ? 'udp4' : null;
  return null;
}

function addressOf(info: FdInfo): SocketAddress | null {
  const a = info.local;
  if (!a) return null;
  if (a.family === 'unix') return { path: a.path || '@' };
  if (a.family === 'IPv4' || a.family === 'IPv6') return { host: a.address, port: a.port };
  return null;
}

/** "1 listener", "2 listeners". */
export function listeners(n: number): string {
  return `${n} listener${n === 1 ? '' : 's'}`;
}

/** A reason on one line (STATUS= is one line), at most `max` characters. */
export function oneLine(reason: string, max = 200): string {
  const line = reason.replace(/\s*\n\s*/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** systemd's fdname_is_valid(): at most 255 printable ASCII characters, no ':'. */
export function validFdName(name: string): boolean {
  return name.length > 0 && name.length <= 255 && /^[\x20-\x39\x3b-\x7e]+$/.test(name);
}

export interface NotifierOptions {
  logger: Logger;
  /** Fields of every log line (who is logging). */
  fields: () => LogFields;
  /** Keep listeners in the manager's fd store (FDSTORE=1). */
  fdStore?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** How long a notification may wait for room in the manager's queue before it is dropped (logged). */
const QUEUE_MS = 5000;

/**
 * Talks to $NOTIFY_SOCKET; every method is a no-op without one. Failures are logged, never thrown.
 *
 * The send never blocks: when the manager's queue is full (EAGAIN — the kernel's default queue is 10
 * datagrams, systemd raises it to 512), the notification waits here, with copies of its fds, and later
 * ones line up behind it so the order holds; retried every 10 ms for up to 5 s. `flushed()` resolves
 * when nothing waits (before an acknowledgement that must not overtake a MAINPID=).
 */
export class ServiceNotifier {
  readonly socket: string | null;
  readonly fdStore: boolean;
  readonly #env: NodeJS.ProcessEnv;
  readonly #logger: Logger;
  readonly #fields: () => LogFields;
  /** Names this process (or its predecessors) put in the fd store. */
  #stored = new Set<string>();
  #watchdog: NodeJS.Timeout | null = null;
  #queue: Array<{ fields: NotifyFields; fds: number[]; since: number }> = [];
  #retry: NodeJS.Timeout | null = null;
  #drained: Array<() => void> = [];

  constructor(options: NotifierOptions) {
    this.#env = options.env ?? process.env;
    this.#logger = options.logger;
    this.#fields = options.fields;
    const socket = this.#env.NOTIFY_SOCKET;
    this.socket = socket ? socket : null;
    this.fdStore = !!options.fdStore && this.socket !== null;
    if (options.fdStore && !this.socket)
      this.#log('warn', 'fdstore-unavailable', {
        reason: 'NOTIFY_SOCKET is not set: not started by a service manager',
      });
  }

  /** One notification (sent now, or queued behind others); false when there is no manager or it failed (logged). */
  send(fields: NotifyFields, fds?: readonly number[]): boolean {
    if (!this.socket) return false;
    if (this.#queue.length === 0) {
      try {
        return sdNotify(fields, { socket: this.socket, ...(fds?.length ? { fds } : {}) });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return this.#failed(fields, err as Error);
      }
    }
    let copies: number[];
    try {
      copies = (fds ?? []).map((fd) => dupFd(fd));
    } catch (err) {
      return this.#failed(fields, err as Error);
    }
    this.#queue.push({ fields, fds: copies, since: Date.now() });
    this.#retry ??= setTimeout(() => this.#flush(), 10);
    this.#retry.unref();
    return true;
  }

  /** Resolves once every queued notification was sent (or dropped). */
  flushed(): Promise<void> {
    if (this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }

  #flush(): void {
    this.#retry = null;
    while (this.#queue.length) {
      const item = this.#queue[0]!;
      try {
        sdNotify(item.fields, { socket: this.socket, ...(item.fds.length ? { fds: item.fds } : {}) });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN' && Date.now() - item.since < QUEUE_MS) {
          this.#retry = setTimeout(() => this.#flush(), 10);
          this.#retry.unref();
          return;
        }
        this.#failed(item.fields, err as Error);
      }
      closeFds(item.fds);
      this.#queue.shift();
    }
    for (const resolve of this.#drained.splice(0)) resolve();
  }

  #failed(fields: NotifyFields, err: Error): false {
    this.#log('warn', 'notify-failed', { fields: Object.keys(fields).join(','), reason: err.message });
    return false;
  }

  ready(status: string, extra: NotifyFields = {}): boolean {
    return this.send({ ...extra, READY: 1, STATUS: status });
  }

  /** An upgrade starts: the manager shows "reloading" until the next READY=1. */
  reloading(status: string): boolean {
    return this.send({ RELOADING: 1, MONOTONIC_USEC: monotonicUsec(), STATUS: status });
  }

  stopping(status: string): boolean {
    return this.send({ STOPPING: 1, STATUS: status });
  }

  status(status: string): boolean {
    return this.send({ STATUS: status });
  }

  /** Names of the listeners in the fd store (the supervisor's re-exec carries them over). */
  storedNames(): string[] {
    return [...this.#stored];
  }

  /** The named listener came from the fd store (LISTEN_FDS): it is there already. */
  markStored(name: string): void {
    if (this.fdStore) this.#stored.add(name);
  }

  /** Keep a copy of listener `name` in the fd store (the manager dups `fd`; ours stays ours). */
  store(name: string, fd: number): void {
    if (!this.fdStore) return;
    if (!validFdName(name)) {
      this.#log('warn', 'fdstore-skipped', {
        name,
        reason: 'an FDNAME is at most 255 printable ASCII characters without ":"',
      });
      return;
    }
    if (this.send({ FDSTORE: 1, FDNAME: name }, [fd])) this.#stored.add(name);
  }

  /** Drop listener `name` from the fd store (it was closed or replaced). */
  unstore(name: string): void {
    if (!this.fdStore || !this.#stored.delete(name)) return;
    this.send({ FDSTOREREMOVE: 1, FDNAME: name });
  }

  /**
   * Ping WATCHDOG=1 at half the interval if the manager asks for it and addresses one of `pids`
   * (WATCHDOG_PID; unset addresses whoever has the variable). Returns the interval in µs, or 0.
   */
  startWatchdog(pids: readonly number[] = [process.pid]): number {
    if (!this.socket || this.#watchdog) return 0;
    const w = sdWatchdog(this.#env);
    if (!w || (w.pid !== null && !pids.includes(w.pid))) return 0;
    const every = Math.max(1, Math.floor(w.usec / 2000));
    this.send({ WATCHDOG: 1 });
    this.#watchdog = setInterval(() => this.send({ WATCHDOG: 1 }), every);
    this.#watchdog.unref();
    this.#log('info', 'watchdog', { everyMs: every });
    return w.usec;
  }

  stopWatchdog(): void {
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#watchdog = null;
  }

  #log(level: 'info' | 'warn', event: string, fields: LogFields): void {
    this.#logger.log(level, event, { ...this.#fields(), ...fields });
  }
}

/**
 * The service manager as one generation without a supervisor sees it (the upgrader's ServiceManager):
 * the sockets it passed (LISTEN_PID is this process: a successor started later gets none, it inherits them
 * instead), and what to tell it at each step of the generation's life.
 */
export class GenerationService implements ServiceManager {
  readonly #notifier: ServiceNotifier;
  readonly #log: ServiceOptions['log'];
  /** Sockets the manager passed that no listen() took yet. */
  #activated: Inventory;
  /** MAINPID= named the successor (so a rollback names this process again). */
  #handedOver = false;

  constructor(options: ServiceOptions) {
    this.#log = options.log;
    this.#notifier = new ServiceNotifier({ logger: options.logger, fields: options.fields, fdStore: options.fdStore });
    const log: Log = (level, event, fields) => options.log(level, event, fields);
    this.#activated = new Inventory(serviceSockets(options.fdStore, log));
    for (const a of this.#activated) if (a.entry.origin === 'fdstore') this.#notifier.markStored(a.entry.name);
    // A successor's predecessor put the listeners in the fd store (if it was asked to).
    for (const e of options.inherited ?? []) if (e.kind !== 'control') this.#notifier.markStored(e.name);
    if (!options.inherited) this.#notifier.startWatchdog();
  }

  /** An activated socket for listen()/bindDgram() `name`: the one of that name, else an unnamed one (the
   * same rule as an inherited socket: Inventory.take). */
  take(name: string, kind: SocketKind, requested: SocketAddress): ServiceSocket | null {
    return this.#activated.take(name, kind, requested);
  }

  upgrading(generation: number): void {
    this.#notifier.reloading(`reloading: generation ${generation + 1} is taking over`);
  }

  rolledBack(generation: number, count: number, pid: number, reason: string): void {
    // The upgrade is over and this generation still serves: READY=1 ends the manager's "reloading".
    const status =
      `generation ${generation} serving, ${listeners(count)}; generation ${generation + 1} (pid ${pid}) ` +
      `rolled back: ${oneLine(reason)}`;
    this.#notifier.ready(status, this.#handedOver ? { MAINPID: process.pid } : {});
    this.#handedOver = false;
  }

  async handingOver(generation: number, pid: number): Promise<void> {
    // The successor becomes the service's main process before this one acknowledges, so the manager
    // never sees the main process exit: it follows the new one (its READY=1 follows).
    if (this.#notifier.send({ MAINPID: pid, STATUS: `generation ${generation} (pid ${pid}) is taking over` }))
      this.#handedOver = true;
    await this.#notifier.flushed();
  }

  /**
   * ready() succeeded: sockets the service manager passed that nobody took are closed; the fd store gets
   * what this generation bound itself and loses what it replaced or dropped; then READY=1 (a standalone
   * successor: with MAINPID=, as it is the main process now) and the watchdog.
   */
  serving(info: ServingInfo): void {
    const service = this.#notifier;
    for (const a of this.#activated) {
      service.unstore(a.entry.name);
      this.#log('info', 'listener-closed', {
        name: a.entry.unnamed ? null : a.entry.name,
        reason: 'passed in by the service manager, not used',
      });
    }
    this.#activated.closeAll();
    const { predecessor, sockets } = info;
    for (const e of predecessor?.inventory ?? [])
      if (e.kind !== 'control' && !sockets.has(e.name)) service.unstore(e.name);
    for (const name of info.fresh) {
      const fd = info.fdOf(name);
      if (fd === undefined) continue;
      service.unstore(name);
      service.store(name, fd);
    }
    const status = `generation ${info.generation} serving, ${listeners(sockets.size)}`;
    if (predecessor) {
      service.ready(status, { MAINPID: process.pid });
      service.startWatchdog([process.pid, predecessor.pid]);
    } else service.ready(status);
  }

  draining(stopping: boolean, generation: number, connections: number): void {
    this.#notifier.stopWatchdog();
    if (stopping)
      this.#notifier.stopping(
        `stopping: generation ${generation} draining ${connections} connection${connections === 1 ? '' : 's'}`,
      );
  }
}
