/**
 * The generation's state machine (src/upgrader/state.ts): every change goes through one table, a change it
 * does not list is ERR_BATON_STATE, and the diagram in docs/architecture.md shows exactly the table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { GenerationState, TRANSITIONS, type UpgraderState } from '../src/upgrader/state.js';
import { ROOT } from './helpers.js';

test('a generation goes starting -> serving -> upgrading -> serving -> draining -> stopped', () => {
  const s = new GenerationState();
  assert.equal(s.current, 'starting');
  for (const next of ['serving', 'upgrading', 'serving', 'draining', 'stopped'] as const) {
    s.to(next, 'test');
    assert.equal(s.current, next);
  }
  assert.equal(s.ending, true);
});

test('a transition the table does not list throws ERR_BATON_STATE and leaves the state as it was', () => {
  const cases: Array<[UpgraderState[], UpgraderState]> = [
    [[], 'stopped'],
    [[], 'upgrading'],
    [['serving'], 'starting'],
    [['serving', 'draining'], 'serving'],
    [['draining'], 'draining'],
    [['draining', 'stopped'], 'draining'],
  ];
  for (const [path, next] of cases) {
    const s = new GenerationState();
    for (const step of path) s.to(step, 'setup');
    const before = s.current;
    assert.throws(
      () => s.to(next, 'ready()'),
      (err: NodeJS.ErrnoException) => {
        assert.equal(err.code, 'ERR_BATON_STATE');
        assert.match(err.message, new RegExp(`^ready\\(\\): no transition from ${before} to ${next}$`));
        return true;
      },
    );
    assert.equal(s.current, before);
  }
});

test("docs/architecture.md's generation diagram has exactly the table's transitions", () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'architecture.md'), 'utf8');
  const section = doc.slice(doc.indexOf("## src/upgrader: one generation's life"));
  const block = /```mermaid\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  const drawn = new Set(
    [...block.matchAll(/^\s*(\w+) --> (\w+)/gm)].filter(([, a]) => a !== '[*]').map(([, a, b]) => `${a}->${b}`),
  );
  const table = new Set(Object.entries(TRANSITIONS).flatMap(([from, tos]) => tos.map((to) => `${from}->${to}`)));
  assert.deepEqual([...drawn].sort(), [...table].sort());
});
