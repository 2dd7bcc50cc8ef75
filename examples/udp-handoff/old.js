// The running version: receives datagrams on a UDP socket and hands that socket to its successor.
//
//   node examples/udp-handoff/old.js /tmp/udp-handoff.sock [port]
//
// It keeps reading until the successor confirms it has adopted the socket, then closes its own copy. The
// kernel socket itself never closes, so every datagram is read by one of the two processes.
import dgram from 'node:dgram';
import { FdChannelServer, fdOf } from 'baton-reload';
import { summary } from './seqs.js';

const [socketPath, port = '0'] = process.argv.slice(2);
if (!socketPath) {
  console.error('usage: node old.js <socket-path> [udp-port]');
  process.exit(2);
}

const received = [];
const udp = dgram.createSocket('udp4');
udp.on('message', (msg) => {
  if (msg.toString() === 'END') return console.log('old: the sender finished before a successor took over');
  received.push(Number(msg));
  if (received.length % 100 === 0) console.log(`old: ${received.length} datagrams so far, last seq ${Number(msg)}`);
});
await new Promise((resolve) => udp.bind(Number(port), '127.0.0.1', resolve));
console.log(`old: pid ${process.pid}, receiving on udp 127.0.0.1:${udp.address().port}`);

const server = await FdChannelServer.listen(socketPath);
console.log(`old: waiting for a successor on ${socketPath}`);

server.on('channel', async (channel) => {
  let adopted = false;
  channel.on('message', (data) => {
    if (data.toString() !== 'adopted' || adopted) return;
    adopted = true;
    // The successor is receiving: only now do we stop. Whatever is still queued in the kernel socket is
    // the successor's to read.
    server.close();
    udp.close(() => {
      console.log(`old: closed my copy after ${summary(received)}`);
      channel.close();
    });
  });
  channel.on('close', () => {
    if (!adopted) console.log('old: the successor went away without adopting; still serving');
  });
  try {
    await channel.send('udp', [fdOf(udp)]); // fdOf borrows the fd: no dup, the socket stays non-blocking
    console.log(`old: sent the socket to pid ${channel.peer.pid}; reading until it confirms`);
  } catch (err) {
    console.log(`old: could not send the socket (${err.message}); still serving`);
  }
});
