// An HTTP/2 server that baton reloads without refusing a stream. Sessions do not move between generations:
// each gets a graceful two-phase GOAWAY (first "any stream you already opened is served", then, a PING round
// trip later, the real last stream id); streams in flight finish and the client opens its next session —
// which reaches the new generation. The same over TLS (docs/migration.md).
//   npx baton run -- node examples/http2/server.js                            # h2c (cleartext, prior knowledge)
//   TLS_KEY=key.pem TLS_CERT=cert.pem npx baton run -- node examples/http2/server.js   # h2 over TLS
import fs from 'node:fs';
import http2 from 'node:http2';
import { Upgrader } from 'baton-reload';

const upgrader = await Upgrader.start();
const tls = process.env.TLS_KEY && process.env.TLS_CERT;
const server = tls
  ? http2.createSecureServer({ key: fs.readFileSync(process.env.TLS_KEY), cert: fs.readFileSync(process.env.TLS_CERT) })
  : http2.createServer();
server.on('stream', (stream) => {
  stream.on('error', () => {}); // a client that resets its stream is no reason to crash
  stream.respond({ ':status': 200, 'content-type': 'text/plain' });
  stream.end(`hello from generation ${upgrader.generation} (pid ${process.pid})\n`);
});
const port = Number(process.env.PORT ?? 8080);
const host = process.env.HOST ?? '127.0.0.1';
await upgrader.listen(server, 'web', { port, host });
await upgrader.ready();
const url = `${tls ? 'https' : 'http'}://${host}:${server.address().port}`;
console.log(`generation ${upgrader.generation} serving on ${url} (HTTP/2)`);
