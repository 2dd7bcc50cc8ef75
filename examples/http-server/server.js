// A plain node:http server that baton can upgrade without dropping a request.
//   node examples/http-server/server.js                      # plain: no baton, runs as usual
//   npx baton run -- node examples/http-server/server.js     # supervised: `baton reload` upgrades it
//   BATON_SOCKET=./run/app.sock node examples/http-server/server.js   # standalone: start it again to take over
import http from 'node:http';
import { Upgrader } from 'baton-reload';

const upgrader = await Upgrader.start();
const server = http.createServer((_req, res) => {
  res.setHeader('content-type', 'text/plain');
  res.end(`hello from generation ${upgrader.generation} (pid ${process.pid})\n`);
});
const port = Number(process.env.PORT ?? 8080);
const host = process.env.HOST ?? '127.0.0.1';
await upgrader.listen(server, 'web', { port, host });
upgrader.on('drain', () => {
  // Replaced by a newer generation: stop background work here. Requests in flight still finish.
});
await upgrader.ready();
console.log(`generation ${upgrader.generation} serving on http://${host}:${server.address().port}`);
