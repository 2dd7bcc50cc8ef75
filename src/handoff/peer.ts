/**
 * Who may take part in a handoff: a process of the same user, or root. The kernel's word (SO_PEERCRED),
 * checked before anything else is read or any fd is sent. Where the control socket may live (a directory
 * other users cannot change) is checked in socket-dir.ts.
 */
import type { PeerCredentials } from '../fd/channel.js';

/** null when the peer is allowed; otherwise the reason. */
export function peerRefusal(peer: PeerCredentials, myUid = process.getuid?.() ?? 0): string | null {
  if (peer.uid === myUid || peer.uid === 0) return null;
  return `peer pid ${peer.pid} runs as uid ${peer.uid}; only uid ${myUid} or root may take part in a handoff`;
}

export { checkSocketDir } from './socket-dir.js';
