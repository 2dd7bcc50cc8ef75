/**
 * Shared test helpers: temporary directories, fd counting through /proc, spawning real Node processes
 * (never fork()/IPC) and killing them by pid, and bounded waits. Every helper that starts something
 * registers its cleanup with the test context, so a failing assertion never leaves a process or a file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

/** dist/test -> the package root. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Every file below `dir` whose name matches `name` (the source scans of the style, layering and error-code tests). */
export function listFiles(dir: string, name: RegExp): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...listFiles(p, name));
    else if (name.test(e.name)) out.push(p);
  }
  return out;
}
/** Compiled fixtures (test/fixtures/*.ts -> dist/test/fixtures/*.js). */
export const FIXTURES = path.join(ROOT, 'dist/test/fixtures');

type Cleanup = TestContext | { after(fn: () => unknown): void };

/** A fresh private directory, removed after the test. Short, because AF_UNIX paths are limited to 107 bytes. */
export function tmpDir(t: Cleanup): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The fds open in this process right now (numbers), from /proc/self/fd. */
export function openFds(pid: number | 'self' = 'self'): number[] {
  const listed = fs
    .readdirSync(`/proc/${pid}/fd`)
    .map(Number)
    .filter((n) => Number.isInteger(n));
  if (pid !== 'self') return listed;
  // The listing itself used an fd that is closed again by now: keep only fds that are still open.
  return listed.filter((n) => {
    try {
      fs.fstatSync(n);
      return true;
    } catch {
      return false;
    }
  });
}

export function fdCount(): number {
  // readdirSync itself opens one fd while listing; it is closed again before we return.
  return openFds().length;
}

/** The flags line of /proc/self/fdinfo/<fd>, as a number (octal in the file). */
export function fdinfoFlags(fd: number, pid: number | 'self' = 'self'): number {
  const text = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
  const m = /^flags:\s+([0-7]+)/m.exec(text);
  if (!m) throw new Error(`no flags in fdinfo for fd ${fd}`);
  return parseInt(m[1]!, 8);
}

export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

export interface Spawned {
  child: ChildProcess;
  pid: number;
  /** Everything the child wrote to stdout so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first stdout line matching `re` (or rejects after `ms`). */
  line(re: RegExp, ms?: number): Promise<RegExpExecArray>;
  /** Resolves with the exit code (or signal name) when the child exits. */
  exited: Promise<number | string>;
}

/**
 * Spawn `node script args…` as a separate process (stdio pipes, no IPC channel). It is SIGKILLed by pid
 * after the test if it is still running.
 */
export function spawnNode(t: Cleanup, script: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Spawned {
  return spawnProcess(t, process.execPath, [script, ...args], env);
}

/** Spawn `command args…` (python3, say) as spawnNode() does node: stdio pipes, SIGKILLed by pid after the test. */
export function spawnProcess(t: Cleanup, command: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Spawned {
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => {
      // 'exit' can come before the last of the child's output is read from its pipes (libuv may handle the
      // SIGCHLD before the pipes' data in the same turn), and a test reads stderr() once this resolves. So wait
      // for both streams to end — or 50 ms, what is in the pipes by then has long been read: a grandchild that
      // inherited them keeps them open (a SIGKILLed supervisor's generations; a 2 s bound added ~75 s to the
      // suite's 512).
      const ended = (s: NodeJS.ReadableStream & { readableEnded?: boolean }) =>
        s.readableEnded ? Promise.resolve() : new Promise<void>((r) => s.once('end', r).once('close', r));
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<void>((r) => (timer = setTimeout(r, 50)));
      void Promise.race([Promise.all([ended(child.stdout!), ended(child.stderr!)]), bound]).then(() => {
        clearTimeout(timer);
        resolve(code ?? signal ?? -1);
      });
    });
  });
  const pid = child.pid!;
  t.after(() => killPid(pid));
  return {
    child,
    pid,
    stdout: () => out,
    stderr: () => err,
    exited,
    line(re: RegExp, ms = 10_000): Promise<RegExpExecArray> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(out);
          if (m) {
            cleanup();
            resolve(m);
          }
        };
        const onExit = () => {
          setImmediate(() => {
            check();
            cleanup();
            reject(
              new Error(
                `child ${pid} exited before printing ${re}; stdout: ${out.slice(-2000)} stderr: ${err.slice(-2000)}`,
              ),
            );
          });
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(
              `timed out after ${ms} ms waiting for ${re} from child ${pid}; stdout: ${out.slice(-2000)} stderr: ` +
                `${err.slice(-2000)}`,
            ),
          );
        }, ms);
        const cleanup = () => {
          clearTimeout(timer);
          child.stdout!.off('data', check);
          child.off('exit', onExit);
        };
        child.stdout!.on('data', check);
        child.once('exit', onExit);
        check();
      });
    },
  };
}

/** SIGKILL a pid if it is still alive; never throws. */
export function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Reject if `p` does not settle within `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

/** Poll `cond` every `step` ms until it is true, or throw after `ms`. */
export async function waitFor(cond: () => boolean, ms: number, what: string, step = 10): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, step));
  }
}

/** Wait until the fd count is back to `baseline` (closes can lag a tick behind an event). */
export async function expectFdsBackTo(baseline: number, what: string, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  let now = fdCount();
  while (now !== baseline && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
    now = fdCount();
  }
  if (now !== baseline) throw new Error(`fd leak after ${what}: ${now} open fds, expected ${baseline}`);
}

/**
 * A sender for paced() and the drainer's paced moves whose every sendable() waits until the test calls
 * release(): the test decides when each batch may start. `releases` counts the batches let go.
 */
export function manualSender(batchSize: number) {
  let waiting: (() => void) | null = null;
  const sender = {
    accepting: true,
    batchSize,
    releases: 0,
    prepared: () => {},
    sendable: () =>
      new Promise<void>((r) => {
        waiting = r;
      }),
    /** Whether a batch waits for release(). */
    get waiting(): boolean {
      return waiting !== null;
    },
    release(): void {
      const go = waiting;
      if (!go) throw new Error('no batch is waiting for the sender');
      waiting = null;
      sender.releases++;
      go();
    },
  };
  return sender;
}
