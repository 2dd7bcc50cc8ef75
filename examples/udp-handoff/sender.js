// Sends sequence-numbered datagrams ("0", "1", ...) to 127.0.0.1:<port>, one every <interval> ms, until
// <count> are sent or it is interrupted (Ctrl-C, SIGTERM); then sends "END".
//
//   node examples/udp-handoff/sender.js <port> [count=10000] [interval-ms=4]
import dgram from 'node:dgram';

const port = Number(process.argv[2]);
const count = Number(process.argv[3] ?? 10000);
const interval = Number(process.argv[4] ?? 4);
if (!port) {
  console.error('usage: node sender.js <port> [count] [interval-ms]');
  process.exit(2);
}

const socket = dgram.createSocket('udp4');
let seq = 0;
const timer = setInterval(() => {
  socket.send(String(seq++), port, '127.0.0.1');
  if (seq === 1) console.log(`sender: sending to 127.0.0.1:${port}`);
  if (seq >= count) stop();
}, interval);

let stopped = false;
function stop() {
  if (stopped) return;
  stopped = true;
  clearInterval(timer);
  socket.send('END', port, '127.0.0.1', () => {
    console.log(`sender: sent ${seq} datagrams (seq 0-${seq - 1}), then END`);
    socket.close();
  });
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
