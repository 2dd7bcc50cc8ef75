// Server-Sent Events across upgrades: the moment a new generation is ready, baton ends each stream of the
// old one after a `retry: 300` line; EventSource clients reconnect ~300 ms later — to the new generation —
// with Last-Event-ID, and the app resumes right after that event. No event is lost.
//   npx baton run -- node examples/sse/server.js      then: npx baton reload
//   node examples/sse/client.js                       counts events and checks that none is missing
import http from 'node:http';
import { Upgrader } from 'baton-reload';

const upgrader = await Upgrader.start(); // endEventStreams: true is the default

// The resume recipe: every event has an id, and any generation can replay the events after a given id.
// Here the event log is a clock (event n is due at T0 + n * 100 ms); in a real app it is a store all
// generations share — a Redis stream, a database table, a file.
const T0 = Date.parse('2026-01-01T00:00:00Z');
const due = () => Math.floor((Date.now() - T0) / 100);

const server = http.createServer((req, res) => {
  if (req.url !== '/events') {
    res.end(`generation ${upgrader.generation}\n`);
    return;
  }
  const last = Number(req.headers['last-event-id']);
  let next = Number.isInteger(last) ? last + 1 : due(); // resume after the last event the client got
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
  const send = () => {
    for (const now = due(); next <= now; next++)
      res.write(`id: ${next}\ndata: generation ${upgrader.generation} event ${next}\n\n`);
  };
  send();
  const timer = setInterval(send, 100);
  res.on('close', () => clearInterval(timer));
});

await upgrader.listen(server, 'web', { port: Number(process.env.PORT ?? 8082), host: '127.0.0.1' });
await upgrader.ready();
console.log(`generation ${upgrader.generation} serving SSE on http://127.0.0.1:${server.address().port}/events`);
