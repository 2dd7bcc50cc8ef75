/**
 * Seed scenario 1, a file: process A opens a file holding "hello world", connects to process B's socket
 * path and sends the fd with the bytes "boy"; B gets both and reads "hello world" through the fd (adopt ->
 * FileHandle). Runs the real examples (examples/seed-file) as two separate processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, spawnNode, tmpDir, within } from './helpers.js';

const RECEIVER = path.join(ROOT, 'examples/seed-file/receiver.js');
const SENDER = path.join(ROOT, 'examples/seed-file/sender.js');

async function run(t: Parameters<typeof tmpDir>[0], senderArgs: (sock: string, dir: string) => string[]) {
  const dir = tmpDir(t);
  const sock = path.join(dir, 'seed.sock');
  const receiver = spawnNode(t, RECEIVER, [sock]);
  await receiver.line(/receiver: listening on /);
  const sender = spawnNode(t, SENDER, senderArgs(sock, dir));
  assert.equal(await within(sender.exited, 10_000, 'sender exits'), 0, `sender failed: ${sender.stderr()}`);
  assert.equal(await within(receiver.exited, 10_000, 'receiver exits'), 0, `receiver failed: ${receiver.stderr()}`);
  const out = receiver.stdout();
  assert.equal(receiver.stderr(), '');
  assert.equal(sender.stderr(), '');
  // The peer is the sender process, as the kernel saw it (SO_PEERCRED), not this test process.
  const peer = /receiver: sender connected, pid (\d+)/.exec(out);
  assert.ok(peer, out);
  assert.equal(Number(peer[1]), sender.pid);
  assert.notEqual(Number(peer[1]), process.pid);
  assert.match(out, /receiver: got message "boy" with 1 fd\(s\)\n/);
  assert.match(out, /receiver: done\n/);
  // The receiver closed its server, which removes the socket file.
  assert.equal(fs.existsSync(sock), false, 'socket file left behind');
  return out;
}

test('seed-file: B reads "hello world" through the fd A sent with "boy"', async (t) => {
  const out = await run(t, (sock, dir) => {
    const file = path.join(dir, 'hello.txt');
    fs.writeFileSync(file, 'hello world');
    return [sock, file];
  });
  assert.match(out, /receiver: read through the fd: "hello world" \(the file has 1 name\(s\) on disk\)/);
});

test('seed-file: the file has no name left, so B can only have read it through the fd', async (t) => {
  // Without a path, the sender makes a file, opens it and unlinks it before sending.
  const out = await run(t, (sock) => [sock]);
  assert.match(out, /receiver: read through the fd: "hello world" \(the file has 0 name\(s\) on disk\)/);
});
