// Opens N WebSockets and keeps sending numbered messages; checks that every echo comes back once, in
// order, with the per-connection counter carried across generations. Ctrl-C (or the duration) ends it.
//   node examples/websocket/client.js [port=8081] [clients=100] [seconds=10]
import WebSocket from 'ws';

const port = Number(process.argv[2] ?? 8081);
const clients = Number(process.argv[3] ?? 100);
const seconds = Number(process.argv[4] ?? 10);
let sent = 0,
  received = 0,
  errors = 0,
  disconnects = 0;
const generations = new Set();
const sockets = [];

for (let i = 0; i < clients; i++) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/client-${i}`);
  let next = 0;
  let expected = 0;
  ws.on('open', () => {
    const tick = () => {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(String(next++));
      sent++;
      ws.timer = setTimeout(tick, 20);
    };
    tick();
  });
  ws.on('message', (data) => {
    const [gen, echoed, n] = String(data).split(' ').map(Number);
    generations.add(gen);
    if (n !== expected || echoed !== expected + 1) {
      errors++;
      console.error(`client ${i}: expected #${expected} (count ${expected + 1}), got #${n} (count ${echoed})`);
    }
    expected = n + 1;
    received++;
  });
  ws.on('close', (code) => {
    clearTimeout(ws.timer);
    if (!ws.ending) {
      disconnects++;
      console.error(`client ${i}: closed with ${code}`);
    }
  });
  ws.on('error', (err) => console.error(`client ${i}: ${err.message}`));
  sockets.push(ws);
}

const finish = () => {
  for (const ws of sockets) {
    ws.ending = true;
    clearTimeout(ws.timer);
  }
  setTimeout(() => {
    console.log(
      `sent ${sent}, echoed ${received}, out of order ${errors}, disconnects ${disconnects}, generations ` +
        `${[...generations].join(' -> ')}`,
    );
    for (const ws of sockets) ws.close();
    process.exitCode = errors || disconnects || received !== sent ? 1 : 0;
  }, 500);
};
setTimeout(finish, seconds * 1000);
process.on('SIGINT', finish);
