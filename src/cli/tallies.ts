/**
 * The supervisor's running totals for `baton status` and /metrics: reloads by result,
 * the last reload's duration, and connections moved (or not, by reason) on upgrades, which each replaced
 * generation reports at the end of its drain: the totals outlive the generations that reported them.
 */
import type { UpgradeRecord } from './upgrade-record.js';

const MAX_REASONS = 32;

export interface TallySnapshot {
  /** ok: the new generation serves; rolledBack: it failed and the previous one kept serving (a rolling reload
   * that stopped partway counts here); failed: it failed and no generation was serving. */
  reloads: { ok: number; rolledBack: number; failed: number };
  /** From the request to the outcome (ready, or rolled back) of the last reload; null before the first. */
  lastReloadMs: number | null;
  migrated: number;
  notMoved: Record<string, number>;
}

export class Tallies {
  #s: TallySnapshot = { reloads: { ok: 0, rolledBack: 0, failed: 0 }, lastReloadMs: null, migrated: 0, notMoved: {} };

  /** A reload somebody asked for ended; `othersServing`: another generation was serving at that moment. */
  reloaded(record: UpgradeRecord, othersServing: boolean): void {
    const r = this.#s.reloads;
    if (record.outcome === 'serving') r.ok++;
    else if (othersServing) r.rolledBack++;
    else r.failed++;
    this.#s.lastReloadMs = Math.max(0, Date.now() - Date.parse(record.startedAt));
  }

  /** A replaced generation's last report: connections it moved, and those it closed instead (by reason when
   * it says; an older generation gives the count alone). */
  drained(
    moved: number,
    notMoved: number,
    reasons: Record<string, number> = notMoved > 0 ? { UNKNOWN: notMoved } : {},
  ): void {
    this.#s.migrated += moved;
    for (const [reason, n] of Object.entries(reasons)) {
      // Reasons are a handful of error codes; a misbehaving generation cannot grow the set past MAX_REASONS.
      const key = reason in this.#s.notMoved || Object.keys(this.#s.notMoved).length < MAX_REASONS ? reason : 'OTHER';
      this.#s.notMoved[key] = (this.#s.notMoved[key] ?? 0) + n;
    }
  }

  snapshot(): TallySnapshot {
    return { ...this.#s, reloads: { ...this.#s.reloads }, notMoved: { ...this.#s.notMoved } };
  }
}
