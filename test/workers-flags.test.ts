/**
 * `baton run --workers N|max` and `--balance`: bad values fail at once (exit 2, naming the flag or the config
 * key) before any process starts; --workers 1 is today's behaviour (N > 1 runs N workers: workers-run.test.ts).
 * Real processes: `node bin/baton.js`, an app on 127.0.0.1, killed by pid.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../src/cli/config.js';
import { parseBalance, parseWorkers } from '../src/cli/workers.js';
import { killPid, spawnNode, tmpDir, within } from './helpers.js';
import { BATON, HTTP_EXAMPLE, baton, get } from './upgrade-helpers.js';

test('--workers abc|0|-1|1.5|"" and --balance foo: exit 2 at once, naming the flag; nothing starts', async (t) => {
  const dir = tmpDir(t);
  const marker = path.join(dir, 'started');
  const app = ['--', process.execPath, '-e', `require('fs').writeFileSync(${JSON.stringify(marker)}, '')`];
  for (const v of ['abc', '0', '-1', '1.5', '', '2x', ' 2']) {
    const r = await baton(['run', '--socket', path.join(dir, 's.sock'), '--workers', v, ...app]);
    assert.equal(r.code, 2, `--workers '${v}': ${r.stderr}`);
    assert.match(r.stderr, /--workers takes a whole number >= 1 or 'max', got/, `--workers '${v}'`);
  }
  const r = await baton(['run', '--workers=abc']);
  assert.match(r.stderr, /--workers takes/, 'checked before "run needs a command"');
  const b = await baton(['run', '--workers', '2', '--balance', 'round-robin', ...app]);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /--balance is reuseport or shared, got 'round-robin'/);
  const alone = await baton(['run', '--balance', 'shared', ...app]);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /--balance goes with --workers N/);
  assert.ok(!fs.existsSync(marker), 'the app never ran');
});

test('--workers 1 runs the app as before', async (t) => {
  const dir = tmpDir(t);
  const sock = path.join(dir, 's.sock');
  const sup = spawnNode(t, BATON, ['run', '--socket', sock, '--workers', '1', '--', process.execPath, HTTP_EXAMPLE], {
    PORT: '0',
    HOST: '127.0.0.1',
  });
  t.after(() => killPid(sup.pid));
  let port = 0;
  for (let i = 0; i < 200 && !port; i++) {
    const st = await baton(['status', '--json', '--socket', sock]);
    const m = st.code === 0 ? /127\.0\.0\.1:(\d+)/.exec(st.stdout) : null;
    if (m) port = Number(m[1]);
    else await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(port > 0, `the supervisor serves: ${sup.stderr()}`);
  assert.equal((await get(port)).status, 200);
  process.kill(sup.pid, 'SIGTERM');
  assert.equal(await within(sup.exited, 20_000, 'the supervisor exits after SIGTERM'), 0);
});

test('config file: workers (a whole number >= 1 or "max") and balance are checked, naming the key', async (t) => {
  const dir = tmpDir(t);
  const file = (o: unknown) => {
    const f = path.join(dir, `c${Math.random().toString(36).slice(2)}.json`);
    fs.writeFileSync(f, JSON.stringify(o));
    return f;
  };
  assert.deepEqual(
    [...(await loadConfig(file({ workers: 'max', balance: 'shared' }))).flags],
    [
      ['--workers', 'max'],
      ['--balance', 'shared'],
    ],
  );
  assert.deepEqual([...(await loadConfig(file({ workers: 4 }))).flags], [['--workers', '4']]);
  for (const bad of [0, -1, 1.5, 'abc', '2', true]) {
    await assert.rejects(loadConfig(file({ workers: bad })), /workers: must be a whole number >= 1 or "max"/);
  }
  await assert.rejects(loadConfig(file({ balance: 'rr' })), /balance: must be one of "reuseport", "shared"/);
  // The file's value goes through the same check as the flag's.
  const r = await baton(['run', '--config', file({ command: ['node', 'x.js'], workers: 1, balance: 'shared' })]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--balance goes with --workers N/);
});

test('parseWorkers: max is os.availableParallelism(); absent is 1', () => {
  assert.equal(parseWorkers(undefined), 1);
  assert.equal(parseWorkers('max'), os.availableParallelism());
  assert.equal(parseWorkers('16'), 16);
  assert.throws(() => parseWorkers('1e3'), /--workers takes/);
  assert.equal(parseBalance(undefined), 'reuseport');
});
