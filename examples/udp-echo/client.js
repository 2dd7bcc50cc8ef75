// Sends numbered datagrams ("seq 0", "seq 1", …) to the udp-echo server and matches the replies
// ("seq 0 from generation 1"). Prints each reply, and at the end how many were lost.
//   node examples/udp-echo/client.js [port] [count] [intervalMs]
//     port        default $PORT, else 9125
//     count       datagrams to send; 0 (the default) sends until Ctrl-C
//     intervalMs  pause between datagrams, default 200
// Exit code 0 when every datagram got its reply, 1 otherwise.
import dgram from 'node:dgram';

const port = Number(process.argv[2] ?? process.env.PORT ?? 9125);
const count = Number(process.argv[3] ?? 0);
const intervalMs = Number(process.argv[4] ?? 200);
/** How long to wait for the last replies after the last datagram. */
const GRACE_MS = 1000;

const sentAt = new Map(); // seq -> time sent, until its reply arrives
const replied = new Set();
const generations = [];
let sent = 0;
let duplicates = 0;
let finishing = false;

const socket = dgram.createSocket('udp4');
socket.on('message', (msg) => {
  const m = /^seq (\d+) from generation (\d+)$/.exec(msg.toString());
  if (!m) {
    console.log(`client: unexpected reply ${JSON.stringify(msg.toString())}`);
    return;
  }
  const seq = Number(m[1]);
  const generation = Number(m[2]);
  if (replied.has(seq)) {
    duplicates++;
    return;
  }
  replied.add(seq);
  const ms = performance.now() - sentAt.get(seq);
  sentAt.delete(seq);
  if (generations.at(-1) !== generation) generations.push(generation);
  console.log(`client: seq ${seq} answered by generation ${generation} in ${ms.toFixed(1)} ms`);
});
socket.on('error', (err) => {
  // e.g. ECONNREFUSED from an ICMP port-unreachable when nothing is bound: the datagram is lost, keep going.
  console.log(`client: ${err.code ?? err.message}`);
});

function sendNext() {
  if (finishing) return;
  const seq = sent++;
  sentAt.set(seq, performance.now());
  socket.send(`seq ${seq}`, port, '127.0.0.1');
  if (count && sent >= count) finish();
  else timer = setTimeout(sendNext, intervalMs);
}

function finish() {
  if (finishing) return;
  finishing = true;
  clearTimeout(timer);
  // Replies still on their way get a moment to arrive.
  setTimeout(() => {
    const lost = [...sentAt.keys()];
    console.log(
      `client: sent ${sent}, replies ${replied.size}, lost ` +
        `${lost.length}${lost.length ? ` (seq ${lost.slice(0, 20).join(', ')}${lost.length > 20 ? ', …' : ''})` : ''}, duplicates ${duplicates}; generations ${generations.join(' -> ') || 'none'}`,
    );
    socket.close();
    process.exitCode = lost.length ? 1 : 0;
  }, GRACE_MS);
}

process.on('SIGINT', finish);
process.on('SIGTERM', finish);

let timer;
socket.bind(0, '127.0.0.1', () => {
  console.log(
    `client: sending to udp 127.0.0.1:${port} every ${intervalMs} ` +
      `ms${count ? `, ${count} datagrams` : ' until Ctrl-C'}`,
  );
  sendNext();
});
