/**
 * Every call the supervisor's state machine makes to the operating system, behind one small interface (as
 * tableflip keeps its own in env.go and process.go): spawning a generation, watching an adopted one exit (a
 * pidfd, after a re-exec), signalling its process group, the process tree in /proc, CPU and memory from /proc,
 * reaping orphans as PID 1, the clock and timers, and copying a generation's output through. realProcess()
 * is the one baton runs with; the state machine (start, ready, rollback, crash, hang, stop) is unit-tested
 * against a fake that spawns nothing and whose clock moves only when the test says so
 * (test/supervisor-fake.ts).
 *
 * Not behind it, on purpose: the control socket and the fds that travel over it (the unit tests run the real
 * handoff over a socket in a temporary directory, so closing a received fd is real there too), the service
 * manager's notifications (no-ops without NOTIFY_SOCKET, which the tests do not set), the search for an
 * orphan to take over (takeover.ts: it finds no takeover socket in a new directory), the re-exec itself
 * (reexec.ts: it replaces the process image, which only a real process can test), and the environment a
 * generation inherits (spawn-generation.ts reads process.env; the fake gets it whole, and a test reads it).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import type net from 'node:net';
import { reap, watchChildExit } from '../fd/process.js';
import { ProcSampler, statFields, type ProcUsage } from './proc-stats.js';

/** What a timer handle must offer (a NodeJS.Timeout does). */
export interface TimerHandle {
  unref(): unknown;
}

/** What the supervisor keeps of a spawned generation (a ChildProcess is one). */
export interface SpawnedChild {
  /** Undefined when it could not start: 'error' follows. */
  readonly pid?: number | undefined;
  /** The read end of its stderr pipe. */
  readonly stderr: net.Socket | null;
  /** Spawn failures (ENOENT) arrive as 'error', followed by 'exit' or nothing at all. */
  on(event: 'error', listener: (err: Error) => void): unknown;
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SupervisorProcess {
  /** This process's pid (as PID 1 it reaps orphans). */
  readonly pid: number;
  /**
   * Start `file` in a process group of its own (a terminal's Ctrl-C reaches only the supervisor, which then
   * drains the generations instead of having them die mid-request), stdin and stdout inherited, stderr piped.
   * Throws if it cannot start at all.
   */
  spawn(file: string, args: string[], env: NodeJS.ProcessEnv): SpawnedChild;
  /** Call `onExit` when `pid`, a child this process did not spawn (adopted across a re-exec), exits: a pidfd
   * where the kernel has them, else a waitpid poll (fd/process.ts). */
  watchExit(pid: number, onExit: (status: ExitStatus) => void): void;
  /** Signal `pid`'s whole process group, falling back to the pid itself; quiet if it is gone. */
  signal(pid: number, signal: NodeJS.Signals): void;
  /** Is `pid` the process `root` or one of its descendants? (The command may be a shell or npm that starts
   * node.) */
  isDescendant(pid: number, root: number): boolean;
  /** As PID 1: reap orphaned zombies that are not `ours` (libuv waits for those). */
  reapOrphans(ours: ReadonlySet<number>): void;
  /** CPU and memory of processes (proc-stats.ts), for `baton status` and /metrics. */
  readonly usage: {
    usage(pids: readonly number[]): ProcUsage | null;
    retain(alive: readonly number[]): void;
  };
  /** Copy a generation's output through to the supervisor's own stderr. */
  writeStderr(chunk: Buffer): void;
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(timer: TimerHandle | null | undefined): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(timer: TimerHandle | null | undefined): void;
}

/** How many parents isDescendant() climbs: a wrapper (npm -> sh -> node) is a few deep; a loop never ends. */
const MAX_HOPS = 32;

/** The real one; a new one per supervisor, as it keeps CPU samples. */
export const realProcess = (): SupervisorProcess => ({
  pid: process.pid,
  spawn(file, args, env) {
    const child = spawn(file, args, { stdio: ['inherit', 'inherit', 'pipe'], env, detached: true });
    return child as unknown as SpawnedChild; // its stderr is a net.Socket (a pipe)
  },
  watchExit(pid, onExit) {
    watchChildExit(pid, onExit);
  },
  signal(pid, signal) {
    if (!pid) return;
    try {
      process.kill(-pid, signal);
    } catch {
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
  },
  isDescendant(pid, root) {
    for (let p = pid, hops = 0; p > 1 && hops < MAX_HOPS; hops++) {
      if (p === root) return true;
      const fields = statFields(p); // [0] state, [1] parent pid
      if (!fields) return false;
      p = Number(fields[1]);
    }
    return false;
  },
  reapOrphans(ours) {
    for (const name of fs.readdirSync('/proc')) {
      const pid = Number(name);
      if (!Number.isInteger(pid) || pid <= 1 || ours.has(pid)) continue;
      const fields = statFields(pid);
      if (fields?.[0] === 'Z' && Number(fields[1]) === 1) reap(pid);
    }
  },
  usage: new ProcSampler(),
  writeStderr: (chunk) => process.stderr.write(chunk),
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout | undefined),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (timer) => clearInterval(timer as NodeJS.Timeout | undefined),
});
