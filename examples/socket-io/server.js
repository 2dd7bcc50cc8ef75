// Socket.IO across upgrades: the moment a new generation is ready, the old one closes its engine.io
// connections (clients reconnect by themselves, to the new generation) and hands its connection state
// recovery data over, so each client gets its session back — id, rooms, socket.data — with the packets it
// missed. `socket.recovered` is true on both sides.
//   npx baton run -- node examples/socket-io/server.js   then: npx baton reload
//   node examples/socket-io/client.js                    counts ticks and checks that none is missing
import http from 'node:http';
import { Server } from 'socket.io';
import { Upgrader } from 'baton-reload';

const upgrader = await Upgrader.start();
const server = http.createServer((_req, res) => res.end(`generation ${upgrader.generation}\n`));
const io = new Server(server, {
  // Without it clients still reconnect at once, but as new sockets: rooms and missed packets are gone.
  connectionStateRecovery: { maxDisconnectionDuration: 2 * 60_000 },
});
upgrader.socketIo(io);

io.on('connection', (socket) => {
  if (!socket.recovered) socket.join('ticks'); // a recovered socket is already in its rooms
});

// A broadcast every 100 ms, numbered on a clock all generations share (as a real app's events come from
// one source). The old generation stops when it is replaced.
const T0 = Date.parse('2026-01-01T00:00:00Z');
const due = () => Math.floor((Date.now() - T0) / 100);
let next = due();
const ticker = setInterval(() => {
  for (const now = due(); next <= now; next++) io.to('ticks').emit('tick', upgrader.generation, next);
}, 100);
upgrader.on('drain', () => clearInterval(ticker));

await upgrader.listen(server, 'web', { port: Number(process.env.PORT ?? 8083), host: '127.0.0.1' });
await upgrader.ready();
console.log(`generation ${upgrader.generation} serving Socket.IO on http://127.0.0.1:${server.address().port}`);
