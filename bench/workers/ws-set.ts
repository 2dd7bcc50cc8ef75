/**
 * A fixed set of `ws` clients for `npm run bench:workers`: each opens one WebSocket and sends a numbered message
 * every `periodMs` (staggered, so the set sends evenly), whether or not the previous one was answered, and
 * checks every echo (`<n> <count>`, bench/workers/serve.ts). Nothing reconnects: a WebSocket that closes stays
 * closed, so `kept` is how many of the set lived through every reload.
 */
import WebSocket from 'ws';

export interface WsSetResult {
  clients: number;
  /** Open from the start to the end. */
  kept: number;
  closed: number;
  /** Close codes of the closed ones (1006: closed without a close frame, e.g. a reset). */
  closeCodes: Record<string, number>;
  /** 'error' events by code (a WebSocket that errors closes too). */
  errors: Record<string, number>;
  sent: number;
  answered: number;
  /** Sent on a WebSocket that stayed open and never answered. */
  lost: number;
  /** Sent on a WebSocket that closed before it answered them (gone with it). */
  unansweredAtClose: number;
  /** Answers to a message already answered. */
  duplicated: number;
  /** Answers to a message sent after one not answered yet. */
  outOfOrder: number;
  /** Answers whose count is not this connection's answers so far: the server lost the connection's state. */
  stateLost: number;
}

interface Client {
  ws: WebSocket;
  next: number;
  pending: Set<number>;
  answered: Set<number>;
  /** The highest number answered so far. */
  last: number;
  closed: boolean;
}

export interface WsSet {
  /** Stop sending, wait up to `settleMs` for the answers still due, close the set and count. */
  stop(settleMs: number): Promise<WsSetResult>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Open `n` WebSockets to ws://127.0.0.1:`port`/ (all open, or it rejects within `openMs`) and start sending. */
export async function startWsSet(port: number, n: number, periodMs: number, openMs = 15_000): Promise<WsSet> {
  const r: WsSetResult = {
    clients: n,
    kept: 0,
    closed: 0,
    closeCodes: {},
    errors: {},
    sent: 0,
    answered: 0,
    lost: 0,
    unansweredAtClose: 0,
    duplicated: 0,
    outOfOrder: 0,
    stateLost: 0,
  };
  let stopping = false;
  const open = (i: number) =>
    new Promise<Client>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/${i}`, { perMessageDeflate: false });
      const c: Client = { ws, next: 1, pending: new Set(), answered: new Set(), last: 0, closed: false };
      const timer = setTimeout(() => reject(new Error(`WebSocket ${i} did not open within ${openMs} ms`)), openMs);
      ws.once('open', () => {
        clearTimeout(timer);
        resolve(c);
      });
      ws.on('error', (err: NodeJS.ErrnoException) => {
        const code = err.code ?? err.message;
        r.errors[code] = (r.errors[code] ?? 0) + 1;
        clearTimeout(timer);
        reject(err);
      });
      ws.on('close', (code) => {
        c.closed = true;
        if (stopping) return;
        r.closed++;
        r.closeCodes[code] = (r.closeCodes[code] ?? 0) + 1;
        r.unansweredAtClose += c.pending.size;
        c.pending.clear();
      });
      ws.on('message', (data) => {
        const [num, count] = String(data).split(' ').map(Number) as [number, number];
        if (c.answered.has(num)) {
          r.duplicated++;
          return;
        }
        if (!c.pending.delete(num)) return; // an answer to nothing sent: counted nowhere, cannot happen
        c.answered.add(num);
        r.answered++;
        if (num < c.last) r.outOfOrder++;
        c.last = Math.max(c.last, num);
        if (count !== c.answered.size) r.stateLost++;
      });
    });
  const clients = await Promise.all(Array.from({ length: n }, (_, i) => open(i)));
  const send = (c: Client) => {
    if (stopping || c.closed || c.ws.readyState !== WebSocket.OPEN) return;
    const num = c.next++;
    c.pending.add(num);
    r.sent++;
    c.ws.send(String(num));
  };
  const timers: NodeJS.Timeout[] = [];
  clients.forEach((c, i) => {
    const start = setTimeout(() => timers.push(setInterval(() => send(c), periodMs)), (periodMs * i) / n);
    timers.push(start);
  });
  return {
    async stop(settleMs) {
      for (const t of timers) clearInterval(t);
      const due = () => clients.reduce((a, c) => a + (c.closed ? 0 : c.pending.size), 0);
      for (const until = Date.now() + settleMs; due() > 0 && Date.now() < until; ) await sleep(20);
      stopping = true;
      for (const c of clients) {
        if (c.closed) continue;
        r.kept++;
        r.lost += c.pending.size;
      }
      await Promise.all(
        clients.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.closed) return resolve();
              const t = setTimeout(() => {
                c.ws.terminate();
                resolve();
              }, 2000);
              c.ws.once('close', () => {
                clearTimeout(t);
                resolve();
              });
              c.ws.close(1000);
            }),
        ),
      );
      return r;
    },
  };
}
