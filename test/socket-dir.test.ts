/**
 * The control socket's directory, and every one above it, must be one that only root and this user can
 * change (issue: a root supervisor accepted a directory owned by uid 1001, a 0775 directory of another
 * group and a symlink to another user's directory; that user then replaced the socket file and root's
 * `baton reload` / `stop` failed). Checked for `baton run`, a standalone generation and the client
 * commands; a shared sticky directory (like /tmp) gets a private 0700 subdirectory that all of them find.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnNode, tmpDir } from './helpers.js';
import { baton, HTTP_EXAMPLE, SERVING, startSupervised } from './upgrade-helpers.js';

const OTHER = 1001;
const isRoot = process.getuid?.() === 0;
const uid = process.getuid?.() ?? 0;
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** A directory (in a private temporary one) owned by another uid, group-writable one, symlinks, ... */
function layout(t: Parameters<typeof tmpDir>[0]) {
  const base = tmpDir(t);
  const mk = (name: string, mode: number, owner = 0, group = 0) => {
    const p = path.join(base, name);
    fs.mkdirSync(p, { recursive: true });
    fs.chmodSync(p, mode);
    fs.chownSync(p, owner, group);
    return p;
  };
  const foreign = mk('foreign', 0o755, OTHER, OTHER);
  const group = mk('group', 0o775, 0, OTHER);
  const link = path.join(base, 'link');
  fs.symlinkSync(foreign, link);
  const parentForeign = mk('parent', 0o755, OTHER, OTHER);
  const child = mk('parent/child', 0o700);
  const squatted = mk('squatted', 0o1777);
  mk(`squatted/baton-${uid}`, 0o700, OTHER, OTHER);
  const planted = mk('planted', 0o1777);
  fs.symlinkSync(foreign, path.join(planted, `baton-${uid}`));
  return {
    base,
    cases: [
      {
        what: 'owned by another uid',
        socket: path.join(foreign, 'app.sock'),
        names: foreign,
        why: `owned by uid ${OTHER}`,
      },
      {
        what: 'group-writable (0775, another group)',
        socket: path.join(group, 'app.sock'),
        names: group,
        why: 'writable by its group',
      },
      {
        what: "a symlink to another user's directory",
        socket: path.join(link, 'app.sock'),
        names: `resolved: ${foreign}`,
        why: `owned by uid ${OTHER}`,
      },
      {
        what: 'under a parent owned by another uid',
        socket: path.join(child, 'app.sock'),
        names: parentForeign,
        why: `owned by uid ${OTHER}`,
      },
      {
        what: 'sticky, with baton-<uid> squatted by another uid',
        socket: path.join(squatted, 'app.sock'),
        names: path.join(squatted, `baton-${uid}`),
        why: `owned by uid ${OTHER}`,
      },
      {
        what: 'sticky, with baton-<uid> planted as a symlink',
        socket: path.join(planted, 'app.sock'),
        names: path.join(planted, `baton-${uid}`),
        why: 'is a symlink',
      },
    ],
  };
}

function assertRefusal(stderr: string, c: { socket: string; names: string; why: string }, what: string): void {
  assert.match(stderr, /control socket .* so another user could replace the socket file/, `${what}: ${stderr}`);
  assert.match(stderr, new RegExp(esc(c.names)), `${what}: the error names the directory: ${stderr}`);
  assert.match(stderr, new RegExp(esc(c.why)), `${what}: ${stderr}`);
  assert.match(stderr, /--socket \$XDG_RUNTIME_DIR.*RuntimeDirectory=/, `${what}: the error names the fix: ${stderr}`);
}

test('socket directory: baton run, a standalone generation and the client commands refuse untrusted ones', {
  timeout: 180_000,
}, async (t) => {
  if (!isRoot) {
    t.skip('needs root to chown a directory to another uid');
    return;
  }
  const { cases } = layout(t);
  for (const c of cases) {
    // `baton run` refuses before spawning anything (on a trusting supervisor this would serve, and time out here).
    const r = await baton(['run', '--socket', c.socket, '--', process.execPath, '-e', ''], { timeoutMs: 15_000 });
    assert.equal(r.code, 1, `baton run, ${c.what}: ${r.stderr}`);
    assertRefusal(r.stderr, c, `baton run, ${c.what}`);
    assert.doesNotMatch(r.stderr, /baton spawn/);
    // A standalone generation (Upgrader.start with BATON_SOCKET) fails to start, with the same error.
    const app = spawnNode(t, HTTP_EXAMPLE, [], { BATON_SOCKET: c.socket, PORT: '0' });
    const code = await Promise.race([app.exited, new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
    assert.notEqual(code, 0, `standalone, ${c.what}: ${app.stdout()}`);
    assert.notEqual(code, 'still running', `standalone, ${c.what}: it serves: ${app.stdout()}`);
    assert.match(app.stderr(), /ERR_BATON_UNSAFE_SOCKET_DIR/, `standalone, ${c.what}`);
    assertRefusal(app.stderr(), c, `standalone, ${c.what}`);
    // The client commands do not talk to whatever sits there.
    for (const cmd of ['status', 'reload', 'stop']) {
      const q = await baton([cmd, '--socket', c.socket]);
      assert.equal(q.code, 1, `${cmd}, ${c.what}: ${q.stderr}`);
      assertRefusal(q.stderr, c, `baton ${cmd}, ${c.what}`);
    }
  }
});

test('socket directory: in a shared sticky directory the socket lives in a private subdirectory that every command ' +
  'finds', {
  timeout: 120_000,
}, async (t) => {
  if (!isRoot) {
    t.skip('needs root to make a root-owned sticky directory like /tmp');
    return;
  }
  const shared = path.join(tmpDir(t), 'shared');
  fs.mkdirSync(shared);
  fs.chmodSync(shared, 0o1777);
  const own = path.join(shared, `baton-${uid}`);

  const s = await startSupervised(t, { dir: shared }); // baton run --socket <shared>/s.sock
  const st = await s.status(); // baton status --socket <shared>/s.sock finds it
  assert.equal(st.supervisor.socket, path.join(own, 's.sock'));
  assert.equal(fs.lstatSync(own).mode & 0o7777, 0o700);
  assert.equal(fs.existsSync(path.join(shared, 's.sock')), false, 'nothing in the shared directory itself');
  const r = await s.reload();
  assert.equal(r.code, 0, r.stderr);
  assert.match(s.sup.stderr(), new RegExp(`supervisor-start supervisor=\\d+ socket=${esc(path.join(own, 's.sock'))}`));
  assert.equal(await s.shutdown(), 0);

  // Standalone: generation 1 and its successor meet in the same private subdirectory.
  const g1 = spawnNode(t, HTTP_EXAMPLE, [], { BATON_SOCKET: path.join(shared, 'alone.sock'), PORT: '0' });
  await g1.line(SERVING(1), 20_000);
  assert.equal(fs.statSync(path.join(own, 'alone.sock')).isSocket(), true);
  const q = await baton(['status', '--json', '--socket', path.join(shared, 'alone.sock')]);
  assert.equal(q.code, 0, q.stderr);
  const stop = await baton(['stop', '--socket', path.join(shared, 'alone.sock')]);
  assert.equal(stop.code, 0, stop.stderr);
});
