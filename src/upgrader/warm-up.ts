/**
 * Warm up node:http before a new generation takes over live HTTP traffic.
 *
 * A fresh Node process runs every function for the first time — V8 compiles each one lazily on its first
 * call — and at the handover every keep-alive connection moves at once: each client's next request then
 * waits for the new generation to run net.Socket, the HTTP parser and ServerResponse cold, one request
 * after another. Measured with 50 connections (npm run bench:upgrade): p99 during upgrades ~14.5 ms cold,
 * ~9.7 ms after 100 warm-up requests, for ~45 ms more per upgrade, spent while the old generation still
 * serves.
 *
 * The warm-up runs a private server with its own trivial handler on 127.0.0.1 (never the app's handler,
 * which may have side effects) and one keep-alive client connection that sends `requests` requests one
 * after another. Best effort: any failure or the time bound just ends it.
 */
import http from 'node:http';
import net from 'node:net';

const BODY = 'warm';
const REQUEST = 'GET /baton-warm-up HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n';
/** A complete response ends with the body: the handler's body is fixed, and nothing else can follow. */
const RESPONSE_END = `\r\n\r\n${BODY}`;

export async function warmUpHttp(requests: number, timeoutMs = 2000): Promise<number> {
  if (requests <= 0) return 0;
  const server = http.createServer((_req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(BODY);
  });
  let socket: net.Socket | null = null;
  let timer: NodeJS.Timeout | undefined;
  let answered = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as net.AddressInfo;
    await new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
      let buffered = '';
      socket = net.connect(port, '127.0.0.1', () => socket!.write(REQUEST));
      socket.setEncoding('latin1');
      socket.on('data', (d: string) => {
        buffered += d;
        // One request at a time: a response is complete when it ends with the body.
        if (!buffered.endsWith(RESPONSE_END)) return;
        buffered = '';
        if (++answered >= requests) resolve();
        else socket!.write(REQUEST);
      });
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
    });
  } catch {
    // No loopback, no port: the handover is just colder.
  } finally {
    clearTimeout(timer);
    (socket as net.Socket | null)?.destroy();
    server.close();
    server.closeAllConnections();
  }
  return answered;
}
