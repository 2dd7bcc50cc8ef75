/**
 * baton's error codes form a closed list (BATON_ERROR_CODES in src/fd/errors.ts): every ERR_BATON_* code the
 * source names (TypeScript and the addon's C) is on it, every code on it is used, and docs/api.md's
 * "Error codes" table documents each one.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { BATON_ERROR_CODES } from '../src/fd/errors.js';
import { fdOf } from '../src/fd/fd-of.js';
import { listFiles, ROOT } from './helpers.js';

/** code -> the files that name it. */
function codesInSource(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const sources = [...listFiles(path.join(ROOT, 'src'), /\.ts$/), ...listFiles(path.join(ROOT, 'native'), /\.[ch]$/)];
  for (const file of sources) {
    for (const m of fs.readFileSync(file, 'utf8').matchAll(/ERR_BATON_[A-Z_]*[A-Z]/g)) {
      const where = found.get(m[0]) ?? [];
      where.push(path.relative(ROOT, file));
      found.set(m[0], where);
    }
  }
  return found;
}

test('every ERR_BATON_* code in src/ and native/ is on the closed list, and every listed code is used', () => {
  const listed = new Set<string>(BATON_ERROR_CODES);
  assert.equal(listed.size, BATON_ERROR_CODES.length, 'no code listed twice');
  const used = codesInSource();
  const unlisted = [...used]
    .filter(([code]) => !listed.has(code))
    .map(([code, where]) => `${code} (${[...new Set(where)].join(', ')})`);
  assert.deepEqual(unlisted, [], 'codes used but missing from BATON_ERROR_CODES (src/fd/errors.ts)');
  // errors.ts itself lists them all: a code is used if some other file names it.
  const unused = BATON_ERROR_CODES.filter(
    (code) => !(used.get(code) ?? []).some((f) => f !== path.join('src', 'fd', 'errors.ts')),
  );
  assert.deepEqual(unused, [], 'codes listed but used nowhere');
});

test('docs/api.md documents every code in its "Error codes" table', () => {
  const api = fs.readFileSync(path.join(ROOT, 'docs/api.md'), 'utf8');
  const table = api.slice(api.indexOf('## Error codes'));
  assert.ok(table.length > 0 && api.includes('## Error codes'), 'docs/api.md has an "Error codes" section');
  const rows = table.split('\n').filter((line) => line.startsWith('|'));
  const missing = BATON_ERROR_CODES.filter((code) => !rows.some((row) => row.split('|')[1]!.includes(`\`${code}\``)));
  assert.deepEqual(missing, []);
});

test('a dgram.Socket without the internal state baton reads its fd from: ERR_BATON_UNSUPPORTED_VERSION', () => {
  // What a Node that moved dgram's handle would look like to fdOf (first call in this process: nothing cached).
  const alien = Object.create(dgram.Socket.prototype) as dgram.Socket;
  assert.throws(() => fdOf(alien), { code: 'ERR_BATON_UNSUPPORTED_VERSION' });
});
