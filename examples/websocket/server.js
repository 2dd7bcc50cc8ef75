// WebSocket connections that survive upgrades: every open socket moves to the new generation, with its
// state, at a frame boundary. Clients see no disconnect.
//   npx baton run -- node examples/websocket/server.js      then: npx baton reload
//   node examples/websocket/client.js                        sends numbered messages and checks every echo
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { Upgrader } from 'baton-reload';

const upgrader = await Upgrader.start();
const server = http.createServer((_req, res) => res.end(`generation ${upgrader.generation}\n`));
// perMessageDeflate is off by default in ws; with it on (WS_DEFLATE=1 here), connections cannot move and
// get close code 1012 (Service Restart) instead, so clients reconnect.
const wss = new WebSocketServer({ server, perMessageDeflate: process.env.WS_DEFLATE === '1' });
const state = new WeakMap(); // per-connection app state: { id, echoed }

upgrader.webSocketServer(wss, {
  save: (ws) => state.get(ws), // old generation: what to carry along (JSON)
  restore: (ws, saved) => state.set(ws, saved), // new generation: put it back
});

wss.on('connection', (ws, req) => {
  if (!req.migrated) state.set(ws, { id: req.url, echoed: 0 });
  ws.on('message', (data) => {
    const s = state.get(ws);
    s.echoed++;
    ws.send(`${upgrader.generation} ${s.echoed} ${data}`);
  });
});

await upgrader.listen(server, 'web', { port: Number(process.env.PORT ?? 8081), host: '127.0.0.1' });
await upgrader.ready();
console.log(`generation ${upgrader.generation} serving WebSockets on ws://127.0.0.1:${server.address().port}`);
