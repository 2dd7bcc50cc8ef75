/**
 * Helpers for the upgrade acceptance tests (upgrade-*.test.ts): run the real `baton` CLI, start a
 * supervised app under `baton run` and learn its port and generation pids from its output, poll
 * `baton status --json`, and make sure that no process is left behind — the supervisor is killed by pid
 * (spawnNode) and so is every generation it spawned (they run detached, in their own process groups, so
 * killing the supervisor alone would leave them serving).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { UpgradeRecord } from '../src/cli/supervisor.js';
import { FIXTURES, ROOT, spawnNode, tmpDir, waitFor, within, type Spawned } from './helpers.js';

export const BATON = path.join(ROOT, 'bin/baton.js');
export const HTTP_EXAMPLE = path.join(ROOT, 'examples/http-server/server.js');
/** The HTTP app whose next generation misbehaves on request (see test/fixtures/behaviour-app.ts). */
export const BEHAVIOUR_APP = path.join(FIXTURES, 'behaviour-app.js');

type Cleanup = Parameters<typeof tmpDir>[0];

export interface CliResult {
  /** Exit code, or the signal name. */
  code: number | string;
  stdout: string;
  stderr: string;
}

/** Run `node bin/baton.js args…` to completion; SIGKILLed (by pid) after `timeoutMs` as a hang detector. */
export function baton(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BATON, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const ms = opts.timeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
      reject(new Error(`baton ${args.join(' ')} did not finish within ${ms} ms; stdout: ${stdout} stderr: ${stderr}`));
    }, ms);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal ?? -1, stdout, stderr });
    });
  });
}

export interface StatusGeneration {
  generation: number;
  pid: number;
  state: string;
  startedAt: string;
  readyMs: number | null;
  connections: number;
  /** Its worker slot (`baton run --workers N`). */
  worker?: number;
}

export interface Status {
  supervisor: { pid: number; socket: string; command: string[]; stopping: boolean; workers?: number };
  generations: StatusGeneration[];
  listeners: Array<{ name: string; kind: string; address: string }>;
  upgrades: UpgradeRecord[];
}

export interface Supervised {
  sup: Spawned;
  dir: string;
  socket: string;
  /** The port generation 1 listens on (127.0.0.1). */
  port: number;
  /** Every generation pid the supervisor logged spawning so far. */
  generationPids(): number[];
  status(): Promise<Status>;
  reload(extra?: string[]): Promise<CliResult>;
  /** The generation that is serving now (exactly one, or the assertion in the caller fails). */
  serving(): Promise<StatusGeneration[]>;
  /** SIGTERM the supervisor and wait for it to exit (its generations drain first); returns its exit code. */
  shutdown(ms?: number): Promise<number | string>;
}

/** Is `pid` alive and one of the generations of supervisor `supPid`? (Guards against pid reuse.) */
export function isGenerationOf(pid: number, supPid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`BATON_SUPERVISOR=${supPid}`);
  } catch {
    return false;
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie is not alive: it only waits for its parent to reap it.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * `baton run --socket <tmp>/s.sock [runArgs] -- node <app>` with PORT=0: generation 1 picks a port, the
 * next ones inherit it. Resolves once generation 1 serves: its stdout line `servingLine` (default: the
 * HTTP apps' "generation 1 serving on http://127.0.0.1:PORT"), whose first group is the port.
 */
export async function startSupervised(
  t: Cleanup,
  opts: { app?: string; env?: NodeJS.ProcessEnv; runArgs?: string[]; dir?: string; servingLine?: RegExp } = {},
): Promise<Supervised> {
  const dir = opts.dir ?? tmpDir(t);
  const socket = path.join(dir, 's.sock');
  const app = opts.app ?? HTTP_EXAMPLE;
  const sup = spawnNode(t, BATON, ['run', '--socket', socket, ...(opts.runArgs ?? []), '--', process.execPath, app], {
    PORT: '0',
    ...opts.env,
  });
  const seen = new Set<number>();
  const generationPids = () => {
    for (const m of sup.stderr().matchAll(/baton spawn supervisor=\d+ generation=\d+ child=(\d+)/g))
      seen.add(Number(m[1]));
    return [...seen];
  };
  // After the test: the supervisor is SIGKILLed by spawnNode's cleanup; its generations by ours.
  t.after(() => {
    for (const pid of generationPids()) {
      if (!isGenerationOf(pid, sup.pid)) continue;
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  });
  const m = await sup.line(opts.servingLine ?? SERVING(1), 20_000);
  const port = Number(m[1]);
  const status = async (): Promise<Status> => {
    const r = await baton(['status', '--json', '--socket', socket]);
    if (r.code !== 0) throw new Error(`baton status exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Status;
  };
  return {
    sup,
    dir,
    socket,
    port,
    generationPids,
    status,
    reload: (extra = []) => baton(['reload', '--socket', socket, ...extra], { timeoutMs: 60_000 }),
    serving: async () => (await status()).generations.filter((g) => g.state === 'serving'),
    async shutdown(ms = 20_000) {
      if (sup.child.exitCode === null && sup.child.signalCode === null) process.kill(sup.pid, 'SIGTERM');
      return within(sup.exited, ms, 'the supervisor exits after SIGTERM');
    },
  };
}

/** One GET over a fresh connection; resolves with the status and body. */
export function get(port: number, urlPath = '/', timeoutMs = 10_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  });
}

/** Wait until `pid` has exited (or throw after `ms`). */
export function waitExit(pid: number, ms: number, what: string): Promise<void> {
  return waitFor(() => !alive(pid), ms, what, 20);
}

/** The fixtures' stdout line for a serving generation: "generation N serving on http://127.0.0.1:P". */
export const SERVING = (generation: number) =>
  new RegExp(`generation ${generation} serving on http://127\\.0\\.0\\.1:(\\d+)`);
