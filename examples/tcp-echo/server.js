// A line-based TCP echo server whose connections survive upgrades. On a reload every open connection moves,
// open, to the next generation together with its state and any partial line: the client sees no close, no
// reset, and every line it sends is answered exactly once, in order.
//   node examples/tcp-echo/server.js                         # plain: no baton, runs as usual
//   npx baton run -- node examples/tcp-echo/server.js        # supervised: `npx baton reload` upgrades it
// (In this repository, `node bin/baton.js` instead of `npx baton`.)
//
// Environment: PORT (default 7007) and HOST (127.0.0.1), or SOCKET_PATH for a Unix socket instead.
// ECHO_MIGRATE=0 closes the connections on a reload instead of moving them (clients must reconnect: the
// usual way, for comparison). MIGRATE_CHUNK / MIGRATE_PAUSE_MS spread the move out (that many connections,
// then a pause) so that it can be watched, or interrupted.
//
// The protocol: every line the client sends is answered with one line
//   <generation>:<connection id>:<n>:<reply>
// where n counts the lines answered on this connection (1, 2, 3, … — across generations) and the reply is
// the line itself, except for these commands:
//   /note TEXT   keep TEXT in the connection's state (it moves with the connection); reply "noted <bytes>"
//   /note        reply "note <TEXT>"
//   /stats       reply "connections=<open connections in this generation>"
import net from 'node:net';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Upgrader } from 'baton-reload';

const upgrader = await Upgrader.start();
const gen = upgrader.generation;
const NL = 0x0a;

/** socket -> { socket, state: { id, count, note }, partial: Buffer (a line not complete yet), moving } */
const live = new Map();
let accepted = 0;
/** Replaced by a newer generation (the 'drain' event came). */
let draining = false;

const now = () => performance.timeOrigin + performance.now();

/** Start (or continue) serving a connection. `pending`: bytes received but not processed yet. */
function serve(socket, state, pending) {
  const conn = { socket, state, partial: Buffer.alloc(0), moving: false };
  live.set(socket, conn);
  socket.on('data', (chunk) => onData(conn, chunk));
  socket.on('drain', () => {
    // Backpressure is over (see reply()). A connection being moved must stay paused: it is no longer ours.
    if (!conn.moving) socket.resume();
  });
  socket.on('error', () => {}); // a reset by the client: 'close' follows
  socket.on('close', () => live.delete(socket));
  if (pending.length) onData(conn, pending);
  return conn;
}

function onData(conn, chunk) {
  const buf = conn.partial.length ? Buffer.concat([conn.partial, chunk]) : chunk;
  let start = 0;
  for (let nl = buf.indexOf(NL); nl !== -1; nl = buf.indexOf(NL, start)) {
    answer(conn, buf.toString('utf8', start, nl));
    start = nl + 1;
  }
  conn.partial = start === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(start));
}

function answer(conn, line) {
  const { state } = conn;
  let text = line;
  if (line === '/stats') text = `connections=${live.size}`;
  else if (line === '/note') text = `note ${state.note ?? ''}`;
  else if (line.startsWith('/note ')) {
    state.note = line.slice(6);
    text = `noted ${Buffer.byteLength(state.note)}`;
  }
  state.count++;
  reply(conn, `${gen}:${state.id}:${state.count}:${text}\n`);
}

function reply(conn, text) {
  // A client that does not read makes us stop reading it, until what we wrote has left.
  if (!conn.socket.write(text)) conn.socket.pause();
}

const server = net.createServer((socket) => serve(socket, { id: `${gen}.${++accepted}`, count: 0 }, Buffer.alloc(0)));

// A connection moved here from the previous generation: the same client, its state, and the bytes the old
// generation had received but not processed (a partial line), which come before anything read from now on.
upgrader.on('migrated', (socket, state, pending) => {
  const conn = serve(socket, state, pending);
  adopted();
  // Replaced already (a quick second reload) while connections were still arriving here: pass it on.
  if (draining) void move(conn);
});

upgrader.on('drain', () => {
  // Replaced by a newer generation. baton stops accepting right after this event; the connections are ours
  // to hand over (or to close).
  draining = true;
  const conns = [...live.values()];
  console.log(`generation ${gen} migrating ${conns.length} connections t=${now().toFixed(3)}`);
  if (process.env.ECHO_MIGRATE === '0') {
    for (const conn of conns) conn.socket.end();
    return;
  }
  void moveAll(conns);
});

