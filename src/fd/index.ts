/** The fd layer: passing fds between processes and turning them into Node objects, without side effects. */
export { FdChannel, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_MESSAGE_FDS } from './channel.js';
export type { FdChannelOptions, ConnectOptions, PeerCredentials, FdChannelEvents } from './channel.js';
export { FdChannelServer } from './channel-server.js';
export type { FdChannelServerOptions, FdChannelServerEvents, DropInfo } from './channel-server.js';
export { fdOf, dupFd, withFd } from './fd-of.js';
export { closeFds } from './fds.js';
export type { FdSource } from './fd-of.js';
export { probe } from './probe.js';
export type { FdInfo, FdKind, FdAddress } from './probe.js';
export { adopt, adoptServer, adoptSocket, adoptDgram, adoptFile } from './adopt.js';
export type { Adopted, AdoptOptions } from './adopt.js';
export { getSockOpt, setSockOpt, getSockOptRaw, setSockOptRaw, sockOptNames } from './sockopt.js';
export type { SockOptName, SockOptValue, WritableSockOptName, Linger, TcpInfo } from './sockopt.js';
export type { BatonError, BatonErrorCode } from './errors.js';
export { sdNotify, sdListenFds, sdWatchdog, formatNotify, monotonicUsec, SD_LISTEN_FDS_START } from './systemd.js';
export type { NotifyFields, NotifyOptions, ListenFd, ListenFdsOptions, Watchdog } from './systemd.js';
