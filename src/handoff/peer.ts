/**
 * Who may take part in a handoff: a process of the same user, or root. The kernel's word (SO_PEERCRED),
 * checked before anything else is read or any fd is sent. And where the control socket may live: in a
 * directory other users cannot write to, so nobody can swap the socket file under us.
 */
import fs from 'node:fs';
import path from 'node:path';
import { batonError, type BatonError } from '../fd/errors.js';
import type { PeerCredentials } from '../fd/channel.js';

/** null when the peer is allowed; otherwise the reason. */
export function peerRefusal(peer: PeerCredentials, myUid = process.getuid?.() ?? 0): string | null {
  if (peer.uid === myUid || peer.uid === 0) return null;
  return `peer pid ${peer.pid} runs as uid ${peer.uid}; only uid ${myUid} or root may take part in a handoff`;
}

/** Throws when the control socket's directory is writable by other users (world-writable, or group-
 * writable and not ours alone); creates the directory (mode 0700) when missing. */
export function checkSocketDir(socketPath: string): void {
  const dir = path.dirname(path.resolve(socketPath));
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    st = fs.statSync(dir);
  }
  if (!st.isDirectory()) throw unsafe(`${dir} is not a directory`);
  if (st.mode & 0o002) {
    throw unsafe(`${dir} is world-writable (mode ${(st.mode & 0o7777).toString(8)}): another user could replace the control socket. Use a private directory, e.g. $XDG_RUNTIME_DIR or --socket ./run/app.sock`);
  }
}

function unsafe(message: string): BatonError {
  return batonError('ERR_BATON_UNSAFE_SOCKET_DIR', message);
}
