// socket.io-client clients that count ticks across reloads: missing ticks, reconnects, recovered sessions.
//   node examples/socket-io/client.js [port] [clients] [seconds]
// Prints "all N clients on generation G" whenever every client's latest tick comes from a generation none
// were all on before, and the summary after `seconds` or at Ctrl-C (SIGINT).
import { io } from 'socket.io-client';

const [port = '8083', n = '10', seconds = '20'] = process.argv.slice(2);
let ticks = 0;
let missing = 0;
let reconnects = 0;
let recovered = 0;
const generations = new Set();
/** The generation of each client's latest tick. */
const latest = Array.from({ length: Number(n) }, () => null);
let allOn = null;
const sockets = latest.map((_, i) => {
  const socket = io(`http://127.0.0.1:${port}`);
  const seen = new Set();
  let first = null;
  socket.on('tick', (gen, tick) => {
    first ??= tick;
    if (!seen.has(tick)) ticks++;
    seen.add(tick);
    generations.add(gen);
    latest[i] = gen;
    if (gen !== allOn && latest.every((g) => g === gen)) {
      allOn = gen;
      console.log(`all ${n} clients on generation ${gen}`);
    }
  });
  let connected = false;
  socket.on('connect', () => {
    if (connected) {
      reconnects++;
      if (socket.recovered) recovered++; // known once the server's CONNECT packet is here, not before
    }
    connected = true;
  });
  socket.count = () => {
    // Both generations broadcast for a moment during a reload: a tick may come twice, counted once.
    const last = Math.max(...seen);
    for (let t = first; t <= last; t++) if (!seen.has(t)) missing++;
  };
  return socket;
});
const end = () => {
  clearTimeout(timer);
  for (const s of sockets) {
    s.count();
    s.close();
  }
  console.log(
    `ticks ${ticks}, missing ${missing}, reconnects ${reconnects} (recovered ${recovered}), generations ` +
      `${[...generations].join(' -> ')}`,
  );
};
const timer = setTimeout(end, Number(seconds) * 1000);
process.once('SIGINT', end);
