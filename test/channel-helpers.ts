/**
 * Helpers for the fd channel tests (channel*.test.ts): raw record headers, temp files with distinct
 * contents, reading a file through an fd, the targets of another process's fds, bounded event waits, and
 * spawning the channel-peer fixture with its stdio tracked (so fd counts can wait for its pipes to close).
 */
import { spawn } from 'node:child_process';
import { once, type EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { FdChannel } from '../src/fd/channel.js';
import { FdChannel as Channel, FdChannelServer } from '../src/fd/index.js';
import { fdCount, FIXTURES, killPid, spawnNode, tmpDir, within, type Spawned } from './helpers.js';

export const PEER_FIXTURE = path.join(FIXTURES, 'channel-peer.js');

/** A raw record header: defaults are a valid last record (magic 0xBA, version 1, no flags, reserved 0). */
export function header(flags = 0, magic = 0xba, version = 1, reserved = 0): Buffer {
  return Buffer.from([magic, version, flags, reserved]);
}

export interface TempFile {
  path: string;
  content: string;
}

/** `n` files in `dir`, each with its own content. */
export function makeFiles(dir: string, n: number, prefix = 'f'): TempFile[] {
  const out: TempFile[] = [];
  for (let i = 0; i < n; i++) {
    const p = path.join(dir, `${prefix}${i}`);
    const content = `${prefix}-${i}-${Math.random().toString(36).slice(2)}`;
    fs.writeFileSync(p, content);
    out.push({ path: p, content });
  }
  return out;
}

/** The whole content of a (small) file, read through `fd` from offset 0 (pread: the offset is not moved). */
export function readFd(fd: number): string {
  const buf = Buffer.alloc(4096);
  const n = fs.readSync(fd, buf, 0, buf.length, 0);
  return buf.subarray(0, n).toString();
}

/** What each of a process's fds points to (readlink of /proc/<pid>/fd/*). */
export function fdTargets(pid: number | 'self'): string[] {
  const dir = `/proc/${pid}/fd`;
  const out: string[] = [];
  for (const name of fs.readdirSync(dir)) {
    try {
      out.push(fs.readlinkSync(path.join(dir, name)));
    } catch {
      // closed while listing
    }
  }
  return out;
}

/** The arguments of the next `event` on `emitter` (rejects on 'error', or after `ms`: a hang detector). */
export function next<T extends unknown[] = unknown[]>(emitter: EventEmitter, event: string, ms = 5000): Promise<T> {
  return within(once(emitter, event) as Promise<T>, ms, `'${event}' event`);
}

/**
 * Resolves with the argument of the channel's next 'close' (its error, or undefined). Unlike next(), an
 * 'error' event does not reject it. Attach it before whatever makes the channel close.
 */
export function closeOf(ch: FdChannel, ms = 5000): Promise<Error | undefined> {
  return within(
    new Promise<Error | undefined>((resolve) => ch.once('close', (err) => resolve(err))),
    ms,
    "the channel's 'close'",
  );
}

/** A number that is not an open fd in this process (well above the highest open one). */
export function unusedFd(): number {
  const open = fs.readdirSync('/proc/self/fd').map(Number);
  const fd = Math.max(...open) + 1000;
  if (fs.existsSync(`/proc/self/fd/${fd}`)) throw new Error(`fd ${fd} is open`);
  return fd;
}

export interface Received {
  data: Buffer;
  fds: number[];
}

/** Resolve with the first `count` messages of `ch` (rejects on 'error', 'close' before that, or after `ms`). */
export function collect(
  ch: FdChannel,
  count: number,
  ms = 10_000,
  onEach?: (m: Received, i: number) => void,
): Promise<Received[]> {
  const got: Received[] = [];
  return within(
    new Promise<Received[]>((resolve, reject) => {
      const onMessage = (data: Buffer, fds: number[]) => {
        const m = { data, fds };
        onEach?.(m, got.length);
        got.push(m);
        if (got.length === count) {
          done();
          resolve(got);
        }
      };
      const onClose = (err?: Error) => {
        done();
        reject(err ?? new Error(`channel closed after ${got.length} of ${count} messages`));
      };
      const done = () => {
        ch.off('message', onMessage);
        ch.off('close', onClose);
      };
      ch.on('message', onMessage);
      ch.on('close', onClose);
      if (count === 0) {
        done();
        resolve(got);
      }
    }),
    ms,
    `${count} messages`,
  );
}

/** Let pending I/O callbacks and ticks run (a few loop turns). */
export async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Spawn one throwaway child and wait for it to go: the first spawn opens fds that stay open for the life of
 * the process (libuv's signal pipe), which must be in an fd-count baseline taken before a test spawns.
 */
export async function warmUpSpawn(): Promise<void> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: ['ignore', 'pipe', 'pipe'] });
  await within(once(child, 'close'), 10_000, 'warm-up child');
}

/**
 * The set-up before a test of each channel file (before()): the fds that stay open for the life of the process
 * after the first spawn and the first channel pair, out of the fd-count baselines the tests take.
 */
export async function warmUpChannels(): Promise<void> {
  await warmUpSpawn();
  const [a, b] = Channel.pair();
  a.close();
  b.close();
  await turns();
}

export interface Peer extends Spawned {
  /** Resolves once the child has exited and all its stdio pipes are closed in this process. */
  closed: Promise<void>;
}

/** Spawn test/fixtures/channel-peer.ts in `mode` (see the fixture for the modes). */
export function spawnPeer(t: TestContext, mode: string, args: string[] = []): Peer {
  const s = spawnNode(t, PEER_FIXTURE, [mode, ...args]);
  const closed = once(s.child, 'close').then(() => undefined);
  // Kill and wait for its pipes to close, so that the next test's fd baseline does not include them.
  t.after(async () => {
    killPid(s.pid);
    await within(closed, 5000, `child ${s.pid} and its pipes to close`);
  });
  return { ...s, closed };
}

/** The error a promise rejects with (fails if it resolves, or hangs past `ms`). */
export async function rejection(p: Promise<unknown>, ms = 5000): Promise<Error & { code?: string; syscall?: string }> {
  try {
    await within(p, ms, 'a promise expected to reject');
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('timed out after')) throw err;
    return err as Error & { code?: string };
  }
  throw new Error('expected the promise to reject, but it resolved');
}

/**
 * A channel-peer child in `mode` connected to a fresh FdChannelServer: it gets [socket, a temp file's path,
 * ...extra]; `ch` is this side's channel and `base` the fd count taken before the child was spawned (the
 * server already listening).
 */
export async function peerOverServer(
  t: TestContext,
  mode: string,
  extra: string[] = [],
): Promise<{ child: Peer; ch: FdChannel; file: TempFile; base: number }> {
  const dir = tmpDir(t);
  const [file] = makeFiles(dir, 1);
  const sock = path.join(dir, 's');
  const server = await FdChannelServer.listen(sock);
  t.after(() => server.close());
  const base = fdCount();
  const child = spawnPeer(t, mode, [sock, file!.path, ...extra]);
  const [ch] = await next<[FdChannel]>(server, 'channel', 10_000);
  return { child, ch, file: file!, base };
}
