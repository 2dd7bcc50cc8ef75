/**
 * Standalone mode: no supervisor; the serving generation listens on the control socket, and a process
 * started with the same path takes over from it (Envoy/Pingora style). The control listener itself is
 * handed to the successor with the other sockets.
 */
import { FdChannelServer } from '../../fd/channel-server.js';
import type { GenerationClient } from '../../handoff/client.js';
import { CONTROL_CHANNEL_LIMITS } from '../../handoff/messages.js';
import type { StandaloneHost } from '../standalone-host.js';
import { hostOn } from './host.js';
import { alive, type Generation, type GenerationMode, type Offered } from './mode.js';

/** The inventory name of the control listener. */
export const RESERVED = '__baton_control';

export class StandaloneMode implements GenerationMode {
  readonly name = 'standalone' as const;
  readonly notifiesServiceManager = true;
  /** The predecessor is done with once this generation serves: successors join this one. */
  readonly keepsClient = false;
  #control: FdChannelServer | null;
  #host: StandaloneHost | null = null;
  readonly #first: boolean;

  /** `control`: the listener claimed (`first` generation) or taken over from the predecessor, if any. */
  constructor(control: FdChannelServer | null, first: boolean) {
    this.#control = control;
    this.#first = first;
  }

  started(g: Generation): void {
    // The first standalone generation answers on its control socket from the start: a successor that
    // arrives before ready() is refused with a clear reason, and `baton status` works.
    if (this.#first && this.#control) this.#ensureHost(g).start();
  }

  clientClosed(): void {}

  async registerFresh(): Promise<void> {}

  handoffBroke(client: GenerationClient): { fatal: boolean; who: string } {
    const pid = client.link.peer.pid;
    return { fatal: alive(pid), who: `the serving generation (pid ${pid}) ended the handoff` };
  }

  async beforeServing(g: Generation): Promise<void> {
    if (!this.#control) this.#control = await FdChannelServer.listen(g.socketPath!, CONTROL_CHANNEL_LIMITS);
  }

  serving(g: Generation): void {
    this.#ensureHost(g).start();
  }

  draining(_g: Generation, stopping: boolean): void {
    // Handed over: the control listener's file stays for the successor; stopping: it goes.
    this.#host?.close({ unlink: stopping });
  }

  predecessorDone(): void {}
  drained(): void {}

  #ensureHost(g: Generation): StandaloneHost {
    this.#host ??= hostOn(this.#control!, g, () => this.#own(g));
    return this.#host;
  }

  /** The control listener goes to the successor with the generation's sockets. */
  #own(g: Generation): Offered[] {
    const control = this.#control;
    if (!control) return [];
    return [{ entry: { name: RESERVED, kind: 'control', address: { path: g.socketPath! } }, fd: control.fd }];
  }
}
