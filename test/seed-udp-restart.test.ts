/**
 * Seed scenario 2, a UDP restart: process A (old.js) binds UDP on 127.0.0.1 and hands the socket to
 * process B (new.js) over an FdChannel; B adopts it and receives; A keeps reading until B confirms, then
 * closes its copy. A sender (a third process) sends sequence-numbered datagrams throughout. Every sequence
 * number must be received exactly once, by A or by B. Runs the real examples (examples/udp-handoff).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES, ROOT, spawnNode, tmpDir, waitFor, within, type Spawned } from './helpers.js';

const DIR = path.join(ROOT, 'examples/udp-handoff');
/** Upper bound on what the sender may send (4 ms apart: at most 32 s), should the test never stop it. */
const SENDER_MAX = '8000';
const SENDER_INTERVAL_MS = '4';

/** "12 datagrams, seq 0-9,11,13" -> { count: 12, seqs: [0..9, 11, 13] } */
function parseSummary(text: string, re: RegExp): { count: number; seqs: number[] } {
  const m = re.exec(text);
  assert.ok(m, `no summary matching ${re} in:\n${text}`);
  const count = Number(m[1]);
  const seqs: number[] = [];
  if (m[2] !== 'none') {
    for (const part of m[2]!.split(',')) {
      const [a, b = a] = part.split('-').map(Number) as [number, number?];
      for (let i = a; i <= b!; i++) seqs.push(i);
    }
  }
  return { count, seqs };
}

/** The highest "last seq N" progress line printed so far, or -1. */
function lastSeq(p: Spawned): number {
  let max = -1;
  for (const m of p.stdout().matchAll(/last seq (\d+)/g)) max = Math.max(max, Number(m[1]));
  return max;
}

async function startOld(t: Parameters<typeof tmpDir>[0]) {
  const sock = path.join(tmpDir(t), 'udp.sock');
  const old = spawnNode(t, path.join(DIR, 'old.js'), [sock]);
  const port = Number((await old.line(/old: pid \d+, receiving on udp 127\.0\.0\.1:(\d+)/))[1]);
  await old.line(/old: waiting for a successor/);
  const sender = spawnNode(t, path.join(DIR, 'sender.js'), [String(port), SENDER_MAX, SENDER_INTERVAL_MS]);
  // The old process is receiving before anything moves.
  await old.line(/old: 100 datagrams so far/, 15_000);
  return { sock, old, port, sender };
}

/** Takes over with new.js, lets B receive a while on its own, stops the sender and checks every seq. */
async function handOverAndAccount(
  t: Parameters<typeof tmpDir>[0],
  sock: string,
  old: Spawned,
  port: number,
  sender: Spawned,
) {
  const next = spawnNode(t, path.join(DIR, 'new.js'), [sock]);
  const adopted = await next.line(/new: adopted udp 127\.0\.0\.1:(\d+)/, 15_000);
  assert.equal(Number(adopted[1]), port, 'B adopted a socket bound to the same port');

  // A stops only after B confirmed; then B keeps receiving on its own.
  const a = parseSummary(
    (await old.line(/old: closed my copy after \d+ datagrams, seq \S+/, 15_000))[0],
    /after (\d+) datagrams, seq (\S+)/,
  );
  assert.ok(a.count >= 100, `A received ${a.count} datagrams before the handoff`);
  const aMax = Math.max(...a.seqs);
  assert.equal(await within(old.exited, 10_000, 'old exits'), 0, `old failed: ${old.stderr()}`);
  assert.equal(fs.existsSync(sock), false, 'old left its socket file behind');
  await waitFor(() => lastSeq(next) >= aMax + 200, 20_000, `B receiving well past A's last seq ${aMax}`);

  process.kill(sender.pid, 'SIGTERM');
  const sent = Number((await sender.line(/sender: sent (\d+) datagrams/))[1]);
  assert.equal(await within(sender.exited, 10_000, 'sender exits'), 0);
  await next.line(/new: the sender finished; received/, 15_000);
  assert.equal(await within(next.exited, 10_000, 'new exits'), 0, `new failed: ${next.stderr()}`);
  const b = parseSummary(next.stdout(), /new: the sender finished; received (\d+) datagrams, seq (\S+)/);

  // Exactly once: no duplicates within A or B, nothing received by both, nothing missing, nothing extra.
  assert.equal(new Set(a.seqs).size, a.count, 'A received a datagram twice');
  assert.equal(new Set(b.seqs).size, b.count, 'B received a datagram twice');
  const both = a.seqs.filter((s) => b.seqs.includes(s));
  assert.deepEqual(both, [], 'received by both A and B');
  const all = new Set([...a.seqs, ...b.seqs]);
  const missing: number[] = [];
  for (let s = 0; s < sent; s++) if (!all.has(s)) missing.push(s);
  assert.deepEqual(missing, [], `lost datagrams (A: ${a.count}, B: ${b.count}, sent ${sent})`);
  assert.equal(a.count + b.count, sent);
  assert.ok(b.seqs.filter((s) => s > aMax).length >= 200, 'B received on its own after A closed');
  for (const p of [old, next, sender]) assert.equal(p.stderr(), '');
  return { a, b, sent };
}

test('seed-udp-restart: a UDP socket moves to a new process while a sender runs; no datagram is lost', async (t) => {
  const { sock, old, port, sender } = await startOld(t);
  await handOverAndAccount(t, sock, old, port, sender);
});

test('seed-udp-restart: a successor that dies before confirming costs nothing; the next one takes over', async (t) => {
  const { sock, old, port, sender } = await startOld(t);
  // B' receives the fd and closes it without adopting: A's socket must carry on untouched.
  const quitter = spawnNode(t, path.join(FIXTURES, 'seed-quitter.js'), [sock]);
  await quitter.line(/quitter: got 1 fd\(s\)/);
  assert.equal(await within(quitter.exited, 10_000, 'quitter exits'), 0, quitter.stderr());
  await old.line(/old: the successor went away without adopting; still serving/);
  const before = lastSeq(old);
  await waitFor(() => lastSeq(old) >= before + 100, 15_000, 'A still receiving after the failed handoff');
  const { a } = await handOverAndAccount(t, sock, old, port, sender);
  assert.ok(a.count >= 200, `A received ${a.count} datagrams`);
});
