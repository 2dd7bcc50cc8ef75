/**
 * Seed scenario 3, buffer tuning: read and raise SO_RCVBUF of a UDP and a TCP socket through the borrowed
 * fd (withFd / getSockOpt / setSockOpt), and check that nothing else changed — the trap of Go's
 * conn.File(), which dups the fd and switches the socket to blocking mode:
 *   - fdOf() opens no fd; dupFd() opens exactly one, close-on-exec;
 *   - the socket is still non-blocking (O_NONBLOCK in /proc/self/fdinfo/<fd>);
 *   - close() completes promptly while a read is pending (the TCP peer, another process, never writes).
 * First the real example (examples/buffer-tuning) as a process of its own, then the same checks made here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { closeFds, dupFd, fdOf, getSockOpt, probe, setSockOpt, withFd } from '../src/index.js';
import {
  FIXTURES,
  O_CLOEXEC,
  O_NONBLOCK,
  ROOT,
  fdinfoFlags,
  spawnNode,
  type tmpDir,
  waitFor,
  within,
  type Spawned,
} from './helpers.js';

const EXAMPLE = path.join(ROOT, 'examples/buffer-tuning/index.js');
/** A hang detector, not a speed test. */
const CLOSE_LIMIT_MS = 2000;

/** The fds open in this process, without the one readdir itself used (closed by the time we look). */
function liveFds(): number[] {
  return fs
    .readdirSync('/proc/self/fd')
    .map(Number)
    .filter((fd) => Number.isInteger(fd) && fs.existsSync(`/proc/self/fd/${fd}`));
}

function added(before: number[], after: number[]): number[] {
  return after.filter((fd) => !before.includes(fd));
}

async function silentServer(t: Parameters<typeof tmpDir>[0]): Promise<{ server: Spawned; port: number }> {
  const server = spawnNode(t, path.join(FIXTURES, 'silent-tcp-server.js'));
  const port = Number((await server.line(/listening (\d+)/))[1]);
  return { server, port };
}

test('seed-buffer-tuning: the example passes its checks against a server in another process', async (t) => {
  const { server, port } = await silentServer(t);
  const ex = spawnNode(t, EXAMPLE, [String(port)]);
  const code = await within(ex.exited, 20_000, 'the example exits');
  const out = ex.stdout();
  assert.equal(code, 0, `exit ${code}\n${out}\n${ex.stderr()}`);
  assert.doesNotMatch(out, /FAIL/);
  assert.match(out, /all checks passed\n$/);
  // Every check ran: 6 per socket, 3 sockets, then 3 closes.
  assert.equal(out.match(/^ok {3}/gm)?.length, 21, out);
  const bufs = [...out.matchAll(/^ok {3}(udp|tcp A|tcp B): SO_RCVBUF (\d+) -> (\d+)$/gm)];
  assert.deepEqual(
    bufs.map((m) => m[1]),
    ['udp', 'tcp A', 'tcp B'],
  );
  for (const m of bufs) assert.ok(Number(m[3]) > Number(m[2]), m[0]);
  for (const name of ['udp', 'tcp A', 'tcp B']) {
    const m = new RegExp(`^ok {3}${name}: 'close' after (\\d+) ms$`, 'm').exec(out);
    assert.ok(m && Number(m[1]) < CLOSE_LIMIT_MS, `${name} closed promptly:\n${out}`);
  }
  // The server process saw both TCP connections arrive and go (destroy() and end() reached the peer).
  await server.line(/accepted 2\n/);
  await server.line(/closed 2\n/);
});

