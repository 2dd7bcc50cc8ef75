/**
 * The WebSocket and UDP load of the soak (bench/soak/soak.ts), each counting what it sends and what comes
 * back, so that a lost, duplicated or reordered message — in either direction — is a number, not a guess.
 * The HTTP load is scripts/lib/http-load.ts (sent = ok + non2xx + errors).
 */
import dgram from 'node:dgram';
import WebSocket from 'ws';

export interface WsTally {
  clients: number;
  /** Messages the clients sent, and answers they received. */
  sent: number;
  received: number;
  /** An answer skipped numbers: of the server's seq (answers lost) or of the echoed client seq (messages lost on the
   * way in). */
  gaps: number;
  /** An answer repeated or went back: a number already seen. */
  dups: number;
  /** Messages never answered: still outstanding at the end, or on a connection that closed. */
  unanswered: number;
  /** Connections that closed or failed without being asked to (each one reconnects). */
  disconnects: number;
  /** Close codes and error messages of those, counted. */
  reasons: Record<string, number>;
}

export interface WsLoad {
  readonly tally: WsTally;
  /** Connections open now. */
  open(): number;
  /** Stop sending; wait (at most `graceMs`) for the answers in flight; close every connection. */
  stop(graceMs: number): Promise<WsTally>;
}

interface Conn {
  ws: WebSocket;
  nextSeq: number;
  expectServerSeq: number;
  expectEcho: number;
}

/**
 * `clients` WebSockets to ws://127.0.0.1:port/c<i>, each sending its next seq every `intervalMs` (the
 * first ones staggered over the interval). The server answers `<server seq> <client seq>`; both must be the
 * next number each time. A connection that closes unasked counts as a disconnect and is replaced 500 ms
 * later by a new one, numbered from 0 again, so that the load goes on.
 */
export function startWsLoad(port: number, clients: number, intervalMs: number): WsLoad {
  const tally: WsTally = {
    clients,
    sent: 0,
    received: 0,
    gaps: 0,
    dups: 0,
    unanswered: 0,
    disconnects: 0,
    reasons: {},
  };
  const conns = new Set<Conn>();
  const timers = new Set<NodeJS.Timeout>();
  let stopping = false;

  const count = (reason: string) => (tally.reasons[reason] = (tally.reasons[reason] ?? 0) + 1);
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const onAnswer = (c: Conn, data: WebSocket.RawData) => {
    tally.received++;
    const [serverSeq, echo] = String(data).split(' ').map(Number) as [number, number];
    for (const [got, want] of [
      [serverSeq, c.expectServerSeq],
      [echo, c.expectEcho],
    ] as const) {
      if (got > want) tally.gaps++;
      else if (got < want || Number.isNaN(got)) tally.dups++;
    }
    c.expectServerSeq = serverSeq + 1;
    c.expectEcho = echo + 1;
  };

  const connect = (i: number) => {
    const c: Conn = {
      ws: new WebSocket(`ws://127.0.0.1:${port}/c${i}`, { perMessageDeflate: false }),
      nextSeq: 0,
      expectServerSeq: 0,
      expectEcho: 0,
    };
    conns.add(c);
    let interval: NodeJS.Timeout | null = null;
    c.ws.on('open', () => {
      later(Math.floor((i * intervalMs) / clients), () => {
        if (stopping || c.ws.readyState !== WebSocket.OPEN) return;
        interval = setInterval(() => {
          if (stopping || c.ws.readyState !== WebSocket.OPEN) return;
          c.ws.send(String(c.nextSeq++));
          tally.sent++;
        }, intervalMs);
      });
    });
    c.ws.on('message', (data) => onAnswer(c, data));
    c.ws.on('error', (err) => count(`error ${err.message}`));
    c.ws.on('close', (code) => {
      if (interval) clearInterval(interval);
      conns.delete(c);
      if (stopping) return;
      tally.disconnects++;
      tally.unanswered += c.nextSeq - c.expectEcho;
      count(`close ${code}`);
      later(500, () => connect(i));
    });
  };
  for (let i = 0; i < clients; i++) connect(i);

  return {
    tally,
    open: () => [...conns].filter((c) => c.ws.readyState === WebSocket.OPEN).length,
    async stop(graceMs) {
      stopping = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      const outstanding = () =>
        [...conns].reduce((n, c) => n + (c.ws.readyState === WebSocket.OPEN ? c.nextSeq - c.expectEcho : 0), 0);
      const deadline = Date.now() + graceMs;
      while (outstanding() > 0 && Date.now() < deadline) await sleep(20);
      tally.unanswered += outstanding();
      const closed = [...conns].map(
        (c) =>
          new Promise<void>((resolve) => {
            c.ws.once('close', () => resolve());
            c.ws.close(1000);
          }),
      );
      await Promise.race([Promise.all(closed), sleep(5000)]);
      for (const c of conns) c.ws.terminate();
      return tally;
    },
  };
}

export interface UdpTally {
  sent: number;
  /** Datagrams whose echo came back (each counted once). */
  echoed: number;
  /** Sent, never echoed (by the end of the grace period). */
  lost: number;
  /** Echoes of a datagram already echoed. */
  dups: number;
  /** send() failures (e.g. ECONNREFUSED while nothing was bound): counted, not retried. */
  sendErrors: number;
}

export interface UdpLoad {
  readonly tally: UdpTally;
  stop(graceMs: number): Promise<UdpTally>;
}

/** A datagram with the next seq every `intervalMs` to the echo server on 127.0.0.1:port. */
export function startUdpLoad(port: number, intervalMs: number): UdpLoad {
  const tally: UdpTally = { sent: 0, echoed: 0, lost: 0, dups: 0, sendErrors: 0 };
  const outstanding = new Set<number>();
  let next = 0;
  const socket = dgram.createSocket('udp4');
  socket.on('error', () => tally.sendErrors++);
  socket.on('message', (msg) => {
    const seq = Number(msg.toString());
    if (outstanding.delete(seq)) tally.echoed++;
    else tally.dups++;
  });
  let timer: NodeJS.Timeout | null = null;
  socket.bind(0, '127.0.0.1', () => {
    timer = setInterval(() => {
      const seq = next++;
      outstanding.add(seq);
      tally.sent++;
      socket.send(String(seq), port, '127.0.0.1', (err) => {
        if (!err) return;
        tally.sendErrors++;
        outstanding.delete(seq);
      });
    }, intervalMs);
  });
  return {
    tally,
    async stop(graceMs) {
      if (timer) clearInterval(timer);
      const deadline = Date.now() + graceMs;
      while (outstanding.size > 0 && Date.now() < deadline) await sleep(20);
      tally.lost = outstanding.size;
      socket.close();
      return tally;
    },
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
