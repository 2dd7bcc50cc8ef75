/**
 * Where a generation whose supervisor died (an "orphan") can be found, so that a new `baton run` on the same
 * control socket takes over from it instead of starting a generation that fails with EADDRINUSE forever.
 *
 * The orphan keeps serving (its listeners are its own fds; the supervisor's copies died with it) and listens
 * on a takeover socket next to the control socket: `<control socket>.takeover.<pid>`. One per orphan, named
 * by pid, because more than one can outlive a supervisor (one still draining, or — if the supervisor died
 * between acknowledging a new generation and telling the old one to drain — two serving). The same trust
 * rules as the control socket hold: the directory was checked when the supervisor started (not writable by
 * other users), the file is created with mode 0600 (FdChannelServer), and every peer's uid is checked with
 * SO_PEERCRED before anything is read or sent (HandoffSession.accept, GenerationClient.join).
 *
 * On the socket the orphan speaks the standalone serving side (StandaloneHost, built on src/handoff/server.ts):
 * a new supervisor joins it like a standalone successor, receives its listeners, and relays its first
 * generation's ready (with the migration channel) to it; the orphan then drains, moving its live connections
 * to that generation.
 */
import fs from 'node:fs';
import path from 'node:path';
import { FdChannelServer } from '../fd/channel-server.js';
import { CONTROL_CHANNEL_LIMITS } from '../handoff/messages.js';

const INFIX = '.takeover.';

/** The takeover socket of the orphan `pid` for this control socket. */
export function takeoverPath(controlSocket: string, pid: number = process.pid): string {
  return `${path.resolve(controlSocket)}${INFIX}${pid}`;
}

/** The takeover sockets next to this control socket (live or left over by an orphan that died). */
export function listTakeoverSockets(controlSocket: string): Array<{ path: string; pid: number }> {
  const resolved = path.resolve(controlSocket);
  const dir = path.dirname(resolved);
  const prefix = path.basename(resolved) + INFIX;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith(prefix) && /^[1-9]\d{0,9}$/.test(n.slice(prefix.length)))
    .map((n) => ({ path: path.join(dir, n), pid: Number(n.slice(prefix.length)) }))
    .filter((s) => {
      try {
        return fs.lstatSync(s.path).isSocket();
      } catch {
        return false;
      }
    });
}

/** Listen on this process's takeover socket (mode 0600; a leftover file of a dead process is replaced). */
export function listenForTakeover(controlSocket: string): Promise<FdChannelServer> {
  return FdChannelServer.listen(takeoverPath(controlSocket), CONTROL_CHANNEL_LIMITS);
}
