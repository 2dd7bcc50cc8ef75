/**
 * The compiled addon (native/*.c), loaded once, with its exports typed.
 *
 * Nothing outside src/fd imports this module (test/layering.test.ts checks it): the rest of baton goes
 * through the fd layer's API (fds.ts, adopt.ts, channel.ts, ...).
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { FdInfo } from './fd-info.js';

export interface NativePoller {
  /** Watch for these events (pollEvents bits); 0 stops watching. */
  start(events: number): void;
  /** Stop watching for good; with closeFd, close the fd once the watcher is off epoll. Idempotent. */
  close(closeFd?: boolean): void;
  ref(on: boolean): void;
}

export interface NativeBinding {
  Poller: new (fd: number, callback: (status: number, events: number) => void) => NativePoller;
  pollEvents: { READABLE: number; WRITABLE: number; DISCONNECT: number };
  SCM_MAX_FD: number;
  listen(path: string, backlog: number, stream?: boolean): number;
  connect(path: string): number;
  accept(fd: number): number;
  socketpair(): [number, number];
  /** (TypeScript over the addon's sendRecordInt32; the addon's own sendRecord does the same through N-API,
   * more slowly, and is what reports bad arguments.) */
  sendRecord(fd: number, header: Uint8Array, payload: Uint8Array | null, fds: readonly number[] | null): boolean;
  /** Flat: [status, data, fds | null, ...], a trailing null at end of stream. (Built in TypeScript from
   * the addon's recvBatch, the channel's one receive path.) */
  recvRecords(fd: number, max: number): Array<number | Buffer | number[] | null>;
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  probe(fd: number): FdInfo;
  getsockoptInt(fd: number, level: number, name: number): number;
  setsockoptInt(fd: number, level: number, name: number, value: number): void;
  getsockoptRaw(fd: number, level: number, name: number, length: number): Buffer;
  setsockoptRaw(fd: number, level: number, name: number, value: Buffer): void;
  tcpInfo(fd: number): Record<string, number | string>;
  constants: Record<string, number>;
  dup(fd: number): number;
  close(fd: number): void;
  /** Close each number in `fds` that is >= 0; returns how many were open. (TypeScript over the addon's
   * closeInt32; the addon's own closeMany does the same through N-API, more slowly.) */
  closeMany(fds: readonly number[]): number;
  isOpen(fd: number): boolean;
  /** Resolves once the fd table covers `minFd` (grown on a threadpool thread; native/fdutil.c). */
  growFdTable(fd: number, minFd: number): Promise<void>;
  reap(pid: number): boolean;
  threadCpuMicros(): number;
  /** One datagram to the AF_UNIX SOCK_DGRAM socket at `path` ('/abs/path' or '@abstract'), with `fds`
   * attached (SCM_RIGHTS) if given: the service manager's notification protocol (native/notify.c). */
  notify(path: string, message: Buffer, fds?: readonly number[] | null): void;
  // native/reexec.c: the supervisor replacing its own image (src/cli/reexec.ts); native/process.c: following
  // the children its previous image spawned (watchChildExit in src/fd/process.ts).
  /** An anonymous memory file, close-on-exec. */
  memfd(name: string): number;
  /** Clear FD_CLOEXEC on `keep`, block `hold` (signal numbers), execve. Returns only by throwing, with
   * everything put back. */
  execve(
    path: string,
    argv: readonly string[],
    env: readonly string[],
    keep: readonly number[],
    hold: readonly number[],
  ): never;
  /** native/reuseport.c: a socket (stream: TCP listener, else UDP) with SO_REUSEPORT set before bind;
   * `exclusive`: EADDRINUSE if anything holds the port already (a group's first socket). */
  bindReusePort(
    stream: boolean,
    address: string,
    port: number,
    backlog: number,
    ipv6Only: boolean,
    exclusive: boolean,
  ): number;
  /** Unblock signals an execve() held. */
  releaseSignals(signals: readonly number[]): void;
  /** A pidfd (close-on-exec): polls readable once the process exits. */
  pidfdOpen(pid: number): number;
  /** waitpid(pid, WNOHANG): null while it runs, else its exit code or signal number. */
  waitStatus(pid: number): { code: number | null; signal: number | null } | null;
  /** native/http2.c: nghttp2_submit_shutdown_notice() on the nghttp2 session under a Node Http2Session's
   * native handle, after checking the pointer it finds; 'submitted', or why not. See src/fd/http2.ts. */
  http2ShutdownNotice(handle: object, local: Uint32Array, remote: Uint32Array): string;
  // native/readiness.c: an epoll set that only reports which watched fds became readable (src/fd/readiness.ts).
  /** A new epoll fd, close-on-exec. */
  readinessCreate(): number;
  /** Watch `fd` for one readable report (EPOLLIN | EPOLLRDHUP | EPOLLONESHOT). */
  readinessAdd(epfd: number, fd: number): void;
  readinessRemove(epfd: number, fd: number): void;
  /** Without blocking: write up to min(out.length, READINESS_TAKE_MAX) reported fds into `out`; how many. */
  readinessTake(epfd: number, out: Int32Array): number;
  READINESS_TAKE_MAX: number;
}

/** The addon's exports: NativeBinding (less recvRecords, which is built here), plus the typed-array
 * primitives that sendRecord, recvRecords and closeMany are built on below. */
