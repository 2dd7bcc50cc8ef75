/**
 * The integrations layer: HTTP (drain, keep-alive migration), `ws` WebSocket migration, the service
 * manager (systemd), Server-Sent Events and Socket.IO, each behind the upgrader's narrow interfaces
 * (src/upgrader/integration.ts). Loading this module installs them; the package entry (src/index.ts) does.
 */
import { installIntegrations } from '../upgrader/integration.js';
import { ServerDrainer } from './http.js';
import { SocketIoServers } from './socket-io.js';
import { EventStreams } from './sse.js';
import { GenerationService } from './systemd.js';
import { WebSocketMover } from './ws.js';

installIntegrations({
  drainer: (server, idleGraceMs) => new ServerDrainer(server, idleGraceMs),
  webSocketServer: (wss, options, context) => new WebSocketMover(wss, options, context),
  serviceManager: (options) => new GenerationService(options),
  eventStreams: () => new EventStreams(),
  reconnectingServers: () => new SocketIoServers(),
});
