// Raise SO_RCVBUF on a UDP and a TCP socket through their borrowed fds, then check that nothing else
// changed: no extra fd, still non-blocking, and close() still completes while a read is pending.
//
// That is the trap of Go's conn.File(): it dups the fd and switches the socket to blocking mode, after
// which Close() can hang on a pending read.
//
//   node examples/buffer-tuning/index.js          # against a TCP server of its own that never writes
//   node examples/buffer-tuning/index.js 9000     # against one at 127.0.0.1:9000
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { fdOf, dupFd, withFd, getSockOpt, setSockOpt, closeFds } from 'baton-reload';

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

/** The open fds of this process (leaving out the one readdir used to list them). */
function openFds() {
  return fs
    .readdirSync('/proc/self/fd')
    .map(Number)
    .filter((fd) => fs.existsSync(`/proc/self/fd/${fd}`));
}
/** The flags the kernel reports for an fd (octal in /proc/self/fdinfo). */
function fdFlags(fd) {
  return parseInt(/^flags:\s+([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))[1], 8);
}
function added(before, after) {
  return after.filter((fd) => !before.includes(fd));
}

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
}

// A TCP server that accepts and never writes: given on the command line, or our own.
let port = Number(process.argv[2]);
let ownServer;
if (!port) {
  ownServer = net.createServer(() => {});
  await new Promise((resolve) => ownServer.listen(0, '127.0.0.1', resolve));
  port = ownServer.address().port;
}

// Three sockets, each with a read pending: a 'message' or 'data' listener and nothing to read.
const udp = dgram.createSocket('udp4');
udp.on('message', () => console.log('udp: unexpected datagram'));
await new Promise((resolve) => udp.bind(0, '127.0.0.1', resolve));
const tcpA = net.connect(port, '127.0.0.1');
const tcpB = net.connect(port, '127.0.0.1');
await Promise.all([once(tcpA, 'connect'), once(tcpB, 'connect')]);
tcpA.on('data', () => console.log('tcp A: unexpected data'));
tcpB.on('data', () => console.log('tcp B: unexpected data'));

for (const [name, socket] of [
  ['udp', udp],
  ['tcp A', tcpA],
  ['tcp B', tcpB],
]) {
  const before = openFds();
  const fd = fdOf(socket);
  check(added(before, openFds()).length === 0, `${name}: fdOf() = ${fd} opened no fd`);

  const old = getSockOpt(socket, 'SO_RCVBUF');
  setSockOpt(socket, 'SO_RCVBUF', 1 << 20); // Linux doubles the value (capped by net.core.rmem_max)
  const now = getSockOpt(socket, 'SO_RCVBUF');
  check(now > old, `${name}: SO_RCVBUF ${old} -> ${now}`);

  const flags = withFd(socket, (fd) => fdFlags(fd));
  check((flags & O_NONBLOCK) !== 0, `${name}: still non-blocking (fdinfo flags ${flags.toString(8)})`);

  const beforeDup = openFds();
  const dup = dupFd(socket);
  const opened = added(beforeDup, openFds());
  check(opened.length === 1 && opened[0] === dup, `${name}: dupFd() opened exactly one fd (${opened.join(', ')})`);
  check((fdFlags(dup) & O_CLOEXEC) !== 0, `${name}: the dup ${dup} is close-on-exec`);
  closeFds([dup]);
  check((withFd(socket, (fd) => fdFlags(fd)) & O_NONBLOCK) !== 0, `${name}: still non-blocking after dup and close`);
}

// Close each socket while its read is pending: 'close' must come promptly (a blocked read would hang).
async function closes(name, socket, close) {
  const start = Date.now();
  const closed = once(socket, 'close').then(() => true);
  const timeout = new Promise((resolve) => setTimeout(resolve, 2000, false).unref());
  close();
  const ok = await Promise.race([closed, timeout]);
  check(ok, `${name}: ${ok ? `'close' after ${Date.now() - start} ms` : "no 'close' within 2000 ms"}`);
}
await closes('udp', udp, () => udp.close());
await closes('tcp A', tcpA, () => tcpA.destroy());
await closes('tcp B', tcpB, () => tcpB.end());
ownServer?.close();

console.log(failures ? `${failures} check(s) failed` : 'all checks passed');
process.exitCode = failures ? 1 : 0;
