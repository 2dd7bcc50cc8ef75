/**
 * The supervisor's slot sockets for `baton run --workers N` (docs/workers.md): for each listener name, one
 * socket per worker slot, all held here for the life of the service. Worker i is handed slot i's sockets (over
 * the fd channel, which dups them into the worker); the supervisor never closes a reuseport slot socket while
 * the service runs, because closing the last fd of an SO_REUSEPORT listener resets every connection in its
 * accept queue (measured on Linux 6.18: 1000 of 1000 when alone, its half of the group when shared; only
 * net.ipv4.tcp_migrate_req=1 avoids it, and that needs root). Closing one copy of a socket that another
 * process still holds loses nothing, so a worker's exit or a replaced worker's close never touches a queue.
 *
 * Balance:
 *   reuseport  N sockets in one SO_REUSEPORT group per TCP/UDP listener: the kernel hashes each new connection
 *              (UDP flow) to one of them; max/min per worker 1.01-1.09 measured here.
 *   shared     one socket, dup'ed into every slot: every worker accepts from the same queue (max/min 1.12-2.25
 *              measured here), what systemd socket activation (one fd per listener) and Unix paths get.
 *
 * A slot with no live worker (its worker crashed and is being respawned, or the service was scaled down) keeps
 * its socket here; `assign` hands that socket to a live sibling as well, so its queue is served until the slot
 * is back. Scaling down therefore keeps the removed slots' reuseport sockets and lets the remaining workers
 * serve them (closing them would reset their queues).
 */
import fs from 'node:fs';
import { batonError } from '../fd/errors.js';
import { closeFds, listenUnix } from '../fd/fds.js';
import { dupFd } from '../fd/fd-of.js';
import { probe } from '../fd/probe.js';
import { bindReusePort } from '../fd/reuseport.js';

export type Balance = 'reuseport' | 'shared';
export const BALANCES: readonly Balance[] = ['reuseport', 'shared'];

export type SlotListenerSpec =
  | { kind: 'tcp'; host?: string; port: number; backlog?: number; ipv6Only?: boolean }
  | { kind: 'udp'; host?: string; port: number }
  | { kind: 'unix'; path: string; backlog?: number; mode?: number };

export type SlotListenerKind = SlotListenerSpec['kind'];

/** One socket a worker is to serve: the listener's name, the slot whose socket it is, the fd (held here). */
export interface SlotFd {
  name: string;
  kind: SlotListenerKind;
  slot: number;
  fd: number;
}

export interface SlotListenerInfo {
  name: string;
  kind: SlotListenerKind;
  /** true: one socket dup'ed into every slot; false: an SO_REUSEPORT group, a socket per slot. */
  shared: boolean;
  /** 'host:port' or the Unix path. */
  address: string;
  /** Sockets held (a reuseport group keeps the sockets of slots removed by a scale-down). */
  sockets: number;
}

interface Group {
  name: string;
  kind: SlotListenerKind;
  shared: boolean;
  address: string;
  /** fds[i]: slot i's socket. Shared: dups of one socket. Reuseport: distinct sockets of one group. */
  fds: number[];
  /** What a new reuseport socket of this group is bound with. */
  spec: SlotListenerSpec | null;
}

/** A listener's slot sockets as a re-exec of the supervisor carries them (JSON; the fds cross the exec). */
export type SlotGroupState = Group;

const DEFAULT_BACKLOG = 511;

function checkSlots(slots: unknown, name: string): number {
  if (typeof slots !== 'number' || !Number.isInteger(slots)) {
    const err = new TypeError(`The "${name}" argument must be an integer. Received ${String(slots)}`);
    throw Object.assign(err, { code: 'ERR_INVALID_ARG_TYPE' });
  }
  if (slots < 1) {
    const err = new RangeError(`The "${name}" argument must be >= 1. Received ${slots}`);
    throw Object.assign(err, { code: 'ERR_OUT_OF_RANGE' });
  }
  return slots;
}

export class SlotSockets {
  readonly balance: Balance;
  #slots: number;
  readonly #groups = new Map<string, Group>();
  #closed = false;

