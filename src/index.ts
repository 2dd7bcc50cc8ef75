/**
 * baton: zero-downtime restarts for Node.js.
 *
 * This entry point re-exports each layer's public API. Layers depend only on those below them:
 * fd -> handoff -> upgrader -> integrations -> cli.
 */
export * from './fd/index.js';
export * from './upgrader/index.js';
// Installs the HTTP, ws and systemd integrations the Upgrader uses (the upgrader does not import them).
import './integrations/index.js';
export { VERSION } from './version.js';
