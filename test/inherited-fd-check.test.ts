/**
 * Inherited fds are checked before they are adopted — and so before ready(): an fd whose kind (socket type,
 * listening or not, family) is not what the inventory says is refused with a clear error naming the entry
 * and what the fd really is (issue: a same-uid rogue serving side handed a file or a UDP socket labelled as a
 * TCP listener; the new generation sent ready() and then failed with a bare `listen EINVAL`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FIXTURES, spawnNode, tmpDir, within } from './helpers.js';
import { BEHAVIOUR_APP } from './upgrade-helpers.js';

const ROGUE = path.join(FIXTURES, 'rogue-server.js');

for (const [what, is] of [
  ['file', /fd \d+ is a file/],
  ['udp', /fd \d+ is a udp \(IPv4\) bound to 127\.0\.0\.1:\d+/],
  ['tcp-connected', /fd \d+ is a tcp-connection \(IPv4\) bound to 127\.0\.0\.1:\d+/],
] as const) {
  test(`inherited fd check: a ${what} labelled as a TCP listener is refused before ready()`, {
    timeout: 60_000,
  }, async (t) => {
    const dir = tmpDir(t);
    const socket = path.join(dir, 's.sock');
    const rogue = spawnNode(t, ROGUE, [socket, what, '41234']);
    await rogue.line(/listening/, 15_000);
    // The next generation: BEHAVIOUR_APP joins as a standalone successor and listens on 'web'.
    const app = spawnNode(t, BEHAVIOUR_APP, [], { BATON_SOCKET: socket, PORT: '41234' });
    const code = await within(app.exited, 30_000, 'the new generation fails');
    assert.notEqual(code, 0);
    assert.match(app.stderr(), /ERR_BATON_INHERITED_FD_MISMATCH/, app.stderr());
    assert.match(
      app.stderr(),
      /inherited socket 'web' \(inventory: tcp 127\.0\.0\.1:41234\) should be a listening TCP socket/,
    );
    assert.match(app.stderr(), is);
    assert.doesNotMatch(app.stdout(), /serving on/);
    await within(rogue.exited, 30_000, 'the rogue side sees the session end');
    assert.match(rogue.stdout(), new RegExp(`offered ${what}`));
    assert.doesNotMatch(rogue.stdout(), /ready received/, 'ready() was sent with a bogus listener');
  });
}
