/**
 * Helpers for the systemd tests: a fake service manager (test/fixtures/notify-manager.py, a python3
 * process) that receives notifications on a real AF_UNIX datagram socket — the sender's pid comes from
 * the kernel (SO_PASSCRED) — keeps FDSTORE fds and can start a service with them as LISTEN_FDS; and
 * cleanup of whatever `baton run` started (the supervisor, and its generations, which run detached).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { killPid, ROOT, waitFor } from './helpers.js';
import { isGenerationOf } from './upgrade-helpers.js';

export const MANAGER = path.join(ROOT, 'test/fixtures/notify-manager.py');

type Cleanup = { after(fn: () => unknown): void };

export interface Notification {
  /** The sender, as the kernel reported it. */
  pid: number;
  text: string;
  fields: Record<string, string>;
  /** How many fds were attached. */
  fds: number;
}

export interface Manager {
  child: ChildProcess;
  socket: string;
  /** Every notification so far, in order. */
  messages: Notification[];
  /** The fd store's names after the last change. */
  store(): string[];
  /** What the services it started wrote (stdout and stderr). */
  output(): string;
  /** Resolves with the first notification at index >= `from` that matches. */
  next(match: (n: Notification) => boolean, what: string, from?: number, ms?: number): Promise<Notification>;
  /** Start `argv` as a service (NOTIFY_SOCKET, the stored fds as LISTEN_FDS); resolves with its pid. */
  start(argv: string[], env?: Record<string, string>): Promise<number>;
  /** Kill (by pid) everything the services started that is still one of their generations. */
  killServices(): void;
}

/** A fake service manager on `socket` (a path or '@abstract'). Killed by pid after the test, with every
 * service it started and their generations. */
export async function startManager(t: Cleanup, socket: string): Promise<Manager> {
  const child = spawn('python3', [MANAGER, socket], { stdio: ['pipe', 'pipe', 'pipe'] });
  const messages: Notification[] = [];
  let store: string[] = [];
  let output = '';
  const spawned: number[] = [];
  const waiters: Array<() => void> = [];
  let listening = false;
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const o = JSON.parse(line) as {
        pid?: number;
        text?: string;
        fds?: number;
        store?: string[];
        spawned?: number;
        listening?: string;
      };
      if (o.text !== undefined) {
        const fields: Record<string, string> = {};
        for (const l of o.text.split('\n')) {
          const eq = l.indexOf('=');
          if (eq > 0) fields[l.slice(0, eq)] = l.slice(eq + 1);
        }
        messages.push({ pid: o.pid ?? 0, text: o.text, fields, fds: o.fds ?? 0 });
      }
      if (o.store) store = o.store;
      if (o.spawned) spawned.push(o.spawned);
      if (o.listening) listening = true;
      for (const w of waiters.splice(0)) w();
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
  const killServices = () => {
    for (const m of output.matchAll(/baton spawn supervisor=(\d+) generation=\d+ child=(\d+)/g)) {
      const [sup, pid] = [Number(m[1]), Number(m[2])];
      if (!isGenerationOf(pid, sup)) continue;
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    for (const pid of spawned) killPid(pid);
  };
  t.after(() => {
    killServices();
    killPid(child.pid!);
  });
  await waitFor(() => listening || child.exitCode !== null, 10_000, 'the fake service manager listening');
  if (!listening) throw new Error(`notify-manager.py exited: ${output}`);
  const manager: Manager = {
    child,
    socket,
    messages,
    store: () => store,
    output: () => output,
    killServices,
    next(match, what, from = 0, ms = 20_000) {
      return new Promise((resolve, reject) => {
        let done = false;
        const timer = setTimeout(() => {
          done = true;
          reject(
            new Error(
              `timed out after ${ms} ms waiting for ${what}; notifications: ` +
                `${JSON.stringify(messages.map((n) => n.text))}\n${output.slice(-3000)}`,
            ),
          );
        }, ms);
        const check = () => {
          if (done) return;
          const found = messages.slice(from).find(match);
          if (found) {
            done = true;
            clearTimeout(timer);
            resolve(found);
          } else waiters.push(check);
        };
        check();
      });
    },
    async start(argv, env = {}) {
      const before = spawned.length;
      child.stdin!.write(`${JSON.stringify({ cmd: 'spawn', argv, env })}\n`);
      await waitFor(() => spawned.length > before, 10_000, 'the fake manager starting a service');
      return spawned[before]!;
    },
  };
  return manager;
}

/** Notifications without the watchdog's pings, as their text. */
export function texts(messages: Notification[], from = 0): string[] {
  return messages
    .slice(from)
    .filter((n) => n.fields.WATCHDOG === undefined)
    .map((n) => n.text);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** The environment of a running process, from /proc. */
export function environOf(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const eq = kv.indexOf('=');
    if (eq > 0) out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

export interface Prober {
  ok: number;
  refused: number;
  errors: Record<string, number>;
  bodies: string[];
  stop(): Promise<void>;
}

/**
 * `loops` clients, each sending GET / over a fresh connection (no keep-alive), one after another: every
 * refused connection is counted, as is every other error. For "the port never refuses a connection".
 */
export function probe(port: number, loops = 4): Prober {
  const p: Prober = { ok: 0, refused: 0, errors: {}, bodies: [], stop: async () => {} };
  let stopping = false;
  const one = () =>
    new Promise<void>((resolve) => {
      const req = net.connect({ host: '127.0.0.1', port });
      let data = '';
      req.setTimeout(10_000, () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('connect', () => req.end('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'));
      req.setEncoding('utf8').on('data', (d: string) => (data += d));
      req.on('end', () => {
        if (/^HTTP\/1\.1 200/.test(data)) {
          p.ok++;
          const body = data.slice(data.indexOf('\r\n\r\n') + 4);
          if (p.bodies.at(-1) !== body) p.bodies.push(body);
        } else p.errors.badResponse = (p.errors.badResponse ?? 0) + 1;
        resolve();
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNREFUSED') p.refused++;
        else p.errors[err.code ?? err.message] = (p.errors[err.code ?? err.message] ?? 0) + 1;
        resolve();
      });
    });
  const runs = Array.from({ length: loops }, async () => {
    while (!stopping) await one();
  });
  p.stop = async () => {
    stopping = true;
    await Promise.all(runs);
  };
  return p;
}
