/**
 * A set of objects kept as a doubly-linked list, for what a server tracks per connection or per request
 * (open sockets, responses in flight) for as long as the server lives.
 *
 * Why not a Set: a long-lived Set (or Map) whose entries come and go makes young objects outlive their
 * deletion. Once the Set's table has been promoted to the old generation, V8 allocates each table that
 * replaces it (a rehash every few dozen adds/deletes, as deleted slots fill it or it shrinks) in the old
 * generation too; a replaced table keeps pointing at the entries that were live when it was replaced, and a
 * scavenge treats every pointer from the old generation as a root, dead table or not. So a socket deleted
 * long ago survives each scavenge until the next mark-compact, and is promoted with everything it holds.
 * Measured (Node 20.20, V8 11.3; --trace-gc-nvp, 20,000 `Connection: close` requests from 16 connections):
 * node:http alone promotes 572 bytes per request; with a Set of its sockets 1,136-1,353; with the drainer's
 * Set of sockets and Set of responses 1,419 — and the scavenges copying it took 2-3× as long, which is what
 * put `baton run`'s p99 14-21% above plain node:http's (docs/performance.md). With this list: 595.
 *
 * Each item holds its list node under a symbol of this set (so an item can be in several sets); deleting
 * clears every pointer of the node, so a node that was promoted and died holds nothing young. Iteration goes
 * over a snapshot, so the loop body may add or delete (a drain closes connections as it walks them).
 */

interface ListNode<T> {
  item: T | null;
  prev: ListNode<T> | null;
  next: ListNode<T> | null;
}

export interface ReadonlyLinkedSet<T extends object> extends Iterable<T> {
  readonly size: number;
  has(item: T): boolean;
}

export class LinkedSet<T extends object> implements ReadonlyLinkedSet<T> {
  /** Where an item holds its node in this set (set to undefined, never deleted: a `delete` on a socket
   * would turn it into a slow dictionary-mode object). */
  readonly #key = Symbol('baton.linkedSet');
  /** Sentinel: head.next is the oldest item, head.prev the newest. */
  readonly #head: ListNode<T>;
  #size = 0;

  constructor() {
    const head: ListNode<T> = { item: null, prev: null, next: null };
    head.prev = head;
    head.next = head;
    this.#head = head;
  }

  get size(): number {
    return this.#size;
  }

  has(item: T): boolean {
    return this.#nodeOf(item) !== undefined;
  }

  /** Add `item` (last in iteration order); no-op if it is in the set already. */
  add(item: T): this {
    if (this.#nodeOf(item)) return this;
    const last = this.#head.prev!;
    const node: ListNode<T> = { item, prev: last, next: this.#head };
    last.next = node;
    this.#head.prev = node;
    (item as Record<symbol, unknown>)[this.#key] = node;
    this.#size++;
    return this;
  }

  /** Remove `item`; false if it was not in the set. */
  delete(item: T): boolean {
    const node = this.#nodeOf(item);
    if (!node) return false;
    node.prev!.next = node.next;
    node.next!.prev = node.prev;
    node.item = null;
    node.prev = null;
    node.next = null;
    (item as Record<symbol, unknown>)[this.#key] = undefined;
    this.#size--;
    return true;
  }

  /** The items, oldest first, as of now. */
  toArray(): T[] {
    const out: T[] = [];
    for (let n = this.#head.next!; n !== this.#head; n = n.next!) out.push(n.item!);
    return out;
  }

  [Symbol.iterator](): Iterator<T> {
    return this.toArray()[Symbol.iterator]();
  }

  #nodeOf(item: T): ListNode<T> | undefined {
    return (item as Record<symbol, ListNode<T> | undefined>)[this.#key];
  }
}
