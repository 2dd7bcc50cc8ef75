/**
 * Helpers for the fd-layer tests (fd-of, probe, adopt, sockopt): real sockets on 127.0.0.1, ::1 and Unix
 * paths, each closed after the test even if an assertion fails, and a warm-up so that fd counts are not
 * disturbed by the one-time fds Node opens lazily (the first DNS/socket use, the first FileHandle).
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { adoptFile, dupFd, probe, type FdInfo } from '../src/index.js';
import { listenOnFd } from '../src/fd/adopt.js';
import { FIXTURES, tmpDir, within } from './helpers.js';

type Cleanup = { after(fn: () => unknown): void };

/**
 * Stop a server listening. Its fd is closed synchronously by close(); this does not wait for the 'close'
 * event, which only comes once every connection has ended (cleanup after a failed assertion would
 * otherwise deadlock on a connection that a later cleanup would have destroyed).
 */
export function closeServer(server: net.Server): Promise<void> {
  if (server.listening) server.close();
  return new Promise((resolve) => setImmediate(resolve));
}

/** Destroy a socket and wait for 'close'. */
export function destroySocket(socket: net.Socket): Promise<void> {
  if (socket.destroyed && socket.closed) return Promise.resolve();
  return new Promise((resolve) => {
    socket.once('close', () => resolve());
    socket.destroy();
  });
}

/** Close a UDP socket and wait for 'close'; a socket already closed resolves at once. */
export function closeDgram(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve();
    }
  });
}

/** A TCP server listening on host:0, closed after the test. */
export async function listenTcp(
  t: Cleanup,
  host = '127.0.0.1',
  onConnection?: (s: net.Socket) => void,
): Promise<net.Server> {
  const server = net.createServer(onConnection);
  t.after(() => closeServer(server));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

/** A Unix-socket server at a fresh path, closed after the test. */
export async function listenUnix(
  t: Cleanup,
  dir = tmpDir(t),
  name = 's.sock',
): Promise<{ server: net.Server; path: string }> {
  const file = path.join(dir, name);
  const server = net.createServer();
  t.after(() => closeServer(server));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(file, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, path: file };
}

export interface Connection {
  server: net.Server;
  /** The connecting side. */
  client: net.Socket;
  /** The accepted side. */
  accepted: net.Socket;
}

/** A connected TCP pair through a fresh server on `host`. */
export async function connectedPair(t: Cleanup, host = '127.0.0.1'): Promise<Connection> {
  const server = await listenTcp(t, host);
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect((server.address() as net.AddressInfo).port, host);
  t.after(() => destroySocket(client));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const a = await within(accepted, 5000, 'accepting a TCP connection');
  t.after(() => destroySocket(a));
  return { server, client, accepted: a };
}

/** A connected Unix-socket pair. */
export async function connectedUnixPair(t: Cleanup): Promise<Connection & { path: string }> {
  const { server, path: file } = await listenUnix(t);
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect(file);
  t.after(() => destroySocket(client));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const a = await within(accepted, 5000, 'accepting a Unix connection');
  t.after(() => destroySocket(a));
  return { server, client, accepted: a, path: file };
}

/** A bound UDP socket, closed after the test. */
export async function bindUdp(t: Cleanup, type: 'udp4' | 'udp6' = 'udp4'): Promise<dgram.Socket> {
  const socket = dgram.createSocket(type);
  t.after(() => closeDgram(socket));
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, type === 'udp4' ? '127.0.0.1' : '::1', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return socket;
}

let ipv6: Promise<boolean> | undefined;

/** Whether this host can listen on ::1 (no IPv6 loopback in some containers). */
export function ipv6Available(): Promise<boolean> {
  ipv6 ??= new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
  return ipv6;
}

export const NO_IPV6 = 'IPv6 loopback (::1) is not available on this host';

/**
 * Open and close one of everything the tests use, so that Node's lazily opened, process-lifetime fds
 * exist before a test takes its fd baseline.
 */
export async function warmUp(): Promise<void> {
  const t = {
    fns: [] as Array<() => unknown>,
    after(fn: () => unknown) {
      this.fns.push(fn);
    },
  };
  try {
    const { client } = await connectedPair(t);
    client.write('x');
    await bindUdp(t);
    if (await ipv6Available()) {
      await connectedPair(t, '::1');
      await bindUdp(t, 'udp6');
    }
    await connectedUnixPair(t);
    const fh = await fs.promises.open('/dev/null', 'r');
    const adopted = await adoptFile(dupFd(fh)); // loads adopt's FileHandle parts
    await adopted.close();
    await fh.close();
  } finally {
    for (const fn of t.fns.reverse()) await fn();
  }
}

/** The fds open in this process, as a sorted array (for set comparisons). The listing's own directory fd
 * (open while readdir ran, closed since) is left out, so that two listings compare equal. */
export function fdList(): number[] {
  return fs
    .readdirSync('/proc/self/fd')
    .map(Number)
    .filter((n) => Number.isInteger(n) && isOpen(n))
    .sort((a, b) => a - b);
}

/** Whether `fd` is open in this process. */
export function isOpen(fd: number): boolean {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

/** An fd number that is certainly closed right now (opened, then closed). */
export function closedFd(): number {
  const fd = fs.openSync('/dev/null', 'r');
  fs.closeSync(fd);
  return fd;
}

/** Assert `fn` throws an instance of `ctor` with `code`. Returns the error for further checks. */
export function throwsCode(
  fn: () => unknown,
  ctor: new (...args: never[]) => Error,
  code: string,
): Error & { code?: string; syscall?: string } {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `expected a ${ctor.name} with code ${code}, nothing was thrown`);
  assert.ok(caught instanceof ctor, `expected a ${ctor.name} with code ${code}, got ${String(caught)}`);
  assert.equal((caught as { code?: string }).code, code, String(caught));
  return caught as Error & { code?: string };
}

/** Assert the promise rejects with an instance of `ctor` with `code`. */
export async function rejectsCode(
  p: Promise<unknown>,
  ctor: new (...args: never[]) => Error,
  code: string,
): Promise<Error & { code?: string; syscall?: string }> {
  let caught: unknown;
  try {
    await within(p, 5000, `expecting a rejection with ${code}`);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `expected a rejection with ${code}, it resolved`);
  assert.ok(caught instanceof ctor, `expected a ${ctor.name} with code ${code}, got ${String(caught)}`);
  assert.equal((caught as { code?: string }).code, code, String(caught));
  return caught as Error & { code?: string };
}

/** A FIFO in `dir`, opened O_RDWR (so the open does not block); the fd is closed after the test, so the
 * test itself must not close it (dup it instead). */
export function openFifo(t: Cleanup, dir: string, flags = 0): number {
  const file = path.join(dir, 'fifo');
  execFileSync('mkfifo', [file]);
  const fd = fs.openSync(file, fs.constants.O_RDWR | flags);
  t.after(() => {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed by the test
    }
  });
  return fd;
}

