/**
 * Process helpers the supervisor needs from the addon (native/process.c). They live in src/fd because only
 * src/fd loads the addon.
 */
import os from 'node:os';
import { native } from './native.js';

/** waitpid(pid, WNOHANG) for exactly this pid: true if a zombie with that pid was reaped. Never waits, and
 * never reaps any other pid (libuv waits for the children it spawned by pid; see native/process.c). */
export function reap(pid: number): boolean {
  return native.reap(pid);
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * The calling thread's CPU time, µs (CLOCK_THREAD_CPUTIME_ID): on the main thread, what the event loop itself
 * spent — JavaScript, syscalls, its own garbage collection — and not Node's helper threads. ~1 µs a call, where
 * process.cpuUsage() (every thread summed) cost 61-138 µs on average and up to 9 ms in a generation moving
 * connections (see native/process.c).
 */
export function threadCpuMicros(): number {
  return native.threadCpuMicros();
}

/** How often the fallback without pidfds polls. */
const POLL_MS = 200;

const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(os.constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

/**
 * Follow a child this process did not spawn in its current image: after the supervisor's re-exec
 * (src/cli/reexec.ts) the generations are still its children, but the new Node has no ChildProcess for them,
 * and libuv waits only for the children it spawned itself (waitpid() per pid it knows, never -1), so nobody
 * would notice their exit or reap them.
 *
 * A pidfd (pidfd_open(2), Linux >= 5.3) polls readable when the process exits; the addon's Poller watches it
 * through libuv (no thread, no timer), then waitpid(pid, WNOHANG) reaps it and reads its status. Without
 * pidfds (ENOSYS) a 200 ms timer polls waitpid instead. Not SIGCHLD: libuv owns that handler, and a blanket
 * waitpid(-1) from it would steal the statuses of the children libuv did spawn.
 *
 * Calls `onExit` once, after reaping `pid` (possibly before this returns, if it exited already). Returns a
 * function that stops watching.
 */
export function watchChildExit(pid: number, onExit: (exit: ChildExit) => void): () => void {
  let stopped = false;
  let stop = () => {
    stopped = true;
  };
  /** true once it exited and was reaped. ECHILD: reaped already (by the previous image's libuv, whose
   * exit event never ran): the status is lost. */
  const check = (): void => {
    if (stopped) return;
    let status: { code: number | null; signal: number | null } | null;
    try {
      status = native.waitStatus(pid);
    } catch {
      status = { code: null, signal: null };
    }
    if (!status) return;
    stop();
    onExit({ code: status.code, signal: status.signal === null ? null : (signalNames.get(status.signal) ?? null) });
  };
  let pidfd = -1;
  try {
    pidfd = native.pidfdOpen(pid);
  } catch {
    // ENOSYS (kernel < 5.3), or ESRCH (reaped already): the timer below finds out which.
  }
  if (pidfd >= 0) {
    const poller = new native.Poller(pidfd, () => check());
    stop = () => {
      stopped = true;
      poller.close(true);
    };
    poller.start(native.pollEvents.READABLE);
  } else {
    const timer = setInterval(check, POLL_MS);
    stop = () => {
      stopped = true;
      clearInterval(timer);
    };
  }
  check(); // it may have exited during the exec (then the pidfd is readable at once, but no need to wait)
  return () => {
    if (!stopped) stop();
  };
}
