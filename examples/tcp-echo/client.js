// Opens N connections to the tcp-echo server and keeps sending numbered lines; checks that every line is
// answered once, in order, by the same connection (its id and count move with it across generations).
// Ctrl-C, or the duration, ends it; the exit code is 0 when nothing went wrong.
//   node examples/tcp-echo/client.js [port=7007] [clients=100] [seconds=10]     (SOCKET_PATH=… for a Unix socket)
import net from 'node:net';

const port = Number(process.argv[2] ?? process.env.PORT ?? 7007);
const clients = Number(process.argv[3] ?? 100);
const seconds = Number(process.argv[4] ?? 10);
const target = process.env.SOCKET_PATH
  ? { path: process.env.SOCKET_PATH }
  : { host: process.env.HOST ?? '127.0.0.1', port };
let sent = 0,
  answered = 0,
  wrong = 0,
  disconnects = 0;
const generations = new Set();
const conns = [];

for (let i = 0; i < clients; i++) {
  const socket = net.connect(target);
  const conn = { socket, next: 0, expected: 0, id: null, ending: false, timer: null, buf: '' };
  conns.push(conn);
  socket.setEncoding('utf8');
  socket.on('connect', () => {
    const tick = () => {
      // Write each line in two pieces, so the server often holds half a line when a reload comes.
      const line = `seq ${conn.next++}\n`;
      socket.write(line.slice(0, 3));
      socket.write(line.slice(3));
      sent++;
      conn.timer = setTimeout(tick, 20);
    };
    tick();
  });
  socket.on('data', (d) => {
    conn.buf += d;
    let nl;
    while ((nl = conn.buf.indexOf('\n')) !== -1) {
      const line = conn.buf.slice(0, nl);
      conn.buf = conn.buf.slice(nl + 1);
      const [gen, id, count, text] = line.split(':');
      generations.add(Number(gen));
      conn.id ??= id;
      if (id !== conn.id || Number(count) !== conn.expected + 1 || text !== `seq ${conn.expected}`) {
        wrong++;
        console.error(`client ${i}: expected "${conn.id}:${conn.expected + 1}:seq ${conn.expected}", got "${line}"`);
      }
      conn.expected++;
      answered++;
    }
  });
  socket.on('error', (err) => console.error(`client ${i}: ${err.message}`));
  socket.on('close', () => {
    clearTimeout(conn.timer);
    if (!conn.ending) {
      disconnects++;
      console.error(`client ${i}: connection closed by the server`);
    }
  });
}

const progress = setInterval(
  () => console.log(`sent ${sent}, answered ${answered}, generations ${[...generations].join(' -> ')}`),
  1000,
);

async function finish() {
  clearInterval(progress);
  for (const c of conns) clearTimeout(c.timer);
  // Let the last answers arrive, then close.
  await new Promise((r) => setTimeout(r, 500));
  for (const c of conns) {
    c.ending = true;
    c.socket.end();
  }
  const lost = sent - answered;
  console.log(
    `sent ${sent}, answered ${answered}, lost ${lost}, wrong ${wrong}, disconnects ${disconnects}, generations ` +
      `${[...generations].sort((a, b) => a - b).join(' -> ')}`,
  );
  process.exitCode = lost || wrong || disconnects ? 1 : 0;
}
setTimeout(finish, seconds * 1000);
process.once('SIGINT', finish);
