/**
 * Where the control socket may live: in a directory nobody but root and this user can change, checked
 * from the socket's directory up to `/` as systemd and OpenSSH check the paths they trust. Another user who
 * can write to any of those directories (or rename one of them) could replace the socket file, and the
 * control plane (`baton reload`, `stop`, the next generation's join) would be lost to them.
 *
 * A sticky directory owned by root (/tmp) is allowed on the path: others cannot rename or delete what is
 * ours in it. When the socket's own directory is such a directory, others could still create the socket's
 * name first, so the socket moves into a private subdirectory baton creates with mode 0700:
 * /tmp/app.sock -> /tmp/baton-<uid>/app.sock. The same rule gives the same place to `baton run`, a
 * standalone generation and `baton reload/status/stop`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { batonError, type BatonError } from '../fd/errors.js';

const FIX =
  'use a directory that only root and this user can write, e.g. --socket $XDG_RUNTIME_DIR/app.sock, ' +
  'RuntimeDirectory= under systemd, or a directory created with mode 0700';

export interface TrustOptions {
  /** Create missing directories (mode 0700): the serving side. The client commands only look. */
  create?: boolean;
  uid?: number;
}

/**
 * The path the control socket really lives at for the path the user gave: its directory with symlinks
 * resolved, or the private subdirectory of a sticky one. Throws ERR_BATON_UNSAFE_SOCKET_DIR (naming the
 * directory and the fix) when a directory on the way could be changed by another user.
 */
export function trustedSocketPath(socketPath: string, options: TrustOptions = {}): string {
  const uid = options.uid ?? process.getuid?.() ?? 0;
  const requested = path.resolve(socketPath);
  const name = path.basename(requested);
  const dir = path.dirname(requested);
  if (options.create && !fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const real = fs.realpathSync(dir);
  const shown = real === dir ? dir : `${dir} (resolved: ${real})`;
  for (let p = real; ; p = path.dirname(p)) {
    const reason = untrusted(fs.statSync(p), uid, true);
    if (reason) throw unsafe(requested, `${p === real ? shown : p} ${reason}`, p);
    if (p === path.dirname(p)) break;
  }
  if (!isStickyShared(fs.statSync(real))) return path.join(real, name);
  // A shared sticky directory (/tmp): a private subdirectory of ours inside it.
  const own = path.join(real, `baton-${uid}`);
  if (options.create) {
    try {
      fs.mkdirSync(own, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const st = fs.lstatSync(own); // not stat: a symlink planted under our name is refused, never followed
  if (st.isSymbolicLink()) throw unsafe(requested, `${own} is a symlink (another user may have planted it)`, own);
  const reason = untrusted(st, uid, false) ?? (st.uid !== uid ? `is owned by uid ${st.uid}, not ${uid}` : null);
  if (reason) throw unsafe(requested, `${own} ${reason} (the private directory baton uses in ${real})`, own);
  return path.join(own, name);
}

/** Backwards-compatible name: the serving side's check (creates what is missing). Returns the real path. */
export function checkSocketDir(socketPath: string): string {
  return trustedSocketPath(socketPath, { create: true });
}

function isStickyShared(st: fs.Stats): boolean {
  return (st.mode & 0o1000) !== 0 && st.uid === 0 && (st.mode & 0o022) !== 0;
}

/** Why another user could change this directory, or null. */
function untrusted(st: fs.Stats, uid: number, stickyOk: boolean): string | null {
  const mode = (st.mode & 0o7777).toString(8);
  if (!st.isDirectory()) return 'is not a directory';
  if (st.uid !== 0 && st.uid !== uid) return `is owned by uid ${st.uid} (only root or uid ${uid} may own it)`;
  if (stickyOk && isStickyShared(st)) return null;
  if (st.mode & 0o002) return `is world-writable (mode ${mode})`;
  if (st.mode & 0o020) return `is writable by its group (gid ${st.gid}, mode ${mode})`;
  return null;
}

function unsafe(socket: string, what: string, dir: string): BatonError {
  return batonError(
    'ERR_BATON_UNSAFE_SOCKET_DIR',
    `control socket ${socket}: ${what}, so another user could replace the socket file; ${FIX}`,
    { syscall: 'stat', path: dir },
  );
}
