/**
 * The WebSocket app for `npm run bench:migrate`: examples/websocket/server.js (a `ws` echo server whose
 * connections move with upgrader.webSocketServer(wss, { save, restore })) with the same app logic and the
 * same answers — `<generation> <echoed count> <message>`, the count being per-connection state that moves —
 * plus the instrumentation examples/tcp-echo/server.js has, in the same line formats, so that the bench
 * reads both apps alike:
 *
 *   generation G (pid P) serving on ws://127.0.0.1:PORT
 *   generation G migrating N connections t=<epoch ms> mono=<CLOCK_MONOTONIC µs>      (old generation, 'drain')
 * generation G moved M of N connections in X ms; last sent t=<epoch ms> cpu=<ms> loop p99=… max=… ms  (old generation,
 * 'drained')
 * generation G adopted N connections first=… last=… (X ms) event-loop delay p50=… p99=… max=… ms mono=<first>-<last>
 * cpu=<ms> rss=<KiB> heap=<KiB>
 *
 * `mono` is process.hrtime in µs, the clock of `node --cpu-prof` profiles (to cut a profile to the move);
 * `cpu` the CPU time (user + system, all threads) the process used meanwhile: old generation from 'drain', new
 * generation from its ready() (connections arrive right after it) until the last one arrived (sampled up to
 * 20 ms later); `loop` the old generation's
 * event-loop delay from 'drain' to 'drained' (perf_hooks.monitorEventLoopDelay, 1 ms resolution); `rss`/`heap`
 * how much the new generation's resident set and used heap grew from its ready() until 3 s after the last
 * connection arrived (no forced garbage collection: the heap figure includes garbage not collected yet).
 * WS_MIGRATE=0: no webSocketServer(): on 'drain' the app closes every WebSocket with 1012 (Service Restart)
 * itself and the clients reconnect — the usual way, for comparison. PORT (default 0).
 */
import http from 'node:http';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { WebSocketServer, type WebSocket } from 'ws';
import { Upgrader } from '../../src/index.js';

interface ConnState {
  id: string;
  echoed: number;
}

const upgrader = await Upgrader.start();
const gen = upgrader.generation;
const MIGRATE = process.env.WS_MIGRATE !== '0';
const now = () => performance.timeOrigin + performance.now();
const mono = () => (process.hrtime.bigint() / 1000n).toString();
/** CPU time (user + system) this process used since `from`, in ms. */
const cpuMs = (from: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(from);
  return ((u.user + u.system) / 1000).toFixed(1);
};

const server = http.createServer((_req, res) => res.end(`generation ${gen}\n`));
const wss = new WebSocketServer({ server, perMessageDeflate: false });
const state = new WeakMap<WebSocket, ConnState>();

if (MIGRATE) {
  upgrader.webSocketServer(wss as unknown, {
    save: (ws) => state.get(ws as unknown as WebSocket),
    restore: (ws, saved) => state.set(ws as unknown as WebSocket, saved as ConnState),
  });
}

wss.on('connection', (ws: WebSocket, req: http.IncomingMessage & { migrated?: boolean }) => {
  if (req.migrated) adopted();
  else state.set(ws, { id: req.url ?? '/', echoed: 0 });
  ws.on('message', (data) => {
    const s = state.get(ws)!;
    s.echoed++;
    ws.send(`${gen} ${s.echoed} ${String(data)}`);
  });
  ws.on('close', (code, reason) => {
    if (code === 1012 && reason.toString() === 'baton: migrated') {
      movedOut++;
      lastMovedAt = now();
    }
  });
});

// Old generation: how the move looks from here.
let movedOut = 0;
let lastMovedAt = 0;
let drainAt = 0;
let atDrain = 0;
let cpuAtDrain = process.cpuUsage();
const oldLoop = monitorEventLoopDelay({ resolution: 1 });
const loopMs = (h: { percentile(p: number): number; max: number }) =>
  `p99=${(h.percentile(99) / 1e6).toFixed(2)} max=${(h.max / 1e6).toFixed(2)} ms`;
