/**
 * `baton status` shows CPU and memory per process (supervisor and each generation); `baton status --watch`
 * is a live view that redraws in place: run in a real terminal (tmux), it shows a reload happening, and q
 * quits it leaving the terminal as it was. Skips the terminal test when tmux is not installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES, waitFor } from './helpers.js';
import { baton, BATON, startSupervised, SERVING } from './upgrade-helpers.js';

const BUSY_APP = path.join(FIXTURES, 'busy-app.js');

interface Usage {
  cpuSeconds: number;
  cpuPercent: number;
  rssBytes: number;
}

function vmRss(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

test('baton status: CPU and RSS per process, in the table and in --json', { timeout: 60_000 }, async (t) => {
  // Busy 100 ms in every 200: about half a core.
  const s = await startSupervised(t, { app: BUSY_APP, env: { BUSY_MS: '100' } });
  const json = async () => {
    const r = await baton(['status', '--json', '--socket', s.socket]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as {
      supervisor: { pid: number; usage: Usage };
      generations: Array<{ pid: number; usage: Usage }>;
    };
  };
  const first = await json();
  const sup = first.supervisor.usage;
  const gen = first.generations[0]!;
  assert.ok(sup.rssBytes > 1024 * 1024 && gen.usage.rssBytes > 1024 * 1024, JSON.stringify(first));
  // Read from /proc/<pid>/status like the test does: the same figure, give or take what changed meanwhile.
  const rss = vmRss(gen.pid);
  assert.ok(Math.abs(gen.usage.rssBytes - rss) < rss / 2, `RSS ${gen.usage.rssBytes} vs VmRSS ${rss}`);
  assert.ok(sup.cpuSeconds >= 0 && gen.usage.cpuSeconds > 0, JSON.stringify(first));
  // The next look reports the CPU % since the previous one: the busy generation uses a good part of a core.
  await new Promise((r) => setTimeout(r, 1000));
  const second = await json();
  const g2 = second.generations[0]!.usage;
  t.diagnostic(`busy generation: ${g2.cpuPercent}% CPU, supervisor ${second.supervisor.usage.cpuPercent}%`);
  // (Half a core on an idle machine; the spin counts wall time, so on a loaded one it gets less CPU.)
  assert.ok(g2.cpuPercent >= 5, `CPU ${g2.cpuPercent}% of a generation busy half the time`);
  assert.ok(g2.cpuPercent > second.supervisor.usage.cpuPercent, 'the busy generation uses more than the supervisor');
  assert.ok(g2.cpuSeconds >= gen.usage.cpuSeconds, 'CPU time only grows');

  const text = await baton(['status', '--socket', s.socket]);
  assert.equal(text.code, 0, text.stderr);
  const supervisorLine = /^supervisor pid \d+, up \d+ s, 0 restarts, socket \S+, baton \S+, CPU [\d.]+%, RSS \S+ MiB$/m;
  assert.match(text.stdout, supervisorLine);
  assert.match(text.stdout, /^GENERATION\s+PID\s+STATE\s+STARTED\s+READY IN\s+CONNECTIONS\s+CPU\s+RSS\s+WAITING FOR$/m);
  assert.match(
    text.stdout,
    new RegExp(`^1\\s+${gen.pid}\\s+serving\\s+\\S+\\s+\\d+ ms\\s+\\d+\\s+\\d+\\.\\d%\\s+\\d+\\.\\d MiB$`, 'm'),
  );
  assert.match(text.stdout, /^reloads: 0 ok, 0 rolled back, 0 failed; connections moved: 0, not moved: 0$/m);
  assert.equal(await s.shutdown(), 0, s.sup.stderr().slice(-2000));
});

const tmuxMissing = spawnSync('tmux', ['-V']).error ? 'tmux is not installed (apt-get install -y tmux)' : false;

test('baton status --watch in a terminal (tmux): redraws in place as a reload happens; q quits', {
  timeout: 90_000,
  skip: tmuxMissing,
}, async (t) => {
  const s = await startSupervised(t);
  const server = `baton-test-${process.pid}`;
  const tmux = (...args: string[]) => {
    const r = spawnSync('tmux', ['-L', server, ...args], {
      encoding: 'utf8',
      timeout: 10_000,
      env: { ...process.env, TERM: process.env.TERM || 'xterm-256color' },
    });
    if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const q = (arg: string) => `'${arg.replace(/'/g, `'\\''`)}'`;
  // The shell in the pane records the watch's exit status in a file: tmux's own #{pane_dead_status} stayed
  // empty on this machine (tmux 3.3a, even for `sleep 1; exit 3`), so it cannot be relied on.
  const exitFile = path.join(path.dirname(s.socket), 'watch-exit-status');
  const command =
    [process.execPath, BATON, 'status', '--watch', '--interval', '0.3', '--socket', s.socket].map(q).join(' ') +
    `; echo $? > ${q(exitFile)}`;
  // A private tmux server (-L), ended by pid after the test.
  tmux('-f', '/dev/null', 'new-session', '-d', '-s', 'watch', '-x', '150', '-y', '45', command);
  const serverPid = Number(tmux('display-message', '-p', '-t', 'watch', '#{pid}').trim());
  t.after(() => {
    spawnSync('tmux', ['-L', server, 'kill-server'], { timeout: 5000 });
    try {
      process.kill(serverPid, 'SIGKILL');
    } catch {
      // gone
    }
  });
  // Keep the pane once the command exits, to read its exit status and what the screen shows then.
  tmux('set-option', '-t', 'watch', 'remain-on-exit', 'on');
  const screen = () => tmux('capture-pane', '-p', '-t', 'watch');
  const shows = async (re: RegExp, what: string) => {
    await waitFor(() => re.test(screen()), 20_000, `${what}; the screen:\n${screen()}`, 100).catch((err: Error) => {
      throw new Error(`${err.message}\n${screen()}`);
    });
  };

  const pid1 = (await s.serving())[0]!.pid;
  await shows(new RegExp(`^1\\s+${pid1}\\s+serving\\s`, 'm'), 'generation 1 serving');
  const before = screen();
  assert.match(before, /^baton status --watch\s+\d\d:\d\d:\d\d UTC/m);
  assert.match(before, /^GEN\s+PID\s+STATE\s+UPTIME\s+CONNS\s+CPU\s+RSS\s+LOOP P99\s+LOOP BUSY$/m);
  assert.match(before, /^reloads: 0 ok, 0 rolled back, 0 failed/m);
  assert.match(before, new RegExp(`^1\\s+${pid1}\\s+serving\\s+\\d+ s\\s+\\d+\\s+\\d+\\.\\d%\\s+\\d+\\.\\d MiB`, 'm'));

  const r = await s.reload();
  assert.equal(r.code, 0, r.stderr);
  await s.sup.line(SERVING(2), 10_000);
  const pid2 = Number(/\(pid (\d+)\)/.exec(r.stdout)![1]);
  await shows(new RegExp(`^2\\s+${pid2}\\s+serving\\s`, 'm'), 'generation 2 serving');
  await shows(/^reloads: 1 ok, 0 rolled back, 0 failed \(last took \d+ ms\)/m, 'the reload counted');
  await shows(new RegExp(`^gen 2 \\(pid ${pid2}\\)\\s+reload\\s+serving`, 'm'), 'the reload listed');
  // In place: one frame on the screen, not one frame after another.
  const after = screen();
  assert.equal(after.match(/^baton status --watch/gm)?.length, 1, after);
  // The event-loop figures of generation 2 arrive within a report or two.
  await shows(
    new RegExp(`^2\\s+${pid2}\\s+serving\\s+.*\\d+\\.\\d ms\\s+\\d+\\.\\d%`, 'm'),
    'the event loop of generation 2',
  );

  tmux('send-keys', '-t', 'watch', 'q');
  await waitFor(
    () => tmux('display-message', '-p', '-t', 'watch', '#{pane_dead}').trim() === '1' && fs.existsSync(exitFile),
    10_000,
    'the watch quits on q',
    100,
  );
  assert.equal(fs.readFileSync(exitFile, 'utf8').trim(), '0', 'the watch exits with status 0');
  // The alternate screen is gone: the terminal shows what it showed before (nothing), not the last frame.
  assert.doesNotMatch(screen(), /GEN\s+PID/);
  assert.equal(await s.shutdown(), 0, s.sup.stderr().slice(-2000));
});

test('baton status --watch, piped: one frame per interval; usage errors', { timeout: 60_000 }, async (t) => {
  const s = await startSupervised(t);
  const r = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [BATON, 'status', '--watch', '--interval', '0.2', '--socket', s.socket], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if ((out.match(/^baton status --watch/gm) ?? []).length >= 3) child.kill('SIGTERM');
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no three frames: ${out}`));
    }, 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`exit ${code}: ${out}`));
    });
  });
  assert.doesNotMatch(r, /\x1b\[/, 'no escape sequences when piped');
  assert.match(r, /^1\s+\d+\s+serving\s/m);
  const both = await baton(['status', '--watch', '--json', '--socket', s.socket]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--watch and --json do not go together/);
  assert.equal(await s.shutdown(), 0, s.sup.stderr().slice(-2000));
});
