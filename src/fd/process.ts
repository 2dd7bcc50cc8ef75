/**
 * Process helpers the supervisor needs from the addon (native/process.c). They live in src/fd because only
 * src/fd loads the addon.
 */
import { native } from './native.js';

/** waitpid(pid, WNOHANG) for exactly this pid: true if a zombie with that pid was reaped. Never waits, and
 * never reaps any other pid (libuv waits for the children it spawned by pid; see native/process.c). */
export function reap(pid: number): boolean {
  return native.reap(pid);
}
