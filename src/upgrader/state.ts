/**
 * The life of one generation, as one table: every change of state goes through GenerationState.to(), and a
 * change the table does not list throws ERR_BATON_STATE (a call in the wrong state, or a bug). The diagram is
 * in docs/architecture.md ("The generation's state machine").
 *
 *   starting --ready()--> serving --(successor ready | drain message | stop())--> draining --> stopped
 *      \--(stop() or a drain message before ready())----------------------------------^
 *   serving --(a standalone successor or a takeover joins)--> upgrading --(it fails)--> serving
 *                                                                  \--(it is ready)--> draining
 *
 * A module of its own so that standalone-host.ts and the modes can name the states without importing
 * upgrader.ts (no cycle).
 */
import { batonError } from '../fd/errors.js';

export type UpgraderState = 'starting' | 'serving' | 'upgrading' | 'draining' | 'stopped';

export const TRANSITIONS: Readonly<Record<UpgraderState, readonly UpgraderState[]>> = {
  starting: ['serving', 'draining'],
  serving: ['upgrading', 'draining'],
  upgrading: ['serving', 'draining'],
  draining: ['stopped'],
  stopped: [],
};

export class GenerationState {
  #state: UpgraderState = 'starting';

  get current(): UpgraderState {
    return this.#state;
  }

  /** Is this generation past serving (draining or stopped)? */
  get ending(): boolean {
    return this.#state === 'draining' || this.#state === 'stopped';
  }

  /** Move to `next`; throws ERR_BATON_STATE if the table has no such transition. */
  to(next: UpgraderState, what: string): void {
    if (!TRANSITIONS[this.#state].includes(next)) {
      throw batonError('ERR_BATON_STATE', `${what}: no transition from ${this.#state} to ${next}`);
    }
    this.#state = next;
  }
}
