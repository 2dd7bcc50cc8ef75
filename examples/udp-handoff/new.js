// The next version: connects to the running one, adopts its UDP socket and carries on receiving.
//
//   node examples/udp-handoff/new.js /tmp/udp-handoff.sock
//
// It exits when the sender says END (or on Ctrl-C), printing every sequence number it received.
import { FdChannel, adoptDgram, closeFds } from 'baton-reload';
import { summary } from './seqs.js';

const socketPath = process.argv[2];
if (!socketPath) {
  console.error('usage: node new.js <socket-path>');
  process.exit(2);
}

const received = [];
let udp;

function finish(why) {
  console.log(`new: ${why}; received ${summary(received)}`);
  udp?.close();
  channel.close();
}

const channel = await FdChannel.connect(socketPath);
console.log(`new: pid ${process.pid}, connected to ${socketPath}`);

channel.once('message', async (data, fds) => {
  if (data.toString() !== 'udp' || fds.length !== 1) {
    closeFds(fds);
    console.error('new: expected one UDP socket');
    process.exit(1);
  }
  udp = await adoptDgram(fds[0]); // a dgram.Socket, bound and receiving
  // Listen before confirming: once the old process reads 'adopted', only we read the socket.
  udp.on('message', (msg) => {
    if (msg.toString() === 'END') return finish('the sender finished');
    received.push(Number(msg));
    if (received.length % 100 === 0) console.log(`new: ${received.length} datagrams so far, last seq ${Number(msg)}`);
  });
  const { address, port } = udp.address();
  console.log(`new: adopted udp ${address}:${port}`);
  await channel.send('adopted'); // the old process closes its copy once it reads this
  channel.close();
});

process.on('SIGINT', () => finish('interrupted'));
