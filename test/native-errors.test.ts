/**
 * Errors from the addon name the syscall that actually failed (Error.code is its errno name, .syscall the
 * call). Here the cases where a native function makes several calls and used to guess which one failed.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { FIXTURES, spawnNode, tmpDir, within } from './helpers.js';

test('listen over a live socket with no fd to spare: EMFILE from the call that needed one, not connect(); no fd leaks', async (t) => {
  const sock = path.join(tmpDir(t), 'live.sock');
  const child = spawnNode(t, path.join(FIXTURES, 'listen-emfile.js'), [sock]);
  const code = await within(child.exited, 30_000, 'the listen-emfile fixture');
  assert.equal(code, 0, child.stderr());
  const out = JSON.parse(child.stdout().trim().split('\n').pop()!) as Record<string, Record<string, unknown>>;
  if (out.skip) {
    t.skip(String(out.skip));
    return;
  }
  // Two fds free: the directory's lock and the listening socket take them, the path's own bind fails with
  // EADDRINUSE; checking whether anyone listens needs a socket of its own, and making that one is what failed.
  const two = out.twoFree!;
  assert.equal(two.code, 'EMFILE', JSON.stringify(two));
  assert.equal(two.syscall, 'socket', JSON.stringify(two));
  assert.match(String(two.message), /checking whether anyone listens/);
  assert.equal(two.after, two.before, 'the listening socket and the lock made for the attempt were closed');
  // One: the lock takes it, and the listening socket is what failed.
  const one = out.oneFree!;
  assert.equal(one.code, 'EMFILE', JSON.stringify(one));
  assert.equal(one.syscall, 'socket', JSON.stringify(one));
  assert.doesNotMatch(String(one.message), /checking whether anyone listens/);
  assert.equal(one.after, one.before, 'the lock made for the attempt was closed');
  // None: opening the directory to lock it fails, and says so.
  const none = out.noneFree!;
  assert.equal(none.code, 'EMFILE', JSON.stringify(none));
  assert.equal(none.syscall, 'open', JSON.stringify(none));
  assert.match(String(none.message), /opening its directory to lock it/);
  assert.equal(none.after, none.before, 'nothing left open by the attempt');
});
