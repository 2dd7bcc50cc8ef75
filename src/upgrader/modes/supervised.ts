/**
 * Supervised mode: under `baton run`. Sockets come from the supervisor, which keeps a copy of each;
 * ready() tells it this generation serves; it sends 'drain' when a newer one is. Stats go to it while the
 * generation serves and drains. If it goes away, the generation serves on as an orphan, waiting on a
 * takeover socket for the next `baton run` (orphan.ts).
 */
import type { FdChannelServer } from '../../fd/channel-server.js';
import type { GenerationClient } from '../../handoff/client.js';
import type { InventoryEntry } from '../../handoff/messages.js';
import { listenForTakeover } from '../orphan.js';
import type { StandaloneHost } from '../standalone-host.js';
import { StatsReporter } from '../stats.js';
import { hostOn } from './host.js';
import type { Generation, GenerationMode, MoveSummary } from './mode.js';

export class SupervisedMode implements GenerationMode {
  readonly name = 'supervised' as const;
  /** The supervisor is the service's main process and talks to the service manager. */
  readonly notifiesServiceManager = false;
  readonly keepsClient = true;
  #host: StandaloneHost | null = null;
  #stats: StatsReporter | null = null;

  started(): void {}

  clientClosed(g: Generation, err: Error | undefined): void {
    if (g.state() !== 'serving') return;
    if ((err as NodeJS.ErrnoException | undefined)?.code === 'ERR_BATON_TRUNCATED') {
      // The supervisor sends fds after ready-ok only with `drain`: this was one whose migration channel
      // the kernel cut (fd table full despite the reserve). Drain politely without migrating, rather than
      // serve on as if the supervisor were gone and be killed with every connection at the drain deadline.
      g.log('warn', 'drain-without-migration', { reason: err!.message });
      void g.drain(g.drainTimeout);
      return;
    }
    g.log('warn', 'supervisor-gone', { reason: err?.message ?? 'connection closed' });
    void this.#becomeOrphan(g);
  }

  async registerFresh(client: GenerationClient, entry: InventoryEntry, fd: number): Promise<void> {
    // The supervisor keeps its own copy, so the port stays open even if this generation crashes.
    await client.register(entry, fd);
  }

  handoffBroke(client: GenerationClient): { fatal: boolean; who: string } {
    return { fatal: true, who: `the supervisor (pid ${client.link.peer.pid}) closed the control connection` };
  }

  async beforeServing(): Promise<void> {}

  serving(g: Generation): void {
    this.#stats = new StatsReporter(g);
    this.#stats.serving();
  }

  draining(g: Generation): void {
    (this.#stats ??= new StatsReporter(g)).draining();
    // An orphan's takeover socket is its own: it goes.
    this.#host?.close({ unlink: true });
  }

  predecessorDone(): void {
    this.#stats?.send('draining');
  }

  drained(_g: Generation, moved: MoveSummary | null): void {
    this.#stats?.drained(moved);
  }

  /**
   * Serving, and the supervisor is gone: serve on, and wait on a takeover socket for a new `baton run`
   * with the same control socket to take over (see orphan.ts). A generation that cannot listen there
   * serves on all the same (its successor then binds the ports afresh once it is gone).
   */
  async #becomeOrphan(g: Generation): Promise<void> {
    let server: FdChannelServer;
    try {
      server = await listenForTakeover(g.socketPath!);
    } catch (err) {
      g.log('warn', 'orphan-unreachable', { reason: (err as Error).message });
      return;
    }
    if (g.state() !== 'serving' || this.#host) {
      server.close();
      return;
    }
    // An orphan has no control listener to hand over: the new supervisor owns that one.
    this.#host = hostOn(server, g, () => []);
    this.#host.start();
    g.log('info', 'orphan-waiting', { takeover: server.path });
  }
}
