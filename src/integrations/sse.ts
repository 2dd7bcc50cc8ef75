/**
 * Server-Sent Events across upgrades.
 *
 * An SSE stream is an HTTP response that never ends (`content-type: text/event-stream`). It cannot move like
 * an idle keep-alive connection — a response is in flight on it, in the old generation's code — so without
 * help it stays on the old code until the app ends it or `drainTimeout` destroys it, and it holds the old
 * generation (and its memory) that long. EventSource clients reconnect by themselves when a stream ends,
 * sending `Last-Event-ID` with the id of the last event they got, after the `retry:` delay the server last
 * sent (default 3 s in browsers and the `eventsource` package). So the moment the new generation is ready,
 * baton ends each stream of the old one cleanly, after a `retry: <ms>` line: clients come back after a
 * few hundred ms, to the new generation (the old one no longer accepts; the connection itself, idle once the
 * response ended, moves there too), and the app resumes from `Last-Event-ID`.
 *
 * A stream is recognised by its response head, at the time of the drain or — for a response whose head is
 * not out yet — right after its head is written. Turn it off with `Upgrader.start({ endEventStreams: false })`
 * (then end them in your own 'drain' handler, e.g. with a last event, or let them run out).
 */
import type http from 'node:http';
import type net from 'node:net';
import type { EventStreamTracker } from '../upgrader/integration.js';
import { responseHeadOf } from './internals.js';

const EVENT_STREAM = /^content-type:[ \t]*text\/event-stream/im;

/** Whether `res` is an SSE stream whose head has been sent. */
export function isEventStream(res: http.ServerResponse): boolean {
  if (!res.headersSent) return false;
  const type = res.getHeader('content-type');
  if (typeof type === 'string') return /^\s*text\/event-stream/i.test(type);
  return EVENT_STREAM.test(responseHeadOf(res));
}

/**
 * Finds the SSE streams among the responses in flight of the HTTP servers it is attached to, and ends them at the
 * drain. It keeps no list of its own and costs a request nothing until then: the responses are their drainers'
 * (http.ts), and a 'request' listener is added only once ending, for the requests that come after.
 */
export class EventStreams implements EventStreamTracker {
  /** Each attached server, with its drainer's responses in flight. */
  #servers: Array<{ server: http.Server; responses: Iterable<http.ServerResponse> }> = [];
  /** Set once ending: the retry hint (ms, 0 for none) each stream gets before it ends. */
  #retryMs: number | null = null;

  attach(server: http.Server, responses: Iterable<http.ServerResponse>): void {
    this.#servers.push({ server, responses });
    if (this.#retryMs !== null) this.#endLater(server);
  }

  /** Sockets that carry an SSE stream now. */
  sockets(): Set<net.Socket> {
    const set = new Set<net.Socket>();
    for (const { responses } of this.#servers) {
      for (const res of responses) if (res.socket && !res.writableEnded && isEventStream(res)) set.add(res.socket);
    }
    return set;
  }

  /**
   * End every SSE stream, now and as later responses turn out to be streams, each after `retry: retryMs`
   * (none if 0). Returns how many were ended now.
   */
  endAll(retryMs: number): number {
    const first = this.#retryMs === null;
    this.#retryMs = retryMs;
    let n = 0;
    for (const { server, responses } of this.#servers) {
      if (first) this.#endLater(server);
      for (const res of responses) {
        if (res.headersSent) {
          if (this.#end(res)) n++;
        } else this.#endOnceHeadIsOut(res);
      }
    }
    return n;
  }

  /** Responses to requests that come from now on: ended once their head shows they are streams. Prepended, so
   * that it runs before the app's handler writes the head. */
  #endLater(server: http.Server): void {
    server.prependListener('request', (_req: http.IncomingMessage, res: http.ServerResponse) =>
      this.#endOnceHeadIsOut(res),
    );
  }

  #end(res: http.ServerResponse): boolean {
    if (res.writableEnded || res.destroyed || !isEventStream(res)) return false;
    // A whole line and a blank one: an event the app wrote in full before is dispatched as usual.
    if (this.#retryMs) res.write(`retry: ${this.#retryMs}\n\n`);
    res.end();
    return true;
  }

  /** The head is not out yet: look again right after writeHead() (write() and flushHeaders() call it). */
  #endOnceHeadIsOut(res: http.ServerResponse): void {
    const writeHead = res.writeHead;
    res.writeHead = function (this: http.ServerResponse, ...args: unknown[]) {
      res.writeHead = writeHead;
      const r = (writeHead as (...a: unknown[]) => http.ServerResponse).apply(this, args);
      // After the handler's current turn: its first event (written with the head) goes out before the end.
      setImmediate(() => ends(res));
      return r;
    } as typeof res.writeHead;
    const ends = (r: http.ServerResponse) => this.#end(r);
  }
}
