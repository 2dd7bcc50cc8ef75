/**
 * The inventory: the sockets one side of a handoff holds, by name. Each item is an InventoryEntry (kind,
 * address, where it came from) and the fd for it; the Inventory that holds an item is its owner (it closes
 * the fd when the name is set again, closed, or everything is closed), and which inventory holds it is the
 * socket's state:
 *
 *   supervisor (cli/supervisor.ts)  held: its copy of every listener, offered to each new generation
 *                                   registered: per starting generation, what it bound itself; joins `held`
 *                                   when that generation is ready, closed if it is rolled back
 *   generation (handoff/client.ts)  offered: what it inherited and has not taken yet; take() hands one over
 *                                   to listen()/bindDgram(), the rest is closed once it is ready
 *   service manager                 activated: what systemd passed in (integrations/systemd.ts), taken by the
 *                                   same rule
 *
 * A standalone generation (upgrader/standalone-host.ts) offers Held items too, but their fds are borrowed
 * from its live servers, so it lists them instead of owning them in an Inventory.
 *
 * One type for all of them, so that replacing a name closes the fd it had, and `take` — which socket a
 * generation's listen() gets — is written once.
 */
import { closeFds } from '../fd/fds.js';
import { entryFits, type InventoryEntry, type SocketAddress, type SocketKind } from './messages.js';

export interface Held {
  entry: InventoryEntry;
  /** Owned by the inventory until taken or deleted. */
  fd: number;
}

export class Inventory implements Iterable<Held> {
  readonly #byName = new Map<string, Held>();

  constructor(items: Iterable<Held> = []) {
    for (const item of items) this.set(item);
  }

  get size(): number {
    return this.#byName.size;
  }

  get(name: string): Held | undefined {
    return this.#byName.get(name);
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /** Hold `item` under its entry's name; the fd it replaces, if any, is closed. */
  set(item: Held): void {
    const old = this.#byName.get(item.entry.name);
    if (old && old.fd !== item.fd) closeFds([old.fd]);
    this.#byName.set(item.entry.name, item);
  }

  /** Close the fd held under `name` and forget it. */
  close(name: string): void {
    const old = this.#byName.get(name);
    if (!old) return;
    this.#byName.delete(name);
    closeFds([old.fd]);
  }

  /** Forget every item without closing its fd (they have moved elsewhere). */
  clear(): void {
    this.#byName.clear();
  }

  /** Close every fd held and forget them all. */
  closeAll(): void {
    for (const { fd } of this.#byName.values()) closeFds([fd]);
    this.#byName.clear();
  }

  /**
   * Take the socket for `name` if it is of `kind` and fits `address` (entryFits: looser for sockets the
   * service manager passed in); the caller owns its fd from here. An activated socket without a name goes,
   * by position, to the first request that has no socket of its own name: `entry.name` then differs from
   * `name`. Null when there is none or it does not fit (the caller binds fresh; the old one is closed once
   * the new generation is ready).
   */
  take(name: string, kind: SocketKind, address: SocketAddress): Held | null {
    const byPosition = () =>
      [...this.#byName.values()].find((u) => u.entry.unnamed && entryFits(u.entry, kind, address));
    const held = this.#byName.get(name) ?? byPosition();
    if (!held || !entryFits(held.entry, kind, address)) return null;
    this.#byName.delete(held.entry.name);
    return held;
  }

  entries(): Held[] {
    return [...this.#byName.values()];
  }

  names(): string[] {
    return [...this.#byName.keys()];
  }

  [Symbol.iterator](): Iterator<Held> {
    return this.#byName.values();
  }
}
