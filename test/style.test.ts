/**
 * The code's style is checked, not argued: Biome formats and lints every TypeScript and JavaScript file
 * (biome.json; `npm run format` rewrites, `npm run lint` checks), and no line of src/ or native/ is longer than
 * 120 characters (Biome wraps code; a long string or comment it leaves alone, and C has no formatter here).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { listFiles, ROOT } from './helpers.js';

const MAX_LINE = 120;

test('biome ci: every file is formatted and passes the linter', () => {
  const biome = path.join(ROOT, 'node_modules', '.bin', 'biome');
  assert.ok(fs.existsSync(biome), `${biome} is missing: run npm install (Biome is a devDependency)`);
  const r = spawnSync(biome, ['ci', '--colors=off', '--error-on-warnings', '.'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `biome ci failed (npm run format fixes formatting):\n${r.stdout}\n${r.stderr}`);
});

test(`no line of src/ or native/ is longer than ${MAX_LINE} characters`, () => {
  const long: string[] = [];
  const sources = [...listFiles(path.join(ROOT, 'src'), /\.ts$/), ...listFiles(path.join(ROOT, 'native'), /\.[ch]$/)];
  assert.ok(sources.length > 50, `found only ${sources.length} source files`);
  for (const f of sources) {
    fs.readFileSync(f, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (line.length > MAX_LINE) long.push(`${path.relative(ROOT, f)}:${i + 1} (${line.length})`);
      });
  }
  assert.deepEqual(long, []);
});
