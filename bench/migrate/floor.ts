/**
 * The floor under a migration's cost in the new generation: only build the objects a moved connection needs —
 * `new net.Socket({ fd })`, and for a WebSocket a `ws` WebSocket on it (`setSocket()`, as baton's
 * continueWebSocket does) — on N fresh fds of open TCP connections, in one process, in slices of 253 with a
 * turn of the event loop between them (as batches arrive). No baton channel, no second process, no state.
 *
 *   npm run build && node dist/bench/migrate/floor.js [N=5000] [reps=3]
 *
 * Prints wall and CPU time (user + system, all threads) per connection, for bare sockets and for WebSockets.
 * The process holds 3 fds per connection (client, accepted, the fresh copy), so N is capped by `ulimit -n`.
 */
import fs from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { dupFd } from '../../src/fd/index.js';

const BATCH = 253;
const limit = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
const maxN = limit ? Math.floor((Number(limit[1]) - 200) / 3) : 5000;
const N = Math.min(Number(process.argv[2] ?? 5000), maxN);
const REPS = Number(process.argv[3] ?? 3);
const turn = () => new Promise<void>((r) => setImmediate(r));

const accepted: net.Socket[] = [];
const server = net.createServer((s) => {
  s.pause();
  accepted.push(s);
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const port = (server.address() as net.AddressInfo).port;
const clients: net.Socket[] = [];
for (let i = 0; i < N; i += 200) {
  await Promise.all(
    Array.from(
      { length: Math.min(200, N - i) },
      () => new Promise<void>((r) => clients.push(net.connect(port, '127.0.0.1', () => r()))),
    ),
  );
}
while (accepted.length < N) await new Promise((r) => setTimeout(r, 10));

async function run(mode: 'socket' | 'ws'): Promise<{ wall: number; cpu: number }> {
  // Fresh fds for the same connections, as a batch from the old generation would bring.
  const fds = accepted.map((s) => dupFd(s));
  await turn();
  const made: Array<net.Socket | WebSocket> = [];
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < N; i += BATCH) {
    for (const fd of fds.slice(i, i + BATCH)) {
      const socket = new net.Socket({ fd, readable: true, writable: true });
      if (mode === 'ws') {
        const ws = new (
          WebSocket as unknown as new (
            a: null,
            b: undefined,
            o: object,
          ) => WebSocket & { setSocket(s: net.Socket, h: Buffer, o: object): void }
        )(null, undefined, {});
        ws.setSocket(socket, Buffer.alloc(0), {
          maxPayload: 100 * 1024 * 1024,
          allowSynchronousEvents: true,
          skipUTF8Validation: false,
        });
        ws.on('message', () => {});
        made.push(ws);
      } else made.push(socket);
    }
    await turn();
  }
  await turn();
  const u = process.cpuUsage(c0);
  const result = { wall: performance.now() - t0, cpu: (u.user + u.system) / 1000 };
  // Drop the copies (the connections stay open: the accepted sockets still hold them).
  for (const m of made) (m instanceof net.Socket ? m : (m as unknown as { _socket: net.Socket })._socket).destroy();
  await new Promise((r) => setTimeout(r, 100));
  return result;
}

console.log(`floor: ${N} connections, ${REPS} runs each, in slices of ${BATCH}`);
for (const mode of ['socket', 'ws'] as const) {
  for (let i = 0; i < REPS; i++) {
    const { wall, cpu } = await run(mode);
    console.log(
      `  ${mode === 'ws' ? 'net.Socket + ws WebSocket' : 'net.Socket'}: wall ${wall.toFixed(1)} ms ` +
        `(${((wall * 1000) / N).toFixed(1)} µs each), CPU ${cpu.toFixed(1)} ms (${((cpu * 1000) / N).toFixed(1)} µs ` +
        `each)`,
    );
  }
}
for (const c of clients) c.destroy();
server.close();
process.exit(0);
