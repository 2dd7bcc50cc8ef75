/**
 * This process's fd table: how many fds are open and the soft RLIMIT_NOFILE, read from /proc. Used to say why
 * received fds were cut (MSG_CTRUNC) and to bound how many connections a new generation is sent.
 */
import fs from 'node:fs';

export interface FdUsage {
  /** Open fds (the listing's own fd not counted). */
  open: number;
  /** The soft limit; Infinity when unlimited. */
  limit: number;
}

/** null when /proc cannot be read (no fd left even for that, or no /proc). A directory listing: not for hot paths. */
export function fdUsage(): FdUsage | null {
  try {
    const limit = /^Max open files\s+(\S+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'))?.[1];
    if (!limit) return null;
    const open = fs.readdirSync('/proc/self/fd').length - 1; // the listing's own fd is in it
    return { open, limit: limit === 'unlimited' ? Infinity : Number(limit) };
  } catch {
    return null;
  }
}