upgrader.on('drain', () => {
  drainAt = now();
  cpuAtDrain = process.cpuUsage();
  oldLoop.enable();
  atDrain = wss.clients.size;
  console.log(`generation ${gen} migrating ${atDrain} connections t=${drainAt.toFixed(3)} mono=${mono()}`);
  if (!MIGRATE) for (const ws of wss.clients) ws.close(1012, 'Service Restart');
});
upgrader.on('drained', () => {
  // Every move was acknowledged by the new generation (or failed) by now.
  console.log(
    `generation ${gen} moved ${movedOut} of ${atDrain} connections in ${(now() - drainAt).toFixed(1)} ms; last sent ` +
      `t=${lastMovedAt.toFixed(3)} cpu=${cpuMs(cpuAtDrain)} ms loop ${loopMs(oldLoop)}`,
  );
  oldLoop.disable();
});

// New generation: connections adopted, and how late the event loop ran meanwhile (as in tcp-echo).
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
let wave: {
  n: number;
  first: number;
  last: number;
  firstMono: string;
  lastMono: string;
  cpu: string;
  cpuDue: boolean;
  timer: NodeJS.Timeout | null;
} | null = null;
/** How often the move's CPU time is sampled at most, ms (see adopted()). */
const CPU_SAMPLE_MS = 20;
/** Since ready(): connections start arriving right after it. */
let cpuAtReady = process.cpuUsage();
let memAtReady = process.memoryUsage();
const kib = (bytes: number) => (bytes / 1024).toFixed(0);
function adopted(): void {
  const t = now();
  const m = mono();
  if (!wave) {
    wave = { n: 0, first: t, last: t, firstMono: m, lastMono: m, cpu: '', cpuDue: false, timer: null };
    loopDelay.enable();
  }
  wave.n++;
  wave.last = t;
  wave.lastMono = m;
  // At most once per CPU_SAMPLE_MS, the figure taken up to that long after the last arrival (so it may count
  // that much more): process.cpuUsage() sums every thread and cost a mean 61 µs, up to 9 ms, a call in a new
  // generation taking 10,000 connections — once per turn of the event loop, as before, was hundreds of calls in
  // the very process this measures (and once per adoption, ~5% of its time).
  if (!wave.cpuDue) {
    wave.cpuDue = true;
    const w = wave;
    setTimeout(() => {
      w.cpu = cpuMs(cpuAtReady);
      w.cpuDue = false;
    }, CPU_SAMPLE_MS);
  }
  // Quiet for 3 s: the move is over. 1 s cut a paced move of 10,000 connections in two on the loaded machine:
  // an old generation serving 10,000 clients takes up to ~0.5 s per turn of its event loop, a batch several.
  // One timer that looks again when it fires: re-arming it per connection was 3 percent of the new generation's
  // time in a profile of a move of 10,000.
  wave.timer ??= setTimeout(quiet, 3000);
}
function quiet(): void {
  const idle = now() - wave!.last;
  if (idle >= 3000) report();
  else wave!.timer = setTimeout(quiet, 3000 - idle);
}
function report(): void {
  const w = wave!;
  wave = null;
  const mem = process.memoryUsage();
  const ms = (ns: number) => (ns / 1e6).toFixed(2);
  console.log(
    `generation ${gen} adopted ${w.n} connections first=${w.first.toFixed(3)} last=${w.last.toFixed(3)} ` +
      `(${(w.last - w.first).toFixed(1)} ms) event-loop delay p50=${ms(loopDelay.percentile(50))} ` +
      `p99=${ms(loopDelay.percentile(99))} max=${ms(loopDelay.max)} ms mono=${w.firstMono}-${w.lastMono} ` +
      `cpu=${w.cpu} ms` +
      ` rss=${kib(mem.rss - memAtReady.rss)} heap=${kib(mem.heapUsed - memAtReady.heapUsed)}`,
  );
  memAtReady = mem;
  loopDelay.disable();
  loopDelay.reset();
  cpuAtReady = process.cpuUsage();
}

await upgrader.listen(server, 'web', { port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
loopDelay.enable();
await upgrader.ready();
cpuAtReady = process.cpuUsage();
memAtReady = process.memoryUsage();
console.log(
  `generation ${gen} (pid ${process.pid}) serving on ws://127.0.0.1:${(server.address() as { port: number }).port}`,
);
setTimeout(() => !wave && loopDelay.disable(), 10_000).unref();
