/** The handoff layer: the protocol between a serving generation (or the supervisor) and the next one. */
export { PROTOCOL_VERSION, decode, encode, fits, formatAddress } from './messages.js';
export type { Message, InventoryEntry, SocketAddress, SocketKind, Hello, Welcome, Drain, Stats, Result, ControlCommand } from './messages.js';
export { Link } from './link.js';
export { GenerationClient } from './client.js';
export type { ClientState, JoinOptions } from './client.js';
export { HandoffSession } from './session.js';
export type { SessionState } from './session.js';
export { peerRefusal, checkSocketDir } from './peer.js';
export { sendCommand } from './control.js';