test('seed-buffer-tuning: fdOf/withFd/setSockOpt change nothing but the option; close() does not hang', async (t) => {
  const { server, port } = await silentServer(t);

  // Control: the fdinfo check tells a blocking fd from a non-blocking one.
  const plain = fs.openSync(EXAMPLE, 'r');
  t.after(() => fs.closeSync(plain));
  assert.equal(fdinfoFlags(plain) & O_NONBLOCK, 0);

  const udp = dgram.createSocket('udp4');
  udp.on('message', () => assert.fail('no datagram was sent'));
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const tcp = net.connect(port, '127.0.0.1');
  await once(tcp, 'connect');
  tcp.on('data', () => assert.fail('the server never writes'));
  const tcp2 = net.connect(port, '127.0.0.1');
  await once(tcp2, 'connect');
  tcp2.on('data', () => assert.fail('the server never writes'));
  t.after(() => {
    tcp.destroy();
    tcp2.destroy();
    try {
      udp.close();
    } catch {
      // already closed
    }
  });

  const sockets: Array<[string, dgram.Socket | net.Socket, number]> = [
    ['udp', udp, 4 << 20],
    ['tcp', tcp, 1 << 20],
    ['tcp2', tcp2, 256 << 10],
  ];
  for (const [name, socket, size] of sockets) {
    const before = liveFds();
    const fd = fdOf(socket);
    assert.deepEqual(liveFds(), before, `${name}: fdOf() opened an fd`);
    assert.ok(before.includes(fd), `${name}: fdOf() returned an fd of this process`);
    assert.equal(
      withFd(socket, (f) => f),
      fd,
    );
    assert.notEqual(fdinfoFlags(fd) & O_NONBLOCK, 0, `${name}: non-blocking to begin with`);

    const old = getSockOpt(socket, 'SO_RCVBUF');
    setSockOpt(socket, 'SO_RCVBUF', size);
    const now = getSockOpt(socket, 'SO_RCVBUF');
    assert.ok(now > old, `${name}: SO_RCVBUF ${old} -> ${now}`);
    // Linux stores twice the value asked for (capped by net.core.rmem_max).
    const rmemMax = Number(fs.readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
    assert.equal(now, 2 * Math.min(size, rmemMax), `${name}: SO_RCVBUF`);
    assert.deepEqual(liveFds(), before, `${name}: get/setSockOpt opened an fd`);

    withFd(socket, (f) => assert.notEqual(fdinfoFlags(f) & O_NONBLOCK, 0, `${name}: still non-blocking`));
    assert.equal(probe(socket).nonblocking, true);

    const beforeDup = liveFds();
    const dup = dupFd(socket);
    assert.deepEqual(added(beforeDup, liveFds()), [dup], `${name}: dupFd() opens exactly one fd`);
    assert.notEqual(fdinfoFlags(dup) & O_CLOEXEC, 0, `${name}: the dup is close-on-exec`);
    assert.notEqual(fdinfoFlags(dup) & O_NONBLOCK, 0, `${name}: the dup shares the non-blocking description`);
    closeFds([dup]);
    assert.deepEqual(liveFds(), beforeDup, `${name}: closeFds() closed the dup`);
    assert.notEqual(fdinfoFlags(fd) & O_NONBLOCK, 0, `${name}: still non-blocking after the dup`);
  }

  // Close while a read is pending: each must reach 'close' (a blocking socket could hang here).
  const udpFd = fdOf(udp);
  const tcpFd = fdOf(tcp);
  const tcp2Fd = fdOf(tcp2);
  const closes = [once(udp, 'close'), once(tcp, 'close'), once(tcp2, 'close')];
  udp.close();
  tcp.destroy();
  tcp2.end();
  await within(closes[0]!, CLOSE_LIMIT_MS, 'udp.close() while receiving');
  await within(closes[1]!, CLOSE_LIMIT_MS, 'tcp.destroy() while a read is pending');
  await within(closes[2]!, CLOSE_LIMIT_MS, 'tcp.end() while a read is pending');
  // The fds are gone (or reused by something that is not our socket).
  await waitFor(
    () => [udpFd, tcpFd, tcp2Fd].every((fd) => !liveFds().includes(fd)),
    CLOSE_LIMIT_MS,
    'the sockets fds to close',
  );
  await server.line(/closed 2\n/);
});
