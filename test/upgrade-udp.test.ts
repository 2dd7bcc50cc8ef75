/**
 * Acceptance: a UDP socket survives 10 upgrades under `baton run` without losing a datagram. The app
 * (test/fixtures/udp-app.ts) binds 'stats' with upgrader.bindDgram and appends every sequence number it
 * receives to a file of its own pid, synchronously. A sender in this process sends numbered datagrams at
 * about 2,000/s throughout. At the end the files of all generations are merged: every number sent must
 * be there exactly once (no loss, no duplicate, nothing that was never sent), and the numbers must be
 * spread over the generations (the socket really moved).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES, tmpDir, waitFor } from './helpers.js';
import { startSupervised, waitExit } from './upgrade-helpers.js';

const RELOADS = 10;

/** seq -> how many times it was received, and per file (pid) how many. */
function merge(dir: string): { counts: Map<number, number>; perPid: Map<number, number>; bad: string[] } {
  const counts = new Map<number, number>();
  const perPid = new Map<number, number>();
  const bad: string[] = [];
  for (const name of fs.readdirSync(dir)) {
    const m = /^recv-(\d+)\.txt$/.exec(name);
    if (!m) continue;
    const lines = fs
      .readFileSync(path.join(dir, name), 'latin1')
      .split('\n')
      .filter((l) => l !== '');
    perPid.set(Number(m[1]), lines.length);
    for (const l of lines) {
      if (!/^\d+$/.test(l)) {
        bad.push(l);
        continue;
      }
      counts.set(Number(l), (counts.get(Number(l)) ?? 0) + 1);
    }
  }
  return { counts, perPid, bad };
}

test('baton run: UDP, 10 reloads while a sender runs at ~2,000/s: every datagram received exactly once', {
  timeout: 180_000,
}, async (t) => {
  const dir = tmpDir(t);
  const recvDir = path.join(dir, 'recv');
  fs.mkdirSync(recvDir);
  const app = path.join(FIXTURES, 'udp-app.js');
  const s = await startSupervised(t, {
    app,
    dir,
    env: { RECV_DIR: recvDir },
    servingLine: /generation 1 bound udp 127\.0\.0\.1:(\d+)/,
  });

  const sender = dgram.createSocket('udp4');
  t.after(() => sender.close());
  let next = 0;
  let sent = 0;
  let sendErrors = 0;
  const timer = setInterval(() => {
    for (let i = 0; i < 20; i++) {
      const seq = next++;
      sender.send(String(seq), s.port, '127.0.0.1', (err) => {
        if (err) sendErrors++;
        else sent++;
      });
    }
  }, 10);
  t.after(() => clearInterval(timer));
  // Bounded: stop sending after 2 minutes whatever happens.
  const cap = setTimeout(() => clearInterval(timer), 120_000);
  t.after(() => clearTimeout(cap));

  const received = () => [...merge(recvDir).perPid.values()].reduce((a, b) => a + b, 0);
  await waitFor(() => received() >= 500, 20_000, 'generation 1 receiving');
  const pids: number[] = [];
  for (let i = 0; i < RELOADS; i++) {
    const r = await s.reload();
    assert.equal(r.code, 0, `reload ${i + 1} failed: ${r.stdout} ${r.stderr}`);
    const pid = Number(/\(pid (\d+)\)/.exec(r.stdout)![1]);
    pids.push(pid);
    await s.sup.line(new RegExp(`generation ${i + 2} bound udp 127\\.0\\.0\\.1:${s.port} pid ${pid}`), 10_000);
    // Let the new generation receive on its own for a moment before the next reload.
    const fileOf = path.join(recvDir, `recv-${pid}.txt`);
    await waitFor(
      () => fs.existsSync(fileOf) && fs.statSync(fileOf).size > 200,
      10_000,
      `generation ${i + 2} receiving`,
    );
  }
  clearInterval(timer);
  await waitFor(() => sent + sendErrors === next, 5000, 'the last sends to complete');
  assert.equal(sendErrors, 0, 'send errors');
  // Datagrams still in the socket's queue are read by the last generation.
  await waitFor(() => received() >= sent, 10_000, `all ${sent} datagrams received (have ${received()})`).catch(
    () => {},
  );

  const { counts, perPid, bad } = merge(recvDir);
  t.diagnostic(`sent ${sent} datagrams; received per generation pid: ${JSON.stringify(Object.fromEntries(perPid))}`);
  assert.deepEqual(bad, [], 'garbage lines');
  const missing: number[] = [];
  const dups: number[] = [];
  for (let seq = 0; seq < sent; seq++) {
    const c = counts.get(seq) ?? 0;
    if (c === 0) missing.push(seq);
    else if (c > 1) dups.push(seq);
  }
  const extra = [...counts.keys()].filter((seq) => seq >= sent);
  assert.deepEqual(missing.slice(0, 50), [], `${missing.length} datagrams lost of ${sent}`);
  assert.deepEqual(dups.slice(0, 50), [], `${dups.length} datagrams received twice`);
  assert.deepEqual(extra, [], 'received numbers that were never sent');
  assert.equal(counts.size, sent);
  assert.ok(sent >= 2000, `only ${sent} datagrams were sent`);
  // Every generation received its share: the socket moved 10 times.
  for (const pid of pids) assert.ok((perPid.get(pid) ?? 0) > 0, `generation pid ${pid} received nothing`);
  assert.equal(perPid.size, RELOADS + 1);
  for (const pid of pids.slice(0, -1)) await waitExit(pid, 10_000, `replaced generation ${pid} exits`);

  const st = await s.status();
  assert.deepEqual(st.listeners, [{ name: 'stats', kind: 'udp4', address: `127.0.0.1:${s.port}` }]);
  assert.equal(await s.shutdown(), 0);
});
