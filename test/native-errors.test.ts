/**
 * Errors from the addon name the syscall that actually failed (Error.code is its errno name, .syscall the
 * call). Here the cases where a native function makes several calls and used to guess which one failed.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { FIXTURES, spawnNode, tmpDir, within } from './helpers.js';

test('listen over a live socket with no fd to spare: EMFILE from socket(), not connect(); no fd leaks', async (t) => {
  const sock = path.join(tmpDir(t), 'live.sock');
  const child = spawnNode(t, path.join(FIXTURES, 'listen-emfile.js'), [sock]);
  const code = await within(child.exited, 30_000, 'the listen-emfile fixture');
  assert.equal(code, 0, child.stderr());
  const out = JSON.parse(child.stdout().trim().split('\n').pop()!) as Record<string, unknown>;
  if (out.skip) {
    t.skip(String(out.skip));
    return;
  }
  // The path's own bind failed with EADDRINUSE; checking whether anyone listens needs a socket of its own,
  // and making that one is what failed.
  assert.equal(out.code, 'EMFILE', JSON.stringify(out));
  assert.equal(out.syscall, 'socket', JSON.stringify(out));
  assert.match(String(out.message), /checking whether anyone listens/);
  assert.equal(out.after, out.before, 'the listening socket made for the attempt was closed');
});
