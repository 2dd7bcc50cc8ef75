/**
 * Node.js private internals of net and dgram sockets that baton relies on below the integrations layer, kept
 * in this one module (the HTTP, HTTP/2 and `ws` ones are in src/integrations/internals.ts: the layers run
 * fd -> handoff -> upgrader -> integrations, and src/fd and src/upgrader cannot import from above). Each is
 * checked by test/internals.test.ts, which fails by name if a Node release changes it. Verified on Node
 * 20.20, 22.23 and 24.21 (lib/net.js, lib/dgram.js, lib/internal/streams/readable.js).
 */
import type dgram from 'node:dgram';
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type net from 'node:net';
import { batonError } from './errors.js';

/** The libuv handle's parts baton reads: its fd, its read switch and its queue of unsent writes. */
export interface HandleLike {
  fd?: number;
  /** A TLS socket's handle wraps the TCP one (TLSWrap), which has the fd. */
  _parent?: HandleLike;
  readStop?: () => number;
  reading?: boolean;
  writeQueueSize?: number;
}

/** `server._handle` / `socket._handle` (lib/net.js): the libuv handle, null once closed. */
export function handleOf(source: net.Server | net.Socket): HandleLike | null {
  return (source as unknown as { _handle?: HandleLike | null })._handle ?? null;
}

let dgramStateSymbol: symbol | undefined;

/** dgram keeps its handle under an internal symbol: Symbol('state symbol') in lib/dgram.js (kStateSymbol). */
export function dgramHandleOf(socket: dgram.Socket): HandleLike | undefined {
  if (!dgramStateSymbol) {
    dgramStateSymbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
    if (!dgramStateSymbol) {
      throw batonError(
        'ERR_BATON_UNSUPPORTED_VERSION',
        "this Node.js version's dgram.Socket has no internal state baton recognises",
      );
    }
  }
  const state = (socket as unknown as Record<symbol, { handle?: HandleLike } | undefined>)[dgramStateSymbol];
  return state?.handle;
}

/**
 * Set the readable stream's `reading` flag (`socket._readableState.reading`). True makes the stream believe
 * a read is pending, so nothing calls _read() and restarts the handle (a connection on its way to the next
 * generation); false undoes it. See src/upgrader/migrate.ts stopReading().
 */
export function setReadPending(socket: net.Socket, pending: boolean): void {
  (socket as unknown as { _readableState: { reading: boolean } })._readableState.reading = pending;
}

/** The net.Server that accepted `socket` (`socket.server`, set by lib/net.js onconnection), if any. */
export function acceptingServerOf(socket: net.Socket): net.Server | undefined {
  return (socket as unknown as { server?: net.Server }).server;
}

/*
 * A FileHandle from an fd (adopt.ts adoptFile). Node has no public constructor for it, but its JavaScript
 * FileHandle class wraps a native handle, which the fs binding (`process.binding('fs').FileHandle`, deprecated
 * but present on Node 20.20, 22.23 and 24.21) makes from any fd. The class is taken from a FileHandle opened
 * here, the native constructor from the binding. If a future Node removes either, this resolves to null and
 * adoptFile falls back to reopening the file (test/internals.test.ts says which).
 */
type NativeFileHandleCtor = new (fd: number) => unknown;
type FileHandleClass = new (handle: unknown) => FileHandle;
export type FileHandleParts = { Wrapper: FileHandleClass; Native: NativeFileHandleCtor };
let parts: Promise<FileHandleParts | null> | undefined;

export function fileHandleParts(): Promise<FileHandleParts | null> {
  parts ??= (async () => {
    try {
      const binding = (process as unknown as { binding(name: string): { FileHandle?: NativeFileHandleCtor } }).binding(
        'fs',
      );
      if (typeof binding.FileHandle !== 'function') return null;
      const probeHandle = await fs.promises.open('/dev/null', 'r');
      const Wrapper = probeHandle.constructor as FileHandleClass;
      await probeHandle.close();
      return { Wrapper, Native: binding.FileHandle };
    } catch {
      return null;
    }
  })();
  return parts;
}

/**
 * The options `server` (net, http, https, http2) gives each connection it accepts, as lib/net.js Server() stores
 * them on the instance (allowHalfOpen, pauseOnConnect, noDelay, keepAlive, keepAliveInitialDelay in seconds,
 * highWaterMark; Node 20.20, and the same code in 22 and 24), in the form net.Server's constructor takes: a
 * second listener made with these accepts connections as `server` would (src/upgrader/borrowed.ts). http.Server
 * sets allowHalfOpen and noDelay, which its request handling relies on.
 */
export function acceptOptionsOf(server: net.Server): net.ServerOpts {
  const s = server as unknown as {
    allowHalfOpen?: unknown;
    pauseOnConnect?: unknown;
    noDelay?: unknown;
    keepAlive?: unknown;
    keepAliveInitialDelay?: unknown;
    highWaterMark?: unknown;
  };
  if (typeof s.allowHalfOpen !== 'boolean' || typeof s.pauseOnConnect !== 'boolean') {
    throw batonError(
      'ERR_BATON_UNSUPPORTED_VERSION',
      "this Node.js version's net.Server keeps no allowHalfOpen / pauseOnConnect that baton recognises",
    );
  }
  const options: net.ServerOpts & { highWaterMark?: number } = {
    allowHalfOpen: s.allowHalfOpen,
    pauseOnConnect: s.pauseOnConnect,
    noDelay: s.noDelay === true,
    keepAlive: s.keepAlive === true,
    keepAliveInitialDelay: typeof s.keepAliveInitialDelay === 'number' ? s.keepAliveInitialDelay * 1000 : 0,
  };
  if (typeof s.highWaterMark === 'number') options.highWaterMark = s.highWaterMark;
  return options;
}
