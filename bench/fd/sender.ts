/**
 * bench:fd sender: node sender.js <socket-path> <fds-per-message> <cap-ms>
 *
 * Connects with FdChannel.connect and then takes commands on stdin, one a line, answering each on stdout:
 *
 *   round <n>   send n messages (each a 16-byte payload plus <fds-per-message> dups of one /dev/null fd),
 *               then an 'E' message; time it up to the receiver's answer, as baseline.c does; print one
 *               JSON line (a RoundResult). The first round a bench runs is its warm-up.
 *   quit        close the channel and exit
 *
 * Sends are pipelined: the next send starts as soon as the kernel took the previous one; only when the
 * channel has to queue (backpressure, pendingRecords > 0) does the loop wait for that send.
 */
import fs from 'node:fs';
import readline from 'node:readline';
import { FdChannel, closeFds, dupFd } from '../../src/index.js';
import { TAG_DATA, TAG_END, TAG_REPLY, payload, type RoundResult } from './protocol.js';

const [sockPath, kArg, capArg] = process.argv.slice(2);
if (!sockPath || !kArg || !capArg) {
  console.error('usage: sender.js <socket-path> <fds-per-message> <cap-ms>');
  process.exit(2);
}
const k = Number(kArg);
const capNs = BigInt(Math.round(Number(capArg) * 1e6));

const ch = await FdChannel.connect(sockPath);
ch.on('error', (err) => {
  console.error('sender: channel error', err);
  process.exit(1);
});

const base = fs.openSync('/dev/null', 'r');
const fds: number[] = [];
for (let i = 0; i < k; i++) fds.push(dupFd(base));
fs.closeSync(base);

let onReply: ((count: number) => void) | null = null;
ch.on('message', (data, got) => {
  if (got.length) closeFds(got);
  if (data[0] === TAG_REPLY && onReply) onReply(data.readUInt32LE(8));
});

const DATA = payload(TAG_DATA);
const END = payload(TAG_END);

async function round(count: number): Promise<RoundResult> {
  const reply = new Promise<number>((resolve) => (onReply = resolve));
  const t0 = process.hrtime.bigint();
  const deadline = t0 + capNs;
  let sent = 0;
  let capped = false;
  while (sent < count) {
    const p = ch.send(DATA, fds);
    sent++;
    if (ch.pendingRecords > 0) await p;
    if ((sent & 63) === 0 && process.hrtime.bigint() > deadline) {
      capped = true;
      break;
    }
  }
  await ch.send(END);
  const received = await reply;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  onReply = null;
  if (received !== sent) throw new Error(`sent ${sent} messages, the receiver got ${received}`);
  return { messages: sent, seconds, messagesPerSec: sent / seconds, fdsPerSec: (sent * k) / seconds, capped };
}

console.log('ready');
for await (const line of readline.createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'round') console.log(JSON.stringify(await round(Number(arg))));
  else if (cmd === 'quit') break;
  else if (cmd) {
    console.error(`sender: unknown command ${JSON.stringify(line)}`);
    process.exit(2);
  }
}
closeFds(fds);
ch.close();
process.exit(0);
