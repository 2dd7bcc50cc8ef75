/**
 * Acceptance: a keep-alive connection whose next request head has only partly arrived when its generation is
 * replaced (examples/http-server under `baton run`, raw sockets on 127.0.0.1). Node's HTTP parser has already
 * consumed those bytes (src/integrations/internals.ts): they cannot move with the connection. Before this was
 * handled the connection moved anyway, the new generation parsed only the rest of the head and answered
 * 400 Bad Request (or nothing). Four shapes, each on its own connection:
 *   1. the first bytes of a first request (`GET /a HTTP/1.1\r\nHo`);
 *   2. a head missing only its final CRLF (after a first request was answered);
 *   3. a single byte, `G`;
 *   4. a head cut in the middle of a 3 KB header line.
 * A fifth connection is idle at a message boundary. After the reload, once the old generation is draining
 * and has moved the idle connection (its next request is answered by generation 2), the rest of each head is
 * sent: each gets 200, and a second request on the same connection gets 200 from generation 2 (it moved
 * once its request was answered, and is still usable).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { waitFor } from './helpers.js';
import { startSupervised } from './upgrade-helpers.js';

interface Response {
  status: number;
  body: string;
}

/** A raw HTTP/1.1 client connection: write bytes, read responses (Content-Length bodies) in order. */
class RawHttp {
  readonly socket: net.Socket;
  #buf = '';
  #waiting: Array<() => void> = [];
  closed = false;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d: string) => {
      this.#buf += d;
      this.#wake();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  connected(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
  }

  send(text: string): void {
    this.socket.write(text, 'latin1');
  }

  /** The next complete response; rejects if the connection closes first or nothing comes within `ms`. */
  async response(ms = 15_000): Promise<Response> {
    const deadline = Date.now() + ms;
    for (;;) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end !== -1) {
        const head = this.#buf.slice(0, end);
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (this.#buf.length >= end + 4 + length) {
          const body = this.#buf.slice(end + 4, end + 4 + length);
          this.#buf = this.#buf.slice(end + 4 + length);
          return { status, body };
        }
      }
      if (this.closed) throw new Error(`the connection closed; received ${JSON.stringify(this.#buf.slice(0, 200))}`);
      if (Date.now() > deadline)
        throw new Error(`no complete response within ${ms} ms; received ${JSON.stringify(this.#buf.slice(0, 200))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.#waiting.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  #wake(): void {
    for (const w of this.#waiting.splice(0)) w();
  }
}

const gen = (r: Response) => Number(/generation (\d+)/.exec(r.body)?.[1] ?? 0);
const big = 'a'.repeat(1500);

const SHAPES: Array<{ name: string; before: boolean; first: string; rest: string }> = [
  { name: 'the first bytes of a first request', before: false, first: 'GET /a HTTP/1.1\r\nHo', rest: 'st: x\r\n\r\n' },
  { name: 'a head missing only its final CRLF', before: true, first: 'GET /b HTTP/1.1\r\nHost: x\r\n', rest: '\r\n' },
  { name: 'a single byte', before: true, first: 'G', rest: 'ET /c HTTP/1.1\r\nHost: x\r\n\r\n' },
  {
    name: 'a head cut in a 3 KB header line',
    before: true,
    first: `GET /d HTTP/1.1\r\nHost: x\r\nX-Big: ${big}`,
    rest: `${big}\r\n\r\n`,
  },
];

test('a half-received request head survives a reload: answered 200, the connection moves after it and stays usable', {
  timeout: 120_000,
}, async (t) => {
  const s = await startSupervised(t);
  const GET = (p: string) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`;
  const idle = new RawHttp(s.port);
  const conns = SHAPES.map(() => new RawHttp(s.port));
  t.after(() => {
    for (const c of [idle, ...conns]) c.socket.destroy();
  });
  await Promise.all([idle, ...conns].map((c) => c.connected()));
  idle.send(GET('/idle'));
  assert.equal(gen(await idle.response()), 1);
  for (const [i, shape] of SHAPES.entries()) {
    const c = conns[i]!;
    if (shape.before) {
      c.send(GET('/before'));
      assert.equal((await c.response()).status, 200);
    }
    c.send(shape.first);
  }

  const r = await s.reload();
  assert.equal(r.code, 0, `reload failed: ${r.stdout} ${r.stderr}`);
  await waitFor(() => /baton drain gen=1 /.test(s.sup.stderr()), 20_000, 'generation 1 begins to drain');
  // The idle connection moved (the old generation's drain reached its connections): now finish the heads.
  idle.send(GET('/idle'));
  assert.equal(gen(await idle.response()), 2, 'the idle connection moved to generation 2');

  for (const [i, shape] of SHAPES.entries()) conns[i]!.send(shape.rest);
  const answers = await Promise.all(
    conns.map((c) => c.response().catch((err: Error) => ({ status: 0, body: err.message }))),
  );
  const failed: string[] = [];
  for (const [i, shape] of SHAPES.entries()) {
    t.diagnostic(`${shape.name}: ${answers[i]!.status} from generation ${gen(answers[i]!)}`);
    if (answers[i]!.status !== 200) failed.push(`${shape.name}: ${answers[i]!.status} ${answers[i]!.body}`);
  }
  assert.deepEqual(failed, [], 'every half-received request is answered 200');
  for (const c of conns) c.send(GET('/again'));
  const again = await Promise.all(
    conns.map((c) => c.response().catch((err: Error) => ({ status: 0, body: err.message }))),
  );
  for (const [i, shape] of SHAPES.entries()) {
    assert.equal(again[i]!.status, 200, `${shape.name}, the next request: ${again[i]!.status} ${again[i]!.body}`);
    assert.equal(gen(again[i]!), 2, `${shape.name}: the connection moved once its request was answered`);
  }
  await waitFor(() => /baton drained gen=1 /.test(s.sup.stderr()), 30_000, 'generation 1 drained');
  assert.match(
    s.sup.stderr(),
    /baton drained gen=1 pid=\d+ ms=\d+ forced=0 /,
    'nothing was left for the drain timeout',
  );
});