export interface InheritedProbe {
  fd: number;
  info: FdInfo;
  flagsBefore: number;
  flagsAfter: number;
  adopt: { ok: boolean; code?: string; dupStillOpen: boolean };
}

// Node marks the fds it inherits close-on-exec at startup (uv_disable_stdio_inheritance), stopping at the
// first closed fd above 15; fds 40 and 41, past a gap, keep FD_CLOEXEC clear, so probe's cloexec: false is
// checked too.
const PYTHON = `
import os, socket, subprocess, sys
node, script, path = sys.argv[1:4]
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
c.bind(path)
os.dup2(a.fileno(), 40)
os.dup2(c.fileno(), 41)
r = subprocess.run([node, script, '40', '41'], pass_fds=[40, 41])
sys.exit(r.returncode)
`;

/** Run the probe-inherited fixture on a unix-dgram socketpair end and a bound unix-dgram socket; null if
 * python3 cannot be run. */
export async function runPythonUnixDgram(sockPath: string): Promise<InheritedProbe[] | null> {
  const out = await within(
    new Promise<string | null>((resolve, reject) => {
      execFile(
        'python3',
        ['-c', PYTHON, process.execPath, path.join(FIXTURES, 'probe-inherited.js'), sockPath],
        { timeout: 15_000 },
        (err, stdout, stderr) => {
          if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return resolve(null);
          if (err) return reject(new Error(`python3/probe-inherited failed: ${err.message}\n${stderr}`));
          resolve(stdout);
        },
      );
    }),
    20_000,
    'python3 + probe-inherited fixture',
  );
  if (out === null) return null;
  return out
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as InheritedProbe);
}

/** Whether `fd` still names the object with this inode (a closed number may be reused by anything). */
export function stillOpen(fd: number, inode: number): boolean {
  try {
    return probe(fd).inode === inode;
  } catch {
    return false;
  }
}

/** Serve each fd (taken: the server owns it) with its own server that counts the connections it accepts and
 * answers each with one byte; the servers close after the test. Returns the live counts. */
export async function countAccepts(t: Cleanup, fds: number[]): Promise<number[]> {
  const counts = fds.map(() => 0);
  for (let i = 0; i < fds.length; i++) {
    const server = net.createServer((c) => {
      counts[i]!++;
      c.end('x');
    });
    await listenOnFd(server, fds[i]!);
    t.after(() => closeServer(server));
  }
  return counts;
}

/** `total` fresh connections to host:port, one after another, each read to its end. */
export async function connectMany(port: number, host: string, total: number): Promise<void> {
  for (let i = 0; i < total; i++) {
    await within(
      new Promise<void>((resolve, reject) => {
        const c = net.connect(port, host);
        c.on('error', reject);
        c.resume();
        c.on('end', () => {
          c.destroy();
          resolve();
        });
      }),
      5000,
      `connection ${i}`,
    );
  }
}
