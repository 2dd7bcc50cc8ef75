/**
 * Every benchmark runner's flags (bench/lib/args.ts): `--help` prints its usage and exits 0, and a mistyped flag,
 * a flag given a value it does not take or a bad number exits 2 with what is wrong and the usage — before any
 * benchmark starts (a mistyped `--quick` once meant a full run that rewrote docs/performance.md). Nothing here
 * measures anything: each run exits while parsing its flags.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runBench } from './bench-helpers.js';

/** bench/<dir>/run.ts, its name in messages, and a flag it takes. */
const RUNNERS = [
  { dir: 'fd', name: 'bench:fd', flag: '--no-docs' },
  { dir: 'upgrade', name: 'bench:upgrade', flag: '--no-autocannon' },
  { dir: 'migrate', name: 'bench:migrate', flag: '--stall-only' },
  { dir: 'steady', name: 'bench:steady', flag: '--quick' },
  { dir: 'workers', name: 'bench:workers', flag: '--no-pm2' },
  { dir: 'soak', name: 'soak', flag: '--json' },
] as const;

for (const { dir, name, flag } of RUNNERS) {
  test(`${name}: --help prints the usage; an unknown flag or a value for a boolean one fails with it`, async (t) => {
    const help = await runBench(t, dir, ['--help']);
    assert.equal(help.code, 0, help.err);
    assert.match(help.out, new RegExp(`^usage: npm run ${name} -- `));
    assert.ok(help.out.includes(`[${flag}]`), `the usage names ${flag}`);
    assert.equal(help.err, '');

    const unknown = await runBench(t, dir, ['--no-such-flag']);
    assert.equal(unknown.code, 2, unknown.out);
    assert.equal(unknown.err, `${name}: Unknown option '--no-such-flag'\n${help.out}`);
    assert.equal(unknown.out, '');

    const valued = await runBench(t, dir, [`${flag}=1`]);
    assert.equal(valued.code, 2, valued.out);
    assert.match(valued.err, new RegExp(`^${name}: Option '${flag}' does not take an argument\nusage: `));
  });
}

test('soak: a number flag out of its range, missing or not a number fails with the range', async (t) => {
  for (const [args, message] of [
    [['--upgrades', '0'], '--upgrades needs an integer from 1 to 10000, got 0'],
    [['--minutes=2.5'], '--minutes needs an integer from 1 to 1440, got 2.5'],
    [['--pause', 'soon'], '--pause needs an integer from 0 to 60000, got soon'],
    [['--pause'], "Option '--pause <value>' argument missing"],
  ] as const) {
    const r = await runBench(t, 'soak', [...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.out}`);
    assert.ok(r.err.startsWith(`soak: ${message}\nusage: npm run soak -- `), r.err);
  }
});
