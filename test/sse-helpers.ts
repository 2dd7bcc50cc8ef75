/**
 * EventSource clients for the SSE reload tests (the `eventsource` package: the WHATWG EventSource on
 * fetch, which reconnects after the server's `retry:` with `Last-Event-ID`). Each client checks that the
 * ids it receives run on without a gap or a repeat — events "n" of the fixtures' ticker (test/fixtures/
 * sse-app.ts), data "<generation> <n>".
 */
import { EventSource } from 'eventsource';
import { waitFor } from './helpers.js';

export class TickerClient {
  readonly es: EventSource;
  /** Last id received, or null before the first event. */
  last: number | null = null;
  events = 0;
  /** Ids skipped (lost) and ids received twice. */
  lost = 0;
  repeated = 0;
  /** Generation that sent the last event. */
  gen = 0;
  /** How many times the stream ended and the client reconnected. */
  reconnects = 0;
  errors: string[] = [];

  constructor(url: string) {
    this.es = new EventSource(url);
    this.es.onmessage = (e) => {
      const [gen, n] = String(e.data).split(' ').map(Number) as [number, number];
      if (this.last !== null) {
        if (n > this.last + 1) this.lost += n - this.last - 1;
        if (n <= this.last) this.repeated++;
      }
      if (this.last === null || n > this.last) this.last = n;
      this.gen = gen;
      this.events++;
    };
    this.es.onerror = (e) => {
      // The stream ended: the client reconnects by itself (readyState CONNECTING); anything else is a fault.
      if (this.es.readyState === this.es.CONNECTING) this.reconnects++;
      else this.errors.push(String((e as { message?: string }).message ?? 'error'));
    };
  }

  close(): void {
    this.es.close();
  }
}

export async function openTickers(base: string, n: number): Promise<TickerClient[]> {
  // Half name content-type in writeHead(), half with setHeader(): both must be recognised as streams.
  const clients = Array.from({ length: n }, (_, i) => new TickerClient(`${base}/events${i % 2 ? '?head=set' : ''}`));
  await waitFor(() => clients.every((c) => c.events > 0), 20_000, `all ${n} streams deliver events`);
  return clients;
}

export function tickerProblems(clients: TickerClient[]): string {
  const bad = clients.filter((c) => c.lost || c.repeated || c.errors.length);
  return bad.map((c) => `lost ${c.lost} repeated ${c.repeated} errors ${c.errors.join('|')}`).join('; ');
}

/**
 * `n` plain HTTP/1.1 streams with `Connection: close` (agent: false), like a simple client that does not
 * reconnect: resolves once each has its first event; `ended()` counts those whose response ended.
 */
export async function openPlainStreams(port: number, n: number): Promise<{ ended: () => number; close: () => void }> {
  const http = await import('node:http');
  let ended = 0;
  const reqs: Array<import('node:http').ClientRequest> = [];
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port, path: '/events', agent: false }, (res) => {
            res.once('data', () => resolve());
            res.on('end', () => ended++);
            res.on('error', () => {});
          });
          req.on('error', reject);
          reqs.push(req);
        }),
    ),
  );
  return { ended: () => ended, close: () => reqs.forEach((r) => r.destroy()) };
}
