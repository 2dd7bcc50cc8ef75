/**
 * src/integrations/linked-set.ts: the Set subset the drain uses (add, delete, has, size, iteration in insertion
 * order), an item in several sets at once, and a loop that deletes while it walks (a drain closes the
 * connections it iterates).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinkedSet } from '../src/integrations/linked-set.js';

test('LinkedSet: add, has, delete, size and insertion order', () => {
  const s = new LinkedSet<{ n: number }>();
  const [a, b, c] = [{ n: 1 }, { n: 2 }, { n: 3 }];
  assert.equal(s.add(a).add(b).add(c).add(a), s);
  assert.equal(s.size, 3);
  assert.deepEqual(
    [...s].map((x) => x.n),
    [1, 2, 3],
  );
  assert.equal(s.delete(b), true);
  assert.equal(s.delete(b), false);
  assert.equal(s.has(b), false);
  assert.equal(s.has(a) && s.has(c), true);
  assert.equal(s.size, 2);
  s.add(b);
  assert.deepEqual(
    s.toArray().map((x) => x.n),
    [1, 3, 2],
  );
  for (const x of [a, b, c]) s.delete(x);
  assert.equal(s.size, 0);
  assert.deepEqual([...s], []);
  s.add(c);
  assert.deepEqual([...s], [c]);
});

test('LinkedSet: an item in two sets is tracked by each on its own', () => {
  const one = new LinkedSet<object>();
  const two = new LinkedSet<object>();
  const x = {};
  one.add(x);
  assert.equal(two.has(x), false);
  two.add(x);
  one.delete(x);
  assert.equal(one.has(x), false);
  assert.equal(two.has(x), true);
  assert.deepEqual([...two], [x]);
});

test('LinkedSet: the loop body may delete and add (iteration is over a snapshot)', () => {
  const s = new LinkedSet<{ n: number }>();
  const items = Array.from({ length: 5 }, (_, n) => ({ n }));
  for (const x of items) s.add(x);
  const seen: number[] = [];
  for (const x of s) {
    seen.push(x.n);
    s.delete(x);
    s.delete(items[4]!); // the last one, not visited yet: the snapshot still has it
    if (x.n === 0) s.add({ n: 9 });
  }
  assert.deepEqual(seen, [0, 1, 2, 3, 4]);
  assert.deepEqual(
    [...s].map((x) => x.n),
    [9],
  );
  assert.equal(s.size, 1);
});
