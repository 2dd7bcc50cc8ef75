/**
 * Holding a connection still for its move (src/upgrader/migrate.ts): stop reading it (later bytes wait in the
 * kernel for the new owner), take what Node read but nobody consumed, wait for queued writes to leave — and,
 * if the move fails, give the bytes back so the old generation reads on as before.
 */
import type net from 'node:net';
import { batonError } from '../fd/errors.js';
import { handleOf, setReadPending } from '../fd/internals.js';

/** How long to wait for a connection's queued writes to leave before moving it. */
const FLUSH_TIMEOUT_MS = 5000;

/** Stop libuv reading this socket and take the bytes Node buffered that nobody consumed. */
export function stopReading(socket: net.Socket): Buffer {
  socket.pause();
  const handle = handleOf(socket);
  const stop = () => {
    if (handle?.readStop) {
      handle.reading = false;
      handle.readStop();
    }
  };
  stop();
  const chunks: Buffer[] = [];
  if (socket.readableLength === 0) {
    // Nothing buffered, the usual case: read() returns null (a read it asks libuv for completes in a later turn
    // at the earliest), so there is no 'data' to keep from the app's listeners. Taking them off and putting
    // them back, as below, deletes a property of the socket's _events: V8 turns that long-lived object into a
    // dictionary, allocated young and kept alive by the old socket, so every scavenge during a move copied
    // and promoted one per connection. Measured (10,000 idle raw TCP, --trace-gc, the first generation's drain,
    // 3 runs each): its scavenges took 43-93 ms in all and its old space grew by 7 MB; without the dance, 22-29
    // ms and 3 MB. The sampling heap profile of the drain had put 4.7 MB in removeAllListeners.
    socket.read();
  } else {
    // read() also emits 'data' with what it returns: the app's listeners must not see these bytes, which move
    // as `pending` (they would be processed twice, here and in the new generation). Put them back after.
    const listeners = socket.rawListeners('data') as Array<(...args: unknown[]) => void>;
    socket.removeAllListeners('data');
    try {
      for (let c: Buffer | string | null; (c = socket.read() as Buffer | string | null) !== null; ) {
        chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
      }
    } finally {
      // The socket is paused (flowing === false): adding 'data' listeners back does not resume it.
      for (const l of listeners) socket.on('data', l);
    }
  }
  // read() may have asked libuv to read again; nothing is read before we return to the event loop.
  stop();
  // Leave the stream believing a read is pending (the last read() above set `reading`): then nothing —
  // not a 'data' listener's scheduled resume, not the app's resume() — calls _read() and restarts the handle
  // while the connection is on its way; bytes read here then would be lost with this socket object (seen:
  // a connection arriving in a draining generation and moved on at once lost its client's next bytes).
  // giveBack() undoes this if the move fails.
  setReadPending(socket, true);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/** Bytes Node read after stopReading() (reading restarted somehow): they must move with the connection. */
export function lateBytes(socket: net.Socket): Buffer | null {
  const handle = handleOf(socket);
  if (!handle?.reading && socket.readableLength === 0) return null;
  const late = stopReading(socket);
  return late.length ? late : null;
}

/** A move failed after reading stopped: put the bytes taken from Node's buffer back, so the old generation
 * (if it keeps the connection) reads them again and nothing is lost. The socket stays paused. */
export function giveBack(socket: net.Socket, buffered: Buffer): void {
  if (socket.destroyed) return;
  // No read is pending after all (see stopReading): without this, resume() would never restart the handle and
  // the connection would not be read again (found by the fault matrix: an HTTP connection whose move failed,
  // because the new generation had died, stopped answering until the keep-alive timeout destroyed it).
  setReadPending(socket, false);
  if (buffered.length) socket.unshift(buffered);
}

/** Whether writes are queued on the socket (in the stream or in libuv): flushWrites() would wait for them. */
export function writesPending(socket: net.Socket): boolean {
  const handle = handleOf(socket);
  return socket.writableLength > 0 || (handle?.writeQueueSize ?? 0) > 0;
}

export async function flushWrites(socket: net.Socket): Promise<void> {
  const deadline = Date.now() + FLUSH_TIMEOUT_MS;
  while (writesPending(socket) && !socket.destroyed) {
    if (Date.now() > deadline) {
      const what = `the connection's queued writes did not drain within ${FLUSH_TIMEOUT_MS} ms`;
      throw batonError('ERR_BATON_TIMEOUT', what);
    }
    await new Promise((r) => setTimeout(r, 1));
  }
}
