// An https server that baton reloads without failing a request. TLS connections do not move between
// generations (their session keys live in the process that made them): each is handed back cleanly — its
// next response says `Connection: close` — and the client's agent opens its next connection to the new one.
//   TLS_KEY=key.pem TLS_CERT=cert.pem npx baton run -- node examples/https/server.js
// Make a self-signed pair for a try-out (see README.md):
//   openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 30 -keyout key.pem -out cert.pem
import fs from 'node:fs';
import https from 'node:https';
import { Upgrader } from 'baton-reload';

const upgrader = await Upgrader.start();
const server = https.createServer(
  { key: fs.readFileSync(process.env.TLS_KEY ?? 'key.pem'), cert: fs.readFileSync(process.env.TLS_CERT ?? 'cert.pem') },
  (_req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`hello from generation ${upgrader.generation} (pid ${process.pid})\n`);
  },
);
const port = Number(process.env.PORT ?? 8443);
const host = process.env.HOST ?? '127.0.0.1';
await upgrader.listen(server, 'web', { port, host });
await upgrader.ready();
console.log(`generation ${upgrader.generation} serving on https://${host}:${server.address().port}`);
