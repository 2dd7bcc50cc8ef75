// A UDP echo server that baton can upgrade without losing a datagram. Each reply is the datagram followed
// by " from generation N", so a client can see which generation answered.
//   node examples/udp-echo/server.js                         # plain: no baton, runs as usual
//   npx baton run -- node examples/udp-echo/server.js        # supervised: `npx baton reload` upgrades it
// (In this repository, `node bin/baton.js` instead of `npx baton`.) PORT=… to change the port.
import { Upgrader } from 'baton-reload';

const upgrader = await Upgrader.start();
const port = Number(process.env.PORT ?? 9125);

// Inherited from the previous generation (or the supervisor's copy) when there is one, else bound now.
// Both generations hold the same kernel socket for a moment: each datagram is read by exactly one of them,
// and what is still queued when the old one closes its copy is read by the new one.
const socket = await upgrader.bindDgram('echo', { type: 'udp4', port, address: '127.0.0.1' });
socket.on('message', (msg, rinfo) => {
  socket.send(Buffer.concat([msg, Buffer.from(` from generation ${upgrader.generation}`)]), rinfo.port, rinfo.address);
});

upgrader.on('drain', () => {
  // Replaced by a newer generation (or stopping): baton closes this process's copy of the socket right after
  // this event. The socket itself stays open in the next generation and in the supervisor.
  console.log(`generation ${upgrader.generation} draining`);
});

await upgrader.ready();
console.log(`generation ${upgrader.generation} (pid ${process.pid}) echoing on udp 127.0.0.1:${socket.address().port}`);
