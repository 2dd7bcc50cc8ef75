/**
 * stopReading() (src/upgrader/hold.ts) runs for every connection a generation moves. With nothing buffered — the
 * usual case — it must not touch the app's 'data' listeners: taking them off and putting them back deleted a
 * property of the socket's long-lived _events object, which V8 then turns into a dictionary allocated young and
 * kept alive by the old socket, so the old generation's scavenges copied and promoted one per connection while
 * it drained (10,000 raw TCP: its old space grew 7 MB during the move instead of 3, and its scavenges took 43-93 ms
 * in all instead of 22-29; docs/performance.md). Checked with V8's own %HasFastProperties in a process of its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { FIXTURES } from './helpers.js';

test("stopReading with nothing buffered leaves the app's 'data' listeners, and the socket's _events, as they were", () => {
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', path.join(FIXTURES, 'hold-events.js')], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(r.status, 0, `the fixture failed: ${r.stderr}`);
  const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  assert.deepEqual(got, { before: true, after: true, taken: 0, data: 1, same: true });
});
