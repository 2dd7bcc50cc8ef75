/**
 * The serving side of a handoff without a supervisor: a standalone generation on its control socket, or an
 * orphan (its supervisor gone) on its takeover socket. Both hand over through a StandaloneHost (built on
 * src/handoff/server.ts); these are its callbacks into the generation.
 */
import type { FdChannelServer } from '../../fd/channel-server.js';
import { StandaloneHost } from '../standalone-host.js';
import type { Generation, Offered } from './mode.js';

/** `own`: sockets the mode itself hands over besides the generation's (the standalone control listener). */
export function hostOn(server: FdChannelServer, g: Generation, own: () => Offered[]): StandaloneHost {
  return new StandaloneHost(server, {
    generation: () => g.generation,
    state: () => g.state(),
    readyTimeout: g.readyTimeout,
    helloTimeout: g.helloTimeout,
    logger: g.logger,
    inventory: () => [...g.inventory(), ...own()],
    status: () => g.status(),
    setUpgrading: (on: boolean) => g.setUpgrading(on),
    onRollback: (pid: number, reason: string) => {
      g.service()?.rolledBack(g.generation, g.listeners(), pid, reason);
      g.emitRollback({ pid, reason });
    },
    beforeHandover: async (generation: number, pid: number) => {
      await g.service()?.handingOver(generation, pid);
    },
    onHandover: (generation: number, pid: number, migrationFd: number | null) => {
      g.openSender(migrationFd);
      g.emitUpgraded({ generation, pid });
      void g.drain(g.drainTimeout);
    },
    onStop: () => void g.stop(),
  });
}
