/** The upgrader layer: the application's API for zero-downtime upgrades. */
export { Upgrader } from './upgrader.js';
export type {
  UpgraderOptions,
  ListenOptions,
  DgramOptions,
  UpgraderMode,
  UpgraderState,
  UpgraderEvents,
} from './upgrader.js';
export { createLogger, silentLogger } from './logger.js';
export type { Logger, LogLevel, LogFields, LogFormat } from './logger.js';