interface AddonExports extends Omit<NativeBinding, 'recvRecords'> {
  /** See channel.c: records' statuses, data locations and fd counts go into `meta`, their fds into `fds`;
   * returns [Buffer of the small records | null, Buffer of each large record...]. */
  recvBatch(fd: number, max: number, meta: Int32Array, fds: Int32Array): Array<Buffer | null>;
  sendRecordInt32(fd: number, header: Uint8Array, payload: Uint8Array | null, fds: Int32Array, count: number): boolean;
  closeInt32(fds: Int32Array, count: number): number;
}

/** Record statuses reported by recvRecords. */
export const RECORD_OK = 0;
export const RECORD_CTRUNC = 1;
export const RECORD_TRUNC = 2;

function load(): AddonExports {
  const require = createRequire(import.meta.url);
  // dist/src/fd/native.js -> package root is three levels up; src/fd/native.ts (ts-node style) two.
  const here = path.dirname(fileURLToPath(import.meta.url));
  const roots = [path.resolve(here, '../../..'), path.resolve(here, '../..')];
  const tried: string[] = [];
  for (const root of roots) {
    for (const build of ['Release', 'Debug']) {
      const file = path.join(root, 'build', build, 'baton.node');
      tried.push(file);
      try {
        return require(file) as AddonExports;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
      }
    }
  }
  const err = new Error(
    `baton: the native addon is not built (looked for ${tried.join(', ')}). ` +
      'Run `npm install` (or `npx node-gyp rebuild`) in the baton package; it needs python3, make and a C compiler.',
  ) as NodeJS.ErrnoException;
  err.code = 'ERR_BATON_ADDON_MISSING';
  throw err;
}

const addon = load();

// sendRecord, recvRecords and closeMany run per message, so they are the channel's hot path. N-API builds
// and reads JavaScript arrays one element at a time, each through a property lookup, which costs more
// than the syscalls; so the addon works on typed arrays and JavaScript does the array work.

const sendFds = new Int32Array(addon.SCM_MAX_FD);

function sendRecord(
  fd: number,
  header: Uint8Array,
  payload: Uint8Array | null,
  fds: readonly number[] | null,
): boolean {
  let count = 0;
  if (fds !== null && fds !== undefined) {
    // Anything the addon would refuse goes to it, so the error is the usual one.
    if (!Array.isArray(fds) || fds.length > sendFds.length) return addon.sendRecord(fd, header, payload, fds);
    for (; count < fds.length; count++) {
      const v = fds[count];
      if (typeof v !== 'number' || (v | 0) !== v || v < 0) return addon.sendRecord(fd, header, payload, fds);
      sendFds[count] = v;
    }
  }
  return addon.sendRecordInt32(fd, header, payload, sendFds, count);
}

/** Scratch for recvBatch. Module-wide is safe: recvRecords reads it out before it returns. */
const RECV_META_HEAD = 2;
const RECV_META_PER_RECORD = 5;
/** Most records one recvRecords call reads (callers ask for far fewer). */
const RECV_MAX_RECORDS = 1024;
let recvMeta = new Int32Array(RECV_META_HEAD + RECV_META_PER_RECORD * 64);
/** Room for the fds of ~30 full records; a batch stops early rather than overflow it. */
const recvFds = new Int32Array(8192);

function recvRecords(fd: number, max: number): Array<number | Buffer | number[] | null> {
  if (typeof max === 'number' && max > (recvMeta.length - RECV_META_HEAD) / RECV_META_PER_RECORD) {
    recvMeta = new Int32Array(RECV_META_HEAD + RECV_META_PER_RECORD * Math.min(Math.ceil(max), RECV_MAX_RECORDS));
  }
  const meta = recvMeta;
  const bufs = addon.recvBatch(fd, max, meta, recvFds);
  const count = meta[0]!;
  const out: Array<number | Buffer | number[] | null> = [];
  // null when no record of the batch had a byte to pack: a batch of zero-length records (legal on SEQPACKET;
  // found by fuzzing — this threw a TypeError and leaked the fds such a record carried).
  const packed = bufs[0] ?? EMPTY;
  let f = 0;
  for (let i = 0, m = RECV_META_HEAD; i < count; i++, m += RECV_META_PER_RECORD) {
    const source = meta[m + 1]!;
    const offset = meta[m + 2]!;
    const nfds = meta[m + 4]!;
    let fds: number[] | null = null;
    if (nfds > 0) {
      fds = new Array<number>(nfds);
      for (let j = 0; j < nfds; j++) fds[j] = recvFds[f++]!;
    }
    out.push(meta[m]!, source === 0 ? packed.subarray(offset, offset + meta[m + 3]!) : bufs[source]!, fds);
  }
  if (meta[1]) out.push(null);
  return out;
}

const EMPTY = Buffer.alloc(0);

const closeScratch = new Int32Array(1024);

function closeMany(fds: readonly number[]): number {
  // Anything but an array: the addon throws its usual TypeError.
  if (!Array.isArray(fds)) return addon.closeMany(fds);
  let closed = 0;
  let k = 0;
  for (let i = 0; i < fds.length; i++) {
    const fd = fds[i];
    // Like the addon's loop: non-numbers are skipped; numbers convert as napi_get_value_int32 does (ToInt32).
    if (typeof fd !== 'number') continue;
    closeScratch[k++] = fd;
    if (k === closeScratch.length) {
      closed += addon.closeInt32(closeScratch, k);
      k = 0;
    }
  }
  if (k > 0) closed += addon.closeInt32(closeScratch, k);
  return closed;
}

export const native: NativeBinding = { ...addon, sendRecord, recvRecords, closeMany };
