/**
 * The integrations layer: HTTP (drain, keep-alive migration), `ws` WebSocket migration and the service
 * manager (systemd), each behind the upgrader's narrow interfaces (src/upgrader/integration.ts). Loading
 * this module installs them; the package entry (src/index.ts) does.
 */
import { installIntegrations } from '../upgrader/integration.js';
import { ServerDrainer } from './http.js';
import { GenerationService } from './systemd.js';
import { WebSocketMover } from './ws.js';

installIntegrations({
  drainer: (server, idleGraceMs) => new ServerDrainer(server, idleGraceMs),
  webSocketServer: (wss, options, context) => new WebSocketMover(wss, options, context),
  serviceManager: (options) => new GenerationService(options),
});

