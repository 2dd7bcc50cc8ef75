/**
 * The compiled addon (native/*.c), loaded once, with its exports typed.
 *
 * Nothing outside src/fd imports this module: the rest of baton goes through the fd layer's API.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** A socket address as the addon reports it. */
export type NativeAddress =
  | { family: 'IPv4' | 'IPv6'; address: string; port: number; scopeId?: number }
  | { family: 'unix'; path: string }
  | { family: 'other'; familyNumber: number };

export interface NativeProbe {
  fd: number;
  kind: string;
  family: 'IPv4' | 'IPv6' | 'unix' | 'other' | null;
  socketType: 'stream' | 'dgram' | 'seqpacket' | 'other' | null;
  listening: boolean;
  local: NativeAddress | null;
  remote: NativeAddress | null;
  nonblocking: boolean;
  cloexec: boolean;
  accessMode: 'r' | 'w' | 'rw';
  inode: number;
  size: number;
}

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
  sendRecord(fd: number, header: Uint8Array, payload: Uint8Array | null, fds: readonly number[] | null): boolean;
  /** Flat: [status, data, fds | null, ...], a trailing null at end of stream. */
  recvRecords(fd: number, max: number): Array<number | Buffer | number[] | null>;
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  probe(fd: number): NativeProbe;
  getsockoptInt(fd: number, level: number, name: number): number;
  setsockoptInt(fd: number, level: number, name: number, value: number): void;
  getsockoptRaw(fd: number, level: number, name: number, length: number): Buffer;
  setsockoptRaw(fd: number, level: number, name: number, value: Buffer): void;
  tcpInfo(fd: number): Record<string, number | string>;
  constants: Record<string, number>;
  dup(fd: number): number;
  close(fd: number): void;
  closeMany(fds: readonly number[]): number;
  isOpen(fd: number): boolean;
  reap(pid: number): boolean;
}

/** Record statuses reported by recvRecords. */
export const RECORD_OK = 0;
export const RECORD_CTRUNC = 1;
export const RECORD_TRUNC = 2;

function load(): NativeBinding {
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
        return require(file) as NativeBinding;
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

export const native: NativeBinding = load();
