/**
 * baton: zero-downtime restarts for Node.js.
 *
 * This entry point re-exports each layer's public API. Layers depend only on those below them:
 * fd -> handoff -> upgrader -> integrations -> cli.
 */
export * from './fd/index.js';
export * from './upgrader/index.js';
export { VERSION } from './version.js';
