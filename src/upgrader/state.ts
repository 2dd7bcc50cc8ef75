/**
 * The states of one generation (see docs/architecture.md for the machine). A module of its own so that
 * standalone-host.ts can name them without importing upgrader.ts, which imports it (no cycle).
 */
export type UpgraderState = 'starting' | 'serving' | 'upgrading' | 'draining' | 'stopped';
