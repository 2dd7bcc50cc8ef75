/**
 * Running a benchmark from a test (test/bench-*.test.ts): `node dist/bench/<name>/run.js <args>` in its own
 * process group, its output collected. The benchmark kills everything it started when it ends or gets SIGTERM;
 * after the test, if it still runs, its process group gets SIGTERM, then SIGKILL 2 s later.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { ROOT } from './helpers.js';

export async function runBench(
  t: TestContext,
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; out: string; err: string }> {
  const argv = [path.join(ROOT, `dist/bench/${name}/run.js`), ...args];
  const child = spawn(process.execPath, argv, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  t.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 2000));
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  return { code, out, err };
}
