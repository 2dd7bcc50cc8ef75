/**
 * The layers, as the source says them: native/ -> src/fd -> src/handoff -> src/upgrader -> src/integrations ->
 * src/cli, each importing only from those below. In particular only src/fd loads the addon (src/fd/native.ts): the
 * layers above go through the fd layer's API (src/fd/fds.ts, adopt.ts, ...), whose checks (fd validation, adopt's
 * inode check before closing) the raw binding does not make. A source scan, so a new import fails here.
 * Nor may modules import each other, directly or round a longer loop, `import type` included: a cycle
 * (standalone-host.ts <-> upgrader.ts once) means neither can be read, tested or moved without the other.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { listFiles, ROOT } from './helpers.js';

const SRC = path.join(ROOT, 'src');
const LAYERS = ['fd', 'handoff', 'upgrader', 'integrations', 'cli'] as const;

function sourceFiles(dir: string): string[] {
  return listFiles(dir, /(?<!\.d)\.ts$/);
}

/** Every module specifier a file names: static imports and re-exports, `import type`, import(), require(). */
function specifiers(source: string): string[] {
  const out: string[] = [];
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\brequire(?:\.resolve)?\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) out.push(m[1]!);
  return out;
}

/** The file a relative specifier names, as a path under src/ without extension ('fd/native'); null if not under src. */
function target(file: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  const rel = path.relative(SRC, path.resolve(path.dirname(file), spec));
  if (rel.startsWith('..')) return null;
  return rel
    .split(path.sep)
    .join('/')
    .replace(/\.(js|ts)$/, '');
}

function layerOf(rel: string): number {
  return LAYERS.indexOf(rel.split('/')[0] as (typeof LAYERS)[number]);
}

test('the scan sees every form of import', () => {
  const src = [
    "import { native } from '../fd/native.js';",
    "import type { NativeProbe } from '../fd/native.js';",
    "export { native } from '../fd/native.js';",
    "import '../fd/native.js';",
    "const m = await import('../fd/native.js');",
    "const r = require('../fd/native.js');",
    'import {\n  native,\n  RECORD_OK,\n} from "../fd/native.js";',
  ].join('\n');
  assert.deepEqual(specifiers(src), Array(7).fill('../fd/native.js'));
});

test('nothing in src/ outside src/fd imports the addon binding (src/fd/native.ts) or loads the addon', () => {
  const offenders: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const rel = path.relative(SRC, file).split(path.sep).join('/');
    if (rel.startsWith('fd/')) continue;
    const source = fs.readFileSync(file, 'utf8');
    for (const spec of specifiers(source)) {
      if (target(file, spec) === 'fd/native') offenders.push(`src/${rel} imports ${spec}`);
    }
    if (/baton\.node\b/.test(source)) offenders.push(`src/${rel} names the addon file baton.node`);
  }
  assert.deepEqual(
    offenders,
    [],
    "only src/fd may use the addon; use the fd layer's API (src/fd/fds.ts, adopt.ts, ...)",
  );
});

test('each layer imports only from itself and the layers below it', () => {
  const offenders: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const rel = path.relative(SRC, file).split(path.sep).join('/');
    const from = layerOf(rel);
    if (from < 0) continue; // src/index.ts and src/version.ts sit above every layer
    for (const spec of specifiers(fs.readFileSync(file, 'utf8'))) {
      const t = target(file, spec);
      if (t === null) continue;
      const to = layerOf(t);
      if (to > from) offenders.push(`src/${rel} (${LAYERS[from]}) imports ${spec} (${LAYERS[to]})`);
    }
  }
  assert.deepEqual(offenders, []);
});

/** The import graph of src/: each file (as 'upgrader/upgrader') to the files under src/ it names. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const rel = path.relative(SRC, file).split(path.sep).join('/').replace(/\.ts$/, '');
    const targets = specifiers(fs.readFileSync(file, 'utf8')).map((spec) => target(file, spec));
    graph.set(rel, [...new Set(targets.filter((t): t is string => t !== null))]);
  }
  return graph;
}

/** Import cycles as the files round them ('a -> b -> a'): a depth-first search reports each loop it closes, once. */
function cycles(graph: Map<string, string[]>): string[] {
  const found = new Set<string>();
  const done = new Set<string>();
  const stack: string[] = [];
  const visit = (node: string): void => {
    const at = stack.indexOf(node);
    if (at >= 0) {
      const loop = stack.slice(at);
      // The same loop entered from another file: rotate so that it starts at its smallest name.
      const first = loop.indexOf([...loop].sort()[0]!);
      const rotated = [...loop.slice(first), ...loop.slice(0, first)];
      found.add([...rotated, rotated[0]].join(' -> '));
      return;
    }
    if (done.has(node)) return;
    stack.push(node);
    for (const next of graph.get(node) ?? []) visit(next);
    stack.pop();
    done.add(node);
  };
  for (const node of [...graph.keys()].sort()) visit(node);
  return [...found].sort();
}

test('the cycle search finds a loop, however entered, once', () => {
  const graph = new Map([
    ['a', ['b']],
    ['b', ['c']],
    ['c', ['a', 'd']],
    ['d', []],
    ['e', ['c']],
  ]);
  assert.deepEqual(cycles(graph), ['a -> b -> c -> a']);
  assert.deepEqual(
    cycles(
      new Map([
        ['x', ['y']],
        ['y', ['x']],
      ]),
    ),
    ['x -> y -> x'],
  );
  assert.deepEqual(
    cycles(
      new Map([
        ['x', ['y']],
        ['y', []],
      ]),
    ),
    [],
  );
});

test('no module in src/ imports itself round a loop', () => {
  assert.deepEqual(cycles(importGraph()), []);
});
