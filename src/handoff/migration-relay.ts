/**
 * The supervisor relays each new generation's migration channel to the generation it replaces (`drain`, docs/
 * protocol.md). With `baton run --workers N` scaled down (`baton reload --workers M`, docs/workers.md), the old
 * workers of the removed slots have no successor of their own: their connections move to a remaining new worker,
 * which must then receive from two old workers. Its receiver already takes more channels: a `migrate-channel`
 * message on a channel it receives on adds the channel it carries (src/upgrader/migrate.ts uses it for a
 * generation that drains while its predecessor still sends). So before relaying the channel the supervisor puts
 * such a message on it, carrying one end of a new socketpair, and gives the other end to the removed worker:
 * the message is in the socket ahead of anything the replaced worker will send, so the new worker reads it first.
 */
import { sendMessageNow } from '../fd/channel.js';
import { closeFds, socketpair } from '../fd/fds.js';
import { encode, PROTOCOL_VERSION } from './messages.js';

/**
 * Another channel to the new generation at the far end of `migrationFd` (the sending end of its migration
 * channel, not yet relayed; not owned): returns the sending end of the new channel (owned by the caller), or
 * null when it cannot be added (the new generation is gone, or its channel is full): that worker then drains
 * without migration, closing its connections politely.
 */
export function addMigrationChannel(migrationFd: number): number | null {
  let pair: [number, number];
  try {
    pair = socketpair();
  } catch {
    return null;
  }
  const [mine, theirs] = pair;
  let sent = false;
  try {
    sent = sendMessageNow(migrationFd, encode({ v: PROTOCOL_VERSION, type: 'migrate-channel' }), [theirs]);
  } catch {
    // the new generation closed its end
  }
  closeFds(sent ? [theirs] : [mine, theirs]);
  return sent ? mine : null;
}
