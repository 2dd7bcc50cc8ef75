/**
 * What every benchmark runner shares: killing the processes it started, whatever happens, and writing
 * its own section of docs/performance.md (between its marker comments, leaving the others alone).
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A set of pids that are SIGKILLed — as process groups, then as single processes — when this process
 * exits or is interrupted. Add every process you start (detached ones lead their own group); delete it
 * when it has exited. `killAll()` does the same at any time.
 */
export function trackedProcesses(): { tracked: Set<number>; killAll: () => void } {
  const tracked = new Set<number>();
  const killAll = () => {
    for (const pid of tracked) {
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    tracked.clear();
  };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      killAll();
      process.exit(130);
    });
  }
  return { tracked, killAll };
}

/** Follow a tracked child: `exited` resolves when it exits (its pid then leaves `tracked`); `running()` says
 * whether it still runs. */
export function untilExit(
  child: ChildProcess,
  tracked: Set<number>,
): { exited: Promise<void>; running: () => boolean } {
  let running = true;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      running = false;
      tracked.delete(child.pid!);
      resolve();
    }),
  );
  return { exited, running: () => running };
}

/**
 * Read `child`'s stdout line by line (`each` sees every line) and return `nextLine(re, ms, what)`: the next
 * line matching `re`, rejecting if the process exits first or after `ms` (the messages point at `log`).
 */
export function stdoutLines(
  child: ChildProcess,
  log: string,
  each?: (line: string) => void,
): (re: RegExp, ms: number, what: string) => Promise<RegExpExecArray> {
  let buf = '';
  const waiters = new Set<(line: string) => void>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      each?.(line);
      for (const w of [...waiters]) w(line);
    }
  });
  return (re, ms, what) =>
    new Promise((resolve, reject) => {
      const done = (err: Error | null, m?: RegExpExecArray) => {
        clearTimeout(timer);
        waiters.delete(onLine);
        child.off('exit', onExit);
        if (err) reject(err);
        else resolve(m!);
      };
      const onLine = (line: string) => {
        const m = re.exec(line);
        if (m) done(null, m);
      };
      const onExit = () => done(new Error(`${what}: the process exited first (see ${log})`));
      const timer = setTimeout(() => done(new Error(`${what}: no ${re} within ${ms} ms (see ${log})`)), ms);
      waiters.add(onLine);
      child.once('exit', onExit);
    });
}

/** Replace the section between `start` and `end` in `doc` (append it if missing; create the doc). */
export function writeDocSection(doc: string, start: string, end: string, section: string): void {
  let text: string;
  if (!fs.existsSync(doc)) {
    text =
      `# Performance\n\nMeasurements of baton's moving parts. Each section is written by the benchmark it ` +
      `names.\n\n${section}\n`;
  } else {
    const old = fs.readFileSync(doc, 'utf8');
    const a = old.indexOf(start);
    const b = old.indexOf(end);
    text =
      a >= 0 && b > a
        ? old.slice(0, a) + section + old.slice(b + end.length)
        : `${old.replace(/\s*$/, '')}\n\n${section}\n`;
  }
  fs.mkdirSync(path.dirname(doc), { recursive: true });
  fs.writeFileSync(doc, text);
}

/** The machine a benchmark ran on, for its table's caption. */
export function machine(): string {
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  return `${os.availableParallelism()} CPUs (nproc), ${cpu}; Node ${process.version}; Linux ${os.release()}`;
}

/** An integer from the environment variable `name` (`def` when unset), checked to lie in [min, max]. */
export function envInt(name: string, def: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max}, got ${raw}`);
  }
  return n;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Build the C program `src` into `bin` with `cc -O2 -Wall` unless `bin` is newer than `src` (its compiler's output
 * on this process's stdout and stderr). Throws if cc is missing or fails.
 */
export function compileC(src: string, bin: string, root: string): void {
  const srcTime = fs.statSync(src).mtimeMs;
  let binTime = -1;
  try {
    binTime = fs.statSync(bin).mtimeMs;
  } catch {
    // not built yet
  }
  if (binTime >= srcTime) return;
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  console.log(`compiling ${path.relative(root, src)} -> ${path.relative(root, bin)}`);
  execFileSync('cc', ['-O2', '-Wall', '-o', bin, src], { stdio: 'inherit' });
}
