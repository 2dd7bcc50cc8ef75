/**
 * `baton run` as PID 1 (in a new PID namespace, as in a container): it serves, reloads, reaps orphaned
 * zombies that are not its own children, and exits 0 on a graceful stop. Needs root and util-linux's
 * `unshare`; otherwise the test says why it skipped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { FIXTURES, ROOT, spawnNode, tmpDir, waitFor, killPid } from './helpers.js';
import { get } from './upgrade-helpers.js';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function childrenOf(pid: number): Array<{ pid: number; state: string }> {
  const out: Array<{ pid: number; state: string }> = [];
  for (const name of fs.readdirSync('/proc')) {
    const p = Number(name);
    if (!Number.isInteger(p)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === pid) out.push({ pid: p, state: f[0]! });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

function unshareAvailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root to create a PID namespace';
  try {
    execFileSync('unshare', ['-fp', '--mount-proc', 'true'], { stdio: 'ignore' });
    return null;
  } catch (err) {
    return `unshare -fp --mount-proc is not available here (${(err as Error).message.split('\n')[0]})`;
  }
}

test('baton run as PID 1: serves, reloads, reaps orphaned zombies, stops with exit 0', async (t) => {
  const why = unshareAvailable();
  if (why) {
    t.skip(why);
    return;
  }
  const dir = tmpDir(t);
  const sock = path.join(dir, 's.sock');
  const port = await freePort();
  // spawnNode runs `node <script>`: here the script is unshare's target, so spawn unshare through a shim.
  const shim = path.join(dir, 'pid1.mjs');
  fs.writeFileSync(
    shim,
    `import { spawn } from 'node:child_process';
const c = spawn('unshare', ['-fp', '--mount-proc', process.execPath, ${JSON.stringify(path.join(ROOT, 'bin/baton.js'))}, 'run', '--socket', ${JSON.stringify(sock)}, '--', process.execPath, ${JSON.stringify(path.join(FIXTURES, 'orphan-app.js'))}], { stdio: 'inherit' });
c.on('exit', (code, signal) => { console.log('unshare exited', code, signal); process.exit(code ?? 1); });
process.on('SIGTERM', () => c.kill('SIGTERM'));
`,
  );
  const shimProc = spawnNode(t, shim, [], { PORT: String(port) });
  await shimProc.line(/serving generation 1/, 15_000);
  // The supervisor is the child of unshare (which forked into the namespace).
  const unsharePid = childrenOf(shimProc.pid).find(() => true)!.pid;
  const supervisor = childrenOf(unsharePid)[0]!.pid;
  t.after(() => {
    for (const c of childrenOf(supervisor)) killPid(c.pid);
    killPid(supervisor);
  });
  assert.match(
    fs.readFileSync(`/proc/${supervisor}/status`, 'utf8'),
    /NSpid:\s+\d+\s+1\b/,
    'the supervisor is PID 1 in its namespace',
  );
  assert.equal((await get(port)).body, 'generation 1\n');

  // The orphans' sleeps end after 0.3 s; PID 1 scans for zombies every second.
  await waitFor(
    () => childrenOf(supervisor).every((c) => c.state !== 'Z') && childrenOf(supervisor).length === 1,
    10_000,
    'orphans reaped',
  );
  assert.equal(childrenOf(supervisor).filter((c) => c.state === 'Z').length, 0);

  const reload = execFileSync(process.execPath, [path.join(ROOT, 'bin/baton.js'), 'reload', '--socket', sock], {
    encoding: 'utf8',
  });
  assert.match(reload, /generation 2 .* is serving/);
  assert.equal((await get(port)).body, 'generation 2\n');
  await waitFor(
    () => childrenOf(supervisor).length === 1 && childrenOf(supervisor).every((c) => c.state !== 'Z'),
    10_000,
    'generation 1 gone and orphans of generation 2 reaped',
  );

  execFileSync(process.execPath, [path.join(ROOT, 'bin/baton.js'), 'stop', '--socket', sock], { encoding: 'utf8' });
  const code = await shimProc.exited;
  assert.equal(code, 0, `unshare/supervisor exit code; output: ${shimProc.stdout()} ${shimProc.stderr().slice(-1500)}`);
});