async function moveAll(conns) {
  const t0 = now();
  // How late this generation's own event loop runs while it hands its connections over (bench:migrate).
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const chunk = Number(process.env.MIGRATE_CHUNK) || 0;
  const pauseMs = Number(process.env.MIGRATE_PAUSE_MS) || 0;
  let moved = 0;
  const failed = {};
  const tally = (results) => {
    for (const r of results) {
      if (r === true) moved++;
      else failed[r] = (failed[r] ?? 0) + 1;
    }
  };
  if (!chunk) {
    // Paced by baton: it prepares one batch at a time, when the batch would leave at once, and calls the
    // function below for each of its connections then. Every other connection is still served here, so a
    // client pauses only while its own batch moves. Its state and partial line are taken at that moment.
    const results = await upgrader.migrateAll(
      conns.map((conn) => conn.socket),
      (socket) => {
        const conn = live.get(socket);
        conn.moving = true;
        return { state: conn.state, pending: conn.partial };
      },
    );
    tally(results.map((r, i) => (r.status === 'fulfilled' ? true : closePolitely(conns[i], r.reason))));
  }
  // MIGRATE_CHUNK / MIGRATE_PAUSE_MS (tests): that many at a time, each chunk moved before the next starts.
  for (let i = 0; chunk && i < conns.length; i += chunk) {
    tally(await Promise.all(conns.slice(i, i + chunk).map(move)));
    console.log(`generation ${gen} moved ${moved}/${conns.length}`);
    if (pauseMs && i + chunk < conns.length) await new Promise((r) => setTimeout(r, pauseMs));
  }
  const notMoved = Object.entries(failed)
    .map(([code, n]) => ` ${code}=${n}`)
    .join('');
  loop.disable();
  const ms = (ns) => (ns / 1e6).toFixed(2);
  console.log(
    `generation ${gen} moved ${moved} of ${conns.length} connections in ${(now() - t0).toFixed(1)} ` +
      `ms${notMoved && `; not moved:${notMoved}`}` +
      ` loop p99=${ms(loop.percentile(99))} max=${ms(loop.max)} ms`,
  );
}

/** Hand one connection to the new generation (true); if it cannot move, say goodbye and close it politely
 * (the reason). */
async function move(conn) {
  const { socket } = conn;
  if (socket.destroyed) return 'closed';
  conn.moving = true;
  try {
    // The state goes as JSON (at most 64 KiB); the partial line goes as `pending`. Writes still queued are
    // flushed first, and what the client sends from now on waits in the kernel for the new generation.
    await upgrader.migrate(socket, conn.state, conn.partial);
    return true;
  } catch (err) {
    return closePolitely(conn, err);
  }
}

/** A connection that could not move: say goodbye and close it politely; returns the reason. */
function closePolitely(conn, err) {
  const { socket } = conn;
  conn.moving = false;
  if (socket.destroyed) return 'closed'; // the client left meanwhile
  if (err.code !== 'ERR_BATON_NO_MIGRATION')
    console.log(`generation ${gen} could not move connection ${conn.state.id}: ${err.code} ${err.message}`);
  socket.resume(); // migrate() left it paused; read on, so the close completes
  socket.end(`${gen}:${conn.state.id}:-:bye ${err.code}\n`);
  return err.code ?? 'error';
}

// How the move looks from here: connections adopted, how late the event loop ran meanwhile, and how much
// memory they took (resident set and used heap, grown since ready() or the last report; garbage included).
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
let wave = null;
let memBefore = process.memoryUsage();
function adopted() {
  const t = now();
  if (!wave) {
    wave = { n: 0, first: t, last: t, timer: null };
    loopDelay.enable(); // (a no-op unless an earlier wave was reported already)
  }
  wave.n++;
  wave.last = t;
  // Quiet for 3 s: the move is over. 1 s cut a paced move of 10,000 connections in two on the loaded machine:
  // an old generation serving 10,000 clients takes up to ~0.5 s per turn of its event loop, a batch several.
  // One timer that looks again when it fires: re-arming it per connection was 3 percent of the new generation's
  // time in a profile of a move of 10,000.
  wave.timer ??= setTimeout(quiet, 3000);
}
function quiet() {
  const idle = now() - wave.last;
  if (idle >= 3000) report();
  else wave.timer = setTimeout(quiet, 3000 - idle);
}
function report() {
  const w = wave;
  wave = null;
  const mem = process.memoryUsage();
  const ms = (ns) => (ns / 1e6).toFixed(2);
  const kib = (bytes) => (bytes / 1024).toFixed(0);
  console.log(
    `generation ${gen} adopted ${w.n} connections first=${w.first.toFixed(3)} last=${w.last.toFixed(3)} ` +
      `(${(w.last - w.first).toFixed(1)} ms) event-loop delay p50=${ms(loopDelay.percentile(50))} ` +
      `p99=${ms(loopDelay.percentile(99))} max=${ms(loopDelay.max)} ms` +
      ` rss=${kib(mem.rss - memBefore.rss)} heap=${kib(mem.heapUsed - memBefore.heapUsed)}`,
  );
  memBefore = mem;
  loopDelay.disable();
  loopDelay.reset();
}

const socketPath = process.env.SOCKET_PATH;
const port = Number(process.env.PORT ?? 7007);
const host = process.env.HOST ?? '127.0.0.1';
await upgrader.listen(server, 'echo', socketPath ? { path: socketPath } : { port, host });
// Measure the event loop from here on: connections start moving in as soon as this generation is ready.
loopDelay.enable();
await upgrader.ready();
memBefore = process.memoryUsage();
const where = socketPath ? `unix:${socketPath}` : `tcp://${host}:${server.address().port}`;
console.log(`generation ${gen} (pid ${process.pid}) serving on ${where}`);
// Nothing moved in (the first generation, or nothing to move): stop measuring.
setTimeout(() => !wave && loopDelay.disable(), 10_000).unref();