  constructor(options: { slots: number; balance?: Balance }) {
    this.#slots = checkSlots(options?.slots, 'slots');
    const balance = options.balance ?? 'reuseport';
    if (!BALANCES.includes(balance)) {
      const err = new TypeError(`The "balance" option must be 'reuseport' or 'shared'. Received ${String(balance)}`);
      throw Object.assign(err, { code: 'ERR_INVALID_ARG_VALUE' });
    }
    this.balance = balance;
  }

  /** The number of worker slots. */
  get slots(): number {
    return this.#slots;
  }

  names(): string[] {
    return [...this.#groups.keys()];
  }

  has(name: string): boolean {
    return this.#groups.has(name);
  }

  /**
   * Bind listener `name` for every slot: a reuseport group of `slots` sockets (TCP, UDP with --balance
   * reuseport), or one socket dup'ed into every slot (--balance shared, and always for a Unix path). All or
   * nothing: on any failure what was made is closed and the syscall's error thrown. Returns the bound port
   * (the one port 0 picked), or null for a Unix path.
   */
  bind(name: string, spec: SlotListenerSpec): { port: number | null } {
    this.#checkOpen();
    this.#checkNewName(name);
    const shared = spec.kind === 'unix' || this.balance === 'shared';
    const first = this.#bindOne(spec, true);
    const group: Group = { name, kind: spec.kind, shared, address: first.address, fds: [first.fd], spec: null };
    if (!shared && first.port !== null) group.spec = { ...spec, port: first.port } as SlotListenerSpec;
    this.#add(group);
    return { port: first.port };
  }

  /**
   * Take an fd bound elsewhere (systemd socket activation: one fd per listener) as listener `name`, shared by
   * every slot: it is dup'ed into each. The fd is owned here from now on, also when this throws.
   */
  adopt(name: string, fd: number): void {
    let group: Group;
    try {
      this.#checkOpen();
      this.#checkNewName(name);
      const { kind, address } = listenerOf(name, fd);
      group = { name, kind, shared: true, address, fds: [fd], spec: null };
    } catch (err) {
      closeFds([fd]);
      throw err;
    }
    this.#add(group);
  }

  /**
   * Make listener `name` from `fd`, the first socket of a group bound elsewhere: with --workers N, worker 0's
   * listen() binds a name new to the supervisor with SO_REUSEPORT and registers it (docs/workers.md: the
   * supervisor cannot bind it first, it learns names and addresses from the app). Slot 0 gets `fd`; the other
   * slots get sockets bound into its group with `spec` at the port `fd` has (TCP, UDP), or copies of it (a Unix
   * path, --balance shared). All or nothing; `fd` is owned here from now on, also when this throws.
   */
  join(name: string, fd: number, spec: SlotListenerSpec): void {
    let group: Group;
    try {
      this.#checkOpen();
      this.#checkNewName(name);
      const { kind, address, port } = listenerOf(name, fd);
      if (kind !== spec.kind) {
        throw batonError('ERR_BATON_UNSUPPORTED_FD', `listener ${name}: fd ${fd} is ${kind}, not ${spec.kind}`);
      }
      const shared = kind === 'unix' || this.balance === 'shared';
      const own = shared || port === null ? null : ({ ...spec, port } as SlotListenerSpec);
      group = { name, kind, shared, address, fds: [fd], spec: own };
    } catch (err) {
      closeFds([fd]);
      throw err;
    }
    this.#add(group);
  }

  /** Slot `slot`'s own sockets, one per listener. The fds stay here: send them, do not close them. */
  socketsOf(slot: number): SlotFd[] {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.#slots) {
      const err = new RangeError(`slot ${slot} is not one of 0..${this.#slots - 1}`);
      throw Object.assign(err, { code: 'ERR_OUT_OF_RANGE' });
    }
    return [...this.#groups.values()].map((g) => this.#slotFd(g, slot));
  }

  /**
   * What each live worker serves: its own slot's sockets, plus the reuseport sockets of slots with no live worker
   * (a crashed worker not yet back; slots a scale-down removed), each such slot given whole to one live sibling.
   * `live(i)` says whether worker i runs now. Options: `current` (slot -> the worker it is lent to now): a slot
   * keeps its borrower while that one is live (moving it would only churn); the others go to the live worker
   * with the fewest borrowed slots (ties: the lowest index). `borrows(i)`: may live worker i take other slots
   * (default: yes)? Workers that are not live get nothing; with none live (or none that borrows), the orphaned
   * sockets wait here, their queues kept.
   */
  assign(
    live: (slot: number) => boolean = () => true,
    options: { current?: ReadonlyMap<number, number>; borrows?: (slot: number) => boolean } = {},
  ): Map<number, SlotFd[]> {
    const workers: number[] = [];
    for (let i = 0; i < this.#slots; i++) if (live(i)) workers.push(i);
    const out = new Map<number, SlotFd[]>(workers.map((w) => [w, []]));
    const groups = [...this.#groups.values()];
    for (const g of groups) for (const w of workers) out.get(w)!.push(this.#slotFd(g, w));
    // Slots with no live worker: a shared socket is held by every live worker already; a reuseport one is lent.
    const reuseport = groups.filter((g) => !g.shared);
    const total = Math.max(0, ...reuseport.map((g) => g.fds.length));
    const orphans: number[] = [];
    for (let slot = 0; slot < total; slot++) if (slot >= this.#slots || !out.has(slot)) orphans.push(slot);
    const load = new Map<number, number>(workers.filter(options.borrows ?? (() => true)).map((w) => [w, 0]));
    const chosen = new Map<number, number>();
    for (const slot of orphans) {
      const kept = options.current?.get(slot);
      if (kept !== undefined && load.has(kept)) {
        chosen.set(slot, kept);
        load.set(kept, load.get(kept)! + 1);
      }
    }
    for (const slot of orphans) {
      if (chosen.has(slot) || load.size === 0) continue;
      let best = -1;
      for (const [w, n] of load) if (best < 0 || n < load.get(best)!) best = w;
      chosen.set(slot, best);
      load.set(best, load.get(best)! + 1);
    }
    for (const [slot, worker] of [...chosen].sort((a, b) => a[0] - b[0])) {
      for (const g of reuseport) if (slot < g.fds.length) out.get(worker)!.push(this.#slotFd(g, slot));
    }
    return out;
  }

  #slotFd(g: Group, slot: number): SlotFd {
    return { name: g.name, kind: g.kind, slot, fd: g.fds[slot]! };
  }

  /**
   * Change the number of slots. Growing adds a socket to every reuseport group (and a dup of every shared
   * socket) for each new slot, all or nothing. Shrinking closes the shared copies of the removed slots (their
   * socket lives on in the other copies) but keeps their reuseport sockets, which `assign` hands to the remaining
   * workers: closing them would reset their accept queues. Growing again reuses the kept sockets first.
   */
  resize(slots: number): void {
    this.#checkOpen();
    checkSlots(slots, 'slots');
    if (slots > this.#slots) {
      const added: Array<[Group, number]> = [];
      try {
        for (const g of this.#groups.values()) {
          const had = g.fds.length;
          this.#fill(g, slots);
          added.push([g, had]);
        }
      } catch (err) {
        for (const [g, had] of added) closeFds(g.fds.splice(had));
        throw err;
      }
    } else {
      for (const g of this.#groups.values()) if (g.shared) closeFds(g.fds.splice(slots));
    }
    this.#slots = slots;
  }

  /** The listeners, for status. */
  info(): SlotListenerInfo[] {
    return [...this.#groups.values()].map((g) => ({
      name: g.name,
      kind: g.kind,
      shared: g.shared,
      address: g.address,
      sockets: g.fds.length,
    }));
  }

  /** Every group, for a re-exec of the supervisor (reexec-carry.ts): the fds stay here and cross the exec. */
  carry(): SlotGroupState[] {
    return [...this.#groups.values()].map((g) => ({ ...g, fds: [...g.fds] }));
  }

  /**
   * The new image of a re-executed supervisor takes the groups its predecessor carried (validated by reexec.ts:
   * a socket for every slot, kept ones after them). The fds are owned here from now on.
   */
  restore(groups: SlotGroupState[]): void {
    this.#checkOpen();
    for (const g of groups) {
      this.#checkNewName(g.name);
      this.#groups.set(g.name, { ...g, fds: [...g.fds] });
    }
  }

  /** Close every socket (the service ends). Idempotent. The Unix socket files are left, as the Upgrader does. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const g of this.#groups.values()) closeFds(g.fds);
    this.#groups.clear();
  }

  /** Fill a new group (its first socket made) for every slot and keep it; on failure close all of it. */
  #add(group: Group): void {
    try {
      this.#fill(group, this.#slots);
    } catch (err) {
      closeFds(group.fds);
      throw err;
    }
    this.#groups.set(group.name, group);
  }

  /** Give `group` a socket for every slot up to `slots` (it has at least one). Throws with the new ones closed. */
  #fill(group: Group, slots: number): void {
    const start = group.fds.length;
    try {
      while (group.fds.length < slots) {
        group.fds.push(group.shared || !group.spec ? dupFd(group.fds[0]!) : this.#bindOne(group.spec).fd);
      }
    } catch (err) {
      closeFds(group.fds.splice(start));
      throw err;
    }
  }

  /** `first`: the group's first socket, which must not join a group someone else holds on that port. */
  #bindOne(spec: SlotListenerSpec, first = false): { fd: number; port: number | null; address: string } {
    if (spec.kind === 'unix') {
      const fd = listenUnix(spec.path, spec.backlog ?? DEFAULT_BACKLOG);
      try {
        if (spec.mode !== undefined && spec.mode !== 0o600) fs.chmodSync(spec.path, spec.mode);
      } catch (err) {
        closeFds([fd]);
        throw err;
      }
      return { fd, port: null, address: spec.path };
    }
    const s = bindReusePort({
      type: spec.kind,
      host: spec.host,
      port: spec.port,
      exclusive: first,
      ...(spec.kind === 'tcp' ? { backlog: spec.backlog, ipv6Only: spec.ipv6Only } : {}),
    });
    return {
      fd: s.fd,
      port: s.port,
      address: s.family === 'IPv6' ? `[${s.address}]:${s.port}` : `${s.address}:${s.port}`,
    };
  }

  #checkNewName(name: string): void {
    if (typeof name !== 'string' || name === '') {
      const err = new TypeError(`The "name" argument must be a non-empty string. Received ${String(name)}`);
      throw Object.assign(err, { code: 'ERR_INVALID_ARG_TYPE' });
    }
    if (this.#groups.has(name)) throw batonError('ERR_BATON_DUPLICATE_NAME', `listener ${name} is already bound`);
  }

  #checkOpen(): void {
    if (this.#closed) throw batonError('ERR_BATON_STATE', 'the slot sockets are closed');
  }
}

/** What listening socket `fd` is (throws ERR_BATON_UNSUPPORTED_FD for anything else). */
function listenerOf(name: string, fd: number): { kind: SlotListenerKind; address: string; port: number | null } {
  const info = probe(fd);
  const kind: SlotListenerKind | null =
    info.kind === 'tcp-listener' ? 'tcp' : info.kind === 'udp' ? 'udp' : info.kind === 'unix-listener' ? 'unix' : null;
  if (!kind) {
    throw batonError('ERR_BATON_UNSUPPORTED_FD', `listener ${name}: fd ${fd} is ${info.kind}, not a listening socket`);
  }
  const local = info.local;
  const port = local && (local.family === 'IPv4' || local.family === 'IPv6') ? local.port : null;
  return { kind, address: addressOf(info.local), port };
}

function addressOf(local: ReturnType<typeof probe>['local']): string {
  if (!local) return '';
  if (local.family === 'unix') return local.path;
  if (local.family === 'IPv4') return `${local.address}:${local.port}`;
  if (local.family === 'IPv6') return `[${local.address}]:${local.port}`;
  return '';
}
