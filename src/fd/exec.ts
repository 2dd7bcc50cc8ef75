/**
 * Replacing this process's image (native/reexec.c), for the supervisor's re-exec (src/cli/reexec.ts). Node 20
 * has no execve (process.execve arrived in 22.15 / 23.11), and libuv opens every fd close-on-exec, so the
 * addon clears FD_CLOEXEC on exactly the fds to keep and execs. They live in src/fd because only src/fd loads
 * the addon.
 */
import os from 'node:os';
import { argTypeError, checkFd } from './errors.js';
import { native } from './native.js';

/** An anonymous memory file (memfd_create, close-on-exec): yours to write, pass and close. */
export function memfd(name: string): number {
  if (typeof name !== 'string') throw argTypeError('name', 'a string', name);
  return native.memfd(name);
}

function signalNumbers(signals: readonly NodeJS.Signals[]): number[] {
  return signals.map((s) => {
    const n = os.constants.signals[s];
    if (n === undefined) throw argTypeError('signals', 'an array of signal names', signals);
    return n;
  });
}

/**
 * execve(path, argv, env). `keep`: the fds the new image inherits (FD_CLOEXEC cleared just before the exec);
 * `hold`: signals blocked across it, so that one sent while the new image starts stays pending instead of
 * meeting its default action (releaseSignals() in the new image delivers them). Returns only by throwing —
 * the error of execve (or fcntl), with every close-on-exec flag and the signal mask put back.
 */
export function execve(
  path: string,
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  keep: readonly number[],
  hold: readonly NodeJS.Signals[],
): never {
  for (const fd of keep) checkFd(fd, 'keep');
  const envp = Object.entries(env).map(([k, v]) => `${k}=${v ?? ''}`);
  return native.execve(path, argv, envp, keep, signalNumbers(hold));
}

/** Unblock signals an execve() held (see execve's `hold`). */
export function releaseSignals(signals: readonly NodeJS.Signals[]): void {
  native.releaseSignals(signalNumbers(signals));
}
