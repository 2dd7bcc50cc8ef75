/** Plain mode: no supervisor, no control socket. listen() binds, ready() does nothing: `node server.js`. */
import type { GenerationMode } from './mode.js';

export class PlainMode implements GenerationMode {
  readonly name = 'plain' as const;
  readonly notifiesServiceManager = true;
  readonly keepsClient = false;
  started(): void {}
  clientClosed(): void {}
  async registerFresh(): Promise<void> {}
  /** Never asked: a plain generation has no predecessor. */
  handoffBroke(): { fatal: boolean; who: string } {
    return { fatal: true, who: 'the predecessor' };
  }
  async beforeServing(): Promise<void> {}
  serving(): void {}
  draining(): void {}
  predecessorDone(): void {}
  drained(): void {}
}
