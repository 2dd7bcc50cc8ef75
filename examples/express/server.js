// An Express app under baton. `app.listen(port)` cannot be used: it creates a server and binds the port
// itself, while under baton the port must come from the previous generation (or be bound through the
// Upgrader, so that the next generation can inherit it). An Express app is just a request handler, so give
// it to a server of your own and let the Upgrader listen with that server.
//   node examples/express/server.js                          # plain: no baton, runs as usual
//   npx baton run -- node examples/express/server.js         # supervised: `npx baton reload` upgrades it
// (In this repository, `node bin/baton.js` instead of `npx baton`.)
import http from 'node:http';
import express from 'express';
import { Upgrader } from 'baton-reload';

const upgrader = await Upgrader.start();

const app = express();
app.get('/', (_req, res) => {
  res.json({ message: 'hello from express', generation: upgrader.generation, pid: process.pid });
});
// A slow request, to watch one finish on the old generation while a reload happens: /slow?ms=3000
app.get('/slow', async (req, res) => {
  const ms = Math.min(Number(req.query.ms) || 2000, 20_000);
  await new Promise((resolve) => setTimeout(resolve, ms));
  res.json({ message: `done after ${ms} ms`, generation: upgrader.generation, pid: process.pid });
});

const server = http.createServer(app); // not app.listen()
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';
await upgrader.listen(server, 'web', { port, host });

upgrader.on('drain', () => {
  // Replaced by a newer generation (or stopping): stop background work (timers, queue consumers) here.
  // Requests in flight still finish here. Each keep-alive connection then moves, open, to the new
  // generation at its first idle moment (its client never reconnects); one that cannot move gets
  // `Connection: close` on its next response.
});

await upgrader.ready();
console.log(
  `generation ${upgrader.generation} (pid ${process.pid}) serving express on http://${host}:${server.address().port}`,
);
